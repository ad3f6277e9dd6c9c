"""The ingest pipeline: a folder of images becomes a versioned dataset."""

from __future__ import annotations

from typing import Any

from zenml import pipeline

from clearsight.names import PipelineName
from steps.alert_hooks import alert_on_failure
from steps.etl import catalog_ingestion, scan_images, store_images


@pipeline(name=PipelineName.INGEST, on_failure=alert_on_failure)
def ingest_pipeline(
    data_dir: str,
    catalog_url: str | None = None,
    dry_run: bool = False,
    min_side: int = 8,
    max_pixels: int = 40_000_000,
    split_ratios: list[float] | None = None,
    include_reviews: bool = True,
    decoding: dict[str, Any] | None = None,
    label_aliases: dict[str, str] | None = None,
    imbalance_warning_ratio: float | None = 10.0,
    groups: dict[str, Any] | None = None,
    near_duplicates: dict[str, Any] | None = None,
) -> None:
    """Scan and validate, store new images by content, record in the catalog.

    Images confirmed or corrected in the review app join the folder's images.

    With ``dry_run`` the catalog is refreshed and nothing is uploaded: no
    ``dataset`` artifact is produced, so training never sees a dry run.

    Args:
        data_dir: Absolute path of the image folder.
        catalog_url: Catalog database URL (or ``CLEARSIGHT_CATALOG_URL``).
        dry_run: Scan and catalogue only.
        min_side: Smallest accepted image side in pixels.
        max_pixels: Decompression-bomb guard, in pixels.
        split_ratios: Train/val/test shares for unsplit folders.
        include_reviews: Merge the app's expert-reviewed images (provenance
            ``review``, read from the catalog database) with the folder's.
        decoding: Decoding rules (``background``, ``high_bit_depth``; see
            ``clearsight.decode.DecodeOptions``) recorded with the dataset.
        label_aliases: Label spellings mapped to the label they stand for,
            applied after normalisation (NFC, whitespace stripped).
        imbalance_warning_ratio: Largest-to-smallest class ratio in a split
            above which the report warns (None: never).
        groups: The metadata table giving each image its group (``file``,
            ``image_column``, ``group_column``; ``file: null``: no table), so
            a patient, lesion or field never spans two splits.
        near_duplicates: The near-duplicate search (``max_distance`` in bits,
            null: off; ``leakage``: ``move`` or ``report``), so re-saved,
            resized or cropped copies share a split (``clearsight.leakage``).
    """
    ingest_dataset(
        data_dir=data_dir,
        catalog_url=catalog_url,
        dry_run=dry_run,
        min_side=min_side,
        max_pixels=max_pixels,
        split_ratios=split_ratios,
        include_reviews=include_reviews,
        decoding=decoding,
        label_aliases=label_aliases,
        imbalance_warning_ratio=imbalance_warning_ratio,
        groups=groups,
        near_duplicates=near_duplicates,
    )


def ingest_dataset(dry_run: bool = False, catalog_url: str | None = None, **options: Any) -> Any:
    """Wire the ingest steps into the pipeline being defined; the ``dataset`` output.

    Used by :func:`ingest_pipeline` and by the retrain pipeline. ``options``
    are :func:`steps.etl.scan_images`'s (see :func:`ingest_pipeline`).

    Returns:
        ``store_images``' ``dataset`` output, or None on a dry run.
    """
    candidate, scan_report = scan_images(dry_run=dry_run, catalog_url=catalog_url, **options)
    if dry_run:
        catalog_ingestion(dataset=candidate, report=scan_report, catalog_url=catalog_url)
        return None
    dataset, report = store_images(candidate=candidate, report=scan_report)
    catalog_ingestion(dataset=dataset, report=report, catalog_url=catalog_url)
    return dataset
