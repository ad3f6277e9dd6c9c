"""The dataset manifest and how a folder of images becomes one.

A manifest lists every image of a dataset version by content hash, with its
label, split and where its bytes live. Its fingerprint depends only on the
(hash, label, split) triples, so the same images always give the same
fingerprint, wherever they were read from.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from clearsight.decode import DecodeOptions
from clearsight.deidentify import (
    DeidentificationError,
    deidentify,
    is_dicom,
    load_pseudonym_key,
    patient_id,
    pseudonym,
)
from clearsight.groups import GroupsOption, load_group_table, validate_groups_option
from clearsight.images import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    ImageInfo,
    InvalidImageError,
    inspect_image,
)
from clearsight.layout import Candidate, Layout, scan_folder
from clearsight.leakage import (
    Entry,
    KnownImage,
    NearDuplicateCluster,
    NearDuplicatesOption,
    cluster_outcomes,
    plan_splits,
    validate_near_duplicates_option,
)

SPLITS = ("train", "val", "test")
#: The group of a DICOM image with a PatientID and no table row: this prefix and
#: the id's keyed hash (:func:`clearsight.deidentify.pseudonym`), never the id.
PATIENT_GROUP_PREFIX = "dicom-patient:"
DEFAULT_SPLIT_RATIOS = (0.70, 0.15, 0.15)
#: Largest-to-smallest class ratio in a split above which the report warns.
DEFAULT_IMBALANCE_WARNING_RATIO = 10.0


class ImageRecord(BaseModel):
    """One image of a dataset version."""

    sha256: str
    label: str
    split: str
    uri: str = Field(description="Where the bytes are: a source path or a store URI.")
    width: int
    height: int
    mode: str
    format: str
    num_bytes: int
    source_path: str
    provenance: str = Field(
        default="ingest", description="How the image entered: ingest or review."
    )
    # Only expert-reviewed images carry these; left out of the JSON otherwise,
    # so manifests without reviews serialize (and cache) exactly as before.
    reviewed_by: str | None = Field(default=None, exclude_if=lambda v: v is None)
    reviewed_at: datetime | None = Field(default=None, exclude_if=lambda v: v is None)
    # The patient, lesion or field from the metadata table (``groups`` option), or
    # for DICOM without a row ``dicom-patient:<keyed hash of its PatientID>``; left
    # out of the JSON when None, so manifests without groups are unchanged.
    group: str | None = Field(default=None, exclude_if=lambda v: v is None)
    # Identity of the pixels and the key the split was derived from (see
    # clearsight.leakage); None in manifests written before pixel identity.
    pixel_sha256: str | None = Field(default=None, exclude_if=lambda v: v is None)
    split_key: str | None = Field(default=None, exclude_if=lambda v: v is None)
    # The near-duplicate cluster the image belongs to, if any.
    cluster: str | None = Field(default=None, exclude_if=lambda v: v is None)


class Relabel(BaseModel):
    """A known image found under another label than at its last ingestion."""

    path: str
    sha256: str
    previous_label: str
    label: str


class Vanished(BaseModel):
    """A catalogued image of this folder whose bytes are no longer found."""

    path: str
    sha256: str
    replaced_by: str | None = Field(
        default=None, description="The bytes now holding the same pixels, if any."
    )


class ExactCopy(BaseModel):
    """One file of a set of files with identical decoded pixels."""

    path: str
    sha256: str
    label: str
    kept: bool = Field(
        default=False, description="The copy kept in the dataset (none in a label conflict)."
    )


class ExactCopies(BaseModel):
    """Files with identical decoded pixels (re-saved losslessly, metadata edited, copied).

    One is kept and the others skipped as duplicates; under different labels
    they are a label conflict and every one is left out.
    """

    pixel_sha256: str = Field(description="Their pixel identity (the byte hash for a review).")
    conflict: bool
    files: list[ExactCopy]


class SkippedFile(BaseModel):
    """A file left out of the dataset and the reason."""

    path: str
    reason: str


class DatasetManifest(BaseModel):
    """A versioned dataset: images by content hash, labels, splits, classes."""

    source: str
    layout: str
    classes: list[str]
    records: list[ImageRecord]
    stored: bool = Field(
        default=False,
        description="True when every record's uri points into the artifact store.",
    )
    decoding: DecodeOptions = Field(
        default_factory=DecodeOptions,
        description="The decoding rules (background, bit depth) every consumer applies.",
    )
    # What the near-duplicate search found, conflicts included (left out of the
    # JSON when empty, so manifests without near-duplicates are unchanged).
    near_duplicate_clusters: list[NearDuplicateCluster] = Field(
        default_factory=list, exclude_if=lambda v: not v
    )

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the sorted (hash, label, split) triples."""
        digest = hashlib.sha256()
        for sha, label, split in sorted((r.sha256, r.label, r.split) for r in self.records):
            digest.update(f"{sha}\t{label}\t{split}\n".encode())
        return digest.hexdigest()

    def split(self, name: str) -> list[ImageRecord]:
        """Return the records of one split, in a stable order."""
        return [r for r in self.records if r.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """Return ``{split: {label: count}}`` for every split and class."""
        table = {s: dict.fromkeys(self.classes, 0) for s in SPLITS}
        for record in self.records:
            table[record.split][record.label] += 1
        return table

    def provenance_counts(self) -> dict[str, int]:
        """Return the number of images per provenance (``ingest``, ``review``)."""
        return dict(sorted(Counter(r.provenance for r in self.records).items()))

    def split_sizes(self) -> dict[str, int]:
        """Return the number of images per split."""
        sizes = Counter(r.split for r in self.records)
        return {s: sizes.get(s, 0) for s in SPLITS}

    def label_index(self) -> dict[str, int]:
        """Map each class name to its integer index (the model's output order)."""
        return {label: i for i, label in enumerate(self.classes)}


class IngestionReport(BaseModel):
    """What one ingestion found, kept, skipped and stored."""

    source: str
    layout: str
    started_at: datetime
    scanned: int = 0
    valid: int = 0
    kept: int = 0
    duplicates: int = 0
    conflicts: int = 0
    skipped: list[SkippedFile] = Field(default_factory=list)
    uploaded: int = 0
    already_stored: int = 0
    dry_run: bool = False
    fingerprint: str = ""
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    reviewed: int = Field(default=0, description="Expert-reviewed images considered.")
    provenance: dict[str, int] = Field(default_factory=dict)
    warnings: list[str] = Field(
        default_factory=list,
        description="Problems that do not stop the ingestion, e.g. a class missing from a split.",
    )
    decoding: dict[str, int] = Field(
        default_factory=dict,
        description="Kept images by what decoding does to them (DECODING_COUNTS keys).",
    )
    wrappers: list[str] = Field(
        default_factory=list,
        description="Wrapping folders descended into to reach the dataset, outermost first.",
    )
    imbalance: dict[str, float | None] = Field(
        default_factory=dict,
        description="Per split: images of the largest class / images of the smallest "
        "(classes with no image in the split left out; None below two classes).",
    )
    imbalance_warning_ratio: float | None = Field(
        default=DEFAULT_IMBALANCE_WARNING_RATIO,
        description="Imbalance ratio above which a split is warned about (None: never).",
    )
    groups_file: str | None = Field(
        default=None, description="The metadata table that gave each image its group, if any."
    )
    groups: dict[str, int] = Field(
        default_factory=dict,
        description="Distinct groups per split (with a table, or DICOM files with a PatientID).",
    )
    ungrouped: int = Field(
        default=0, description="Ingested images without a group (no table row, no PatientID)."
    )
    patient_id_groups: int = Field(
        default=0,
        description="Kept images whose group is their DICOM PatientID, keyed-hashed "
        "(clearsight.deidentify.pseudonym); the table's row wins when it has one.",
    )
    cross_split_groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Groups with images in several splits (leakage; pre-split folders only).",
    )
    near_duplicate_max_distance: int | None = Field(
        default=None,
        description="Hamming distance (bits) of the near-duplicate search; None: not searched.",
    )
    near_duplicate_clusters: list[NearDuplicateCluster] = Field(
        default_factory=list,
        description="Clusters of near-duplicates (re-saved, resized, cropped copies).",
    )
    leakage_prevented: int = Field(
        default=0,
        description="Images placed in their near-duplicates' split instead of their own.",
    )
    near_duplicate_conflicts: int = Field(
        default=0, description="Images left out: near-duplicates under different labels."
    )
    relabelled: list[Relabel] = Field(
        default_factory=list,
        description="Images the catalog knows under another label (a renamed label folder).",
    )
    removed: list[Vanished] = Field(
        default_factory=list,
        description="Catalogued images of this folder no longer found (marked removed).",
    )
    replaced: list[Vanished] = Field(
        default_factory=list,
        description="Catalogued images whose picture is still here in other bytes "
        "(metadata edited, re-exported): the old bytes' row is marked replaced.",
    )
    chains: list[int] = Field(
        default_factory=list,
        description="Sizes of near-duplicate chains ignored as similar images, not copies.",
    )
    exact_copies: list[ExactCopies] = Field(
        default_factory=list,
        description="Sets of files with identical pixels: duplicates (one kept) and label "
        "conflicts (all left out), as counted in ``duplicates`` and ``conflicts``.",
    )

    def groups_summary(self) -> str:
        """Groups per split, e.g. ``groups per split: train 70, val 15, test 15 (...)``.

        With DICOM patients and no table: ``patients per split: train 3, val 1,
        test 1 (by DICOM PatientID; 12 images without one)``.

        Returns:
            ``""`` when no image has a group (no table, no DICOM PatientID).
        """
        if self.groups_file is None and not self.patient_id_groups:
            return ""
        patients = self.groups_file is None
        counts = ", ".join(f"{s} {n}" for s, n in self.groups.items())
        if patients:
            line = f"patients per split: {counts} (by DICOM PatientID; {self.ungrouped} images "
            line += "without one"
        else:
            line = f"groups per split: {counts} ({self.ungrouped} images without a group"
            if self.patient_id_groups:
                line += f", {self.patient_id_groups} grouped by DICOM PatientID"
        if self.cross_split_groups:
            noun = "patients" if patients else "groups"
            line += f", {len(self.cross_split_groups)} {noun} in several splits"
        return line + ")"

    def imbalance_summary(self) -> str:
        """The largest-to-smallest class ratio per split, e.g. ``train 2.9, val 1.0``.

        Returns:
            Comma-separated ratios of the splits that have two classes or more.
        """
        return ", ".join(f"{s} {r:.1f}" for s, r in self.imbalance.items() if r is not None)

    def decoding_summary(self) -> str:
        """What decoding did to the kept images, e.g. ``3 rotated upright (EXIF orientation)``.

        Returns:
            Comma-separated counts, or ``""`` when every image decoded as stored.
        """
        return ", ".join(f"{count} {DECODING_COUNTS[key]}" for key, count in self.decoding.items())

    def near_duplicates_summary(self) -> str:
        """The near-duplicates found, e.g. ``3 near-duplicate clusters (7 images)``.

        Returns:
            ``""`` when the search was off or found nothing.
        """
        if not self.near_duplicate_clusters:
            return ""
        kept = cluster_outcomes(self.near_duplicate_clusters).kept
        line = (
            f"{len(self.near_duplicate_clusters)} near-duplicate clusters "
            f"({sum(len(c.members) for c in kept)} images kept together"
        )
        if self.leakage_prevented:
            line += f", leakage prevented: {self.leakage_prevented} moved to their copies' split"
        return line + ")"

    def relabel_summary(self) -> str:
        """Relabelled known images by old and new label, e.g. ``grass -> lawn_grass: 15``.

        Returns:
            ``""`` when no known image changed label.
        """
        moves = Counter((r.previous_label, r.label) for r in self.relabelled)
        return ", ".join(f"{old} -> {new}: {n}" for (old, new), n in sorted(moves.items()))

    def summary(self) -> str:
        """One line a person can read at the end of a run."""
        invalid = len(self.skipped) - self.duplicates - self.conflicts
        line = (
            f"{self.kept} images kept of {self.scanned} files scanned "
            f"({self.duplicates} duplicates, {self.conflicts} label conflicts, "
            f"{invalid} invalid or unsupported)"
        )
        if self.near_duplicates_summary():
            line += f"; {self.near_duplicates_summary()}"
        if self.relabelled:
            line += f"; {len(self.relabelled)} known images relabelled ({self.relabel_summary()})"
        verb = "would be" if self.dry_run else "marked"
        if self.removed:
            line += f"; {len(self.removed)} catalogued image(s) no longer found ({verb} removed)"
        if self.replaced:
            line += (
                f"; {len(self.replaced)} catalogued image(s) now in other bytes with the same "
                f"pixels (old bytes {verb} replaced)"
            )
        if self.wrappers:
            line += f"; read from wrapping folder {'/'.join(self.wrappers)}/"
        if self.groups_summary():
            line += f"; {self.groups_summary()}"
        if self.imbalance_summary():
            line += f"; class imbalance (largest/smallest): {self.imbalance_summary()}"
        if self.reviewed:
            merged = self.provenance.get("review", 0)
            line += f"; {merged} of {self.reviewed} expert-reviewed images merged"
        if self.dry_run:
            line += "; dry run: nothing uploaded"
        elif self.uploaded or self.already_stored:
            line += f"; {self.uploaded} uploaded, {self.already_stored} already stored"
        if self.warnings:
            shown = "; ".join(self.warnings[:3])
            more = f"; and {len(self.warnings) - 3} more" if len(self.warnings) > 3 else ""
            line += f". Warning: {shown}{more}"
        return line


