"""ZenML pipelines: they only wire steps together."""

from pipelines.deployment import deployment_pipeline
from pipelines.ingest import ingest_pipeline
from pipelines.monitoring import monitoring_pipeline
from pipelines.promotion import promotion_pipeline
from pipelines.retrain import retrain_pipeline
from pipelines.training import training_pipeline

__all__ = [
    "deployment_pipeline",
    "ingest_pipeline",
    "monitoring_pipeline",
    "promotion_pipeline",
    "retrain_pipeline",
    "training_pipeline",
]
