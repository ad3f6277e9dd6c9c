"""Store a :class:`DatasetManifest` and show it in the ZenML dashboard."""

from __future__ import annotations

import hashlib
import html
import logging
import os
from typing import Any, ClassVar

from PIL import Image, ImageDraw
from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.metadata.metadata_types import MetadataType

from clearsight.dataset import SPLITS, DatasetManifest
from clearsight.decode import preview
from materializers.hygiene import near_duplicates_html

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
GRID_FILE = "sample_grid.png"
COUNTS_FILE = "class_counts.html"
NEAR_DUPLICATES_FILE = "near_duplicates.html"
SAMPLES_PER_CLASS = 6
TILE = 64
LABEL_WIDTH = 120


class DatasetManifestMaterializer(BaseMaterializer):
    """Round-trips a dataset manifest as JSON under the artifact's URI."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (DatasetManifest,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def load(self, data_type: type[Any]) -> DatasetManifest:
        """Read the manifest back."""
        with fileio.open(os.path.join(self.uri, MANIFEST_FILE), "r") as handle:
            return DatasetManifest.model_validate_json(handle.read())

    def save(self, data: DatasetManifest) -> None:
        """Write the manifest as JSON."""
        with fileio.open(os.path.join(self.uri, MANIFEST_FILE), "w") as handle:
            handle.write(data.model_dump_json())

    def compute_content_hash(self, data: DatasetManifest) -> str:
        """Hash of the full manifest: equal manifests let downstream steps cache."""
        return hashlib.sha256(data.model_dump_json().encode()).hexdigest()

    def extract_metadata(self, data: DatasetManifest) -> dict[str, MetadataType]:
        """Fingerprint, sizes and classes for the dashboard and for queries."""
        sizes = data.split_sizes()
        return {
            "fingerprint": data.fingerprint,
            "num_images": len(data.records),
            "num_classes": len(data.classes),
            "classes": ", ".join(data.classes),
            "source": data.source,
            "layout": data.layout,
            "stored": data.stored,
            **{f"{split}_images": sizes[split] for split in SPLITS},
        }

    def save_visualizations(self, data: DatasetManifest) -> dict[str, VisualizationType]:
        """Sample images per class, counts per split and the near-duplicate clusters."""
        visualizations: dict[str, VisualizationType] = {}
        counts_uri = os.path.join(self.uri, COUNTS_FILE)
        with fileio.open(counts_uri, "w") as handle:
            handle.write(_counts_html(data))
        visualizations[counts_uri] = VisualizationType.HTML
        grid = _sample_grid(data)
        if grid is not None:
            grid_uri = os.path.join(self.uri, GRID_FILE)
            with fileio.open(grid_uri, "wb") as handle:
                grid.save(handle, format="PNG")
            visualizations[grid_uri] = VisualizationType.IMAGE
        if data.near_duplicate_clusters:
            clusters_uri = os.path.join(self.uri, NEAR_DUPLICATES_FILE)
            with fileio.open(clusters_uri, "w") as handle:
                handle.write(
                    near_duplicates_html(data.near_duplicate_clusters, decoding=data.decoding)
                )
            visualizations[clusters_uri] = VisualizationType.HTML
        return visualizations


def _counts_html(data: DatasetManifest) -> str:
    counts = data.counts()
    header = "".join(f"<th>{s}</th>" for s in SPLITS)
    rows = "".join(
        "<tr><td>{}</td>{}<td><b>{}</b></td></tr>".format(
            html.escape(label),
            "".join(f"<td>{counts[s][label]}</td>" for s in SPLITS),
            sum(counts[s][label] for s in SPLITS),
        )
        for label in data.classes
    )
    sizes = data.split_sizes()
    total = "".join(f"<td><b>{sizes[s]}</b></td>" for s in SPLITS)
    return (
        "<html><body style='font-family:sans-serif'>"
        f"<h3>{len(data.records)} images, {len(data.classes)} classes</h3>"
        f"<p>fingerprint <code>{data.fingerprint}</code></p>"
        "<table border='1' cellpadding='4' style='border-collapse:collapse'>"
        f"<tr><th>class</th>{header}<th>total</th></tr>{rows}"
        f"<tr><td><b>total</b></td>{total}<td><b>{len(data.records)}</b></td></tr>"
        "</table></body></html>"
    )


def _sample_grid(data: DatasetManifest) -> Image.Image | None:
    classes = data.classes[:20]
    if not classes:
        return None
    grid = Image.new("RGB", (LABEL_WIDTH + SAMPLES_PER_CLASS * TILE, len(classes) * TILE), "white")
    draw = ImageDraw.Draw(grid)
    for row, label in enumerate(classes):
        draw.text((6, row * TILE + TILE // 2 - 6), label[:18], fill="black")
        samples = [r for r in data.records if r.label == label][:SAMPLES_PER_CLASS]
        for col, record in enumerate(samples):
            try:
                with fileio.open(record.uri, "rb") as handle:
                    # The model's decoder: orientation, transparency, bit depth as trained.
                    tile = preview(handle.read(), TILE - 4, options=data.decoding)
            except Exception as error:  # noqa: BLE001 - a preview must never fail a save
                logger.warning("Sample %s not shown: %s", record.uri, error)
                continue
            grid.paste(tile, (LABEL_WIDTH + col * TILE + 2, row * TILE + 2))
    return grid
