"""Training steps: fit, calibrate, evaluate on the test split, register, check labels."""

from steps.training.calibrate_model import calibrate_model
from steps.training.evaluate_model import evaluate_model
from steps.training.find_label_issues import find_label_issues
from steps.training.link_dataset import link_dataset
from steps.training.log_model_metadata import log_model_metadata
from steps.training.register_model import register_model
from steps.training.train_model import train_model

__all__ = [
    "calibrate_model",
    "evaluate_model",
    "find_label_issues",
    "link_dataset",
    "log_model_metadata",
    "register_model",
    "train_model",
]
