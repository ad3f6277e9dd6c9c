"""Alerts for Prometheus' Alertmanager: build one, post it (standard library only).

Alertmanager's API v2 takes a JSON list of alerts on ``POST /api/v2/alerts``
(``postableAlerts`` in Alertmanager's ``api/v2/openapi.yaml``): each alert has
``labels`` (which identify it and decide its route and grouping),
``annotations`` (what the notification shows), optional ``startsAt``,
``endsAt`` (RFC 3339) and ``generatorURL``. An alert posted without ``endsAt``
stays active for the receiving Alertmanager's ``resolve_timeout`` (5 minutes
by default), so a one-off event such as a failed pipeline run is notified once
and then resolves by itself.

The pipelines' failure hook (``steps/alert_hooks.py``) posts through
:func:`post_alerts` to the Alertmanager named by ``CLEARSIGHT_ALERTMANAGER_URL``;
Prometheus' rules (``stack/prometheus/alerts.yml``) reach the same Alertmanager
by themselves.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

#: Where the Alertmanager that receives Clearsight's alerts answers (``http://host:port``).
ALERTMANAGER_URL_ENV = "CLEARSIGHT_ALERTMANAGER_URL"
#: The ``alertname`` of a failed pipeline run.
PIPELINE_FAILED = "ClearsightPipelineFailed"
#: Severities the shipped routes and rules use (Alertmanager itself accepts any label value).
SEVERITIES = ("critical", "warning", "info")
#: Longest annotation value sent, in characters (a traceback-sized message is cut, not refused).
MAX_ANNOTATION_CHARS = 4000


class AlertDeliveryError(RuntimeError):
    """Alertmanager could not be reached, or refused the alerts."""


def build_alert(
    alertname: str,
    labels: Mapping[str, str | int | None],
    annotations: Mapping[str, str | None],
    starts_at: datetime | None = None,
    generator_url: str | None = None,
) -> dict[str, Any]:
    """One alert in Alertmanager's API v2 form (a ``postableAlert``).

    Args:
        alertname: The ``alertname`` label (what routes and groups it), non-empty.
        labels: Further labels; ``None`` values are left out, others become strings.
        annotations: What the notification shows; ``None`` values are left out,
            values longer than :data:`MAX_ANNOTATION_CHARS` are cut.
        starts_at: When it started (default: now, UTC).
        generator_url: A link back to what raised it (a run page), if any.

    Returns:
        The alert as a JSON-ready dict.

    Raises:
        ValueError: ``alertname`` is empty, or a label name is ``alertname``.
    """
    if not alertname:
        raise ValueError("an alert needs a non-empty alertname")
    if "alertname" in labels:
        raise ValueError("give the alertname as the first argument, not as a label")
    alert: dict[str, Any] = {
        "labels": {
            "alertname": alertname,
            **{k: str(v) for k, v in labels.items() if v is not None and str(v) != ""},
        },
        "annotations": {
            k: _cut(str(v)) for k, v in annotations.items() if v is not None and str(v) != ""
        },
        "startsAt": (starts_at or datetime.now(UTC)).isoformat(),
    }
    if generator_url:
        alert["generatorURL"] = generator_url
    return alert


def pipeline_failure_alert(
    pipeline: str,
    message: str,
    run_link: str,
    model_name: str | None = None,
    model_version: str | int | None = None,
    run_id: str | None = None,
    step: str | None = None,
    severity: str = "critical",
) -> dict[str, Any]:
    """The :data:`PIPELINE_FAILED` alert of one failed pipeline run.

    Args:
        pipeline: The pipeline's name (label ``pipeline``).
        message: The exception's message (annotation ``description``).
        run_link: The run's dashboard URL, or its run id when there is no
            dashboard (annotation ``run_url``).
        model_name: The run's ZenML model, when it has one (label ``model_name``).
        model_version: The run's model version, when known (label ``model_version``).
        run_id: The run's id (label ``run_id``: each failed run is its own
            alert, so a second failure is notified even while the first is active).
        step: The step that failed (annotation ``step``).
        severity: One of :data:`SEVERITIES` (label ``severity``).

    Returns:
        The alert, ready for :func:`post_alerts`.

    Raises:
        ValueError: An unknown severity or an empty pipeline name.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r}: use one of {', '.join(SEVERITIES)}")
    if not pipeline:
        raise ValueError("the failed pipeline's name is empty")
    where = f" in step {step}" if step else ""
    return build_alert(
        PIPELINE_FAILED,
        {
            "pipeline": pipeline,
            "model_name": model_name,
            "model_version": model_version,
            "run_id": run_id,
            "severity": severity,
        },
        {
            "summary": f"Pipeline {pipeline} failed{where}",
            "description": message or "(the exception has no message)",
            "step": step,
            "run_url": run_link,
        },
        generator_url=run_link if run_link.startswith(("http://", "https://")) else None,
    )


def post_alerts(
    alertmanager_url: str, alerts: Sequence[Mapping[str, Any]], timeout: float = 5.0
) -> None:
    """Send alerts to Alertmanager's ``POST /api/v2/alerts``.

    Args:
        alertmanager_url: Alertmanager's base URL (``http://127.0.0.1:9093``;
            a trailing ``/`` or a path prefix such as ``/alertmanager`` is kept).
        alerts: Alerts from :func:`build_alert` / :func:`pipeline_failure_alert`.
        timeout: Seconds to wait for the connection and the answer (> 0).

    Raises:
        AlertDeliveryError: Alertmanager does not answer (down, wrong URL) or
            answers with an error status (an invalid alert: HTTP 400). The
            message names the URL and what to do.
        ValueError: The URL is not ``http(s)://``.
    """
    if not alertmanager_url.startswith(("http://", "https://")):
        raise ValueError(
            f"{ALERTMANAGER_URL_ENV}={alertmanager_url!r}: give Alertmanager's http(s) URL, "
            "e.g. http://127.0.0.1:9093"
        )
    url = alertmanager_url.rstrip("/") + "/api/v2/alerts"
    request = urllib.request.Request(  # noqa: S310 - http(s) checked above
        url,
        data=json.dumps(list(alerts)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")[:500]
        raise AlertDeliveryError(
            f"Alertmanager at {alertmanager_url} refused the alert (HTTP {error.code}): {body}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise AlertDeliveryError(
            f"Alertmanager at {alertmanager_url} is unreachable ({reason}). Start it with "
            f"`make services` (python -m stack.services start alertmanager), or point "
            f"{ALERTMANAGER_URL_ENV} at a running one (unset it to only log failures)."
        ) from None


def _cut(text: str) -> str:
    if len(text) <= MAX_ANNOTATION_CHARS:
        return text
    suffix = " ... (truncated)"
    return text[: MAX_ANNOTATION_CHARS - len(suffix)] + suffix
