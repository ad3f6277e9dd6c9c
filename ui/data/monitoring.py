"""What the Monitoring page reads: the monitor's figures, the alerts, the prediction log.

* the latest figures of each model version: the metadata the monitor pipeline
  (``python run.py monitor``) logs on the ZenML model version it judged
  (:func:`clearsight.monitoring.metadata`), read through the ZenML client;
* production accuracy per version and day, with its Wilson interval, from the
  catalog's prediction log and ground truths (:func:`clearsight.prediction_log.daily_accuracy`,
  :func:`clearsight.monitoring.wilson_interval`);
* the alerts firing in Alertmanager (``CLEARSIGHT_ALERTMANAGER_URL``, API v2);
* the prediction log, filtered and paged (:func:`clearsight.prediction_log.search`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import requests
from sqlalchemy.engine import Engine

from clearsight.alerts import ALERTMANAGER_URL_ENV
from clearsight.monitoring import METADATA_KEY, wilson_interval
from clearsight.prediction_log import LogPage, connect, daily_accuracy, search, search_choices
from ui.data.zenml import client

logger = logging.getLogger(__name__)

START_MONITOR = "python run.py monitor"
#: How Alertmanager is reached when ``make services`` started it (its default port).
DEFAULT_ALERTMANAGER_HINT = "http://127.0.0.1:9093"


@dataclass(frozen=True)
class MonitoredVersion:
    """A model version and the figures of the latest monitor run that judged it."""

    number: int
    stage: str
    figures: dict[str, Any]


def _figures(metadata: dict[str, Any]) -> dict[str, Any] | None:
    nested = metadata.get(METADATA_KEY)
    return nested if isinstance(nested, dict) else None


def monitored_versions(model_name: str, limit: int = 30) -> list[MonitoredVersion]:
    """The model's versions that a monitor run judged, newest version first.

    Raises:
        Exception: Whatever the ZenML store raises when it cannot be read (the
            page shows it).
    """
    try:
        page = client().list_model_versions(
            model=model_name, sort_by="desc:number", size=limit, hydrate=True
        )
    except KeyError:  # no such model yet
        return []
    found = []
    for version in page.items:
        figures = _figures(dict(version.run_metadata or {}))
        if figures is not None:
            stage = str(getattr(version.stage, "value", version.stage) or "none")
            found.append(MonitoredVersion(int(version.number), stage, figures))
    return found


def figures_table(versions: list[MonitoredVersion]) -> list[dict[str, Any]]:
    """One row per version: when, the window, drift, uncertainty, accuracy and its interval."""
    rows = []
    for version in versions:
        f = version.figures
        interval = f.get("accuracy_ci") or [None, None]
        alerts = sorted(
            name for name, status in (f.get("checks") or {}).items() if status == "alert"
        )
        rows.append(
            {
                "version": f"v{version.number}",
                "stage": version.stage,
                "judged at (UTC)": f.get("at"),
                "window (h)": f.get("window_hours"),
                "predictions": f.get("predictions"),
                "drift share": f.get("drift_share"),
                "prediction drift score": f.get("prediction_drift_score"),
                "uncertain share": f.get("uncertain_share"),
                "labelled": f.get("labelled"),
                "production accuracy": f.get("production_accuracy"),
                "CI lower": interval[0],
                "CI upper": interval[1],
                "alerts": ", ".join(alerts),
                "retrain because": "; ".join(f.get("retrain_reasons") or []),
            }
        )
    return rows


@cache
def log_engine(catalog_url: str) -> Engine:
    """One engine (connection pool) per catalog URL and process; the catalog is migrated."""
    return connect(catalog_url)


def accuracy_over_time(catalog_url: str, model_name: str) -> list[dict[str, Any]]:
    """Production accuracy per version and UTC day, with the Wilson 95% interval.

    Raises:
        CatalogError, SQLAlchemyError: The catalog cannot be read.
    """
    rows = daily_accuracy(log_engine(catalog_url), model_name=model_name)
    for row in rows:
        row["ci_lower"], row["ci_upper"] = wilson_interval(row["correct"], row["labelled"])
    return rows


def log_choices(catalog_url: str) -> dict[str, list[str]]:
    """The labels and model versions the prediction log holds, for the filters."""
    return search_choices(log_engine(catalog_url))


def log_page(
    catalog_url: str,
    *,
    model_name: str,
    start: datetime | None,
    end: datetime | None,
    labels: list[str],
    confidence: tuple[float, float],
    versions: list[str],
    page: int,
    page_size: int,
) -> LogPage:
    """Page ``page`` (0-based) of the model's answers matching the filters, newest first."""
    return search(
        log_engine(catalog_url),
        start=start,
        end=end,
        labels=labels,
        min_confidence=confidence[0],
        max_confidence=confidence[1],
        model_name=model_name,
        model_versions=versions,
        limit=page_size,
        offset=page * page_size,
    )


class AlertsUnavailableError(Exception):
    """Alertmanager is not configured or does not answer; the message says what to do."""


def firing_alerts(url: str | None = None, timeout: float = 3) -> list[dict[str, Any]]:
    """The alerts Alertmanager holds as active (``GET /api/v2/alerts?active=true``).

    Args:
        url: Alertmanager's base URL; default: ``CLEARSIGHT_ALERTMANAGER_URL``.
        timeout: Seconds to wait for it.

    Returns:
        One row per alert: name, severity, model and version (when labelled),
        summary, since when, its state and a link back (``run_url`` or the
        generator URL), most severe first.

    Raises:
        AlertsUnavailableError: No URL configured, no answer, or not Alertmanager's answer.
    """
    url = (url if url is not None else os.environ.get(ALERTMANAGER_URL_ENV, "")).rstrip("/")
    if not url:
        raise AlertsUnavailableError(
            f"{ALERTMANAGER_URL_ENV} is not set, so the app does not know where Alertmanager is. "
            f"Set it to Alertmanager's URL before starting the app (`make services` starts one "
            f"at {DEFAULT_ALERTMANAGER_HINT}): "
            f"export {ALERTMANAGER_URL_ENV}={DEFAULT_ALERTMANAGER_HINT}"
        )
    endpoint = f"{url}/api/v2/alerts"
    try:
        response = requests.get(endpoint, params={"active": "true"}, timeout=timeout)
        response.raise_for_status()
        alerts = response.json()
    except requests.RequestException as error:
        raise AlertsUnavailableError(
            f"Alertmanager at {url} does not answer ({error.__class__.__name__}). Start it "
            f"(`make services`), or correct {ALERTMANAGER_URL_ENV}."
        ) from None
    except ValueError:
        raise AlertsUnavailableError(
            f"{endpoint} did not answer with JSON: is {ALERTMANAGER_URL_ENV} Alertmanager's URL?"
        ) from None
    if not isinstance(alerts, list):
        raise AlertsUnavailableError(f"{endpoint} did not answer with a list of alerts.")
    rank = {"critical": 0, "warning": 1, "info": 2}
    rows = []
    for alert in alerts:
        labels = alert.get("labels") or {}
        annotations = alert.get("annotations") or {}
        rows.append(
            {
                "alert": labels.get("alertname", ""),
                "severity": labels.get("severity", ""),
                "model": " v".join(
                    v for v in (labels.get("model_name"), labels.get("model_version")) if v
                ),
                "summary": annotations.get("summary", ""),
                "since": alert.get("startsAt", ""),
                "state": (alert.get("status") or {}).get("state", ""),
                "link": annotations.get("run_url") or alert.get("generatorURL") or "",
            }
        )
    return sorted(rows, key=lambda r: (rank.get(r["severity"], 3), r["alert"], r["since"]))