DECODING_COUNTS = {
    "exif_orientation": "rotated or flipped upright (EXIF orientation)",
    "transparency": "with transparency (composited onto the background)",
    "high_bit_depth": "with more than 8 bits per sample",
    "fewer_significant_bits": "with 10-14-bit data in a 16-bit image (scaled by its bits)",
    "multi_frame": "multi-frame or multi-page (first frame used)",
}


def decoding_counts(infos: Iterable[ImageInfo]) -> dict[str, int]:
    """Count images by what decoding does to them (keys of ``DECODING_COUNTS``).

    Args:
        infos: The kept images' descriptions from :func:`inspect_image`.

    Returns:
        Only the non-zero counts, in ``DECODING_COUNTS`` order.
    """
    counts = dict.fromkeys(DECODING_COUNTS, 0)
    for info in infos:
        counts["exif_orientation"] += info.orientation != 1
        counts["transparency"] += info.transparency
        counts["high_bit_depth"] += info.mode.startswith("I")
        counts["fewer_significant_bits"] += info.mode.startswith("I") and info.significant_bits < 16
        counts["multi_frame"] += info.frames > 1
    return {key: count for key, count in counts.items() if count}


def assign_split(key: str, ratios: tuple[float, float, float]) -> str:
    """Assign a split from a hex key alone (a pixel hash, a group's hash).

    The key is read as a uniform number in [0, 1): the same image always gets
    the same split, whatever else is in the folder, so re-ingesting a grown
    dataset never moves an image between train and test. Applied per class,
    the proportions hold in expectation in every class (stratified). Which
    key an image gets is decided by :mod:`clearsight.leakage`.

    Args:
        key: At least 15 hex digits (a SHA-256 hex digest).
        ratios: Train, val and test shares summing to 1.

    Returns:
        ``train``, ``val`` or ``test``.
    """
    train, val, _ = ratios
    position = int(key[:15], 16) / 16**15
    if position < train:
        return "train"
    if position < train + val:
        return "val"
    return "test"


