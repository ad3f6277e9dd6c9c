"""Scan a data folder: validate, hash and de-duplicate every image; add the reviewed ones."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from tqdm.auto import tqdm
from zenml import log_metadata, step
from zenml.io import fileio

from clearsight.catalog import read_known_images, resolve_catalog_url
from clearsight.dataset import (
    DEFAULT_IMBALANCE_WARNING_RATIO,
    DatasetManifest,
    IngestionReport,
    KnownImage,
    build_manifest,
    merge_reviewed,
    validate_imbalance_ratio,
)
from clearsight.decode import DecodeOptions
from clearsight.errors import DataFolderError
from clearsight.groups import validate_groups_option
from clearsight.layout import validate_class_count, validate_label_aliases
from clearsight.leakage import validate_near_duplicates_option
from clearsight.names import ArtifactName
from clearsight.review import ReviewStore, apply_label_corrections, reviewed_records
from materializers import DatasetManifestMaterializer, IngestionReportMaterializer

logger = logging.getLogger(__name__)


@step(
    enable_cache=False,  # the folder may have changed since the last run
    output_materializers={
        ArtifactName.CANDIDATE_DATASET: DatasetManifestMaterializer,
        ArtifactName.SCAN_REPORT: IngestionReportMaterializer,
    },
)
def scan_images(
    data_dir: str,
    min_side: int = 8,
    max_pixels: int = 40_000_000,
    split_ratios: list[float] | None = None,
    dry_run: bool = False,
    catalog_url: str | None = None,
    include_reviews: bool = True,
    decoding: dict[str, Any] | None = None,
    label_aliases: dict[str, str] | None = None,
    imbalance_warning_ratio: float | None = DEFAULT_IMBALANCE_WARNING_RATIO,
    groups: dict[str, Any] | None = None,
    near_duplicates: dict[str, Any] | None = None,
) -> tuple[
    Annotated[DatasetManifest, ArtifactName.CANDIDATE_DATASET],
    Annotated[IngestionReport, ArtifactName.SCAN_REPORT],
]:
    """Read every image below ``data_dir`` and decide what enters the dataset.

    The expert-reviewed images of the app's review queue (the labelled
    production set, kept in the catalog database) are merged in with
    provenance ``review``, under the same rules as the folder's images.

    Args:
        data_dir: Absolute path of the folder to ingest.
        min_side: Smallest accepted image side, in pixels.
        max_pixels: Largest accepted width x height (decompression-bomb guard).
        split_ratios: Train/val/test shares for folders without split folders.
        dry_run: Mark the report as a dry run (nothing will be uploaded).
        catalog_url: Catalog database URL holding the reviews (else
            ``CLEARSIGHT_CATALOG_URL``, else the project's SQLite catalog).
        include_reviews: Merge the expert-reviewed images.
        decoding: Decoding rules (``background``: ``white``, ``black`` or
            ``[r, g, b]``; ``high_bit_depth``: ``auto`` or ``full_range``),
            recorded with the dataset so training, serving and the gate
            decode alike. Invalid values fail the step before any image is read.
        label_aliases: Label spellings mapped to the label they stand for,
            applied after normalisation (NFC, whitespace stripped), e.g.
            ``{"Melanoma": "melanoma"}``.
        imbalance_warning_ratio: Warn about a split whose largest class has
            more than this many times the images of its smallest (None: never).
        groups: The metadata table giving each image its group (patient,
            lesion, field): ``{file, image_column, group_column}``, ``file``
            relative to ``data_dir`` or absolute, null for no table. Unsplit
            folders are split by group; pre-split folders are checked for
            groups in several splits (see ``clearsight.groups``). A DICOM file
            without a row is grouped by its PatientID, keyed-hashed with the
            installation's secret (``clearsight.deidentify``); only its
            de-identified copy is hashed, catalogued and stored.
        near_duplicates: The near-duplicate search: ``{max_distance, leakage}``
            (bits between perceptual hashes, null: off; ``move`` or ``report``),
            see ``clearsight.leakage``.

    Returns:
        The candidate manifest (uris are source paths) and the scan report.

    Raises:
        DataFolderError: When the folder cannot be read as a dataset, labels
            differ only by case, fewer than two classes are kept, or the group
            table is missing, lacks a column or gives an image two groups.
        ValueError: When an option is invalid (before any image is read).
    """
    ratios = tuple(split_ratios or (0.70, 0.15, 0.15))
    options = DecodeOptions(**(decoding or {}))
    aliases = validate_label_aliases(label_aliases)
    threshold = validate_imbalance_ratio(imbalance_warning_ratio)
    group_option = validate_groups_option(groups)
    near_option = validate_near_duplicates_option(near_duplicates)
    url = resolve_catalog_url(catalog_url)
    known = read_known_images(url)
    manifest, report = build_manifest(
        data_dir,
        min_side=min_side,
        max_pixels=max_pixels,
        split_ratios=ratios,
        progress=lambda items: tqdm(items, desc="Validating images", unit="img"),
        decoding=options,
        label_aliases=aliases,
        imbalance_warning_ratio=threshold,
        groups=group_option,
        near_duplicates=near_option,
        known=known,
    )
    if report.wrappers:
        logger.warning(
            "Descended into the wrapping folder %s/ of %s (its only folder besides archive "
            "metadata); pass --data-dir %s to read it directly.",
            "/".join(report.wrappers),
            data_dir,
            "/".join([data_dir.rstrip("/"), *report.wrappers]),
        )
    if include_reviews:
        manifest, report = _merge_reviews(
            manifest, report, url, ratios, min_side, max_pixels, known
        )
    report.dry_run = dry_run
    for skipped in report.skipped:
        logger.warning("Skipped %s: %s", skipped.path, skipped.reason)
    if report.kept == 0:
        # An empty dataset version would become "the latest" and break training.
        raise DataFolderError(
            f"No valid image in {data_dir} ({report.summary()}); nothing was recorded. "
            "Check the folder layout (<label>/* or <split>/<label>/*) and the files."
        )
    # A one-class dataset would train a model that is always right and useless.
    validate_class_count(manifest.classes, data_dir)
    logger.info("Scan of %s: %s", data_dir, report.summary())
    if report.decoding:
        logger.info("Decoding: %s.", report.decoding_summary())
    for cluster in report.near_duplicate_clusters:
        logger.info(
            "Near-duplicates%s: %s.",
            " (label conflict, all left out)" if cluster.conflict else "",
            ", ".join(
                f"{m.path} [{m.label}, {m.split or 'left out'}"
                + (f", moved from {m.moved_from}" if m.moved_from else "")
                + "]"
                for m in cluster.members
            ),
        )
    for relabel in report.relabelled[:20]:
        logger.warning(
            "Relabelled: %s was '%s' at the last ingestion, now '%s'.",
            relabel.path,
            relabel.previous_label,
            relabel.label,
        )
    if len(report.relabelled) > 20:
        logger.warning("... and %d more relabelled images.", len(report.relabelled) - 20)
    if report.removed:
        logger.warning(
            "%d catalogued images of %s are no longer there (%s)%s.",
            len(report.removed),
            data_dir,
            ", ".join(v.path for v in report.removed[:5]),
            "; a dry run marks nothing" if dry_run else "; the catalog marks them removed",
        )
    log_metadata(
        metadata={
            "scanned": report.scanned,
            "kept": report.kept,
            "skipped": len(report.skipped),
            "duplicates": report.duplicates,
            "conflicts": report.conflicts,
            "reviewed": report.reviewed,
            "provenance": report.provenance,
            "decoding": report.decoding,
            "decoding_rules": options.model_dump(mode="json"),
            "wrappers": report.wrappers,
            "imbalance": report.imbalance,
            "groups": report.groups,
            "ungrouped": report.ungrouped,
            "patient_id_groups": report.patient_id_groups,
            "cross_split_groups": len(report.cross_split_groups),
            "near_duplicate_clusters": len(report.near_duplicate_clusters),
            "leakage_prevented": report.leakage_prevented,
            "near_duplicate_conflicts": report.near_duplicate_conflicts,
            "relabelled": len(report.relabelled),
            "removed": len(report.removed),
            "replaced": len(report.replaced),
        },
        artifact_name=ArtifactName.SCAN_REPORT,
        infer_artifact=True,
    )
    return manifest, report


def _read(uri: str) -> bytes:
    """Read a reviewed image's bytes from the store it was kept in.

    Reviews keep the artifact store of the stack active at review time: an
    ``s3://`` image cannot be read while a stack without an S3 artifact store
    is active. ZenML says so with a ``ValueError``; turn it into an
    :class:`OSError` so the image is skipped with the reason, not the run lost.
    """
    try:
        with fileio.open(uri, "rb") as handle:
            return handle.read()
    except ValueError as error:
        scheme = uri.split("://", 1)[0] + "://" if "://" in uri else uri
        raise OSError(
            f"kept in {scheme} storage, which the active stack's artifact store cannot "
            "read; ingest on the stack it was reviewed on (zenml stack set <stack>), "
            f"the review stays in the catalog ({error})"
        ) from error


def _merge_reviews(
    manifest: DatasetManifest,
    report: IngestionReport,
    url: str,
    ratios: tuple[float, ...],
    min_side: int,
    max_pixels: int,
    known: list[KnownImage],
) -> tuple[DatasetManifest, IngestionReport]:
    store = ReviewStore(url)
    try:
        reviewed = store.reviewed_images()
    finally:
        store.close()
    if not reviewed:
        return manifest, report
    records, skipped = reviewed_records(
        reviewed, _read, ratios, min_side=min_side, max_pixels=max_pixels, known=known
    )
    # Reviewed suspects of the label-error check relabel the folder's image.
    manifest, records, relabelled = apply_label_corrections(manifest, reviewed, records)
    merged, merged_report = merge_reviewed(manifest, report, records, skipped)
    merged_report.reviewed += len(relabelled)
    if relabelled:
        logger.info(
            "Relabelled %d reference images after a label-error review: %s.",
            len(relabelled),
            ", ".join(f"{r.sha256[:12]} -> {r.label}" for r in relabelled[:10]),
        )
    logger.info(
        "Merged %d of %d expert-reviewed images (provenance review).",
        merged_report.provenance.get("review", 0),
        len(reviewed),
    )
    return merged, merged_report
