"""Splits without leakage: near-duplicates and groups share one split.

Test metrics are honest only when no picture of the test split, nor a copy of
it, was trained on (Kaufman et al., "Leakage in Data Mining", TKDD 2012). After
exact copies are merged (:mod:`clearsight.dataset`, by pixel identity), three
things tie images together:

- **near-duplicates**: the same photo re-saved, resized or lightly cropped,
  found by perceptual hash (:mod:`clearsight.near_duplicates`) within
  ``max_distance`` bits. A cluster whose images carry different labels is a
  label conflict: every image of it is left out, as for exact copies.
- **groups** of the metadata table (:mod:`clearsight.groups`): a patient,
  lesion or field.
- **the catalog's memory** (:class:`KnownImage`): an image seen before keeps the
  key its split was derived from, so a re-ingest moves nothing, including
  images catalogued before splits followed pixels (their key is their byte hash).

Unsplit folders: images tied by near-duplicates or a group form one unit whose
split is derived from one key: the table group's hash when it has a group (the
table is authoritative), else the smallest split key of its catalogued
images, else the smallest pixel hash. Pre-split folders keep their folders'
splits, except a near-duplicate cluster spread over several splits: by default
(``leakage: move``) all its images go to the first split of train, val, test
that holds one of them, so nothing the model trained on is tested; with
``leakage: report`` nothing moves and each such cluster is warned about.
Table groups in several split folders are reported by :mod:`clearsight.dataset`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from clearsight.groups import group_hash
from clearsight.near_duplicates import (
    DEFAULT_MAX_DISTANCE,
    NearDuplicateGroups,
    near_duplicate_groups,
)

SPLIT_ORDER = ("train", "val", "test")
LEAKAGE_MODES = ("move", "report")
#: Largest cluster taken as copies of one picture. Clusters are chains (a~b,
#: b~c), and images of one kind (chest X-rays, one field's crop rows) can chain
#: by the hundred at the default distance: a synthetic set of 200 X-ray-like
#: images of 200 patients formed one cluster of 190 within 10 bits. Such a chain
#: is not copies; it is warned about and ignored (lower max_distance instead).
DEFAULT_MAX_CLUSTER_SIZE = 20


@dataclass(frozen=True)
class KnownImage:
    """An image the catalog has seen, as far as a new ingestion needs to know it.

    Attributes:
        sha256: Hex SHA-256 of the stored bytes (the storage address).
        pixel_sha256: Identity of its pixels (None for rows catalogued before
            pixel identity existed, until they are ingested again).
        label: Its label at the last ingestion.
        split: Its split at the last ingestion (``train``, ``val``, ``test``).
        split_key: The hex key its split was derived from (its byte hash for
            rows catalogued before splits followed pixels).
        source_path: Where it was read from at the last ingestion.
        provenance: ``ingest`` or ``review``.
        removed: Marked removed by an ingestion that no longer found it.
    """

    sha256: str
    pixel_sha256: str | None
    label: str
    split: str
    split_key: str
    source_path: str
    provenance: str
    removed: bool


@dataclass(frozen=True)
class NearDuplicatesOption:
    """The ``near_duplicates`` option of ingestion.

    Attributes:
        max_distance: Largest Hamming distance in bits between the 64-bit
            perceptual hashes of two near-duplicates; None switches the search off.
        leakage: ``move`` (a cluster spread over split folders goes to one
            split) or ``report`` (warn only); unsplit folders never spread one.
    """

    max_distance: int | None = DEFAULT_MAX_DISTANCE
    leakage: str = "move"
    max_cluster_size: int = DEFAULT_MAX_CLUSTER_SIZE


def validate_near_duplicates_option(
    value: Mapping[str, Any] | NearDuplicatesOption | None,
) -> NearDuplicatesOption:
    """Check the ``near_duplicates`` option (``{max_distance, leakage}``).

    Args:
        value: The option as configured; None gives the defaults.

    Returns:
        The checked option.

    Raises:
        ValueError: On unknown keys, a distance outside 0..32 (or null), or a
            leakage mode other than ``move`` or ``report``.
    """
    if value is None:
        return NearDuplicatesOption()
    if isinstance(value, NearDuplicatesOption):
        return value
    example = f"e.g. {{max_distance: {DEFAULT_MAX_DISTANCE}, leakage: move}}"
    if not isinstance(value, Mapping):
        raise ValueError(f"near_duplicates must be a mapping, {example}; got {value!r}")
    keys = ("max_distance", "leakage", "max_cluster_size")
    unknown = sorted(str(k) for k in value if k not in keys)
    if unknown:
        raise ValueError(
            f"near_duplicates has unknown keys {', '.join(unknown)}; the keys are "
            f"max_distance, leakage and max_cluster_size, {example}"
        )
    distance = value.get("max_distance", DEFAULT_MAX_DISTANCE)
    if distance is not None and (
        isinstance(distance, bool) or not isinstance(distance, int) or not 0 <= distance <= 32
    ):
        raise ValueError(
            "near_duplicates.max_distance must be a whole number of bits from 0 to 32 "
            f"(Hamming distance between 64-bit perceptual hashes), or null to switch the "
            f"search off; got {distance!r}"
        )
    leakage = value.get("leakage", "move")
    if leakage not in LEAKAGE_MODES:
        raise ValueError(f"near_duplicates.leakage must be 'move' or 'report'; got {leakage!r}")
    size = value.get("max_cluster_size", DEFAULT_MAX_CLUSTER_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(
            f"near_duplicates.max_cluster_size must be a whole number of at least 2; got {size!r}"
        )
    return NearDuplicatesOption(max_distance=distance, leakage=leakage, max_cluster_size=size)


class ClusterMember(BaseModel):
    """One image of a near-duplicate cluster."""

    path: str
    sha256: str
    label: str
    split: str = Field(description="Its split in the dataset ('' when left out).")
    moved_from: str | None = Field(
        default=None, description="The split it would have had alone, when that differs."
    )
    distance: int = Field(description="Bits to its nearest neighbour in the cluster.")


class NearDuplicateCluster(BaseModel):
    """Images that are copies of one picture (re-saved, resized, lightly cropped)."""

    id: str = Field(description="The first 12 hex digits of its smallest pixel hash.")
    members: list[ClusterMember]
    conflict: bool = Field(description="Its images carry different labels: all left out.")
    spread: bool = Field(
        default=False,
        description="Left in several split folders (``leakage: report``): leakage remains.",
    )


@dataclass(frozen=True)
class ClusterOutcomes:
    """The near-duplicate clusters of an ingestion by what became of them.

    Attributes:
        conflicts: Label conflicts: every image left out.
        kept: Kept together in one split (leakage prevented).
        spread: Left in several split folders (``leakage: report``): leakage remains.
        moved: Images of ``kept`` placed in their copies' split instead of their own.
    """

    conflicts: list[NearDuplicateCluster]
    kept: list[NearDuplicateCluster]
    spread: list[NearDuplicateCluster]
    moved: int


def cluster_outcomes(clusters: Sequence[NearDuplicateCluster]) -> ClusterOutcomes:
    """Sort clusters into conflicts, kept in one split and spread (order kept in each).

    Args:
        clusters: The clusters of an ingestion (``IngestionReport`` or
            ``DatasetManifest.near_duplicate_clusters``).

    Returns:
        The clusters by outcome (:class:`ClusterOutcomes`).
    """
    conflicts = [c for c in clusters if c.conflict]
    kept = [c for c in clusters if not c.conflict and not c.spread]
    spread = [c for c in clusters if not c.conflict and c.spread]
    moved = sum(m.moved_from is not None for c in kept for m in c.members)
    return ClusterOutcomes(conflicts=conflicts, kept=kept, spread=spread, moved=moved)


@dataclass
class Entry:
    """One image after exact de-duplication, as the split planner sees it.

    Attributes:
        path: Where the kept copy was read from.
        sha256: Hex SHA-256 of the kept copy's bytes.
        pixel_sha256: Identity of its pixels.
        perceptual_hash: 16 hex digits, or ``""`` when too small to hash.
        label: Its label.
        folder_split: The split folder it was found in (pre-split folders), else None.
        group: Its group in the metadata table, else None.
        known: The catalog's record of it (by bytes or pixels), else None.
    """

    path: str
    sha256: str
    pixel_sha256: str
    perceptual_hash: str
    label: str
    folder_split: str | None = None
    group: str | None = None
    known: KnownImage | None = None

    @property
    def own_key(self) -> str:
        """The key of this image alone: the catalog's, else its pixel hash."""
        if self.known is not None:
            return self.known.split_key
        return self.pixel_sha256 or self.sha256


