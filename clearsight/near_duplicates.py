"""Near-duplicate images: pairs of perceptual hashes within a Hamming distance.

:func:`clearsight.decode.inspect` gives every image of at least 64 px a 64-bit
perceptual hash (``imagehash.phash``: the signs of the 8x8 lowest frequencies
of the DCT of a 32x32 greyscale rendering, 16 hex digits). Copies of one
photo (re-saved as JPEG, resized, lightly cropped, EXIF-rotated) hash within a
few bits of each other; different photos about 32 bits apart.

:func:`near_duplicate_pairs` finds every pair within ``max_distance`` bits
without comparing all pairs, by multi-index hashing (Norouzi, Punjani & Fleet,
"Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012): the 64
bits are cut into ``m`` bands; if two hashes differ in at most ``r`` bits, then
for sub-radii ``s_1 .. s_m`` with ``sum(s_k + 1) = r + 1`` some band ``k``
differs in at most ``s_k`` bits (pigeonhole principle). Each band is bucketed
by value (numpy counting sort), every hash looks up the buckets of its band
values with up to ``s_k`` bits flipped, and the candidate pairs are verified
with a vectorised popcount. The number of bands is chosen per call by a cost
model (lookups against expected candidates for uniformly spread hashes): for
100,000 hashes and ``max_distance`` 10, 4 bands of 16 bits searched within
2, 2, 2 and 1 bits.

Images of one kind (chest X-rays, one field's crop rows) hash close to each
other, and the pairs grow with the square of their number (20,000 X-ray-like
hashes gave 1.78 million pairs within 10 bits). :func:`near_duplicate_groups`,
which ingestion uses, therefore keeps no pair: each verified batch of pairs is
merged at once into connected components (a union-find whose merges are done
per batch by :func:`scipy.sparse.csgraph.connected_components`) and into each
image's distance to its nearest copy, so its memory is O(number of hashes) on
any input. Once a component exceeds ``max_size`` images (a chain of similar
images, not copies of one picture; it is ignored), candidate ranges lying
wholly inside it are skipped unverified, which also bounds the time spent on
homogeneous sets. :func:`near_duplicate_pairs` lists every pair (tests,
small sets) and :func:`clusters` joins such a list into components.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

HASH_BITS = 64
HASH_HEX_DIGITS = HASH_BITS // 4
MAX_DISTANCE_LIMIT = HASH_BITS // 2  # beyond half the bits, "near" means nothing

# Largest Hamming distance (bits of 64) between the perceptual hashes of two
# copies of one picture. Measured by `python benchmarks/bench_near_duplicates.py`
# (part c, seed 42; docs/benchmarks.md) on 600 generated photo-like 1024x768
# scenes (gradients, soft shapes, sensor-like noise and grain) and 3 real photos
# (scikit-learn's china.jpg and flower.jpg, matplotlib's grace_hopper.jpg), each
# copy decoded by clearsight.decode.inspect and compared with the original PNG:
#   re-saved as JPEG, quality 60-95       at most 4 bits (95th percentile 2) *
#   resized to 25-200% (JPEG q90)         at most 4 bits (95th percentile 2) *
#   EXIF-rotated, orientations 2-8        at most 4 bits (95th percentile 2) *
#   cropped 2% per side                   99.0% within 10 bits (mean 4.5)
#   cropped 3% per side                   91.2% within 10 bits (mean 6.7, p95 12)
#   cropped 5% per side                   57.2% within 10 bits (mean 10.6)
# * 599 scenes: one is nearly a flat colour with noise, and its bits follow the
# noise (copies 4-14 bits apart, crops 16-22); phash cannot tell its copies.
# The real photos: at most 4 bits, 3% crops 8, 5% crops 12.
# Different scenes, all 179,700 pairs: none within 10 bits, 2 within 12 (about
# 550 false pairs among 10,000 such images), 9 within 14; the real photos are
# 28-32 bits apart. For random hashes with 32 bits set (as phash makes them)
# P(distance <= 10) = 2.3e-8 per pair: about 1 false pair among 10,000 images,
# 114 among 100,000 (12: 24 and 2,355). phash sets 32 of its 64 bits (the
# median splits them), so distances are almost always even: 10 acts as 11.
DEFAULT_MAX_DISTANCE = 10

# Working-set bounds: hashes expanded per lookup batch, candidates per batch.
_LOOKUP_BATCH = 1 << 18
_CANDIDATE_BATCH = 1 << 19
# Bands this wide or narrower are looked up in a table of 2**width buckets.
_TABLE_MAX_BITS = 22
# Costs in ns for the plan (least squares over 45 timed plans, 20,000 and
# 100,000 hashes, on the project's 2-core machine): per hash and band (sort,
# same-bucket pass), per table bucket, per looked-up bucket (table; sorted
# search), per candidate pair verified.
_COST_PER_HASH_BAND = 100.0
_COST_PER_TABLE_ENTRY = 8.0
_COST_PER_LOOKUP = 22.0
_COST_PER_SORTED_LOOKUP = 150.0
_COST_PER_CANDIDATE = 13.0

_POPCOUNT16 = np.array([bin(v).count("1") for v in range(1 << 16)], dtype=np.uint8)
_HEX_DIGITS = frozenset(string.hexdigits)


def hamming_distance(a: str, b: str) -> int:
    """The number of bits in which two perceptual hashes differ.

    Args:
        a: 16 hex digits (64 bits), as in ``DecodedImage.perceptual_hash``.
        b: The same.

    Returns:
        An integer in 0..64.

    Raises:
        ValueError: A hash is not 16 hex digits (``""`` means the image was
            too small to hash).
    """
    return (_parse_one(a) ^ _parse_one(b)).bit_count()


def near_duplicate_pairs(hashes: Sequence[str], max_distance: int) -> list[tuple[int, int, int]]:
    """Every pair of hashes within ``max_distance`` bits, without comparing all pairs.

    The list grows with the square of the size of a group of similar hashes
    (n identical hashes give n * (n - 1) / 2 pairs): for whole datasets use
    :func:`near_duplicate_groups`, whose memory is linear in the input.

    Args:
        hashes: Perceptual hashes, 16 hex digits each; ``""`` (an image too
            small to hash) is skipped.
        max_distance: Largest Hamming distance in bits, 0 to 32.

    Returns:
        ``(i, j, distance)`` for every pair with ``i < j`` (indices into
        ``hashes``) and ``distance <= max_distance``, sorted.

    Raises:
        ValueError: ``max_distance`` is not a whole number from 0 to 32, or a
            non-empty hash is not 16 hex digits.
    """
    _check_distance(max_distance)
    keep, values = _parse_kept(hashes)
    found = list(_close_pairs(values, max_distance, None))
    if not found:
        return []
    i, j, distance = (np.concatenate(column) for column in zip(*found, strict=True))
    # A pair close in several bands is found in each: keep one of each.
    _, first = np.unique(i * values.size + j, return_index=True)
    i, j, distance = keep[i[first]], keep[j[first]], distance[first]
    return list(zip(i.tolist(), j.tolist(), distance.tolist(), strict=True))


@dataclass(frozen=True)
class NearDuplicateGroups:
    """The connected components of the near-duplicate graph, as ingestion needs them.

    Attributes:
        clusters: Components of 2 to ``max_size`` images: indices into the
            hashes, each sorted, the list sorted by first index.
        nearest: For every image of ``clusters``, the Hamming distance in bits
            (0..max_distance) to its nearest other image, which is always in
            its own component.
        oversized: Components of more than ``max_size`` images (chains of
            similar images), each sorted, the list sorted by first index. Their
            membership and sizes are exact; no distance is kept for them.
    """

    clusters: list[list[int]] = field(default_factory=list)
    nearest: dict[int, int] = field(default_factory=dict)
    oversized: list[list[int]] = field(default_factory=list)


def near_duplicate_groups(
    hashes: Sequence[str], max_distance: int, *, max_size: int | None = None
) -> NearDuplicateGroups:
    """Groups of hashes joined by chains of pairs within ``max_distance`` bits.

    The same components as ``clusters(len(hashes), near_duplicate_pairs(hashes,
    max_distance))`` and the same nearest distances, in memory linear in
    ``len(hashes)`` whatever the number of pairs: no pair is kept (see the
    module docstring). Work inside a component already larger than
    ``max_size`` is skipped: on 100,000 hashes that are all within a few bits
    of each other this takes seconds where listing the pairs would not end
    (``docs/benchmarks.md``, near-duplicates).

    Args:
        hashes: Perceptual hashes, 16 hex digits each; ``""`` (an image too
            small to hash) is in no group.
        max_distance: Largest Hamming distance in bits, 0 to 32.
        max_size: Largest component reported in ``clusters`` (at least 2);
            larger ones go to ``oversized``. None: no limit, nothing skipped.

    Returns:
        The groups (:class:`NearDuplicateGroups`).

    Raises:
        ValueError: ``max_distance`` is not a whole number from 0 to 32,
            ``max_size`` is below 2, or a non-empty hash is not 16 hex digits.
    """
    _check_distance(max_distance)
    if max_size is not None and (
        isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 2
    ):
        raise ValueError(
            f"max_size must be a whole number of at least 2, or None; got {max_size!r}"
        )
    keep, values = _parse_kept(hashes)
    if values.size < 2:
        return NearDuplicateGroups()
    components = _Components(values.size, max_size)
    for i, j, distance in _close_pairs(values, max_distance, components):
        components.add(i, j, distance)
    groups = NearDuplicateGroups()
    for members in components.groups():
        indices = keep[members].tolist()
        if max_size is not None and len(indices) > max_size:
            groups.oversized.append(indices)
        else:
            groups.clusters.append(indices)
            groups.nearest.update(zip(indices, components.nearest[members].tolist(), strict=True))
    return groups


def clusters(count: int, pairs: Iterable[tuple[int, int, int]]) -> list[list[int]]:
    """Groups of images joined by near-duplicate pairs (connected components).

    Args:
        count: Number of images (indices are 0..count-1).
        pairs: ``(i, j, distance)`` tuples, as from :func:`near_duplicate_pairs`;
            the distance is ignored. A chain a~b, b~c gives one group.

    Returns:
        The components of two or more images, each sorted, the list sorted by
        first index.

    Raises:
        ValueError: ``count`` is negative or an index is outside 0..count-1.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0; got {count}")
    edges = np.array([(p[0], p[1]) for p in pairs], dtype=np.int64).reshape(-1, 2)
    if edges.size == 0:
        return []
    if edges.min() < 0 or edges.max() >= count:
        raise ValueError(
            f"pair indices must be in 0..{count - 1}; got {edges.min()}..{edges.max()}"
        )
    graph = coo_matrix(
        (np.ones(len(edges), dtype=np.int32), (edges[:, 0], edges[:, 1])), shape=(count, count)
    )
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    members = np.flatnonzero(sizes[labels] >= 2)  # ascending
    members = members[np.argsort(labels[members], kind="stable")]  # by component, kept ascending
    groups = np.split(members, np.cumsum(sizes[np.unique(labels[members])])[:-1])
    return sorted((group.tolist() for group in groups), key=lambda group: group[0])


