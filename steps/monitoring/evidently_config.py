"""Evidently configuration of the monitor pipeline, derived from its rules.

Data drift uses the promotion gate's per-column test and drift share
(``configs/monitor.yaml`` defaults to ``configs/promote.yaml``'s), on the
gate's feature columns without ``confidence`` and the labels (the logged
``features`` hold only the image's columns). Prediction drift is Evidently's
drift of the categorical ``prediction`` column (the predicted label).
"""

from __future__ import annotations

from zenml.integrations.evidently.column_mapping import EvidentlyColumnMapping
from zenml.integrations.evidently.metrics import EvidentlyMetricConfig

from clearsight.features import PREDICTION
from clearsight.monitoring import MonitorRules, feature_columns


def feature_mapping(embedding_components: int) -> EvidentlyColumnMapping:
    """The image's features as numeric columns; no target, no prediction role."""
    return EvidentlyColumnMapping(
        numerical_features=feature_columns(embedding_components),
        categorical_features=[],
        prediction=None,
        target=None,
    )


def data_drift_metrics(
    rules: MonitorRules, embedding_components: int
) -> list[EvidentlyMetricConfig]:
    """``DataDriftPreset`` on the feature columns, with the gate's test and share."""
    return [
        EvidentlyMetricConfig.metric(
            "DataDriftPreset",
            columns=feature_columns(embedding_components),
            num_stattest=rules.drift_stattest,
            drift_share=rules.max_drift_share,
        )
    ]


def prediction_mapping() -> EvidentlyColumnMapping:
    """The predicted label as one categorical column."""
    return EvidentlyColumnMapping(
        numerical_features=[], categorical_features=[PREDICTION], prediction=None, target=None
    )


def prediction_drift_metrics(rules: MonitorRules) -> list[EvidentlyMetricConfig]:
    """``ColumnDriftMetric`` of ``prediction`` at the configured test and threshold."""
    return [
        EvidentlyMetricConfig.metric(
            "ColumnDriftMetric",
            column_name=PREDICTION,
            stattest=rules.prediction_stattest,
            stattest_threshold=rules.prediction_stattest_threshold,
        )
    ]
