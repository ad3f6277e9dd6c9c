"""The promotion gate as a step: reads the evidence, returns a typed decision.

Besides deciding, the gate attaches the JSON summaries of the Evidently
reports and test suites as metadata: on each report's own JSON artifact (next
to its HTML in the dashboard) and, together, on the challenger's ZenML model
version under ``evidently``.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import pandas as pd
from zenml import get_step_context, log_metadata, step

from clearsight.dataset import DatasetManifest
from clearsight.gate import ModelScore, PromotionDecision, PromotionRules, decide
from clearsight.metrics import classification_metrics
from clearsight.names import ArtifactName

logger = logging.getLogger(__name__)

QUALITY_KEYS = ("accuracy", "f1", "precision", "recall")


def _score(table: pd.DataFrame, classes: list[str], version: int) -> ModelScore:
    metrics = classification_metrics(
        table["target"].tolist(), table["prediction"].tolist(), classes
    )
    return ModelScore(
        version=version,
        accuracy=metrics["accuracy"],
        macro_f1=metrics["macro_f1"],
        recall={name: values["recall"] for name, values in metrics["per_class"].items()},
    )


def _metric(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    for metric in report.get("metrics", []):
        if metric["metric"] == name:
            return metric["result"]
    return None


def drift_share(report_json: str) -> float:
    """Share of drifted columns from an Evidently DataDriftPreset report."""
    result = _metric(json.loads(report_json), "DatasetDriftMetric")
    if result is None:
        raise ValueError("The drift report has no DatasetDriftMetric: use DataDriftPreset.")
    return float(result["share_of_drifted_columns"])


def drift_summary(report_json: str) -> dict[str, Any]:
    """Drifted share and count, and each column's drift score, from a drift report.

    The per-column score is what the column's statistical test returned (a
    p-value for ``ks`` and ``chi-square``: lower means more drift).
    """
    report = json.loads(report_json)
    dataset = _metric(report, "DatasetDriftMetric")
    table = _metric(report, "DataDriftTable")
    if dataset is None or table is None:
        raise ValueError("The drift report needs DatasetDriftMetric and DataDriftTable.")
    columns = table.get("drift_by_columns", {})
    return {
        "drifted_share": float(dataset["share_of_drifted_columns"]),
        "drifted_count": int(dataset["number_of_drifted_columns"]),
        "columns": int(dataset["number_of_columns"]),
        "dataset_drift": bool(dataset["dataset_drift"]),
        "drifted_columns": sorted(c for c, v in columns.items() if v.get("drift_detected")),
        "column_scores": {c: float(v["drift_score"]) for c, v in sorted(columns.items())},
        "column_tests": {c: str(v["stattest_name"]) for c, v in sorted(columns.items())},
    }


def quality_summary(
    report_json: str, reference_label: str, current_label: str
) -> dict[str, dict[str, float]]:
    """Accuracy, F1, precision and recall of both datasets of a quality report.

    Args:
        report_json: JSON of an Evidently report with ``ClassificationQualityMetric``.
        reference_label: What the report's reference data is (e.g. ``champion``).
        current_label: What its current data is (e.g. ``challenger``).
    """
    result = _metric(json.loads(report_json), "ClassificationQualityMetric")
    if result is None:
        raise ValueError("The quality report has no ClassificationQualityMetric.")
    summary = {}
    for side, label in (("reference", reference_label), ("current", current_label)):
        values = result.get(side) or {}
        summary[label] = {k: float(values[k]) for k in QUALITY_KEYS if values.get(k) is not None}
    return summary


def suite_summary(test_json: str) -> dict[str, Any]:
    """Pass/fail counts and each test's status and value from a test suite."""
    suite = json.loads(test_json)
    summary = dict(suite["summary"])
    summary["all_passed"] = bool(summary["all_passed"])
    summary["tests"] = {
        test["name"]: {
            "status": str(test["status"]),
            **(
                {"value": float(test["parameters"]["value"])}
                if isinstance((test.get("parameters") or {}).get("value"), int | float)
                else {}
            ),
        }
        for test in suite.get("tests", [])
    }
    return summary


# Gate input carrying an Evidently JSON -> its key in the model version's metadata.
SUMMARY_KEYS = {
    "drift_report": "drift",
    "test_report": "quality_tests",
    "drift_test_report": "drift_tests",
    "quality_report": "challenger_quality",
    "champion_report": "champion_vs_challenger",
}


