"""Training steps: fit, calibrate, evaluate on the test split, register in MLflow."""

from steps.training.calibrate_model import calibrate_model
from steps.training.evaluate_model import evaluate_model
from steps.training.link_dataset import link_dataset
from steps.training.log_model_metadata import log_model_metadata
from steps.training.register_model import register_model
from steps.training.train_model import train_model

__all__ = [
    "calibrate_model",
    "evaluate_model",
    "link_dataset",
    "log_model_metadata",
    "register_model",
    "train_model",
]
