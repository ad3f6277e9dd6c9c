"""ZenML materializers for the platform's own artifact types."""

from materializers.dataset_materializer import DatasetManifestMaterializer

__all__ = ["DatasetManifestMaterializer"]