@dataclass(frozen=True)
class _Band:
    """One band of bits: ``width`` bits from bit ``shift``, searched within ``radius`` bits."""

    shift: int
    width: int
    radius: int


class _Components:
    """Connected components of hashes ``0..count-1``, fed batches of close pairs.

    ``label`` maps every hash to its component's number (0..components-1,
    renumbered by each merge, so one gather reads it); ``size`` holds each
    component's size by number; ``nearest`` each hash's smallest distance seen
    (255: none yet). A batch is merged by one call of scipy's
    ``connected_components`` on the component numbers it joins, then one
    relabelling pass over all hashes, once the pairs joining two components
    are as many as the hashes: memory O(count + batch), time O(count) per
    merge. (``scipy.cluster.hierarchy.DisjointSet`` merges one pair
    per Python call: too slow for millions of pairs.)
    """

    def __init__(self, count: int, max_size: int | None) -> None:
        self.label = np.arange(count, dtype=np.int64)
        self.size = np.ones(count, dtype=np.int64)
        self.nearest = np.full(count, 255, dtype=np.uint8)
        self.max_size = max_size
        self.largest = 1
        self.version = 0  # bumped by every merge
        self._cache: tuple[np.ndarray, int, np.ndarray, np.ndarray] | None = None
        # Pairs joining two components, merged once they are as many as the hashes.
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_count = 0
        self._merge_at = max(count, 4096)

    def add(self, i: np.ndarray, j: np.ndarray, distance: np.ndarray) -> None:
        np.minimum.at(self.nearest, i, distance)
        np.minimum.at(self.nearest, j, distance)
        apart = self.label[i] != self.label[j]
        if not apart.any():
            return
        self._pending.append((i[apart], j[apart]))
        self._pending_count += int(apart.sum())
        if self._pending_count >= self._merge_at:
            self.merge()

    def merge(self) -> None:
        """Join the components the pending pairs connect (labels lag until then)."""
        if not self._pending:
            return
        i = np.concatenate([p[0] for p in self._pending])
        j = np.concatenate([p[1] for p in self._pending])
        self._pending, self._pending_count = [], 0
        count = self.label.size
        graph = coo_matrix(
            (np.ones(i.size, dtype=np.int32), (self.label[i], self.label[j])), shape=(count, count)
        )
        # Every hash is a node; those that are not a component's label have no edge.
        components, joined = connected_components(graph, directed=False)
        self.label = joined[self.label]
        self.size = np.bincount(self.label, minlength=components)
        self.largest = int(self.size.max())
        self.version += 1

    def settled(
        self, order: np.ndarray, who: np.ndarray, start: np.ndarray, hits: np.ndarray
    ) -> np.ndarray | None:
        """Queries with nothing to find: candidates all in their own oversized component.

        A query's candidates are ``order[start:start + hits]``; when they all
        share its component and that has more than ``max_size`` hashes, no
        pair among them can change a component or a reported distance. Labels
        that lag behind pending pairs only make fewer queries settled.

        Returns:
            A mask over the queries, or None when no component is oversized.
        """
        if self.max_size is None or self.largest <= self.max_size:
            return None
        if self._cache is None or self._cache[0] is not order or self._cache[1] != self.version:
            ordered = self.label[order]
            boundaries = np.append(np.flatnonzero(ordered[1:] != ordered[:-1]) + 1, ordered.size)
            run_end = boundaries[np.searchsorted(boundaries, np.arange(ordered.size), side="right")]
            self._cache = (order, self.version, ordered, run_end)
        _, _, ordered, run_end = self._cache
        own = self.label[who]
        at = np.minimum(start, ordered.size - 1)
        inside = (hits == 0) | ((ordered[at] == own) & (run_end[at] >= start + hits))
        return inside & (self.size[own] > self.max_size)

    def groups(self) -> list[np.ndarray]:
        """Components of two or more hashes, each ascending, by first hash."""
        self.merge()
        members = np.flatnonzero(self.size[self.label] >= 2)  # ascending
        members = members[np.argsort(self.label[members], kind="stable")]
        if members.size == 0:
            return []
        cuts = np.flatnonzero(np.diff(self.label[members])) + 1
        return sorted(np.split(members, cuts), key=lambda group: int(group[0]))


