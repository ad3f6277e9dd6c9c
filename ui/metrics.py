"""The app's own Prometheus metrics, served on a separate port (default 8502).

Metrics are module-level objects, created once per process; Streamlit reruns
scripts but imports modules once. :func:`start_server` is called through
``st.cache_resource`` so the HTTP server starts once per process too.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

PAGE_VIEWS = Counter(
    "clearsight_ui_page_views", "Pages shown, by page.", ["page"], registry=REGISTRY
)
UPLOADS = Counter(
    "clearsight_ui_uploads", "Images uploaded on the Predict page.", registry=REGISTRY
)
PREDICTIONS = Counter(
    "clearsight_ui_predictions_requested",
    "Images sent to the prediction endpoint.",
    registry=REGISTRY,
)
PREDICTION_ERRORS = Counter(
    "clearsight_ui_prediction_errors",
    "Prediction requests that failed, by reason (endpoint_down, refused).",
    ["reason"],
    registry=REGISTRY,
)
UNCERTAIN = Counter(
    "clearsight_ui_uncertain_predictions",
    "Answers below the confidence threshold, queued for review.",
    registry=REGISTRY,
)
LATENCY = Histogram(
    "clearsight_ui_upload_to_answer_seconds",
    "Time from an upload reaching the app to its answer being ready, in seconds.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
REVIEWS = Counter(
    "clearsight_ui_reviews",
    "Reviews done, by verdict (confirmed, corrected, rejected).",
    ["verdict"],
    registry=REGISTRY,
)
ADMIN_ACTIONS = Counter(
    "clearsight_ui_admin_actions",
    "Admin actions, by action and outcome.",
    ["action", "outcome"],
    registry=REGISTRY,
)
LOGINS = Counter(
    "clearsight_ui_logins", "Sign-in attempts, by outcome.", ["outcome"], registry=REGISTRY
)


def start_server(port: int, address: str = "127.0.0.1") -> int | None:
    """Serve ``/metrics`` on ``address:port``; return the port, or ``None`` if not started.

    A port already in use (another app process) is logged, not fatal: the
    app works without its metrics. ``port=0`` turns the server off.
    """
    if port <= 0:
        return None
    try:
        start_http_server(port, addr=address, registry=REGISTRY)
    except OSError as error:
        logger.warning("UI metrics not served on %s:%d: %s", address, port, error)
        return None
    logger.info("UI metrics on http://%s:%d/metrics", address, port)
    return port
