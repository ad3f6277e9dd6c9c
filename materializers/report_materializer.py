"""Store an :class:`IngestionReport` and show its findings in the ZenML dashboard."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.pydantic_materializer import PydanticMaterializer

from clearsight.dataset import IngestionReport
from materializers.hygiene import near_duplicates_html

NEAR_DUPLICATES_FILE = "near_duplicates.html"


class IngestionReportMaterializer(PydanticMaterializer):
    """Pydantic's JSON round-trip, plus a page of near-duplicate clusters with thumbnails."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (IngestionReport,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save_visualizations(self, data: IngestionReport) -> dict[str, VisualizationType]:
        """The near-duplicate clusters, the leakage prevented and the conflicts."""
        uri = os.path.join(self.uri, NEAR_DUPLICATES_FILE)
        with fileio.open(uri, "w") as handle:
            handle.write(
                near_duplicates_html(
                    data.near_duplicate_clusters,
                    max_distance=data.near_duplicate_max_distance,
                    search_off=data.near_duplicate_max_distance is None,
                )
            )
        return {uri: VisualizationType.HTML}