def _parse_kept(hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the non-empty hashes and their values as ``uint64``."""
    keep = np.array([i for i, h in enumerate(hashes) if h], dtype=np.int64)
    if keep.size < 2:
        return keep, np.zeros(keep.size, dtype=np.uint64)
    return keep, _parse_many([hashes[i] for i in keep], keep)


def _close_pairs(
    values: np.ndarray, max_distance: int, components: _Components | None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Batches ``(i, j, distance)`` (``i < j``) of the pairs within ``max_distance`` bits.

    A pair close in several bands comes once per band. With ``components``,
    candidates inside one oversized component are skipped (see
    :meth:`_Components.settled`); the caller merges each batch before the next
    is made.
    """
    if values.size < 2:
        return
    for band in _plan(values.size, max_distance):
        yield from _band_matches(values, band, max_distance, components)


def _check_distance(max_distance: object) -> None:
    if (
        isinstance(max_distance, bool)
        or not isinstance(max_distance, int)
        or not 0 <= max_distance <= MAX_DISTANCE_LIMIT
    ):
        raise ValueError(
            f"max_distance must be a whole number of bits from 0 to {MAX_DISTANCE_LIMIT} "
            f"(Hamming distance between {HASH_BITS}-bit perceptual hashes); got {max_distance!r}"
        )


def _parse_one(value: str) -> int:
    if (
        not isinstance(value, str)
        or len(value) != HASH_HEX_DIGITS
        or not _HEX_DIGITS.issuperset(value)
    ):
        raise ValueError(
            f"a perceptual hash is {HASH_HEX_DIGITS} hex digits ({HASH_BITS} bits); got {value!r}"
            + (" (the image was too small to hash)" if value == "" else "")
        )
    return int(value, 16)


def _parse_many(values: list[str], indices: np.ndarray) -> np.ndarray:
    """Hex strings -> ``uint64`` array; a bad one is reported with its index."""
    try:
        if any(len(v) != HASH_HEX_DIGITS for v in values):
            raise ValueError
        raw = bytes.fromhex("".join(values))
        if len(raw) != len(values) * (HASH_BITS // 8):  # fromhex skips whitespace
            raise ValueError
    except (TypeError, ValueError):
        for index, value in zip(indices.tolist(), values, strict=True):
            try:
                _parse_one(value)
            except ValueError as error:
                raise ValueError(f"hashes[{index}]: {error}") from None
        raise
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Bits set in each ``uint64``, as ``uint8``: four look-ups in a 16-bit table.

    numpy 1.26 has no ``bitwise_count``; on this project's machine the table
    took 8.6 ns per value, a SWAR popcount in numpy 26 ns.
    """
    parts = x.view(np.uint16).reshape(-1, 4)
    return (
        _POPCOUNT16[parts[:, 0]]
        + _POPCOUNT16[parts[:, 1]]
        + _POPCOUNT16[parts[:, 2]]
        + _POPCOUNT16[parts[:, 3]]
    )


def _ball(width: int, radius: int) -> int:
    """Number of ``width``-bit values within ``radius`` bits of one value."""
    return sum(math.comb(width, k) for k in range(radius + 1))


def _bands(count: int, max_distance: int) -> list[_Band]:
    """``count`` bands over the 64 bits, sub-radii summing (+1 each) to max_distance + 1.

    Bands beyond max_distance + 1 would get no unit of the pigeonhole budget
    and are left out (their bits are simply not indexed).
    """
    widths = [HASH_BITS // count + (k < HASH_BITS % count) for k in range(count)]
    units = max_distance + 1
    shares = [units // count + (k < units % count) for k in range(count)]  # wider bands first
    bands, shift = [], 0
    for width, share in zip(widths, shares, strict=True):
        if share > 0:
            bands.append(_Band(shift=shift, width=width, radius=min(share - 1, width)))
        shift += width
    return bands


def _plan(count: int, max_distance: int) -> list[_Band]:
    """The bands with the least expected time for ``count`` uniformly spread hashes.

    Per band of ``w`` bits searched within ``s`` bits, ``V`` values within
    ``s`` bits of one: ``count * (V - 1) / 2`` bucket look-ups and
    ``count**2 / 2 * V / 2**w`` candidate pairs.
    """
    best, best_cost = [], math.inf
    for bands_count in range(1, HASH_BITS + 1):
        bands = _bands(bands_count, max_distance)
        cost = 0.0
        for band in bands:
            ball = _ball(band.width, band.radius)
            table = band.width <= _TABLE_MAX_BITS
            lookups = count + count * (ball - 1) / 2
            cost += count * _COST_PER_HASH_BAND
            cost += 2.0**band.width * _COST_PER_TABLE_ENTRY if table else 0.0
            cost += lookups * (_COST_PER_LOOKUP if table else _COST_PER_SORTED_LOOKUP)
            cost += count * count / 2 * ball / 2.0**band.width * _COST_PER_CANDIDATE
        if cost < best_cost:
            best, best_cost = bands, cost
    return best


def _band_matches(
    values: np.ndarray, band: _Band, max_distance: int, components: _Components | None
):
    """Yield ``(i, j, distance)`` arrays (``i < j``) of the pairs close on all 64 bits.

    Candidates are the pairs within ``band.radius`` bits on this band. Hashes
    are bucketed by their band value. Pairs in one bucket are taken once (each
    member with the later members); pairs in two different buckets are looked
    up from the smaller band value only, so no pair is produced twice.
    """
    keys = (values >> np.uint64(band.shift)) & np.uint64((1 << band.width) - 1)
    order = np.argsort(keys, kind="stable")  # by value, then by index
    sorted_keys = keys[order]
    sorted_values = values[order]
    if band.width <= _TABLE_MAX_BITS:
        counts = np.bincount(sorted_keys.astype(np.int64), minlength=1 << band.width)
        starts = np.cumsum(counts) - counts

        def lookup(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            index = queries.astype(np.int64)
            return starts[index], counts[index]

    else:

        def lookup(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            low = np.searchsorted(sorted_keys, queries, side="left")
            return low, np.searchsorted(sorted_keys, queries, side="right") - low

    # Same bucket: the member at sorted position p with those at p+1 .. end - 1.
    position = np.arange(values.size, dtype=np.int64)
    first, size = lookup(sorted_keys)
    yield from _expand(
        values,
        sorted_values,
        order,
        order,
        position + 1,
        first + size - position - 1,
        max_distance,
        components,
    )

    # Other buckets: the band value with 1..radius bits flipped, looked up only
    # when the flipped value is larger (its highest flipped bit is 0 in the
    # hash's own value), so each pair of buckets is visited from one side.
    for high in range(band.width if band.radius else 0):
        flips = np.array(
            [
                sum(1 << b for b in lower) | 1 << high
                for k in range(band.radius)
                for lower in itertools.combinations(range(high), k)
            ],
            dtype=np.uint64,
        )
        below = np.flatnonzero((keys >> np.uint64(high)) & np.uint64(1) == 0)
        rows = max(1, _LOOKUP_BATCH // flips.size)
        for row in range(0, below.size, rows):
            who = below[row : row + rows]
            start, hits = lookup((keys[who, None] ^ flips[None, :]).ravel())
            yield from _expand(
                values,
                sorted_values,
                np.repeat(who, flips.size),
                order,
                start,
                hits,
                max_distance,
                components,
            )


def _expand(
    values: np.ndarray,
    sorted_values: np.ndarray,
    who: np.ndarray,
    order: np.ndarray,
    start: np.ndarray,
    hits: np.ndarray,
    max_distance: int,
    components: _Components | None,
):
    """Pair each ``who[k]`` with ``order[start[k] : start[k] + hits[k]]``; yield the close ones.

    Works in pieces of at most ``_CANDIDATE_BATCH`` candidates (one larger
    bucket is taken whole). Distances are computed on the band-sorted hashes,
    indices only for the few pairs that are close enough. With
    ``components``, each piece first drops the queries whose candidates are
    settled (all in the query's own oversized component).
    """
    ends = np.cumsum(hits)
    piece = 0
    while piece < who.size:
        done = int(ends[piece - 1]) if piece else 0
        stop = max(int(np.searchsorted(ends, done + _CANDIDATE_BATCH, side="right")), piece + 1)
        count = hits[piece:stop]
        settled = None
        if components is not None:
            settled = components.settled(order, who[piece:stop], start[piece:stop], count)
        if settled is not None:
            count = np.where(settled, 0, count)
        before = np.cumsum(count) - count
        # Candidate c of query k sits at sorted position start[k] + (c - before[k]).
        position = np.repeat(start[piece:stop] - before, count)
        position += np.arange(position.size, dtype=np.int64)
        distance = _popcount(np.repeat(values[who[piece:stop]], count) ^ sorted_values[position])
        close = np.flatnonzero(distance <= max_distance)
        # Queries with no hit share ``before`` with the next one: "right" - 1
        # picks the last of a run of equal values, the one with hits.
        query = np.searchsorted(before, close, side="right") - 1
        i, j = who[piece:stop][query], order[position[close]]
        yield np.minimum(i, j), np.maximum(i, j), distance[close]
        piece = stop
