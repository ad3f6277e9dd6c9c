"""The promote pipeline: Evidently evidence, the gate, and its outcome."""

from __future__ import annotations

from typing import Any

from zenml import Model, pipeline
from zenml.integrations.evidently.steps import evidently_report_step, evidently_test_step

from clearsight.features import DEFAULT_EMBEDDING_COMPONENTS
from clearsight.gate import PromotionRules
from clearsight.names import ArtifactName, PipelineName
from steps.alert_hooks import alert_on_failure
from steps.promotion import apply_decision, featurize, promotion_gate, score_champion
from steps.promotion import evidently_config as ev


@pipeline(name=PipelineName.PROMOTE, on_failure=alert_on_failure)
def promotion_pipeline(
    model_name: str,
    challenger_version: int,
    champion_version: int | None = None,
    current_data_dir: str | None = None,
    embedding_components: int = DEFAULT_EMBEDDING_COMPONENTS,
    rules: PromotionRules | None = None,
    actor: str = "pipeline",
) -> None:
    """Judge a challenger against the champion and promote it if it passes.

    ``run.py`` resolves the version numbers (the latest version and the one in
    production) before the run, so the wiring below is fixed per run.

    Args:
        model_name: The ZenML model (also the MLflow registered model).
        challenger_version: ZenML model version to judge.
        champion_version: ZenML model version in production, if any.
        current_data_dir: A labelled folder of new images for the drift check
            (the drift report and the drift test suite both judge it); the
            challenger's test split when empty. Quality is always judged on
            the frozen test split.
        embedding_components: PCA components of the embedding used as features.
        rules: The gate's thresholds.
        actor: Who asked for this judgement (recorded with a promotion).
    """
    challenger = Model(name=model_name, version=challenger_version)
    champion = (
        Model(name=model_name, version=champion_version)
        if champion_version is not None and champion_version != challenger_version
        else None
    )
    judge_challenger(
        model_name=model_name,
        model=challenger.get_artifact(ArtifactName.MODEL),
        calibration=challenger.get_artifact(ArtifactName.CALIBRATION),
        dataset=challenger.get_artifact(ArtifactName.DATASET),
        challenger=challenger,
        challenger_version=challenger_version,
        champion_model=champion.get_artifact(ArtifactName.MODEL) if champion else None,
        champion_version=champion_version,
        current_data_dir=current_data_dir,
        embedding_components=embedding_components,
        rules=rules or PromotionRules(),
        actor=actor,
    )


def judge_challenger(
    *,
    model_name: str,
    model: Any,
    calibration: Any,
    dataset: Any,
    challenger: Model | None,
    challenger_version: int | None,
    champion_model: Any,
    champion_version: Any,
    current_data_dir: str | None,
    embedding_components: int,
    rules: PromotionRules,
    actor: str,
) -> Any:
    """Wire the gate's evidence, the gate and its outcome into the pipeline being defined.

    Used by :func:`promotion_pipeline` (a registered version judged) and by the
    retrain pipeline (the version its own training created).

    Args:
        model_name: The ZenML model (also the MLflow registered model).
        model: The challenger's ``model`` artifact (or a step's output).
        calibration: The challenger's ``calibration``.
        dataset: The challenger's ``dataset``.
        challenger: The judged model version, when it is not the run's own
            model version; ``featurize`` is linked to it so that monitoring
            finds the version's reference and embedding projection.
        challenger_version: Its version number; None: the run's own model version.
        champion_model: The champion's ``model`` artifact, or None (first
            model ever, or re-judging the champion).
        champion_version: The champion's version number (an int, a step's
            output, or None).
        current_data_dir: Labelled folder for the drift checks (None: test split).
        embedding_components: PCA components of the embedding used as features.
        rules: The gate's thresholds.
        actor: Who asked (recorded with a promotion).

    Returns:
        The gate's ``promotion_decision`` and ``apply_decision``'s ``promoted``.
    """
    mapping = ev.column_mapping(embedding_components)
    features = featurize.with_options(model=challenger) if challenger is not None else featurize
    reference, current, drift, _ = features(
        model=model,
        dataset=dataset,
        current_data_dir=current_data_dir,
        embedding_components=embedding_components,
    )
    drift_json, _ = evidently_report_step(
        reference_dataset=reference,
        comparison_dataset=drift,
        column_mapping=mapping,
        metrics=ev.drift_metrics(rules),
        id="drift_report",
    )
    quality_json, _ = evidently_report_step(
        reference_dataset=reference,
        comparison_dataset=current,
        column_mapping=mapping,
        metrics=ev.quality_metrics(),
        id="challenger_quality_report",
    )
    tests_json, _ = evidently_test_step(
        reference_dataset=reference,
        comparison_dataset=current,
        column_mapping=mapping,
        tests=ev.quality_tests(rules),
        id="quality_tests",
    )
    drift_tests_json, _ = evidently_test_step(  # the same current data as the drift report
        reference_dataset=reference,
        comparison_dataset=drift,
        column_mapping=mapping,
        tests=ev.drift_tests(rules),
        id="drift_tests",
    )
    champion_features = None
    champion_json = None
    if champion_model is not None:
        champion_features = score_champion(
            model=champion_model, dataset=dataset, current_features=current
        )
        champion_json, _ = (
            evidently_report_step(  # reference: the champion; current: the challenger
                reference_dataset=champion_features,
                comparison_dataset=current,
                column_mapping=mapping,
                metrics=ev.quality_metrics(),
                id="champion_vs_challenger_report",
            )
        )
    decision = promotion_gate(
        current_features=current,
        drift_report=drift_json,
        test_report=tests_json,
        calibration=calibration,
        dataset=dataset,
        challenger_version=challenger_version,
        model_name=model_name,
        quality_report=quality_json,
        drift_test_report=drift_tests_json,
        champion_features=champion_features,
        champion_report=champion_json,
        champion_version=champion_version,
        rules=rules,
    )
    return decision, apply_decision(decision=decision, model_name=model_name, actor=actor)