def group_counts(
    manifest: DatasetManifest,
) -> tuple[dict[str, int], int, dict[str, list[str]]]:
    """Count groups per split, ingested images without a group, and cross-split groups.

    Args:
        manifest: The dataset (records carry the ``group`` of the table).

    Returns:
        ``{split: distinct groups}``, the number of ingested images without a
        group, and ``{group: [splits]}`` for every group in several splits.
    """
    splits_of: dict[str, set[str]] = defaultdict(set)
    ungrouped = 0
    for record in manifest.records:
        if record.group is not None:
            splits_of[record.group].add(record.split)
        elif record.provenance == "ingest":
            ungrouped += 1
    per_split = {s: sum(s in found for found in splits_of.values()) for s in SPLITS}
    crossing = {
        group: [s for s in SPLITS if s in found]
        for group, found in sorted(splits_of.items())
        if len(found) > 1
    }
    return per_split, ungrouped, crossing


def group_warnings(
    crossing: Mapping[str, list[str]],
    limit: int = 10,
    paths: Mapping[str, list[str]] | None = None,
) -> list[str]:
    """One leakage warning per group found in several splits (at most ``limit`` named).

    A DICOM patient's group (:data:`PATIENT_GROUP_PREFIX`) is a pseudonym that
    tells nobody who it is: its warning names its first files instead.

    Args:
        crossing: ``{group: [splits]}`` from :func:`group_counts`.
        limit: How many groups to name one by one; the rest are counted.
        paths: The source paths of each group's images (for DICOM patients).

    Returns:
        Readable warnings naming each group and its splits.
    """
    warnings = [
        f"{_group_name(group, (paths or {}).get(group, []))} has images in the "
        f"{' and '.join(splits)} splits (leakage: one patient, lesion or field in several "
        "splits inflates the test metrics); move its images into one split folder"
        for group, splits in list(crossing.items())[:limit]
    ]
    if len(crossing) > limit:
        warnings.append(f"{len(crossing) - limit} more groups have images in several splits")
    return warnings


