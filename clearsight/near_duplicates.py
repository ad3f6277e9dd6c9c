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
2, 2, 2 and 1 bits. :func:`clusters` joins the pairs into connected components.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
_CANDIDATE_BATCH = 1 << 21
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

    Args:
        hashes: Perceptual hashes, 16 hex digits each; ``""`` (an image too
            small to hash) is skipped.
        max_distance: Largest Hamming distance in bits, 0 to 32.

    Returns:
        ``(i, j, distance)`` for every pair with ``i < j`` (indices into
        ``hashes``) and ``distance <= max_distance``, sorted. The list grows
        with the square of the size of a group of copies (n identical hashes
        give n * (n - 1) / 2 pairs).

    Raises:
        ValueError: ``max_distance`` is not a whole number from 0 to 32, or a
            non-empty hash is not 16 hex digits.
    """
    _check_distance(max_distance)
    keep = np.array([i for i, h in enumerate(hashes) if h], dtype=np.int64)
    if keep.size < 2:
        return []
    values = _parse_many([hashes[i] for i in keep], keep)
    found_i, found_j, found_d = [], [], []
    for band in _plan(values.size, max_distance):
        for i, j, distance in _band_matches(values, band, max_distance):
            found_i.append(i)
            found_j.append(j)
            found_d.append(distance)
    if not found_i:
        return []
    i = np.concatenate(found_i)
    j = np.concatenate(found_j)
    distance = np.concatenate(found_d)
    # A pair close in several bands is found in each: keep one of each.
    _, first = np.unique(i * values.size + j, return_index=True)
    i, j, distance = keep[i[first]], keep[j[first]], distance[first]
    return list(zip(i.tolist(), j.tolist(), distance.tolist(), strict=True))


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


def _band_matches(values: np.ndarray, band: _Band, max_distance: int):
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
        values, sorted_values, order, order, position + 1, first + size - position - 1, max_distance
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
                values, sorted_values, np.repeat(who, flips.size), order, start, hits, max_distance
            )


def _expand(
    values: np.ndarray,
    sorted_values: np.ndarray,
    who: np.ndarray,
    order: np.ndarray,
    start: np.ndarray,
    hits: np.ndarray,
    max_distance: int,
):
    """Pair each ``who[k]`` with ``order[start[k] : start[k] + hits[k]]``; yield the close ones.

    Works in pieces of at most ``_CANDIDATE_BATCH`` candidates (one larger
    bucket is taken whole). Distances are computed on the band-sorted hashes,
    indices only for the few pairs that are close enough.
    """
    ends = np.cumsum(hits)
    piece = 0
    while piece < who.size:
        done = int(ends[piece - 1]) if piece else 0
        stop = max(int(np.searchsorted(ends, done + _CANDIDATE_BATCH, side="right")), piece + 1)
        count = hits[piece:stop]
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
