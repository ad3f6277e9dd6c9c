"""Publish the monitor's result: model-version metadata and the Pushgateway."""

from __future__ import annotations

import logging
import os

from zenml import log_metadata, step

from clearsight.monitoring import (
    METADATA_KEY,
    PUSHGATEWAY_URL_ENV,
    MonitorResult,
    build_registry,
    metadata,
    push_metrics,
)

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def publish_monitoring(result: MonitorResult) -> None:
    """Record the figures on the model version; push them when a Pushgateway is set.

    The metadata key is ``monitoring`` (the latest run's figures and checks).
    The gauges (:data:`clearsight.monitoring.METRICS`) go to
    ``$CLEARSIGHT_PUSHGATEWAY_URL`` under job ``clearsight_monitor``, grouped by
    ``model_name``; without the variable the push is skipped and logged.

    Raises:
        MonitoringError: The Pushgateway is set but refused the push.
    """
    log_metadata(
        metadata={METADATA_KEY: metadata(result)},
        model_name=result.model_name,
        model_version=result.model_version,
    )
    url = os.environ.get(PUSHGATEWAY_URL_ENV, "").strip()
    if not url:
        logger.info("%s is not set: the monitor's metrics are not pushed.", PUSHGATEWAY_URL_ENV)
        return
    push_metrics(url, result, build_registry(result))
    logger.info("Pushed the monitor's metrics to %s (job clearsight_monitor).", url)