def _group_name(group: str, paths: list[str]) -> str:
    if not group.startswith(PATIENT_GROUP_PREFIX):
        return f"group '{group}'"
    shown = ", ".join(sorted(paths)[:3]) + (", ..." if len(paths) > 3 else "")
    return f"the DICOM patient of {shown}" if shown else "a DICOM patient"


def _set_group_report(report: IngestionReport, manifest: DatasetManifest) -> list[str]:
    report.patient_id_groups = sum(
        r.group is not None and r.group.startswith(PATIENT_GROUP_PREFIX) for r in manifest.records
    )
    if report.groups_file is None and not report.patient_id_groups:
        return []
    report.groups, report.ungrouped, report.cross_split_groups = group_counts(manifest)
    paths: dict[str, list[str]] = defaultdict(list)
    for record in manifest.records:
        if record.group in report.cross_split_groups:
            paths[record.group].append(record.source_path)
    return group_warnings(report.cross_split_groups, paths=paths)


def split_warnings(manifest: DatasetManifest) -> list[str]:
    """Name every class that has no image in some split, and every empty split.

    Hash-derived splits are stratified in expectation only: a class with few
    images can miss the val or test split by chance. The assignment stays as
    it is (moving images would leak between versions); the gap is reported.

    Args:
        manifest: The dataset to check.

    Returns:
        One readable warning per empty split, or per class missing from a split.
    """
    if not manifest.records:
        return []
    hashed = manifest.layout == Layout.UNSPLIT.value
    counts = manifest.counts()
    warnings: list[str] = []
    for split, per_class in counts.items():
        if not any(per_class.values()):
            warnings.append(
                f"the {split} split has no images"
                + (" (too few images for the split ratios)" if hashed else "")
                + "; training needs train, val and test images"
            )
            continue
        for label, count in per_class.items():
            if count:
                continue
            if hashed:
                total = sum(counts[s][label] for s in SPLITS)
                cause = (
                    f"the hash-derived split put all its {total} image(s) elsewhere; "
                    "add images to this class"
                )
            else:
                cause = f"the folder has no {split}/{label} images"
            warnings.append(f"class '{label}' has no images in the {split} split ({cause})")
    return warnings


def imbalance_ratios(manifest: DatasetManifest) -> dict[str, float | None]:
    """Per split, the images of its largest class divided by those of its smallest.

    Classes with no image in a split are left out (:func:`split_warnings`
    names them), so the ratio stays finite.

    Args:
        manifest: The dataset to measure.

    Returns:
        ``{split: ratio}`` for every split, rounded to two decimals; None for a
        split with fewer than two classes.
    """
    ratios: dict[str, float | None] = {}
    for split, per_class in manifest.counts().items():
        present = [count for count in per_class.values() if count]
        ratios[split] = round(max(present) / min(present), 2) if len(present) >= 2 else None
    return ratios


def imbalance_warnings(manifest: DatasetManifest, threshold: float | None) -> list[str]:
    """Name every split whose largest-to-smallest class ratio is above ``threshold``.

    Args:
        manifest: The dataset to check.
        threshold: The ratio above which to warn (``imbalance_warning_ratio``);
            None never warns.

    Returns:
        One readable warning per imbalanced split, naming both classes.
    """
    if threshold is None:
        return []
    warnings: list[str] = []
    counts = manifest.counts()
    for split, ratio in imbalance_ratios(manifest).items():
        if ratio is None or ratio <= threshold:
            continue
        present = {label: count for label, count in counts[split].items() if count}
        largest = max(present, key=lambda label: (present[label], label))
        smallest = min(present, key=lambda label: (present[label], label))
        warnings.append(
            f"the {split} split is imbalanced: class '{largest}' has {present[largest]} "
            f"images, class '{smallest}' {present[smallest]} (ratio {ratio:.1f}, above "
            f"imbalance_warning_ratio {threshold:g}); add images to the small classes or "
            "check the per-class recall of the trained model"
        )
    return warnings


