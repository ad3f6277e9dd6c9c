"""Check that the active stack's servers answer before anything is submitted.

A pipeline that starts while its S3 endpoint or MLflow server is down fails
half-way, after the run, its snapshot and maybe some artifacts are recorded.
These checks run first and name the service and the command that starts it.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from zenml.client import Client


class ServiceDownError(RuntimeError):
    """A server the active stack needs does not answer."""


FIX = "Start it: make services   (or python -m stack.services start {name})"


def _reachable(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - configured endpoint
            return True
    except urllib.error.HTTPError:
        return True  # it answered, even if not with 200 (S3 without credentials: 403)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _config(component: Any) -> dict[str, Any]:
    return component.configuration or {}


def problems() -> list[str]:
    """What is unreachable for the active stack (empty when all is well)."""
    stack = Client().active_stack_model
    found: list[str] = []
    for component_type, components in stack.components.items():
        if not components:
            continue
        component, kind = components[0], str(getattr(component_type, "value", component_type))
        config = _config(component)
        if kind == "artifact_store" and component.flavor_name == "s3":
            endpoint = (config.get("client_kwargs") or {}).get("endpoint_url")
            if endpoint and not _reachable(endpoint):
                found.append(
                    f"The S3 endpoint {endpoint} of artifact store '{component.name}' does not "
                    f"answer. {FIX.format(name='s3')}"
                )
        elif kind == "experiment_tracker" and component.flavor_name == "mlflow":
            uri = config.get("tracking_uri") or ""
            if uri.startswith("http") and not _reachable(uri.rstrip("/") + "/health"):
                found.append(
                    f"The MLflow tracking server {uri} of '{component.name}' does not answer. "
                    f"{FIX.format(name='mlflow')}"
                )
        elif kind == "orchestrator" and component.flavor_name == "airflow":
            from stack.settings import load_settings

            url = load_settings().airflow_url
            if not _reachable(url.rstrip("/") + "/api/v2/monitor/health"):
                found.append(
                    f"Airflow's API server {url} (orchestrator '{component.name}') does not "
                    f"answer. {FIX.format(name='airflow')}"
                )
    return found


def check_active_stack() -> None:
    """Raise :class:`ServiceDownError` listing every server that does not answer."""
    found = problems()
    if found:
        stack = Client().active_stack_model.name
        raise ServiceDownError(
            f"The active stack '{stack}' cannot run: nothing was submitted.\n  "
            + "\n  ".join(found)
            + "\n  Or switch to the embedded stack: zenml stack set embedded"
        )
