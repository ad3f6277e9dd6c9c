"""Names of pipelines and artifacts, used in every ``Annotated[...]``.

Kept in the core (plain strings, no framework import) so the UI and scripts
can look artifacts up by the same names the steps write them under.
"""

from enum import StrEnum


class PipelineName(StrEnum):
    """Registered pipeline names."""

    INGEST = "ingest"
    TRAIN = "train"
    PROMOTE = "promote"
    DEPLOY = "deploy"
    MONITOR = "monitor"
    RETRAIN = "retrain"


class ArtifactName(StrEnum):
    """Artifact names written by the steps."""

    CANDIDATE_DATASET = "candidate_dataset"
    DATASET = "dataset"
    SCAN_REPORT = "scan_report"
    INGESTION_REPORT = "ingestion_report"
    CATALOG_ENTRY = "catalog_entry"
    TRAINED_MODEL = "trained_model"
    MODEL = "model"
    CALIBRATION = "calibration"
    REFERENCE_FEATURES = "reference_features"
    EMBEDDING_PROJECTION = "embedding_projection"
    CURRENT_FEATURES = "current_features"
    DRIFT_FEATURES = "drift_features"
    CHAMPION_FEATURES = "champion_features"
    PROMOTION_DECISION = "promotion_decision"
    TEST_METRICS = "test_metrics"
    CONFUSION_MATRIX = "confusion_matrix"
    REGISTERED_MODEL = "registered_model"
    # The monitor pipeline's (python run.py monitor).
    MONITOR_REFERENCE = "monitor_reference"
    MONITOR_CURRENT_FEATURES = "monitor_current_features"
    MONITOR_CURRENT_PREDICTIONS = "monitor_current_predictions"
    MONITOR_WINDOW = "monitor_window"
    MONITOR_RESULT = "monitor_result"
    MONITOR_SUMMARY = "monitor_summary"


DEFAULT_MODEL_NAME = "image-classifier"
CHAMPION_ALIAS = "champion"
PREVIOUS_CHAMPION_ALIAS = "previous-champion"