def validate_imbalance_ratio(value: float | None) -> float | None:
    """Check the ``imbalance_warning_ratio`` option.

    Args:
        value: A number of at least 1 (a ratio of class sizes), or None to never warn.

    Returns:
        The value as a float, or None.

    Raises:
        ValueError: When it is not a number of at least 1.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 1:
        raise ValueError(
            "imbalance_warning_ratio must be a number of at least 1 (largest class / "
            f"smallest class in a split, e.g. 10), or null to never warn; got {value!r}"
        )
    return float(value)


def validate_ratios(ratios: Iterable[float]) -> tuple[float, float, float]:
    """Check that three split ratios are non-negative and sum to 1."""
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or any(r < 0 for r in values) or abs(sum(values) - 1) > 1e-6:
        raise ValueError(
            f"split_ratios must be three non-negative numbers summing to 1 "
            f"(train, val, test); got {list(values)}"
        )
    return values  # type: ignore[return-value]


def build_manifest(
    data_dir: str | Path,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    split_ratios: Iterable[float] = DEFAULT_SPLIT_RATIOS,
    progress: Callable[[Iterable[Candidate]], Iterable[Candidate]] | None = None,
    decoding: DecodeOptions | None = None,
    label_aliases: Mapping[str, str] | None = None,
    imbalance_warning_ratio: float | None = DEFAULT_IMBALANCE_WARNING_RATIO,
    groups: Mapping[str, object] | GroupsOption | None = None,
    near_duplicates: Mapping[str, object] | NearDuplicatesOption | None = None,
    known: Iterable[KnownImage] | None = None,
    pseudonym_key: bytes | None = None,
) -> tuple[DatasetManifest, IngestionReport]:
    """Scan, validate, hash and de-duplicate a data folder.

    Bad files never stop the scan: each is skipped with its reason. Copies
    with identical decoded pixels (:func:`clearsight.decode.inspect`, so a
    re-export or an edited EXIF block is the same picture) are kept once; under
    different labels they are a conflict and every copy is excluded.
    Near-duplicates (re-saved, resized, lightly cropped) are clustered and kept
    in one split, or excluded as a conflict across labels; unsplit layouts get
    splits derived from the pixel hash, the group or the catalog's key, as
    :mod:`clearsight.leakage` describes. Known images found under another label
    are reported as relabelled, known images of this folder no longer found
    as removed. Wrapping folders are descended and labels normalised as
    :func:`clearsight.layout.scan_folder` describes. The class count is not
    checked here (a drift batch may hold one class); ingestion checks it with
    :func:`clearsight.layout.validate_class_count`.

    A DICOM file is replaced by its de-identified copy as soon as it is read
    (:func:`clearsight.deidentify.deidentify`): the record's ``sha256``,
    ``num_bytes`` and every hash are the copy's, and
    :meth:`clearsight.storage.ContentStore.store_manifest` stores the copy.
    Its group is its ``PatientID``'s keyed hash (:data:`PATIENT_GROUP_PREFIX`)
    unless the group table has a row for it; the id itself is never kept.

    Args:
        data_dir: The folder to read.
        min_side: Smallest accepted image side in pixels.
        max_pixels: Largest accepted pixel count (decompression-bomb guard).
        split_ratios: Train, val and test shares for unsplit folders.
        progress: Optional wrapper around the candidate iterable (a progress bar).
        decoding: The decoding rules recorded with the dataset (default: white
            background, ``high_bit_depth="auto"``).
        label_aliases: Label spellings mapped to the label they stand for,
            applied after normalisation (e.g. ``{"Melanoma": "melanoma"}``).
        imbalance_warning_ratio: Warn about a split whose largest class has
            more than this many times the images of its smallest (None: never).
        groups: The metadata table giving each image a group (patient, lesion,
            field): ``{file, image_column, group_column}``, see
            :mod:`clearsight.groups`. Unsplit: the split follows the group's
            hash, so a group never spans splits; images without a row keep their
            content-hash split. Pre-split: a group in several splits is warned
            about (nothing moves). None or ``file: None``: no table.
        near_duplicates: The near-duplicate search (``{max_distance, leakage}``,
            :class:`clearsight.leakage.NearDuplicatesOption`; default: on).
        known: The catalog's images (``clearsight.catalog.Catalog.known_images``):
            a known image keeps the key its split came from, and relabels and
            removals are reported. None: nothing is known (a fresh catalog).
        pseudonym_key: The key of the patients' pseudonyms; None: the
            installation's (:func:`clearsight.deidentify.load_pseudonym_key`),
            read or created when the first PatientID needs it.

    Returns:
        The candidate manifest (uris are the source paths) and the report.

    Raises:
        DataFolderError: When the folder is missing, empty, mixed or wrapped in
            several folders, or the group table is missing, lacks a column or
            gives an image two groups.
        clearsight.layout.LabelCaseConflictError: When labels differ only by case.
        ValueError: When an option is invalid, or the pseudonym key
            (``CLEARSIGHT_PSEUDONYM_KEY`` or its file) is not a valid key.
    """
    ratios = validate_ratios(split_ratios)
    threshold = validate_imbalance_ratio(imbalance_warning_ratio)
    near_duplicates = validate_near_duplicates_option(near_duplicates)
    known = list(known or ())
    decoding = decoding or DecodeOptions()
    table = load_group_table(data_dir, validate_groups_option(groups))
    started = datetime.now(UTC)
    found = scan_folder(Path(data_dir), label_aliases)
    layout, candidates, skipped = found.layout, found.candidates, found.skipped
    root = str(Path(data_dir).expanduser().resolve())
    group_roots = [found.root, Path(root)]
    if table is not None:  # the table next to the images is not a stray file
        skipped = [s for s in skipped if Path(s.path).resolve() != table.path]
    report = IngestionReport(
        source=root,
        layout=layout.value,
        started_at=started,
        scanned=len(candidates) + len(skipped),
        wrappers=found.wrappers,
        imbalance_warning_ratio=threshold,
        groups_file=str(table.path) if table is not None else None,
    )
    report.skipped.extend(SkippedFile(path=s.path, reason=s.reason) for s in skipped)

    by_hash: dict[str, list[tuple[Candidate, ImageInfo]]] = defaultdict(list)
    patients: dict[str, str | None] = {}  # DICOM files' PatientID, in memory only
    keys: list[bytes] = [pseudonym_key] if pseudonym_key is not None else []

    def secret() -> bytes:  # read (or created) only when a PatientID needs it
        if not keys:
            keys.append(load_pseudonym_key())
        return keys[0]

    scanned_bytes: set[str] = set()  # every valid file's identity, kept or not
    scanned_pixels: set[str] = set()
    scanned_paths: set[str] = set()
    known_by = known_index(known)
    iterator = progress(candidates) if progress else candidates
    for candidate in iterator:
        try:
            data = candidate.path.read_bytes()
        except OSError as error:
            report.skipped.append(
                SkippedFile(
                    path=str(candidate.path),
                    reason=f"unreadable: {error.strerror or error}",
                )
            )
            continue
        if is_dicom(data):
            # Only the de-identified copy goes further: its hash is the address,
            # its bytes are what is stored; the PatientID stays in memory.
            try:
                patients[str(candidate.path)] = patient_id(data)
                data = deidentify(data)
            except DeidentificationError as error:
                reason = _decoder_reason(data, min_side, max_pixels, decoding) or str(error)
                report.skipped.append(SkippedFile(path=str(candidate.path), reason=reason))
                continue
        try:
            info = inspect_image(data, min_side=min_side, max_pixels=max_pixels, options=decoding)
        except InvalidImageError as error:
            report.skipped.append(SkippedFile(path=str(candidate.path), reason=str(error)))
            continue
        report.valid += 1
        # Copies are found by their pixels: a re-export or an edited EXIF block is
        # the same picture, and must not land in train and test at once.
        by_hash[info.pixel_sha256 or info.sha256].append((candidate, info))
        scanned_bytes.add(info.sha256)
        scanned_paths.add(str(candidate.path))
        if info.pixel_sha256:
            scanned_pixels.add(info.pixel_sha256)

    entries: list[Entry] = []
    kept: list[tuple[Candidate, ImageInfo]] = []
    for copies in by_hash.values():
        labels = sorted({c.label for c, _ in copies})
        if len(labels) > 1:
            places = "; ".join(f"'{c.label}' at {c.path}" for c, _ in copies)
            pixels = copies[0][1].pixel_sha256[:12]
            report.exact_copies.append(_exact_copies(copies, kept=False))
            for candidate, _ in copies:
                report.conflicts += 1
                report.skipped.append(
                    SkippedFile(
                        path=str(candidate.path),
                        reason=f"label conflict: the same image (pixels sha256 {pixels}) "
                        f"is labelled differently: {places}; fix the labels and re-ingest",
                    )
                )
            continue
        copies.sort(key=lambda copy: _keep_first(copy, known_by))
        (first, info), *rest = copies
        sha = info.sha256  # the kept copy's bytes: its storage address
        if rest:
            report.exact_copies.append(_exact_copies(copies, kept=True))
        for candidate, copy in rest:
            report.duplicates += 1
            same = "same bytes" if copy.sha256 == sha else "same pixels, other bytes"
            report.skipped.append(
                SkippedFile(path=str(candidate.path), reason=f"duplicate of {first.path} ({same})")
            )
        group = None
        if table is not None:
            found_groups = (table.group_of(c.path, group_roots) for c, _ in copies)
            group = next((g for g in found_groups if g is not None), None)
        if group is None:  # no table row: the DICOM PatientID, keyed-hashed
            found_ids = (patients.get(str(c.path)) for c, _ in copies)
            patient = next((p for p in found_ids if p is not None), None)
            if patient is not None:
                group = PATIENT_GROUP_PREFIX + pseudonym(patient, secret())
        kept.append((first, info))
        entries.append(
            Entry(
                path=str(first.path),
                sha256=sha,
                pixel_sha256=info.pixel_sha256,
                perceptual_hash=info.perceptual_hash,
                label=first.label,
                folder_split=first.split if layout is Layout.PRE_SPLIT else None,
                group=group,
                known=_known_for(known_by, copies),
            )
        )

    plan = plan_splits(
        entries,
        assign=lambda key: assign_split(key, ratios),
        pre_split=layout is Layout.PRE_SPLIT,
        option=near_duplicates,
    )
    report.near_duplicate_max_distance = near_duplicates.max_distance
    report.near_duplicate_clusters = plan.clusters
    report.leakage_prevented = plan.moved
    report.warnings.extend(
        f"near-duplicate cluster {cluster} spans several split folders (leakage); move its "
        "images into one split folder, or set near_duplicates.leakage: move"
        for cluster in plan.spread
    )
    records: list[ImageRecord] = []
    kept_infos: list[ImageInfo] = []
    for i, ((_, info), entry) in enumerate(zip(kept, entries, strict=True)):
        if i in plan.excluded:
            report.conflicts += 1
            report.near_duplicate_conflicts += 1
            report.skipped.append(SkippedFile(path=entry.path, reason=plan.excluded[i]))
            continue
        if (
            entry.known is not None
            and entry.known.label != entry.label
            and _inside(entry.known.source_path, root)
        ):
            report.relabelled.append(
                Relabel(
                    path=entry.path,
                    sha256=entry.sha256,
                    previous_label=entry.known.label,
                    label=entry.label,
                )
            )
        kept_infos.append(info)
        records.append(
            ImageRecord(
                sha256=entry.sha256,
                label=entry.label,
                split=plan.splits[i],
                uri=entry.path,
                width=info.width,
                height=info.height,
                mode=info.mode,
                format=info.format,
                num_bytes=info.num_bytes,
                source_path=entry.path,
                group=entry.group,
                pixel_sha256=info.pixel_sha256 or None,
                split_key=plan.keys[i] or None,
                cluster=plan.cluster_of.get(i),
            )
        )
    report.removed, report.replaced = _vanished(
        known, root, (scanned_bytes, scanned_pixels, scanned_paths), records
    )
    report.chains = plan.chains
    report.warnings.extend(
        f"{size} images form one chain of near-duplicates within "
        f"{near_duplicates.max_distance} bits, more than max_cluster_size "
        f"({near_duplicates.max_cluster_size}): similar images rather than copies of one "
        "picture, so they were not treated as near-duplicates; lower "
        "near_duplicates.max_distance if copies among them go unnoticed"
        for size in plan.chains
    )

    records.sort(key=lambda r: (r.split, r.label, r.sha256))
    classes = sorted({r.label for r in records})
    manifest = DatasetManifest(
        source=root,
        layout=layout.value,
        classes=classes,
        records=records,
        decoding=decoding,
        near_duplicate_clusters=plan.clusters,
    )
    report.kept = len(records)
    report.decoding = decoding_counts(kept_infos)
    report.fingerprint = manifest.fingerprint
    report.counts = manifest.counts()
    report.provenance = manifest.provenance_counts()
    report.imbalance = imbalance_ratios(manifest)
    report.warnings = (
        report.warnings
        + _set_group_report(report, manifest)
        + split_warnings(manifest)
        + imbalance_warnings(manifest, threshold)
    )
    return manifest, report


def _decoder_reason(
    data: bytes, min_side: int, max_pixels: int, decoding: DecodeOptions
) -> str | None:
    """Why the decoder refuses a file, if it does (its words are the endpoint's too)."""
    try:
        inspect_image(data, min_side=min_side, max_pixels=max_pixels, options=decoding)
    except InvalidImageError as error:
        return str(error)
    return None


def known_index(known: Iterable[KnownImage] | None) -> dict[str, KnownImage]:
    """The catalog's images by byte hash and by ``pixels:<pixel hash>``.

    Args:
        known: The catalog's images (``Catalog.known_images()``), or None.

    Returns:
        A lookup by byte hash (exact), by ``"pixels:" + pixel_sha256`` (rows
        not removed first) and, for rows without a pixel hash (catalogued
        before pixel identity), by ``"path:" + source_path``.
    """
    index: dict[str, KnownImage] = {}
    for image in sorted(known or (), key=lambda k: k.removed):  # present rows first
        if image.pixel_sha256:
            index.setdefault(f"pixels:{image.pixel_sha256}", image)
        elif image.provenance == "ingest":
            index.setdefault(f"path:{image.source_path}", image)
        index[image.sha256] = image
    return index


def _known_for(
    index: Mapping[str, KnownImage], copies: list[tuple[Candidate, ImageInfo]]
) -> KnownImage | None:
    """The catalog's record of a picture: by the bytes of any copy, else by its pixels.

    Rows catalogued before pixel identity existed have no pixel hash until they
    are ingested again; for them, a file at the same path stands for the same
    picture (its metadata was edited in between).
    """
    for _, info in copies:
        if info.sha256 in index:
            return index[info.sha256]
    pixels = copies[0][1].pixel_sha256
    if pixels and f"pixels:{pixels}" in index:
        return index[f"pixels:{pixels}"]
    for candidate, _ in copies:
        old = index.get(f"path:{candidate.path}")
        if old is not None:
            return old
    return None


def _keep_first(
    copy: tuple[Candidate, ImageInfo], known: Mapping[str, KnownImage]
) -> tuple[bool, int, str]:
    """Which copy of a picture is kept: the catalogued bytes, then train > val > test, then path."""
    candidate, info = copy
    order = {"train": 0, "val": 1, "test": 2}
    return (info.sha256 not in known, order.get(candidate.split or "", 3), str(candidate.path))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _vanished(
    known: Iterable[KnownImage] | None,
    root: str,
    scanned: tuple[set[str], set[str], set[str]],
    records: Iterable[ImageRecord],
) -> tuple[list[Vanished], list[Vanished]]:
    """Catalogued images of ``root`` whose bytes were not scanned: removed, or replaced.

    ``scanned``: the byte hashes, pixel hashes and paths of every valid file.
    A file still there (kept, a duplicate, or left out as a conflict) is never
    vanished. Bytes gone whose pixels are still here (an edited EXIF block) are
    replaced, by the kept record with those pixels; so are rows without a pixel
    hash (catalogued before pixel identity) whose path holds other bytes now.
    """
    scanned_bytes, scanned_pixels, scanned_paths = scanned
    records = list(records)
    kept_by_pixels = {r.pixel_sha256: r.sha256 for r in records if r.pixel_sha256}
    kept_by_path = {r.source_path: r.sha256 for r in records}
    removed: list[Vanished] = []
    replaced: list[Vanished] = []
    for image in known or ():
        if (
            image.provenance != "ingest"
            or image.removed
            or not _inside(image.source_path, root)
            or image.sha256 in scanned_bytes
        ):
            continue
        if image.pixel_sha256 and image.pixel_sha256 in scanned_pixels:
            replaced.append(
                Vanished(
                    path=image.source_path,
                    sha256=image.sha256,
                    replaced_by=kept_by_pixels.get(image.pixel_sha256),
                )
            )
        elif not image.pixel_sha256 and image.source_path in scanned_paths:
            replaced.append(
                Vanished(
                    path=image.source_path,
                    sha256=image.sha256,
                    replaced_by=kept_by_path.get(image.source_path),
                )
            )
        else:
            removed.append(Vanished(path=image.source_path, sha256=image.sha256))
    return sorted(removed, key=lambda v: v.path), sorted(replaced, key=lambda v: v.path)


def merge_reviewed(
    manifest: DatasetManifest,
    report: IngestionReport,
    reviewed: list[ImageRecord],
    skipped: Iterable[SkippedFile] = (),
) -> tuple[DatasetManifest, IngestionReport]:
    """Merge expert-reviewed images (provenance ``review``) into a scanned manifest.

    The rules are those of a folder scan: an image already in the reference
    data (same bytes or same pixels) under the same label is a duplicate (the
    reference record is kept); under another label it is a conflict and every
    copy is left out, with the reason in the report, for a person to settle.

    Args:
        manifest: The manifest scanned from the reference folder.
        report: Its scan report, updated here.
        reviewed: Records of the reviewed images (``clearsight.review.reviewed_records``).
        skipped: Reviewed images that could not be used, with the reason.

    Returns:
        The merged manifest and report (fingerprint, counts, provenance,
        imbalance and warnings recomputed).
    """
    skipped = list(skipped)
    report = report.model_copy(deep=True)
    report.reviewed = len(reviewed) + len(skipped)
    report.skipped.extend(skipped)
    by_hash = {_identity(r): r for r in manifest.records}
    by_hash.update({r.sha256: r for r in manifest.records})
    records = list(manifest.records)
    conflicted: set[str] = set()
    for record in reviewed:
        known = by_hash.get(record.sha256) or by_hash.get(_identity(record))
        if known is None:
            records.append(record)
            by_hash[record.sha256] = by_hash[_identity(record)] = record
        elif known.label == record.label:
            report.duplicates += 1
            report.skipped.append(
                SkippedFile(path=record.uri, reason=f"duplicate of {known.source_path}")
            )
            report.exact_copies.append(_reviewed_copies(known, record, conflict=False))
        else:
            conflicted.update((record.sha256, known.sha256))
            report.exact_copies.append(_reviewed_copies(known, record, conflict=True))
            reason = (
                f"label conflict: the same image (sha256 {record.sha256[:12]}) was reviewed as "
                f"'{record.label}' by {record.reviewed_by} and is labelled '{known.label}' at "
                f"{known.source_path}; fix the label or the review and re-ingest"
            )
            for path in (known.source_path, record.uri):
                report.conflicts += 1
                report.skipped.append(SkippedFile(path=path, reason=reason))
    if conflicted:
        records = [r for r in records if r.sha256 not in conflicted]
    records.sort(key=lambda r: (r.split, r.label, r.sha256))
    merged = manifest.model_copy(
        update={"records": records, "classes": sorted({r.label for r in records})}
    )
    report.kept = len(records)
    report.fingerprint = merged.fingerprint
    report.counts = merged.counts()
    report.provenance = merged.provenance_counts()
    report.imbalance = imbalance_ratios(merged)
    report.warnings = (
        _set_group_report(report, merged)
        + split_warnings(merged)
        + imbalance_warnings(merged, report.imbalance_warning_ratio)
    )
    return merged, report


def _exact_copies(copies: list[tuple[Candidate, ImageInfo]], *, kept: bool) -> ExactCopies:
    """Files with one picture; with ``kept``, the first one (sorted first) is kept."""
    return ExactCopies(
        pixel_sha256=copies[0][1].pixel_sha256 or copies[0][1].sha256,
        conflict=not kept,
        files=[
            ExactCopy(path=str(c.path), sha256=info.sha256, label=c.label, kept=kept and n == 0)
            for n, (c, info) in enumerate(copies)
        ],
    )


def _reviewed_copies(known: ImageRecord, reviewed: ImageRecord, *, conflict: bool) -> ExactCopies:
    """A reviewed image that is already in the data: a duplicate, or a conflict of labels."""
    return ExactCopies(
        pixel_sha256=known.pixel_sha256 or known.sha256,
        conflict=conflict,
        files=[
            ExactCopy(
                path=known.source_path, sha256=known.sha256, label=known.label, kept=not conflict
            ),
            ExactCopy(path=reviewed.uri, sha256=reviewed.sha256, label=reviewed.label),
        ],
    )


def _identity(record: ImageRecord) -> str:
    """The key of a record's picture: its pixel hash, else (older manifests) its bytes."""
    return f"pixels:{record.pixel_sha256}" if record.pixel_sha256 else record.sha256
