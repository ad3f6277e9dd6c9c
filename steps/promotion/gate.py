"""The promotion gate as a step: reads the evidence, returns a typed decision."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step

from clearsight.dataset import DatasetManifest
from clearsight.gate import ModelScore, PromotionDecision, PromotionRules, decide
from clearsight.metrics import classification_metrics
from clearsight.names import ArtifactName

logger = logging.getLogger(__name__)


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


def drift_share(report_json: str) -> float:
    """Share of drifted columns from an Evidently DataDriftPreset report."""
    for metric in json.loads(report_json)["metrics"]:
        if metric["metric"] == "DatasetDriftMetric":
            return float(metric["result"]["share_of_drifted_columns"])
    raise ValueError("The drift report has no DatasetDriftMetric: use DataDriftPreset.")


@step
def promotion_gate(
    current_features: pd.DataFrame,
    drift_report: str,
    test_report: str,
    calibration: dict[str, Any],
    dataset: DatasetManifest,
    challenger_version: int,
    champion_features: pd.DataFrame | None = None,
    champion_version: int | None = None,
    rules: PromotionRules | None = None,
) -> Annotated[PromotionDecision, ArtifactName.PROMOTION_DECISION]:
    """Decide whether the challenger may replace the champion.

    Args:
        current_features: The challenger's predictions on the test split.
        drift_report: JSON of the Evidently drift report.
        test_report: JSON of the Evidently test suite.
        calibration: The challenger's calibration figures (``test_ece_after``).
        dataset: The challenger's dataset (class names, in output order).
        challenger_version: ZenML model version number of the challenger.
        champion_features: The champion's predictions on the same split.
        champion_version: ZenML model version number of the champion, if any.
        rules: The thresholds (``configs/promote.yaml``).

    Returns:
        The decision, every reason, and the numbers compared.
    """
    rules = rules or PromotionRules()
    tests = json.loads(test_report)["summary"]
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
        evidently_tests_passed=bool(tests["all_passed"]),
        rules=rules,
    )
    log_metadata(
        metadata={
            "promote": decision.promote,
            "reasons": decision.reasons,
            "drift_share": decision.drift_share,
            "ece": decision.ece,
            "evidently_tests": tests,
        },
        artifact_name=ArtifactName.PROMOTION_DECISION,
        infer_artifact=True,
    )
    (logger.info if decision.promote else logger.warning)("%s", decision.summary())
    return decision
