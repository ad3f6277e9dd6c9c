"""Model versions, gate decisions, Evidently reports and pipeline runs, read from ZenML and MLflow.

Everything here reads what the pipelines recorded (model version metadata,
the ``promotion_decision`` artifacts of promote runs, MLflow registry tags);
nothing imports a pipeline step.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clearsight.names import ArtifactName, PipelineName
from ui.config import DEFAULT_MLFLOW_UI_URL, START_MLFLOW_UI
from ui.data.zenml import client

logger = logging.getLogger(__name__)

# The promote pipeline's Evidently steps, as titled in the app.
EVIDENTLY_STEPS = {
    "drift_report": "Data drift (train vs test or new data)",
    "challenger_quality_report": "Challenger quality",
    "quality_tests": "Quality test suite",
    "champion_vs_challenger_report": "Champion vs challenger",
}


@dataclass
class GateDecision:
    """One judgement of a model version by the promotion gate."""

    version: int
    promote: bool
    reasons: list[str]
    run_id: str
    run_name: str
    judged_at: datetime | None
    champion_version: int | None
    reports: dict[str, str] = field(default_factory=dict)  # title -> artifact version id


@dataclass
class ModelVersionInfo:
    """A ZenML model version with its metrics, MLflow coordinates and latest gate decision."""

    number: int
    stage: str
    created: datetime
    metrics: dict[str, float]
    registered_model: str
    registered_version: str
    mlflow_run_id: str
    promotion: dict[str, Any]
    decision: GateDecision | None = None


def _float(metadata: dict[str, Any], key: str) -> float | None:
    value = metadata.get(key)
    return float(value) if isinstance(value, int | float) else None


def gate_decisions(model_name: str, limit: int = 50) -> dict[int, GateDecision]:
    """The latest gate decision per challenger version, from the promote runs."""
    zen = client()
    runs = zen.list_pipeline_runs(
        pipeline=PipelineName.PROMOTE, sort_by="desc:created", size=limit, hydrate=True
    )
    decisions: dict[int, GateDecision] = {}
    for run in runs.items:
        parameters = run.config.parameters or {}
        if parameters.get("model_name") != model_name:
            continue
        steps = run.steps
        gate = steps.get("promotion_gate")
        if gate is None or ArtifactName.PROMOTION_DECISION not in gate.outputs:
            continue
        try:
            decision = gate.outputs[ArtifactName.PROMOTION_DECISION][0].load()
        except Exception as error:  # noqa: BLE001 - one unreadable artifact hides one row only
            logger.warning("Cannot load the decision of run %s: %s", run.name, error)
            continue
        version = int(decision.challenger.version)
        if version in decisions:
            continue  # runs are newest first: keep the latest judgement
        reports = {}
        for step_name, title in EVIDENTLY_STEPS.items():
            step = steps.get(step_name)
            if step is None:
                continue
            for output_name in ("report_html", "test_html"):
                if output_name in step.outputs:
                    reports[title] = str(step.outputs[output_name][0].id)
        decisions[version] = GateDecision(
            version=version,
            promote=bool(decision.promote),
            reasons=list(decision.reasons),
            run_id=str(run.id),
            run_name=run.name,
            judged_at=run.end_time or run.start_time,
            champion_version=parameters.get("champion_version"),
            reports=reports,
        )
    return decisions


def model_versions(model_name: str, limit: int = 30) -> list[ModelVersionInfo]:
    """The model's versions, newest first, with their metrics and gate decisions."""
    zen = client()
    try:
        page = zen.list_model_versions(
            model=model_name, sort_by="desc:number", size=limit, hydrate=True
        )
    except KeyError:
        return []
    decisions = gate_decisions(model_name)
    versions = []
    for version in page.items:
        meta = dict(version.run_metadata or {})
        metrics = {
            name: value
            for name in (
                "test_accuracy",
                "test_macro_f1",
                "test_ece_after",
                "test_ece_before",
                "test_images",
            )
            if (value := _float(meta, name)) is not None
        }
        versions.append(
            ModelVersionInfo(
                number=int(version.number),
                stage=str(getattr(version.stage, "value", version.stage) or "none"),
                created=version.created,
                metrics=metrics,
                registered_model=str(meta.get("registered_model_name", model_name)),
                registered_version=str(meta.get("registered_model_version", "")),
                mlflow_run_id=str(meta.get("mlflow_run_id", "")),
                promotion=dict(meta.get("promotion") or {}),
                decision=decisions.get(int(version.number)),
            )
        )
    return versions


