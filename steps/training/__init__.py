"""Training steps: fit, calibrate, evaluate on the test split, register in MLflow."""

from steps.training.calibrate_model import calibrate_model
from steps.training.evaluate_model import evaluate_model
from steps.training.register_model import register_model
from steps.training.train_model import train_model

__all__ = ["calibrate_model", "evaluate_model", "register_model", "train_model"]
