"""Record why the retrain chain ran, where each tool shows it (not a step).

``python run.py retrain`` and ``python run.py monitor --retrain`` run ingest,
train, promote and (when the gate promotes) deploy. Every run of the chain
carries the ZenML tag ``retrain:<trigger>`` (set by ``run.py``); this module
adds the reasons:

- ZenML: run metadata ``retrain_trigger`` and ``retrain_reasons`` on each run
  of the chain (the dashboard's run page shows them);
- MLflow: the tags ``clearsight.retrain_trigger`` and
  ``clearsight.retrain_reason`` on the training's MLflow run, beside the
  registered model version;
- the audit log (``audit_log`` in the catalog; the review app's Admin page):
  action ``retrain``, the outcome (``promoted``, ``rejected``, ``skipped`` or
  ``failed``),
  the reasons and the runs.

Recording never raises: a chain that ran is not turned into a failure by a
tag that could not be written (the failure is logged).
"""

from __future__ import annotations

import logging
from typing import Any

from clearsight.names import ArtifactName

logger = logging.getLogger(__name__)

#: MLflow tags on the training run of a retrain chain.
MLFLOW_TRIGGER_TAG = "clearsight.retrain_trigger"
MLFLOW_REASON_TAG = "clearsight.retrain_reason"
#: MLflow allows 8,000 characters in a tag value (mlflow.utils.validation).
MAX_MLFLOW_TAG = 8000


def _mlflow_run_id(train_run: Any) -> str | None:
    from zenml.client import Client

    run = Client().get_pipeline_run(train_run.id)
    step = run.steps.get("register_model")
    if step is None:
        return None
    return step.outputs[ArtifactName.REGISTERED_MODEL][0].load().get("mlflow_run_id")


def _tag_mlflow_run(train_run: Any, trigger: str, reason: str) -> None:
    from zenml.client import Client

    run_id = _mlflow_run_id(train_run)
    tracker = Client().active_stack.experiment_tracker
    if not run_id or tracker is None:
        return
    import mlflow

    tracker.configure_mlflow()  # the tracking URI and the server's credentials
    client = mlflow.MlflowClient()
    client.set_tag(run_id, MLFLOW_TRIGGER_TAG, trigger)
    client.set_tag(run_id, MLFLOW_REASON_TAG, reason[:MAX_MLFLOW_TAG])


def record_retrain(
    model_name: str,
    reasons: list[str],
    trigger: str,
    actor: str,
    outcome: str,
    runs: dict[str, Any],
) -> None:
    """Write the chain's reasons to ZenML, MLflow and the audit log.

    Args:
        model_name: The registered model retrained.
        reasons: Why, in words (the monitor's failed checks, or the
            operator's ``--reason``).
        trigger: ``manual``, ``monitor`` or ``schedule``.
        actor: Who asked (``pipeline`` for the monitor).
        outcome: ``promoted``, ``rejected``, ``skipped`` (a monitor-triggered
            chain whose ingest found the champion's own dataset: nothing new
            to learn) or ``failed`` (a run of the chain failed; the champion
            was not touched).
        runs: The chain's runs by name (``monitor``, ``ingest``, ``train``,
            ``promote``, ``deploy``); missing or None for those that did not run.
    """
    from zenml import log_metadata

    from clearsight.catalog import resolve_catalog_url
    from clearsight.review import ReviewStore

    reason = "; ".join(reasons)
    done = {name: run for name, run in runs.items() if run is not None}
    for name, run in done.items():
        if name == "monitor":
            continue
        try:
            log_metadata(
                metadata={"retrain_trigger": trigger, "retrain_reasons": list(reasons)},
                run_id_name_or_prefix=run.id,
            )
        except Exception as error:  # noqa: BLE001 - see the module docstring
            logger.error("Could not record the retrain reason on the %s run: %s", name, error)
    if "train" in done:
        try:
            _tag_mlflow_run(done["train"], trigger, reason)
        except Exception as error:  # noqa: BLE001 - see the module docstring
            logger.error("Could not tag the MLflow run of the retraining: %s", error)
    try:
        ReviewStore(resolve_catalog_url()).record_action(
            actor=actor,
            role="cli" if trigger == "manual" else "pipeline",
            action="retrain",
            target=model_name,
            outcome=outcome,
            details={
                "trigger": trigger,
                "reasons": list(reasons),
                "runs": {name: str(run.id) for name, run in done.items()},
            },
        )
    except Exception as error:  # noqa: BLE001 - see the module docstring
        logger.error("Could not write the retrain to the audit log: %s", error)
