"""The dataset materializer round-trips exactly and gives the dashboard a picture."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from zenml.enums import VisualizationType

from clearsight.dataset import build_manifest
from materializers import DatasetManifestMaterializer

pytestmark = pytest.mark.integration


def test_manifest_round_trip_metadata_and_visualizations(digits_dir, tmp_path):
    manifest, _ = build_manifest(digits_dir)
    uri = tmp_path / "artifact"
    uri.mkdir()
    materializer = DatasetManifestMaterializer(str(uri))
    materializer.save(manifest)
    loaded = materializer.load(type(manifest))
    assert loaded == manifest
    assert loaded.fingerprint == manifest.fingerprint

    metadata = materializer.extract_metadata(manifest)
    assert metadata["fingerprint"] == manifest.fingerprint
    assert metadata["num_images"] == 1797 and metadata["num_classes"] == 10
    assert (
        metadata["train_images"],
        metadata["val_images"],
        metadata["test_images"],
    ) == (
        1257,
        270,
        270,
    )

    visualizations = materializer.save_visualizations(manifest)
    by_type = {kind: path for path, kind in visualizations.items()}
    grid = Image.open(by_type[VisualizationType.IMAGE])
    assert grid.height == 10 * 64  # one row of samples per class
    table = Path(by_type[VisualizationType.HTML]).read_text()
    counts = manifest.counts()
    row = "<tr><td>0</td>" + "".join(f"<td>{counts[s]['0']}</td>" for s in ("train", "val", "test"))
    assert row in table
    assert "1797 images, 10 classes" in table


def test_content_hash_depends_on_content_only(digits_dir, tmp_path):
    manifest, _ = build_manifest(digits_dir)
    again, _ = build_manifest(digits_dir)
    materializer = DatasetManifestMaterializer(str(tmp_path))
    assert materializer.compute_content_hash(manifest) == materializer.compute_content_hash(again)
    relabelled = manifest.model_copy(
        update={
            "records": [
                manifest.records[0].model_copy(update={"label": "9"}),
                *manifest.records[1:],
            ]
        }
    )
    assert materializer.compute_content_hash(relabelled) != materializer.compute_content_hash(
        manifest
    )
