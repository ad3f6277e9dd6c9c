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
    CURRENT_FEATURES = "current_features"
    DRIFT_FEATURES = "drift_features"
    CHAMPION_FEATURES = "champion_features"
    PROMOTION_DECISION = "promotion_decision"
    TEST_METRICS = "test_metrics"
    CONFUSION_MATRIX = "confusion_matrix"
    REGISTERED_MODEL = "registered_model"


DEFAULT_MODEL_NAME = "image-classifier"
CHAMPION_ALIAS = "champion"
PREVIOUS_CHAMPION_ALIAS = "previous-champion"