@dataclass
class SplitPlan:
    """Where each entry goes.

    Attributes:
        splits: Per entry, its split (``""`` for an excluded one).
        keys: Per entry, the key its split was derived from (``""`` pre-split).
        excluded: Entry index to the reason it is left out (label conflicts).
        cluster_of: Entry index to its near-duplicate cluster id.
        clusters: Every near-duplicate cluster, conflicts included.
        moved: Images placed in another split than they would have had alone.
        spread: Clusters left spread over several splits (``leakage: report``).
        chains: Sizes of the clusters ignored as chains of similar images.
    """

    splits: list[str]
    keys: list[str]
    excluded: dict[int, str] = field(default_factory=dict)
    cluster_of: dict[int, str] = field(default_factory=dict)
    clusters: list[NearDuplicateCluster] = field(default_factory=list)
    moved: int = 0
    spread: list[str] = field(default_factory=list)
    chains: list[int] = field(default_factory=list)


def plan_splits(
    entries: Sequence[Entry],
    *,
    assign: Callable[[str], str],
    pre_split: bool,
    option: NearDuplicatesOption,
) -> SplitPlan:
    """Decide every entry's split so that copies and groups never span splits.

    Args:
        entries: The images after exact de-duplication.
        assign: The hash-derived split of a hex key (``clearsight.dataset.assign_split``
            with the configured ratios).
        pre_split: The folder has split folders (each entry's ``folder_split``).
        option: The near-duplicate search and leakage rule.

    Returns:
        The plan (see :class:`SplitPlan`).
    """
    count = len(entries)
    plan = SplitPlan(splits=[""] * count, keys=[""] * count)
    groups = NearDuplicateGroups()
    if option.max_distance is not None and count > 1:
        # Memory linear in the entries, however many pairs (chains of similar images).
        groups = near_duplicate_groups(
            [e.perceptual_hash for e in entries],
            option.max_distance,
            max_size=option.max_cluster_size,
        )
    plan.chains = [len(members) for members in groups.oversized]
    found, nearest = groups.clusters, groups.nearest
    for members in found:
        cluster_id = min(entries[i].pixel_sha256 or entries[i].sha256 for i in members)[:12]
        labels = sorted({entries[i].label for i in members})
        for i in members:
            plan.cluster_of[i] = cluster_id
            if len(labels) > 1:
                plan.excluded[i] = (
                    f"label conflict: near-duplicate of {len(members) - 1} other image(s) "
                    f"labelled {', '.join(repr(x) for x in labels)} (cluster {cluster_id}, "
                    f"within {option.max_distance} bits); fix the labels and re-ingest"
                )

    units = _units(entries, found, plan.excluded, group_units=not pre_split)
    for unit in units:
        if pre_split:
            _place_pre_split(entries, unit, option, plan)
        else:
            _place_unsplit(entries, unit, assign, plan)

    for members in found:
        conflict = members[0] in plan.excluded
        plan.clusters.append(
            NearDuplicateCluster(
                id=plan.cluster_of[members[0]],
                conflict=conflict,
                spread=plan.cluster_of[members[0]] in plan.spread,
                members=[
                    ClusterMember(
                        path=entries[i].path,
                        sha256=entries[i].sha256,
                        label=entries[i].label,
                        split=plan.splits[i],
                        moved_from=_alone(entries[i], assign, pre_split)
                        if not conflict and _alone(entries[i], assign, pre_split) != plan.splits[i]
                        else None,
                        distance=nearest[i],
                    )
                    for i in members
                ],
            )
        )
    plan.moved = sum(m.moved_from is not None for c in plan.clusters for m in c.members)
    return plan


