"""Benchmark perceptual hashing at ingestion and the near-duplicate index.

Four measurements, in one run:

* (a) ingestion validation throughput of ``clearsight.images.inspect_image``
  on generated photo-like 1024x768 JPEGs, with the pixel identity
  (``pixel_sha256``) only (the perceptual hash switched off by raising
  ``clearsight.decode.PERCEPTUAL_HASH_MIN_SIDE`` above every image) against
  pixel identity + perceptual hash (the default);
* (b) :func:`clearsight.near_duplicates.near_duplicate_pairs` on 10,000 and
  100,000 random 64-bit hashes with about 1% planted near-duplicates (distances
  0..max_distance): wall time, peak Python memory (``tracemalloc``, a separate
  run), pairs found, planted pairs recovered, and, up to ``--verify-up-to``
  hashes, agreement with a brute-force comparison of all pairs; then the
  same for ``near_duplicate_groups`` (ingestion's call) and whether its
  components equal those of the pairs;
* (c) the Hamming distances that :data:`~clearsight.near_duplicates.DEFAULT_MAX_DISTANCE`
  rests on: copies of photo-like 1024x768 scenes and of 3 real photos
  (scikit-learn's china.jpg and flower.jpg, matplotlib's grace_hopper.jpg)
  re-saved as JPEG, resized, cropped 2-5% per side and EXIF-rotated, against
  the distances between different scenes;
* (d) :func:`clearsight.near_duplicates.near_duplicate_groups` (what ingestion
  runs, ``max_size`` 20) on homogeneous hashes, as images of one kind (chest
  X-rays) give: each a few bits from one of a few base hashes, so nearly every
  pair of one base is within ``max_distance``: wall time, peak Python memory
  (``tracemalloc``, a separate run), pairs within reach, components found
  against those planted; and, up to ``--list-pairs-up-to`` pairs, the same
  through listing every pair (``near_duplicate_pairs`` + ``clusters``).

Examples:
    python benchmarks/bench_near_duplicates.py            # or: make bench-near-duplicates
    python benchmarks/bench_near_duplicates.py --images 200 --sizes 10000 100000   # defaults
    python benchmarks/bench_near_duplicates.py --distance-scenes 0   # skip (c)
    python benchmarks/bench_near_duplicates.py --max-distance 8 --sizes 100000
    python benchmarks/bench_near_duplicates.py --images 0 --sizes --distance-scenes 0   # (d) only
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import clearsight.decode as decode_module  # noqa: E402
from clearsight.decode import inspect  # noqa: E402
from clearsight.images import inspect_image  # noqa: E402
from clearsight.leakage import DEFAULT_MAX_CLUSTER_SIZE  # noqa: E402
from clearsight.near_duplicates import (  # noqa: E402
    DEFAULT_MAX_DISTANCE,
    clusters,
    hamming_distance,
    near_duplicate_groups,
    near_duplicate_pairs,
)

WIDTH, HEIGHT = 1024, 768
EXIF_ORIENTATION = 0x0112
# The transform that gives the stored pixels of an upright picture for each
# EXIF orientation (EXIF 2.32, tag 0x0112); the decoder undoes it.
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}

# ---------------------------------------------------------------------------
# Photo-like images (the generator of benchmarks/bench_decoding.py, which
# imports TensorFlow at start-up, so it is repeated here)
# ---------------------------------------------------------------------------


def photo_like(rng: np.random.Generator, width: int, height: int, noise: np.ndarray) -> Image.Image:
    """A smooth gradient with soft shapes and sensor-like noise (cut from ``noise``)."""
    sw, sh = max(width // 8, 16), max(height // 8, 16)
    c0, c1 = rng.uniform(20, 235, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:sh, 0:sw].astype(np.float32)
    t = (np.cos(angle) * xs / sw + np.sin(angle) * ys / sh + 1) / 2
    base = c0 + (c1 - c0) * t[..., None]
    scene = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(scene)
    for _ in range(int(rng.integers(8, 20))):
        x0, x1 = sorted(rng.integers(-sw // 4, sw + sw // 4, size=2))
        y0, y1 = sorted(rng.integers(-sh // 4, sh + sh // 4, size=2))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse((x0, y0, x1 + 1, y1 + 1), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            points = [(int(rng.integers(0, sw)), int(rng.integers(0, sh))) for _ in range(5)]
            draw.polygon(points, fill=colour)
    scene = scene.filter(ImageFilter.GaussianBlur(1.2))
    full = np.asarray(scene.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    dy = int(rng.integers(0, noise.shape[0] - height + 1))
    dx = int(rng.integers(0, noise.shape[1] - width + 1))
    full = full + noise[dy : dy + height, dx : dx + width]
    return Image.fromarray(np.clip(full, 0, 255).astype(np.uint8), "RGB")


def sensor_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Per-pixel noise (sd 4 levels) plus a fine luminance grain (sd 6, 2 and 4 px)."""
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * 4
    for factor in (2, 4):
        grain = rng.standard_normal((height // factor, width // factor), dtype=np.float32)
        grain = Image.fromarray(grain, "F").resize((width, height), Image.Resampling.BICUBIC)
        noise += (np.asarray(grain) * 6)[..., None]
    return np.round(noise).astype(np.int16)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# ---------------------------------------------------------------------------
# (a) Ingestion validation throughput
# ---------------------------------------------------------------------------

Figures = tuple[float, float]  # (images/s of wall time, CPU ms per image)


def throughput(blobs: Sequence[bytes], perceptual: bool) -> Figures:
    """images/s and CPU ms/image of ``inspect_image`` over ``blobs``, one thread."""
    saved = decode_module.PERCEPTUAL_HASH_MIN_SIDE
    if not perceptual:  # no image is this large: the perceptual hash is skipped
        decode_module.PERCEPTUAL_HASH_MIN_SIDE = sys.maxsize
    try:
        inspect_image(blobs[0])  # warm-up
        cpu, started = time.process_time(), time.perf_counter()
        for data in blobs:
            inspect_image(data)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        decode_module.PERCEPTUAL_HASH_MIN_SIDE = saved
    return len(blobs) / wall, cpu * 1000 / len(blobs)


def bench_ingestion(count: int, repeats: int, seed: int) -> None:
    print(f"(a) generating {count} photo-like {WIDTH}x{HEIGHT} JPEGs (quality 90) ...", flush=True)
    rng = np.random.default_rng(seed)
    noise = sensor_noise(rng, HEIGHT + 64, WIDTH + 64)
    blobs = [
        encode(photo_like(rng, WIDTH, HEIGHT, noise), "JPEG", quality=90) for _ in range(count)
    ]
    print(f"    mean {np.mean([len(b) for b in blobs]) / 1024:.0f} KiB")
    best = {False: (0.0, float("inf")), True: (0.0, float("inf"))}
    for _ in range(repeats):  # alternating; best of the rounds
        for perceptual in (False, True):
            speed, cpu = throughput(blobs, perceptual)
            old = best[perceptual]
            best[perceptual] = (max(old[0], speed), min(old[1], cpu))
    print()
    print("| `inspect_image`, 1024x768 JPEG | images/s | CPU ms/image |")
    print("|---|---|---|")
    for perceptual, label in (
        (False, "pixel SHA-256 only"),
        (True, "pixel SHA-256 + perceptual hash"),
    ):
        speed, cpu = best[perceptual]
        print(f"| {label} | {speed:,.1f} | {cpu:.3f} |")
    added = best[True][1] - best[False][1]
    print(
        f"\n    perceptual hash: +{added:.3f} CPU ms/image "
        f"({added / best[False][1]:+.1%}); throughput {best[True][0] / best[False][0] - 1:+.1%}"
    )


# ---------------------------------------------------------------------------
# (b) The near-duplicate index
# ---------------------------------------------------------------------------


def planted_hashes(
    rng: np.random.Generator, count: int, max_distance: int, share: float
) -> tuple[list[str], set[tuple[int, int]]]:
    """Random 64-bit hashes; ``share`` of them are copies of another with 0..max_distance flips."""
    values = rng.integers(0, 2**64, size=count, dtype=np.uint64, endpoint=False)
    planted = set()
    copies = rng.choice(count, size=int(count * share) * 2, replace=False).reshape(-1, 2)
    for source, copy in copies:
        flips = rng.choice(64, size=int(rng.integers(0, max_distance + 1)), replace=False)
        values[copy] = values[source] ^ np.uint64(sum(1 << int(bit) for bit in flips))
        planted.add((min(int(source), int(copy)), max(int(source), int(copy))))
    return [f"{int(v):016x}" for v in values], planted


def brute_force_pairs(hashes: Sequence[str], max_distance: int) -> list[tuple[int, int, int]]:
    """All pairs compared (numpy, one row against the rest): the reference."""
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    table = np.array([bin(v).count("1") for v in range(1 << 16)], dtype=np.uint8)
    found = []
    for i in range(len(values) - 1):
        parts = (values[i + 1 :] ^ values[i]).view(np.uint16).reshape(-1, 4)
        distance = table[parts].sum(axis=1)
        for k in np.flatnonzero(distance <= max_distance):
            found.append((i, i + 1 + int(k), int(distance[k])))
    return found


def bench_index(
    sizes: Sequence[int], max_distance: int, repeats: int, verify_up_to: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        hashes, planted = planted_hashes(rng, size, max_distance, 0.01)
        seconds = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            pairs = near_duplicate_pairs(hashes, max_distance)
            seconds = min(seconds, time.perf_counter() - started)
        tracemalloc.start()
        near_duplicate_pairs(hashes, max_distance)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        found = {(i, j) for i, j, _ in pairs}
        recovered = len(planted & found)
        group_seconds, group_peak, groups = peak_of(
            lambda h=hashes: near_duplicate_groups(
                h, max_distance, max_size=DEFAULT_MAX_CLUSTER_SIZE
            )
        )
        same = sorted(groups.clusters + groups.oversized) == clusters(size, pairs)
        grouped = (
            f"{group_seconds:.3f} s, {group_peak:.1f} MiB ({'equal' if same else 'DIFFERENT'})"
        )
        check = "not run"
        if size <= verify_up_to:
            print(f"(b) brute force over {size * (size - 1) // 2:,} pairs ...", flush=True)
            check = "equal" if brute_force_pairs(hashes, max_distance) == pairs else "DIFFERENT"
        rows.append((size, seconds, peak, len(pairs), recovered, len(planted), check, grouped))
    print()
    print(
        "| hashes | max_distance | time | peak memory (tracemalloc) | pairs found "
        "| planted pairs found | brute force | near_duplicate_groups (components) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size, seconds, peak, count, recovered, planted_count, check, grouped in rows:
        print(
            f"| {size:,} | {max_distance} | {seconds:.3f} s | {peak / 2**20:.1f} MiB | {count:,} "
            f"| {recovered:,} / {planted_count:,} | {check} | {grouped} |"
        )


# ---------------------------------------------------------------------------
# (d) Homogeneous hashes: images of one kind
# ---------------------------------------------------------------------------


def homogeneous_hashes(
    rng: np.random.Generator, count: int, bases: int, max_distance: int
) -> tuple[list[str], list[list[int]]]:
    """Each hash a random base with 0..max_distance // 2 bits flipped: a base's hashes all meet.

    Returns:
        The hashes and, per base, the indices drawn from it (the components
        expected: random bases are about 32 bits apart, out of reach).
    """
    base = rng.integers(0, 2**64, size=bases, dtype=np.uint64, endpoint=False)
    which = rng.integers(0, bases, size=count)
    values = base[which]
    flips = rng.integers(0, max_distance // 2 + 1, size=count)
    for _ in range(max_distance // 2):
        bit = rng.integers(0, 64, size=count).astype(np.uint64)
        hit = flips > 0  # a repeated bit undoes itself: at most, not exactly, flips bits
        values[hit] ^= np.uint64(1) << bit[hit]
        flips -= hit
    members = [np.flatnonzero(which == b).tolist() for b in range(bases)]
    return [f"{int(v):016x}" for v in values], [m for m in members if len(m) >= 2]


def peak_of(call: Callable[[], object]) -> tuple[float, float, object]:
    """Wall seconds of one call, and peak traced MiB of a second one, and its result."""
    started = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    call()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20, result


def bench_homogeneous(
    sizes: Sequence[int], bases: int, max_distance: int, list_pairs_up_to: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    size_limit = DEFAULT_MAX_CLUSTER_SIZE
    rows = []
    for size in sizes:
        hashes, planted = homogeneous_hashes(rng, size, bases, max_distance)
        within = sum(len(m) * (len(m) - 1) // 2 for m in planted)
        print(f"(d) {size:,} hashes from {bases} bases, {within:,} pairs within reach ...")
        seconds, peak, groups = peak_of(
            lambda h=hashes: near_duplicate_groups(h, max_distance, max_size=size_limit)
        )
        found = sorted(groups.oversized + groups.clusters)
        check = "as planted" if found == sorted(planted) else "DIFFERENT"
        listed = "not run"
        if within <= list_pairs_up_to:
            old_seconds, old_peak, old = peak_of(
                lambda h=hashes: clusters(len(h), near_duplicate_pairs(h, max_distance))
            )
            same = "equal" if old == found else "DIFFERENT"
            listed = f"{old_seconds:.2f} s, {old_peak:,.0f} MiB ({same})"
        rows.append((size, within, seconds, peak, len(groups.oversized), check, listed))
    print()
    print(
        f"| hashes | bases | pairs within {max_distance} bits | time | peak memory (tracemalloc) "
        f"| components over {size_limit} | components | listing every pair instead |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size, within, seconds, peak, oversized, check, listed in rows:
        print(
            f"| {size:,} | {bases} | {within:,} | {seconds:.2f} s | {peak:.1f} MiB | {oversized} "
            f"| {check} | {listed} |"
        )


# ---------------------------------------------------------------------------
# (c) Distances between copies and between different pictures
# ---------------------------------------------------------------------------


def copies(image: Image.Image) -> dict[str, bytes]:
    """The near-duplicates a dataset collects: re-saved, resized, cropped, EXIF-rotated."""
    width, height = image.size
    out = {f"JPEG quality {q}": encode(image, "JPEG", quality=q) for q in (60, 75, 95)}
    for percent in (25, 50, 150, 200):
        size = (round(width * percent / 100), round(height * percent / 100))
        resized = image.resize(size, Image.Resampling.LANCZOS)
        out[f"resized to {percent}% (JPEG q90)"] = encode(resized, "JPEG", quality=90)
    for percent in (2, 3, 5):
        dx, dy = round(width * percent / 100), round(height * percent / 100)
        cropped = image.crop((dx, dy, width - dx, height - dy))
        out[f"cropped {percent}% per side (JPEG q90)"] = encode(cropped, "JPEG", quality=90)
    for orientation, transpose in STORED_AS.items():
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        out[f"EXIF orientation {orientation} (JPEG q90)"] = encode(
            image.transpose(transpose), "JPEG", quality=90, exif=exif
        )
    return out


def real_photos() -> list[tuple[str, Image.Image]]:
    """Photos that ship inside installed packages (no download)."""
    photos = []
    try:
        from sklearn.datasets import load_sample_images

        sample = load_sample_images()
        for name, array in zip(sample.filenames, sample.images, strict=True):
            photos.append((Path(name).name, Image.fromarray(array)))
    except ImportError as error:
        print(f"    (scikit-learn sample images skipped: {error})")
    try:
        import matplotlib.cbook

        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as image:
            photos.append(("grace_hopper.jpg", image.convert("RGB")))
    except (ImportError, OSError) as error:
        print(f"    (matplotlib sample photo skipped: {error})")
    return photos


def is_flat(image: Image.Image) -> bool:
    """Nearly one colour: the 32x32 greyscale rendering varies by under 3 levels (sd).

    phash keeps only the signs of low frequencies around their median; in a
    flat picture those are noise, and so are its bits.
    """
    grey = image.convert("L").resize((32, 32), Image.Resampling.BILINEAR)
    return float(np.asarray(grey, dtype=np.float64).std()) < 3


def copy_distances(images: Sequence[Image.Image]) -> tuple[dict[str, list[int]], list[str]]:
    """Per kind of copy, the distance of each copy to its original (hashed from a PNG)."""
    distances: dict[str, list[int]] = {}
    originals = []
    for image in images:
        original = inspect(encode(image, "PNG")).perceptual_hash
        originals.append(original)
        for kind, data in copies(image).items():
            distance = hamming_distance(original, inspect(data).perceptual_hash)
            distances.setdefault(kind, []).append(distance)
    return distances, originals


def distinct_distances(hashes: Sequence[str]) -> np.ndarray:
    """Distances of all pairs of different pictures."""
    return np.array(
        [
            hamming_distance(hashes[i], hashes[j])
            for i in range(len(hashes))
            for j in range(i + 1, len(hashes))
        ]
    )


def bench_distances(scenes: int, seed: int, max_distance: int) -> None:
    print(f"(c) {scenes} photo-like {WIDTH}x{HEIGHT} scenes and their copies ...", flush=True)
    rng = np.random.default_rng(seed + 1)
    noise = sensor_noise(rng, HEIGHT + 64, WIDTH + 64)
    images = [photo_like(rng, WIDTH, HEIGHT, noise) for _ in range(scenes)]
    flat = np.array([is_flat(image) for image in images])
    scene_distances, scene_hashes = copy_distances(images)
    photos = real_photos()
    photo_distances, photo_hashes = copy_distances([image for _, image in photos])
    print()
    print(
        f"| copy | scenes: mean | p95 | max | max, {np.sum(~flat)} not flat "
        f"| within {max_distance} | real photos ({len(photos)}): max |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind, values in scene_distances.items():
        array = np.array(values)
        real = max(photo_distances.get(kind, [0]))
        print(
            f"| {kind} | {array.mean():.2f} | {np.percentile(array, 95):.0f} | {array.max()} "
            f"| {array[~flat].max()} | {np.mean(array <= max_distance):.1%} | {real} |"
        )
    print(f"\n    flat scenes (one colour and noise, see is_flat): {np.flatnonzero(flat).tolist()}")
    between = distinct_distances(scene_hashes)
    print(
        f"\n    different scenes, {between.size:,} pairs: nearest {between.min()} bits, "
        f"median {np.median(between):.0f}; within 8: {np.sum(between <= 8)}, "
        f"10: {np.sum(between <= 10)}, 12: {np.sum(between <= 12)}, "
        f"14: {np.sum(between <= 14)}, 16: {np.sum(between <= 16)}"
    )
    if len(photo_hashes) > 1:
        real = distinct_distances(photo_hashes)
        names = ", ".join(name for name, _ in photos)
        print(f"    different real photos ({names}): {sorted(real.tolist())} bits")


# ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Examples:\n  python benchmarks/bench_near_duplicates.py\n"
        "  python benchmarks/bench_near_duplicates.py --distance-scenes 0\n"
        "  python benchmarks/bench_near_duplicates.py --max-distance 8 --sizes 100000\n"
        "  python benchmarks/bench_near_duplicates.py --images 0 --sizes --distance-scenes 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--images", type=int, default=200, help="1024x768 JPEGs timed in (a) (default 200; 0: skip)"
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[10_000, 100_000],
        help="numbers of hashes indexed in (b) (default 10000 100000; none: skip)",
    )
    parser.add_argument(
        "--max-distance",
        type=int,
        default=DEFAULT_MAX_DISTANCE,
        help=f"Hamming distance in (b) and (c) (default {DEFAULT_MAX_DISTANCE})",
    )
    parser.add_argument(
        "--verify-up-to",
        type=int,
        default=10_000,
        help="compare (b) with brute force up to this many hashes (default 10000)",
    )
    parser.add_argument(
        "--distance-scenes",
        type=int,
        default=600,
        help="photo-like scenes whose copies are measured in (c) (default 600; 0: skip)",
    )
    parser.add_argument(
        "--homogeneous-sizes",
        type=int,
        nargs="*",
        default=[2_000, 20_000, 100_000],
        help="numbers of homogeneous hashes in (d) (default 2000 20000 100000; none: skip)",
    )
    parser.add_argument(
        "--bases", type=int, default=5, help="base hashes the hashes of (d) are drawn near (5)"
    )
    parser.add_argument(
        "--list-pairs-up-to",
        type=int,
        default=1_000_000,
        help="in (d), also list every pair when there are at most this many (default 1000000)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds, best kept (3)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    import imagehash

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}, Pillow {PIL.__version__}, "
        f"ImageHash {getattr(imagehash, '__version__', '?')}"
    )
    started = time.perf_counter()
    steps: list[Callable[[], None]] = []
    if args.images:
        steps.append(lambda: bench_ingestion(args.images, args.repeats, args.seed))
    if args.sizes:
        steps.append(
            lambda: bench_index(
                args.sizes, args.max_distance, args.repeats, args.verify_up_to, args.seed
            )
        )
    if args.homogeneous_sizes:
        steps.append(
            lambda: bench_homogeneous(
                args.homogeneous_sizes,
                args.bases,
                args.max_distance,
                args.list_pairs_up_to,
                args.seed,
            )
        )
    if args.distance_scenes:
        steps.append(lambda: bench_distances(args.distance_scenes, args.seed, args.max_distance))
    for step in steps:
        step()
        print()
    print(f"whole run {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
