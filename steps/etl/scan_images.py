"""Scan a data folder: validate, hash and de-duplicate every image."""

from __future__ import annotations

import logging
from typing import Annotated

from tqdm.auto import tqdm
from zenml import log_metadata, step

from clearsight.dataset import DatasetManifest, IngestionReport, build_manifest
from clearsight.names import ArtifactName
from materializers import DatasetManifestMaterializer

logger = logging.getLogger(__name__)


@step(
    enable_cache=False,  # the folder may have changed since the last run
    output_materializers={ArtifactName.CANDIDATE_DATASET: DatasetManifestMaterializer},
)
def scan_images(
    data_dir: str,
    min_side: int = 8,
    max_pixels: int = 40_000_000,
    split_ratios: list[float] | None = None,
    dry_run: bool = False,
) -> tuple[
    Annotated[DatasetManifest, ArtifactName.CANDIDATE_DATASET],
    Annotated[IngestionReport, ArtifactName.SCAN_REPORT],
]:
    """Read every image below ``data_dir`` and decide what enters the dataset.

    Args:
        data_dir: Absolute path of the folder to ingest.
        min_side: Smallest accepted image side, in pixels.
        max_pixels: Largest accepted width x height (decompression-bomb guard).
        split_ratios: Train/val/test shares for folders without split folders.
        dry_run: Mark the report as a dry run (nothing will be uploaded).

    Returns:
        The candidate manifest (uris are source paths) and the scan report.
    """
    manifest, report = build_manifest(
        data_dir,
        min_side=min_side,
        max_pixels=max_pixels,
        split_ratios=split_ratios or (0.70, 0.15, 0.15),
        progress=lambda items: tqdm(items, desc="Validating images", unit="img"),
    )
    report.dry_run = dry_run
    for skipped in report.skipped:
        logger.warning("Skipped %s: %s", skipped.path, skipped.reason)
    logger.info("Scan of %s: %s", data_dir, report.summary())
    log_metadata(
        metadata={
            "scanned": report.scanned,
            "kept": report.kept,
            "skipped": len(report.skipped),
            "duplicates": report.duplicates,
            "conflicts": report.conflicts,
        },
        artifact_name=ArtifactName.SCAN_REPORT,
        infer_artifact=True,
    )
    return manifest, report