def report_html(artifact_version_id: str) -> str:
    """The HTML of an Evidently report artifact (its dashboard visualization)."""
    return str(client().get_artifact_version(artifact_version_id).load())


@dataclass(frozen=True)
class MlflowUI:
    """Where the MLflow UI of the active stack is, and how to start it if it is ours to start."""

    url: str
    start: str | None  # None: the stack's tracking server is the UI


def _tracking_uri() -> str:
    try:
        return str(client().active_stack.experiment_tracker.get_tracking_uri())
    except Exception as error:  # noqa: BLE001 - no tracker or no store: no server to link to
        logger.warning("No MLflow tracking URI: %s", error)
        return ""


def mlflow_ui(override: str | None = None, tracking_uri: str | None = None) -> MlflowUI:
    """The MLflow UI to link to.

    A stack whose tracking URI is an ``http(s)`` server (the production stack)
    links to that server. A local store (the embedded stack's SQLite file) has
    no UI until ``make mlflow-ui`` serves it, on ``DEFAULT_MLFLOW_UI_URL``.
    ``CLEARSIGHT_MLFLOW_UI_URL`` (``override``) wins over both.
    """
    uri = _tracking_uri() if tracking_uri is None else tracking_uri
    remote = uri.startswith(("http://", "https://"))
    start = None if remote else START_MLFLOW_UI
    if override:
        return MlflowUI(override.rstrip("/"), start)
    return MlflowUI(uri.rstrip("/") if remote else DEFAULT_MLFLOW_UI_URL, start)


def mlflow_links(versions: list[ModelVersionInfo], mlflow_ui_url: str) -> dict[int, dict[str, str]]:
    """Links into the MLflow UI per version: the training run and the registered version.

    The runs are read with the process's MLflow login (``MLFLOW_TRACKING_USERNAME`` /
    ``_PASSWORD``: the read-only account on the production stack). The browser asks
    for its own login when a link is followed.
    """
    links: dict[int, dict[str, str]] = {}
    experiments: dict[str, str] = {}
    tracking_uri = _tracking_uri()
    if not tracking_uri:
        return links
    if tracking_uri.startswith(("http://", "https://")) and not os.environ.get(
        "MLFLOW_TRACKING_USERNAME"
    ):
        # The production stack's MLflow asks for a login (stack/mlflow_auth.py): the app
        # reads with the read-only account, which `make ui` (or compose) puts here.
        logger.warning(
            "No MLflow login for %s: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "(make ui does, with the read-only account clearsight-reader)",
            tracking_uri,
        )
    try:
        import mlflow

        mlflow_client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    except Exception as error:  # noqa: BLE001 - links are a convenience; never break the page
        logger.warning("No MLflow links: %s", error)
        return links
    for version in versions:
        entry = {}
        if version.registered_version:
            entry["registered"] = (
                f"{mlflow_ui_url}/#/models/{version.registered_model}"
                f"/versions/{version.registered_version}"
            )
        if version.mlflow_run_id:
            run_id = version.mlflow_run_id
            if run_id not in experiments:
                try:
                    experiments[run_id] = mlflow_client.get_run(run_id).info.experiment_id
                except Exception:  # noqa: BLE001 - a deleted run just has no link
                    experiments[run_id] = ""
            if experiments[run_id]:
                entry["run"] = f"{mlflow_ui_url}/#/experiments/{experiments[run_id]}/runs/{run_id}"
        links[version.number] = entry
    return links


def recent_runs(limit: int = 25) -> list[dict[str, Any]]:
    """The latest pipeline runs: pipeline, status, start, duration, who asked, dashboard link."""
    from zenml.utils.dashboard_utils import get_run_url

    zen = client()
    page = zen.list_pipeline_runs(sort_by="desc:created", size=limit, hydrate=True)
    rows = []
    for run in page.items:
        start, end = run.start_time, run.end_time
        duration = (end - start).total_seconds() if start and end else None
        tags = [t.name for t in (run.tags or [])]
        actor = next((t.split(":", 1)[1] for t in tags if t.startswith("actor:")), "")
        try:
            url = get_run_url(run)
        except Exception:  # noqa: BLE001 - no server, no link
            url = None
        rows.append(
            {
                "run": run.name,
                "pipeline": run.pipeline.name if run.pipeline else "",
                "status": str(getattr(run.status, "value", run.status)),
                "started": start,
                "duration_s": round(duration, 1) if duration is not None else None,
                "model version": run.model_version.number if run.model_version else None,
                "actor": actor,
                "dashboard": url or "",
                "id": str(run.id),
            }
        )
    return rows
