"""Training steps: fit, evaluate on the test split, register in MLflow."""

from steps.training.evaluate_model import evaluate_model
from steps.training.register_model import register_model
from steps.training.train_model import train_model

__all__ = ["evaluate_model", "register_model", "train_model"]
