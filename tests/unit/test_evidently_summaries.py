"""The gate's Evidently JSON summaries, read from real Evidently output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evidently.legacy.report import Report
from evidently.legacy.test_suite import TestSuite as EvidentlyTestSuite

from clearsight.features import CONFIDENCE, PIXEL_COLUMNS, PREDICTION, TARGET, embedding_columns
from clearsight.gate import PromotionRules
from steps.promotion import evidently_config as ev
from steps.promotion.gate import drift_share, drift_summary, quality_summary, suite_summary

RULES = PromotionRules(min_accuracy=0.8, min_macro_f1=0.8, max_drift_share=0.5)
MAPPING = ev.column_mapping(2).to_evidently_column_mapping()
FEATURES = [*PIXEL_COLUMNS, *embedding_columns(2), CONFIDENCE]


def table(seed: int, shift: float = 0.0, n: int = 300, accuracy: float = 0.9) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.normal(shift, 1.0, n) for c in FEATURES})
    frame[TARGET] = rng.integers(0, 3, n)
    wrong = rng.random(n) > accuracy
    frame[PREDICTION] = np.where(wrong, (frame[TARGET] + 1) % 3, frame[TARGET])
    return frame


def report(metrics, reference, current) -> str:
    result = Report(metrics=[m.to_evidently_metric() for m in metrics])
    result.run(reference_data=reference, current_data=current, column_mapping=MAPPING)
    return result.json()


def suite(tests, reference, current) -> str:
    result = EvidentlyTestSuite(tests=[t.to_evidently_test() for t in tests])
    result.run(reference_data=reference, current_data=current, column_mapping=MAPPING)
    return result.json()


def test_drift_summary_counts_columns_and_keeps_each_p_value():
    shifted = table(1, shift=2.0)
    summary = drift_summary(report(ev.drift_metrics(RULES), table(0), shifted))
    assert summary["drifted_share"] == pytest.approx(
        drift_share(report(ev.drift_metrics(RULES), table(0), shifted))
    )
    assert summary["drifted_share"] > 0.5 and summary["dataset_drift"]
    assert summary["drifted_count"] == len(summary["drifted_columns"])
    assert set(FEATURES) <= set(summary["drifted_columns"])
    assert set(summary["column_scores"]) == {*FEATURES, TARGET, PREDICTION}
    assert summary["column_scores"]["brightness"] < 0.05  # a KS p-value
    assert summary["column_tests"]["brightness"] == "K-S p_value"

    calm = drift_summary(report(ev.drift_metrics(RULES), table(0), table(2)))
    assert calm["drifted_share"] < 0.3 and not calm["dataset_drift"]


def test_quality_summary_names_both_sides():
    summary = quality_summary(
        report(ev.quality_metrics(), table(0, accuracy=0.95), table(1, accuracy=0.7)),
        "champion",
        "challenger",
    )
    assert set(summary) == {"champion", "challenger"}
    assert summary["champion"]["accuracy"] > 0.9 > summary["challenger"]["accuracy"] > 0.6
    assert {"accuracy", "f1", "precision", "recall"} == set(summary["challenger"])


def test_suite_summaries_split_quality_from_drift():
    reference, shifted = table(0), table(1, shift=2.0)
    quality = suite_summary(suite(ev.quality_tests(RULES), reference, shifted))
    assert quality["all_passed"] and quality["total_tests"] == 2
    assert quality["tests"]["Accuracy Score"]["status"] == "SUCCESS"
    assert quality["tests"]["Accuracy Score"]["value"] == pytest.approx(
        float((shifted[TARGET] == shifted[PREDICTION]).mean())
    )
    drift = suite_summary(suite(ev.drift_tests(RULES), reference, shifted))
    assert not drift["all_passed"] and drift["failed_tests"] == 1
    assert drift["tests"]["Share of Drifted Columns"]["status"] == "FAIL"


def test_a_report_without_the_needed_metric_is_refused():
    quality = report(ev.quality_metrics(), table(0), table(1))
    with pytest.raises(ValueError, match="DatasetDriftMetric"):
        drift_summary(quality)
    with pytest.raises(ValueError, match="ClassificationQualityMetric"):
        quality_summary(report(ev.drift_metrics(RULES), table(0), table(1)), "a", "b")
