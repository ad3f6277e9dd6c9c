"""The Prometheus ``file_sd`` targets file of the local Seldon servers.

Every blue-green swap starts a server on new ports, so a fixed scrape target
goes stale after each deploy. The local Seldon deployer rewrites this file
whenever a server starts, stops or is deleted, and ``stack/prometheus/prometheus.yml``
reads it through ``file_sd_configs`` (Prometheus re-reads it on change, no
reload needed).

Location: ``$CLEARSIGHT_PROMETHEUS_TARGETS``, else
``<ZenML config folder>/clearsight/prometheus-targets.json`` (with ``make`` and
the project's venv that is ``.state/zenml/clearsight/prometheus-targets.json``,
the path ``prometheus.yml`` names).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TARGETS_ENV = "CLEARSIGHT_PROMETHEUS_TARGETS"
TARGETS_FILE = Path("clearsight") / "prometheus-targets.json"


def targets_path() -> Path:
    """Where the targets file is written."""
    configured = os.environ.get(TARGETS_ENV)
    if configured:
        return Path(configured)
    from zenml.config.global_config import GlobalConfiguration

    return Path(GlobalConfiguration().config_directory) / TARGETS_FILE


def target_groups(services: Iterable[Any]) -> list[dict[str, Any]]:
    """One ``file_sd`` target group per server with a metrics port.

    The labels avoid the names seldon-core puts on its own series
    (``model_name``, ``model_version``), which Prometheus would rename.
    """
    groups = []
    for service in services:
        target = service.metrics_target
        if not target:
            continue
        groups.append(
            {
                "targets": [target],
                "labels": {
                    "service": "clearsight-seldon",
                    "zenml_model": service.config.model_name,
                    "zenml_model_version": str(service.config.model_version or ""),
                    "registered_version": str(service.config.registered_version or ""),
                    "service_uuid": str(service.uuid),
                },
            }
        )
    return sorted(groups, key=lambda g: g["targets"][0])


def write_targets(services: Iterable[Any], path: Path | None = None) -> Path:
    """Write the targets file atomically (Prometheus never reads half a file)."""
    path = path or targets_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(target_groups(services), indent=2) + "\n"
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=".targets-", suffix=".json", delete=False
    ) as handle:
        handle.write(text)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)
    return path