def _alone(entry: Entry, assign: Callable[[str], str], pre_split: bool) -> str:
    """The split an entry would have had without its near-duplicates."""
    if pre_split:
        return entry.folder_split or ""
    return assign(group_hash(entry.group) if entry.group is not None else entry.own_key)


def _units(
    entries: Sequence[Entry],
    found: list[list[int]],
    excluded: Mapping[int, str],
    *,
    group_units: bool,
) -> list[list[int]]:
    """Entries that must share a split: near-duplicate clusters joined by table groups."""
    parent = list(range(len(entries)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        parent[root(i)] = root(j)

    for members in found:
        for i in members[1:]:
            join(members[0], i)
    if group_units:
        first_of: dict[str, int] = {}
        for i, entry in enumerate(entries):
            if entry.group is not None and i not in excluded:
                join(i, first_of.setdefault(entry.group, i))
    units: dict[int, list[int]] = defaultdict(list)
    for i in range(len(entries)):
        if i not in excluded:
            units[root(i)].append(i)
    return list(units.values())


def _place_unsplit(
    entries: Sequence[Entry], unit: list[int], assign: Callable[[str], str], plan: SplitPlan
) -> None:
    groups = sorted({entries[i].group for i in unit if entries[i].group is not None})
    if groups:
        key = group_hash(groups[0])
    else:
        known = [entries[i].known.split_key for i in unit if entries[i].known is not None]
        key = min(known) if known else min(entries[i].own_key for i in unit)
    split = assign(key)
    for i in unit:
        plan.splits[i] = split
        plan.keys[i] = key


def _place_pre_split(
    entries: Sequence[Entry], unit: list[int], option: NearDuplicatesOption, plan: SplitPlan
) -> None:
    present = {entries[i].folder_split or "" for i in unit}
    if len(present) > 1 and option.leakage == "move":
        target = next(s for s in SPLIT_ORDER if s in present)
        for i in unit:
            plan.splits[i] = target
        return
    if len(present) > 1:
        plan.spread.append(plan.cluster_of[unit[0]])
    for i in unit:
        plan.splits[i] = entries[i].folder_split or ""
