"""The retrain pipeline: ingest, train, the gate, then the champion served, in one run.

This is the continuous-training chain. ``python run.py retrain``, ``python
run.py monitor --retrain`` and the weekly schedule on Airflow all run it. It
wires the same steps as the ingest, train, promote and deploy pipelines (one
wiring function each), so one run holds the whole chain: the new model version
is the run's own, and the champion it is compared with is looked up when the
run gets there, not when the schedule was made.

A worse challenger is never deployed: ``apply_decision`` moves the MLflow alias
``champion`` only when the gate passes, and ``deploy_champion`` serves whatever
that alias names (a rejected challenger leaves the served champion unchanged).
A failing step stops the run before anything in production changes.
"""

from __future__ import annotations

from typing import Any

from zenml import Model, pipeline
from zenml.enums import ModelStages

from clearsight.config import LabelReviewParameters, TrainingParameters
from clearsight.features import DEFAULT_EMBEDDING_COMPONENTS
from clearsight.gate import PromotionRules
from clearsight.names import ArtifactName, PipelineName
from pipelines.deployment import serve_champion
from pipelines.ingest import ingest_dataset
from pipelines.promotion import judge_challenger
from pipelines.training import train_on
from steps.alert_hooks import alert_on_failure
from steps.promotion.retrain import champion_version, record_retrain_outcome


@pipeline(name=PipelineName.RETRAIN, enable_cache=False, on_failure=alert_on_failure)
def retrain_pipeline(
    model_name: str,
    ingest: dict[str, Any],
    hyperparameters: TrainingParameters | None = None,
    label_review: LabelReviewParameters | None = None,
    rules: PromotionRules | None = None,
    embedding_components: int = DEFAULT_EMBEDDING_COMPONENTS,
    deployment: dict[str, Any] | None = None,
    trigger: str = "schedule",
    reasons: list[str] | None = None,
    actor: str = "pipeline",
    monitor_run_id: str | None = None,
) -> None:
    """Ingest (with reviewed images), train, judge against the champion, serve the champion.

    The run's model (``model:`` of ``configs/train.yaml``) gets the new version.

    Args:
        model_name: The ZenML model (also the MLflow registered model); it
            must have a champion (``python run.py`` makes the first).
        ingest: The ingest pipeline's parameters (``configs/ingest.yaml``).
        hyperparameters: How to train (``configs/train.yaml``).
        label_review: The label-error check after training.
        rules: The gate's thresholds (``configs/promote.yaml``).
        embedding_components: PCA components of the embedding used as features.
        deployment: ``deploy_champion``'s parameters (``configs/deploy.yaml``).
        trigger: Why the chain runs: ``schedule``, ``manual`` or ``monitor``.
        reasons: The reasons in words (the monitor's failed checks, or ``--reason``).
        actor: Who asked (recorded with a promotion and in the audit log).
        monitor_run_id: The monitor run that asked for it, if one did.
    """
    dataset = ingest_dataset(**ingest)
    model, calibration, _ = train_on(
        dataset, hyperparameters or TrainingParameters(), label_review or LabelReviewParameters()
    )
    champion = Model(name=model_name, version=ModelStages.PRODUCTION)
    decision, promoted = judge_challenger(
        model_name=model_name,
        model=model,
        calibration=calibration,
        dataset=dataset,
        challenger=None,  # the run's own model version
        challenger_version=None,
        champion_model=champion.get_artifact(ArtifactName.MODEL),
        champion_version=champion_version(model_name=model_name),
        current_data_dir=None,
        embedding_components=embedding_components,
        rules=rules or PromotionRules(),
        actor=actor,
    )
    serve_champion(model_name, dataset, after="apply_decision", **(deployment or {}))
    record_retrain_outcome(
        promoted=promoted,
        decision=decision,
        model_name=model_name,
        trigger=trigger,
        reasons=reasons,
        actor=actor,
        monitor_run_id=monitor_run_id,
        after="smoke_test",
    )
