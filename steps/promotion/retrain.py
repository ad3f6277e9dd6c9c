"""The retrain chain's own steps, and the record of why it ran.

The retrain pipeline (``pipelines/retrain.py``: ingest, train, the gate, then
the champion served) is what ``python run.py retrain``, ``python run.py
monitor --retrain`` and the weekly schedule run. Its run carries the ZenML tag
``retrain:<trigger>``; :func:`record_retrain_outcome`, its last step, adds the
reasons and the outcome:

- ZenML: run metadata ``retrain_trigger`` and ``retrain_reasons`` on the run
  (the dashboard's run page shows them);
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
from typing import Annotated, Any

from zenml import get_step_context, step

from clearsight.gate import PromotionDecision
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
    registered = run.steps.get("register_model")
    if registered is None:
        return None
    return registered.outputs[ArtifactName.REGISTERED_MODEL][0].load().get("mlflow_run_id")


def _tag_mlflow_run(run_id: str | None, trigger: str, reason: str) -> None:
    from zenml.client import Client

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
        runs: The chain's runs by name (``monitor``, ``ingest`` for the
            monitor's check for new data, ``retrain``); missing or None for
            those that did not run. Objects with an ``id``.
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
    trained = done.get("retrain") or done.get("train")
    if trained is not None:
        try:
            _tag_mlflow_run(_mlflow_run_id(trained), trigger, reason)
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


@step(enable_cache=False)
def champion_version(model_name: str) -> Annotated[int, "champion_version"]:
    """The champion's ZenML version number when the retrain run gets here.

    The retrain pipeline is compiled once for its schedule, so the champion
    it compares against is looked up at run time (the same moment its model
    is loaded: ``Model(version="production")``).

    Raises:
        RuntimeError: The model has no version in production (run ``python
            run.py`` once before scheduling retraining).
    """
    from steps.promotion.champion import production_version

    version = production_version(model_name)
    if version is None:
        raise RuntimeError(
            f"Model {model_name!r} has no champion to compare a retrained version with. "
            "Fix: python run.py (trains and promotes the first one), then retrain."
        )
    return version.number


@step(enable_cache=False)
def record_retrain_outcome(
    promoted: bool,
    decision: PromotionDecision,
    model_name: str,
    trigger: str = "schedule",
    reasons: list[str] | None = None,
    actor: str = "pipeline",
    monitor_run_id: str | None = None,
) -> Annotated[str, "retrain_outcome"]:
    """Record the chain's trigger, reasons and outcome on ZenML, MLflow and the audit log.

    Args:
        promoted: ``apply_decision``'s output.
        decision: The gate's decision (its reasons go into the log line).
        model_name: The model retrained.
        trigger: ``schedule``, ``manual`` or ``monitor``.
        reasons: Why, in words.
        actor: Who asked.
        monitor_run_id: The monitor run that asked for it, if one did.

    Returns:
        ``promoted`` or ``rejected``.
    """
    from types import SimpleNamespace

    outcome = "promoted" if promoted else "rejected"
    runs: dict[str, Any] = {"retrain": get_step_context().pipeline_run}
    if monitor_run_id:
        runs["monitor"] = SimpleNamespace(id=monitor_run_id)
    record_retrain(model_name, reasons or [trigger], trigger, actor, outcome, runs)
    logger.info(
        "Retrain (%s) %s v%d: %s",
        trigger,
        outcome,
        decision.challenger.version,
        "; ".join(decision.reasons),
    )
    return outcome
