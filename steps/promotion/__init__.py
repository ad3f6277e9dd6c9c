"""Promotion steps: features, champion scoring, the gate, and its outcome."""

from steps.promotion.apply_decision import apply_decision
from steps.promotion.featurize import featurize, score_champion
from steps.promotion.gate import promotion_gate

__all__ = ["apply_decision", "featurize", "promotion_gate", "score_champion"]
