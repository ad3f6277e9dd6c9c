"""ZenML materializers for the platform's own artifact types."""

from materializers.dataset_materializer import DatasetManifestMaterializer
from materializers.report_materializer import IngestionReportMaterializer

__all__ = ["DatasetManifestMaterializer", "IngestionReportMaterializer"]
