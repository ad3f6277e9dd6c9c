"""Carry out the gate's decision: promote, or record the rejection."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import step

from clearsight.gate import PromotionDecision
from steps.promotion.champion import record_rejection, record_rejudge_failure, set_champion

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def apply_decision(
    decision: PromotionDecision, model_name: str, actor: str = "pipeline"
) -> Annotated[bool, "promoted"]:
    """Promote the challenger when the gate passed; otherwise change nothing in production.

    The promotion goes ahead only if production is still the champion the gate
    compared against (resolved before the run); otherwise it is refused and the
    version must be re-judged. A live champion that fails a re-judgement stays
    in production and is recorded as "re-judged failing", never as rejected.

    Args:
        decision: The gate's decision.
        model_name: The ZenML model (and MLflow registered model) name.
        actor: Who asked for the promotion (recorded with it).

    Returns:
        Whether the challenger is now the champion.
    """
    reason = "; ".join(decision.reasons)
    number = decision.challenger.version
    judged_against = decision.champion.version if decision.champion is not None else None
    if decision.promote:
        set_champion(model_name, number, reason, actor=actor, expected_champion=judged_against)
        return True
    if judged_against == number:
        record_rejudge_failure(model_name, number, reason)
        logger.warning(
            "Champion v%d failed its re-judgement; it stays in production. Consider "
            "python run.py rollback or promoting a better version.",
            number,
        )
        return False
    record_rejection(model_name, number, reason)
    logger.warning("Challenger v%d rejected; production unchanged.", number)
    return False
