"""Carry out the gate's decision: promote, or record the rejection."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import step

from clearsight.gate import PromotionDecision
from steps.promotion.champion import record_rejection, set_champion

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def apply_decision(
    decision: PromotionDecision, model_name: str, actor: str = "pipeline"
) -> Annotated[bool, "promoted"]:
    """Promote the challenger when the gate passed; otherwise change nothing in production.

    Args:
        decision: The gate's decision.
        model_name: The ZenML model (and MLflow registered model) name.
        actor: Who asked for the promotion (recorded with it).

    Returns:
        Whether the challenger is now the champion.
    """
    reason = "; ".join(decision.reasons)
    if decision.promote:
        set_champion(model_name, decision.challenger.version, reason, actor=actor)
        return True
    record_rejection(model_name, decision.challenger.version, reason)
    logger.warning("Challenger v%d rejected; production unchanged.", decision.challenger.version)
    return False
