"""The monitor pipeline: the served version's recent traffic against its reference."""

from __future__ import annotations

from zenml import pipeline
from zenml.integrations.evidently.steps import evidently_report_step

from clearsight.features import DEFAULT_EMBEDDING_COMPONENTS
from clearsight.monitoring import MonitorRules
from clearsight.names import PipelineName
from steps.alert_hooks import alert_on_failure
from steps.monitoring import evidently_config as ev
from steps.monitoring import monitoring_decision, monitoring_window, publish_monitoring


@pipeline(name=PipelineName.MONITOR, enable_cache=False, on_failure=alert_on_failure)
def monitoring_pipeline(
    model_name: str,
    model_version: int | None = None,
    rules: MonitorRules | None = None,
    catalog_url: str | None = None,
    end: str | None = None,
    embedding_components: int = DEFAULT_EMBEDDING_COMPONENTS,
) -> None:
    """Judge the served version's window: drift, uncertainty, accuracy; publish the figures.

    Args:
        model_name: The ZenML model (also the MLflow registered model).
        model_version: ZenML model version to judge; the champion (MLflow
            alias ``champion``) when empty.
        rules: Window, minimum evidence and thresholds (``configs/monitor.yaml``).
        catalog_url: The catalog holding the prediction log; resolved when empty.
        end: The window's end (ISO 8601); the run's start when empty.
        embedding_components: The reference's embedding columns (as promote.yaml).
    """
    rules = rules or MonitorRules()
    reference, features, predictions, window = monitoring_window(
        model_name=model_name,
        rules=rules,
        model_version=model_version,
        catalog_url=catalog_url,
        end=end,
        embedding_components=embedding_components,
    )
    data_json, _ = evidently_report_step(
        reference_dataset=reference,
        comparison_dataset=features,
        column_mapping=ev.feature_mapping(embedding_components),
        metrics=ev.data_drift_metrics(rules, embedding_components),
        id="data_drift_report",
    )
    prediction_json, _ = evidently_report_step(
        reference_dataset=reference,
        comparison_dataset=predictions,
        column_mapping=ev.prediction_mapping(),
        metrics=ev.prediction_drift_metrics(rules),
        id="prediction_drift_report",
    )
    result, _ = monitoring_decision(
        window=window,
        data_drift_report=data_json,
        prediction_drift_report=prediction_json,
        rules=rules,
    )
    publish_monitoring(result=result)
