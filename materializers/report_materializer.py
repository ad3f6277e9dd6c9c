"""Store an :class:`IngestionReport` and show its findings in the ZenML dashboard."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.pydantic_materializer import PydanticMaterializer

from clearsight.dataset import IngestionReport
from materializers.hygiene import hygiene_html

HYGIENE_FILE = "hygiene.html"


class IngestionReportMaterializer(PydanticMaterializer):
    """Pydantic's JSON round-trip, plus a page of the hygiene findings with thumbnails."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (IngestionReport,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save_visualizations(self, data: IngestionReport) -> dict[str, VisualizationType]:
        """Conflicts, near-duplicates, duplicates, relabels, removals (``hygiene_html``)."""
        uri = os.path.join(self.uri, HYGIENE_FILE)
        with fileio.open(uri, "w") as handle:
            handle.write(hygiene_html(data))
        return {uri: VisualizationType.HTML}
