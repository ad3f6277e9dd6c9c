"""ZenML failure hook: a failed pipeline run becomes an alert in Alertmanager.

Attached with ``@pipeline(on_failure=alert_on_failure)``; ZenML runs it after
the step that failed (a static pipeline's ``on_failure`` is every step's
default), in that step's process, with the step's exception. It posts
``ClearsightPipelineFailed`` (labels ``pipeline``, ``model_name`` and
``model_version`` when the run has a ZenML model version or ``model_name`` /
``model_version`` (or ``challenger_version``) parameters, ``run_id``,
``severity``; annotations: the exception's message, the failed step and the
run's dashboard link, else its run id) to ``CLEARSIGHT_ALERTMANAGER_URL``,
the same Alertmanager Prometheus' rules reach, which routes it to e-mail and
the webhook (``stack/alertmanager/alertmanager.yml``).

Without ``CLEARSIGHT_ALERTMANAGER_URL`` the failure is only logged. Nothing
here ever raises: an unreachable Alertmanager is logged as an error and the
step's own exception is what the run reports.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from clearsight.alerts import (
    ALERTMANAGER_URL_ENV,
    AlertDeliveryError,
    pipeline_failure_alert,
    post_alerts,
)

logger = logging.getLogger(__name__)


def _run_facts() -> dict[str, Any]:
    """Pipeline, step, run id, dashboard link and model of the running step (what is known)."""
    from zenml import get_step_context
    from zenml.utils.dashboard_utils import get_run_url

    facts: dict[str, Any] = {}
    try:
        context = get_step_context()
    except RuntimeError:  # called outside a step
        return facts
    run = context.pipeline_run
    facts["run_id"] = str(run.id)
    facts["step"] = context.step_name
    facts["pipeline"] = run.pipeline.name if run.pipeline else run.name
    try:
        facts["run_url"] = get_run_url(run)
    except Exception as error:  # noqa: BLE001 - a link is a nicety, the alert is not
        logger.debug("No dashboard link for run %s: %s", run.id, error)
    version = context.model_version
    parameters = dict(run.config.parameters or {}) if run.config else {}
    if version is not None:
        facts["model_name"] = version.model.name
        facts["model_version"] = version.name
    else:
        facts["model_name"] = parameters.get("model_name")
        facts["model_version"] = parameters.get("model_version") or parameters.get(
            "challenger_version"
        )
    return facts


def alert_on_failure(exception: BaseException) -> None:
    """Post a ``ClearsightPipelineFailed`` alert for the failed run (ZenML ``on_failure`` hook).

    Args:
        exception: The step's exception (ZenML passes it); its message is the
            alert's ``description``.
    """
    try:
        facts = _run_facts()
    except Exception as error:  # noqa: BLE001 - never mask the step's failure
        logger.warning("Could not read the failed run's details for the alert: %s", error)
        facts = {}
    pipeline = facts.get("pipeline") or "unknown"
    message = f"{type(exception).__name__}: {exception}"
    link = facts.get("run_url") or facts.get("run_id") or "unknown run"
    url = os.environ.get(ALERTMANAGER_URL_ENV, "").strip()
    if not url:
        logger.error(
            "Pipeline %s failed (%s; run %s). No alert sent: set %s to Alertmanager's URL "
            "(python -m stack.services env prints it) to be notified.",
            pipeline,
            message,
            link,
            ALERTMANAGER_URL_ENV,
        )
        return
    try:
        alert = pipeline_failure_alert(
            pipeline=pipeline,
            message=message,
            run_link=link,
            model_name=facts.get("model_name"),
            model_version=facts.get("model_version"),
            run_id=facts.get("run_id"),
            step=facts.get("step"),
        )
        post_alerts(url, [alert])
    except (AlertDeliveryError, ValueError) as error:
        logger.error(
            "Pipeline %s failed (%s), and the alert was not sent: %s", pipeline, message, error
        )
        return
    logger.info("Alert ClearsightPipelineFailed sent to %s for run %s", url, link)