def _attach_to_inputs(summaries: dict[str, dict[str, Any]]) -> None:
    """Log each summary on the report artifact this step received under that input name."""
    inputs = get_step_context().inputs
    for input_name, summary in summaries.items():
        for artifact in inputs.get(input_name, []):
            log_metadata(metadata={"evidently_summary": summary}, artifact_version_id=artifact.id)


@step
def promotion_gate(
    current_features: pd.DataFrame,
    drift_report: str,
    test_report: str,
    calibration: dict[str, Any],
    dataset: DatasetManifest,
    challenger_version: int | None,
    model_name: str,
    quality_report: str | None = None,
    drift_test_report: str | None = None,
    champion_features: pd.DataFrame | None = None,
    champion_report: str | None = None,
    champion_version: int | None = None,
    rules: PromotionRules | None = None,
) -> Annotated[PromotionDecision, ArtifactName.PROMOTION_DECISION]:
    """Decide whether the challenger may replace the champion.

    Args:
        current_features: The challenger's predictions on the test split.
        drift_report: JSON of the Evidently drift report (train split vs the
            data checked for drift).
        test_report: JSON of the Evidently quality test suite (test split).
        calibration: The challenger's calibration figures (``test_ece_after``).
        dataset: The challenger's dataset (class names, in output order).
        challenger_version: ZenML model version number of the challenger; None:
            the run's own model version (the retrain pipeline judges what it trained).
        model_name: The ZenML model; its challenger version gets the summaries.
        quality_report: JSON of the challenger's quality report (train vs test).
        drift_test_report: JSON of the Evidently drift test suite, run on the
            same data as the drift report; both suites must pass.
        champion_features: The champion's predictions on the same split.
        champion_report: JSON of the champion-vs-challenger quality report.
        champion_version: ZenML model version number of the champion, if any.
        rules: The thresholds (``configs/promote.yaml``).

    Returns:
        The decision, every reason, and the numbers compared.
    """
    rules = rules or PromotionRules()
    if challenger_version is None:
        challenger_version = get_step_context().model.number
    tests = suite_summary(test_report)
    drift_tests = suite_summary(drift_test_report) if drift_test_report else None
    challenger = _score(current_features, dataset.classes, challenger_version)
    if champion_features is not None and champion_version is not None:
        champion = _score(champion_features, dataset.classes, champion_version)
    elif champion_version == challenger_version:
        champion = challenger  # re-judging the champion itself
    else:
        champion = None
    decision = decide(
        challenger,
        champion,
        drift_share=drift_share(drift_report),
        ece=float(calibration["test_ece_after"]),
        evidently_tests_passed=tests["all_passed"]
        and (drift_tests is None or drift_tests["all_passed"]),
        rules=rules,
    )

    summaries: dict[str, dict[str, Any]] = {
        "drift_report": drift_summary(drift_report),
        "test_report": tests,
    }
    if drift_tests is not None:
        summaries["drift_test_report"] = drift_tests
    if quality_report:
        summaries["quality_report"] = quality_summary(quality_report, "train", "test")
    if champion_report:
        summaries["champion_report"] = quality_summary(champion_report, "champion", "challenger")
    _attach_to_inputs(summaries)
    log_metadata(
        metadata={
            "evidently": {
                "promote_run": str(get_step_context().pipeline_run.id),
                **{SUMMARY_KEYS[name]: summary for name, summary in summaries.items()},
            }
        },
        model_name=model_name,
        model_version=str(challenger_version),
    )
    log_metadata(
        metadata={
            "promote": decision.promote,
            "reasons": decision.reasons,
            "informational": decision.informational,
            "drift_share": decision.drift_share,
            "ece": decision.ece,
            "evidently_tests": {k: v for k, v in tests.items() if k != "tests"},
            **(
                {"evidently_drift_tests": {k: v for k, v in drift_tests.items() if k != "tests"}}
                if drift_tests is not None
                else {}
            ),
        },
        artifact_name=ArtifactName.PROMOTION_DECISION,
        infer_artifact=True,
    )
    (logger.info if decision.promote else logger.warning)("%s", decision.summary())
    return decision
