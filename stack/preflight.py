"""Check that the active stack's servers answer before anything is submitted.

A pipeline that starts while its S3 endpoint or MLflow server is down fails
half-way, after the run, its snapshot and maybe some artifacts are recorded.
These checks run first and name the service and the command that starts it:

- the ZenML server the client is logged in to (before anything asks it);
- the S3 artifact store: its endpoint answers and its bucket exists for the
  stack's own credentials (the ZenML secret the store refers to);
- the MLflow tracking server answers;
- Airflow's API server answers and its scheduler and DAG processor are healthy
  (otherwise the DAG would never run and ``run.py`` would wait for nothing).
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


def zenml_server_problem() -> str | None:
    """Why the ZenML server the client uses cannot be reached (None: fine or no server).

    Checked without connecting through ZenML's client, which retries for a
    long time and then fails with a traceback.
    """
    from zenml.config.global_config import GlobalConfiguration

    store = GlobalConfiguration().store_configuration
    url = str(getattr(store, "url", "") or "")
    is_server = str(getattr(store, "type", "")).lower().endswith("rest")
    if is_server and url.startswith("http") and not _reachable(url.rstrip("/") + "/health"):
        return (
            f"The ZenML server {url} does not answer. Start it: make services   "
            "(or make dashboard for the ZenML server alone)"
        )
    return None


def _s3_problem(component: Any) -> str | None:
    """Whether the S3 store's endpoint answers and its bucket exists, with its credentials."""
    config = _config(component)
    client_kwargs = dict(config.get("client_kwargs") or {})
    endpoint = client_kwargs.get("endpoint_url")
    where = f"artifact store '{component.name}'"
    if endpoint and not _reachable(endpoint):
        return f"The S3 endpoint {endpoint} of {where} does not answer. {FIX.format(name='s3')}"
    bucket = str(config.get("path") or "").removeprefix("s3://").split("/", 1)[0]
    if not bucket:
        return None
    credentials: dict[str, Any] = {}
    secret_name = config.get("authentication_secret")
    if secret_name:
        try:
            values = Client().get_secret(secret_name, allow_partial_name_match=False).secret_values
        except KeyError:
            return (
                f"The ZenML secret '{secret_name}' of {where} does not exist. "
                "Fix: python -m stack.register production"
            )
        credentials = {
            "aws_access_key_id": values.get("aws_access_key_id"),
            "aws_secret_access_key": values.get("aws_secret_access_key"),
        }
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=client_kwargs.get("region_name"),
        config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1}),
        **{k: v for k, v in credentials.items() if v},
    )
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            return (
                f"The bucket '{bucket}' of {where} does not exist on {endpoint or 'S3'}. "
                f"Fix: make services (creates it on the local S3 server), or create it: "
                f"aws s3 mb s3://{bucket}" + (f" --endpoint-url {endpoint}" if endpoint else "")
            )
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return (
                f"The credentials of {where} (ZenML secret '{secret_name}') may not use bucket "
                f"'{bucket}' on {endpoint or 'S3'}. Fix: export the right AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY and run python -m stack.register production"
            )
        return f"S3 refused bucket '{bucket}' of {where}: {error}"
    except BotoCoreError as error:
        return f"The S3 endpoint {endpoint} of {where} failed: {error}. {FIX.format(name='s3')}"
    return None


def _airflow_problem(component: Any) -> str | None:
    from stack.services import airflow_health
    from stack.settings import load_settings

    url = load_settings().airflow_url
    unhealthy = airflow_health(url)
    if unhealthy is None:
        return (
            f"Airflow's API server {url} (orchestrator '{component.name}') does not answer. "
            f"{FIX.format(name='airflow')}"
        )
    if unhealthy:
        return (
            f"Airflow at {url} (orchestrator '{component.name}') answers, but its "
            f"{', '.join(unhealthy)} {'is' if len(unhealthy) == 1 else 'are'} not healthy: "
            "no DAG would run. Restart it: python -m stack.services stop airflow && "
            "make services   (its log: python -m stack.services status)"
        )
    return None


def problems() -> list[str]:
    """What is unreachable for the active stack (empty when all is well)."""
    server = zenml_server_problem()
    return [server] if server else _stack_problems()


def _stack_problems() -> list[str]:
    try:
        stack = Client().active_stack_model
    except RuntimeError as error:  # the server went away between the check and now
        return [f"The ZenML server cannot be reached ({str(error)[:200]}). Start it: make services"]
    found: list[str] = []
    for component_type, components in stack.components.items():
        if not components:
            continue
        component, kind = components[0], str(getattr(component_type, "value", component_type))
        config = _config(component)
        problem: str | None = None
        if kind == "artifact_store" and component.flavor_name == "s3":
            problem = _s3_problem(component)
        elif kind == "experiment_tracker" and component.flavor_name == "mlflow":
            uri = config.get("tracking_uri") or ""
            if uri.startswith("http") and not _reachable(uri.rstrip("/") + "/health"):
                problem = (
                    f"The MLflow tracking server {uri} of '{component.name}' does not answer. "
                    f"{FIX.format(name='mlflow')}"
                )
        elif kind == "orchestrator" and component.flavor_name == "airflow":
            problem = _airflow_problem(component)
        if problem:
            found.append(problem)
    return found


def check_active_stack() -> None:
    """Raise :class:`ServiceDownError` listing every server that does not answer."""
    server = zenml_server_problem()
    if server:
        raise ServiceDownError(f"ZenML cannot be reached: nothing was submitted.\n  {server}")
    found = _stack_problems()
    if found:
        stack = Client().active_stack_model.name
        raise ServiceDownError(
            f"The active stack '{stack}' cannot run: nothing was submitted.\n  "
            + "\n  ".join(found)
            + "\n  Or switch to the embedded stack: zenml stack set embedded"
        )
