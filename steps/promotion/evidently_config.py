"""Evidently configuration for the promotion pipeline, derived from the rules.

The gate's thresholds are the single source: the Evidently test suite checks
the same floors and drift share, so the dashboard's test report and the gate
can never disagree about what "good enough" means.
"""

from __future__ import annotations

from zenml.integrations.evidently.column_mapping import EvidentlyColumnMapping
from zenml.integrations.evidently.metrics import EvidentlyMetricConfig
from zenml.integrations.evidently.tests import EvidentlyTestConfig

from clearsight.features import CONFIDENCE, PIXEL_COLUMNS, PREDICTION, TARGET, embedding_columns
from clearsight.gate import PromotionRules


def column_mapping(embedding_components: int) -> EvidentlyColumnMapping:
    """Image features as numeric columns; integer target and prediction."""
    return EvidentlyColumnMapping(
        target=TARGET,
        prediction=PREDICTION,
        numerical_features=[*PIXEL_COLUMNS, *embedding_columns(embedding_components), CONFIDENCE],
        task="classification",
    )


def drift_metrics(rules: PromotionRules) -> list[EvidentlyMetricConfig]:
    """Data drift, reference (train split) against current data."""
    return [
        EvidentlyMetricConfig.metric(
            "DataDriftPreset",
            num_stattest=rules.drift_stattest,
            drift_share=rules.max_drift_share,
        )
    ]


def quality_metrics() -> list[EvidentlyMetricConfig]:
    """Classification quality: an explicit list (the full preset is slow)."""
    return [
        EvidentlyMetricConfig.metric("ClassificationQualityMetric"),
        EvidentlyMetricConfig.metric("ClassificationClassBalance"),
        EvidentlyMetricConfig.metric("ClassificationConfusionMatrix"),
        EvidentlyMetricConfig.metric("ClassificationQualityByClass"),
    ]


def quality_tests(rules: PromotionRules) -> list[EvidentlyTestConfig]:
    """The quality test suite, run on the frozen test split; the gate requires it."""
    return [
        EvidentlyTestConfig.test("TestAccuracyScore", gte=rules.min_accuracy),
        EvidentlyTestConfig.test("TestF1Score", gte=rules.min_macro_f1),
    ]


def drift_tests(rules: PromotionRules) -> list[EvidentlyTestConfig]:
    """The drift test suite, run on the same current data as the drift report.

    That is the test split, or the new batch given with ``--current-data-dir``:
    the test and the report judge the same rows. The gate requires it too.
    """
    return [
        EvidentlyTestConfig.test(
            "TestShareOfDriftedColumns",
            lte=rules.max_drift_share,
            num_stattest=rules.drift_stattest,
        ),
    ]
