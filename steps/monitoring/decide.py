"""The monitor's decisions: figures, checks and retrain reasons, with a dashboard page."""

from __future__ import annotations

import json
import logging
from typing import Annotated

from zenml import get_step_context, step
from zenml.types import HTMLString
from zenml.utils.dashboard_utils import get_run_url

from clearsight.monitoring import (
    MonitorResult,
    MonitorRules,
    MonitorWindow,
    drift_figures,
    monitor_result,
    summary_html,
)
from clearsight.names import ArtifactName

logger = logging.getLogger(__name__)


def _run_link() -> tuple[str, str]:
    run = get_step_context().pipeline_run
    try:
        url = get_run_url(run) or ""
    except Exception as error:  # noqa: BLE001 - a link is a nicety
        logger.debug("No dashboard link for run %s: %s", run.id, error)
        url = ""
    return str(run.id), url


@step(enable_cache=False)
def monitoring_decision(
    window: MonitorWindow,
    data_drift_report: str,
    prediction_drift_report: str,
    rules: MonitorRules,
) -> tuple[
    Annotated[MonitorResult, ArtifactName.MONITOR_RESULT],
    Annotated[HTMLString, ArtifactName.MONITOR_SUMMARY],
]:
    """Judge the window against the rules.

    Args:
        window: The window and its figures.
        data_drift_report: Evidently's JSON of the feature drift.
        prediction_drift_report: Evidently's JSON of the predicted label's drift.
        rules: The thresholds.

    Returns:
        The result (``retrain_reasons`` for the retrain chain) and its HTML
        summary for the dashboard. A report made on a stand-in table (no
        row in the window) is not read.
    """
    figures = window.figures
    drift = drift_figures(
        json.loads(data_drift_report) if figures.with_features else None,
        json.loads(prediction_drift_report) if figures.predictions else None,
    )
    run_id, run_url = _run_link()
    result = monitor_result(window, drift, rules, run_id=run_id, run_url=run_url)
    for check in result.checks:
        logger.info("%s: %s", check.status, check.detail)
    if result.retrain_reasons:
        logger.warning("Retraining advised: %s", "; ".join(result.retrain_reasons))
    return result, HTMLString(summary_html(result))
