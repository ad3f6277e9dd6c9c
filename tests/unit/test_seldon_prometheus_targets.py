"""The Prometheus file_sd targets file the local Seldon deployer writes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import yaml

from stack.seldon import prometheus_targets
from tests.conftest import ROOT

SHIPPED = ROOT / "stack" / "prometheus" / "prometheus.yml"


def server(port: int | None, version: str) -> SimpleNamespace:
    return SimpleNamespace(
        uuid=uuid4(),
        metrics_target=f"127.0.0.1:{port}" if port else None,
        config=SimpleNamespace(
            model_name="image-classifier", model_version="3", registered_version=version
        ),
    )


def test_targets_file_lists_every_server_with_a_metrics_port(tmp_path, monkeypatch):
    monkeypatch.setenv(prometheus_targets.TARGETS_ENV, str(tmp_path / "sd" / "targets.json"))
    new, old, stopped = server(10001, "5"), server(10000, "4"), server(None, "3")
    path = prometheus_targets.write_targets([new, old, stopped])
    assert path == tmp_path / "sd" / "targets.json" == prometheus_targets.targets_path()
    groups = json.loads(path.read_text())
    assert [g["targets"] for g in groups] == [["127.0.0.1:10000"], ["127.0.0.1:10001"]]
    labels = groups[1]["labels"]
    assert labels["service_uuid"] == str(new.uuid)
    assert labels["registered_version"] == "5"
    # never a label name seldon-core already puts on its series
    assert not {"model_name", "model_version"} & set(labels)
    prometheus_targets.write_targets([])
    assert json.loads(path.read_text()) == []
    assert [p.name for p in path.parent.iterdir()] == ["targets.json"]  # no temp files left


def test_shipped_prometheus_config_reads_the_default_targets_file(monkeypatch):
    """With ZENML_CONFIG_PATH=.state/zenml (make, the venv) both name the same file."""
    monkeypatch.delenv(prometheus_targets.TARGETS_ENV, raising=False)
    config = yaml.safe_load(SHIPPED.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "clearsight-endpoint")
    (files,) = [sd["files"] for sd in job["file_sd_configs"]]
    (relative,) = files
    resolved = (SHIPPED.parent / relative).resolve()
    expected = (ROOT / ".state" / "zenml" / prometheus_targets.TARGETS_FILE).resolve()
    assert resolved == expected
    assert Path(relative).suffix == ".json"
