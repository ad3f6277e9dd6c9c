"""Perceptual hashes find copies of a picture; the index finds every close pair, and only those."""

from __future__ import annotations

import io
import itertools

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from clearsight.decode import PERCEPTUAL_HASH_MIN_SIDE, DecodeOptions, inspect
from clearsight.images import inspect_image
from clearsight.near_duplicates import (
    DEFAULT_MAX_DISTANCE,
    clusters,
    hamming_distance,
    near_duplicate_groups,
    near_duplicate_pairs,
)

WIDTH, HEIGHT = 320, 240
SCENES = range(6)  # seeds of distinct photo-like scenes
EXIF_ORIENTATION = 0x0112
# The transform giving the stored pixels of an upright picture for an EXIF
# orientation (EXIF 2.32, tag 0x0112): the decoder undoes it.
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def scene(seed: int, width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    """A photo-like picture: smooth colour gradients, soft shapes, sensor-like noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    c0, c1, c2 = rng.uniform(30, 225, size=(3, 3))
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xs + np.sin(angle) * ys + 1) / 2
    base = c0 + (c1 - c0) * t[..., None] + (c2 - c0) * (xs * ys)[..., None] / 2
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, x1 = sorted(rng.integers(-width // 8, width + width // 8, size=2))
        y0, y1 = sorted(rng.integers(-height // 8, height + height // 8, size=2))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if rng.integers(2):
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(3))
    noisy = np.asarray(image, np.float32) + rng.normal(0, 4, size=(height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def phash(data: bytes, **options) -> str:
    return inspect(data, **options).perceptual_hash


def with_orientation(image: Image.Image, orientation: int, fmt: str, **options) -> bytes:
    """The upright ``image`` stored transposed with the EXIF tag that turns it upright."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encode(image.transpose(STORED_AS[orientation]), fmt, exif=exif, **options)


def cropped(image: Image.Image, percent: float = 3) -> bytes:
    width, height = image.size
    dx, dy = round(width * percent / 100), round(height * percent / 100)
    return encode(image.crop((dx, dy, width - dx, height - dy)), "JPEG", quality=90)


def copies(image: Image.Image) -> dict[str, bytes]:
    """Re-saved, resized and EXIF-rotated copies (crops: see :func:`cropped`)."""
    width, height = image.size
    found = {
        "JPEG quality 70": encode(image, "JPEG", quality=70),
        "resized 50% (JPEG q90)": encode(
            image.resize((width // 2, height // 2), Image.Resampling.LANCZOS), "JPEG", quality=90
        ),
        "resized 150% (JPEG q90)": encode(
            image.resize((width * 3 // 2, height * 3 // 2), Image.Resampling.LANCZOS),
            "JPEG",
            quality=90,
        ),
    }
    for orientation in STORED_AS:
        found[f"EXIF orientation {orientation} (JPEG q90)"] = with_orientation(
            image, orientation, "JPEG", quality=90
        )
    return found


# --- perceptual hashes of real files ----------------------------------------


@pytest.mark.parametrize("seed", SCENES)
def test_copies_hash_within_the_default_distance(seed):
    picture = scene(seed)
    original = phash(encode(picture))
    assert len(original) == 16 and int(original, 16) >= 0
    distances = {
        kind: hamming_distance(original, phash(data)) for kind, data in copies(picture).items()
    }
    far = {kind: d for kind, d in distances.items() if d > DEFAULT_MAX_DISTANCE}
    assert not far, f"scene {seed}: copies beyond {DEFAULT_MAX_DISTANCE} bits: {far}"


def test_crops_of_3_percent_per_side_are_mostly_within_the_default_distance():
    # phash follows the picture's scale: a 3% crop per side enlarges it by 6%.
    # Measured on 600 photo-like scenes (DEFAULT_MAX_DISTANCE's comment): 91%
    # of such crops within 10 bits; here 5 of 6 (scene 4: 12 bits). Every crop
    # is still nearer its own original than any other scene.
    originals = [phash(encode(scene(seed))) for seed in SCENES]
    within = 0
    for seed in SCENES:
        crop = phash(cropped(scene(seed)))
        distances = [hamming_distance(crop, original) for original in originals]
        assert int(np.argmin(distances)) == seed, f"scene {seed}: {distances}"
        assert distances[seed] <= DEFAULT_MAX_DISTANCE + 4, f"scene {seed}: {distances}"
        within += distances[seed] <= DEFAULT_MAX_DISTANCE
        assert hamming_distance(phash(cropped(scene(seed), 2)), originals[seed]) <= (
            DEFAULT_MAX_DISTANCE
        ), f"scene {seed}: 2% crop"
    assert within >= len(SCENES) - 1


def test_distinct_scenes_are_farther_apart_than_the_default_distance():
    hashes = [phash(encode(scene(seed))) for seed in SCENES]
    for (a, ha), (b, hb) in itertools.combinations(enumerate(hashes), 2):
        assert hamming_distance(ha, hb) > DEFAULT_MAX_DISTANCE, f"scenes {a} and {b}"
    assert near_duplicate_pairs(hashes, DEFAULT_MAX_DISTANCE) == []


def test_the_hash_is_imagehash_phash_of_the_decoded_picture():
    picture = scene(0, 96, 80)
    expected = str(imagehash.phash(picture.resize((32, 32), Image.Resampling.BILINEAR)))
    assert phash(encode(picture)) == expected


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_lossless_exif_rotated_copies_hash_exactly_alike(orientation):
    picture = scene(1, 200, 120)
    assert phash(with_orientation(picture, orientation, "PNG")) == phash(encode(picture))


def test_exif_rotated_jpegs_with_partial_blocks_stay_aligned():
    # 131x77 decodes at 1/8 scale to 17x10 pixels, the last column and row
    # covering 3/8 and 5/8 of a block; rotation moves them to other sides. The
    # hash resizes from the picture's true extent (Image.draft's box, oriented):
    # ignoring it stretches the picture and gave a mean of 9.5 bits here.
    distances = []
    for seed in SCENES:
        picture = scene(seed, 131, 77)
        upright = phash(encode(picture, "JPEG", quality=95))
        for orientation in STORED_AS:
            rotated = with_orientation(picture, orientation, "JPEG", quality=95)
            distances.append(hamming_distance(upright, phash(rotated)))
    assert max(distances) <= DEFAULT_MAX_DISTANCE
    assert np.mean(distances) <= 4, distances


@pytest.mark.parametrize(
    ("size", "hashed"),
    [
        ((63, 200), False),
        ((200, 63), False),
        ((64, 64), True),
        ((PERCEPTUAL_HASH_MIN_SIDE, 500), True),
    ],
)
def test_images_under_the_minimum_side_get_no_hash(size, hashed):
    picture = scene(2, *size)
    for fmt in ("PNG", "JPEG"):
        value = phash(encode(picture, fmt))
        assert (value != "") is hashed, f"{fmt} {size}: {value!r}"


def test_minimum_side_is_checked_after_orientation_on_the_full_size():
    # Stored 200x63 with orientation 6: upright it is 63x200, too small.
    small = scene(3, 63, 200)
    assert phash(with_orientation(small, 6, "JPEG", quality=90)) == ""
    # A 400x64 JPEG is decoded at 1/8 scale (50x8) by inspect, but its side is 64.
    wide = scene(3, 400, 64)
    assert phash(encode(wide, "JPEG", quality=90)) != ""


def test_transparent_png_hashes_like_the_picture_flattened_on_the_background():
    picture = np.asarray(scene(4), dtype=np.float64)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    alpha = np.clip((xs - WIDTH * 0.3) / (WIDTH * 0.4), 0, 1)  # transparent left, opaque right
    alpha[(ys // 40 + xs // 40) % 3 == 0] = 0.0  # and a pattern of holes
    hidden = picture.copy()
    hidden[alpha == 0] = (20, 200, 40)  # colour stored under fully transparent pixels
    rgba = np.dstack([hidden, alpha * 255]).round().astype(np.uint8)
    transparent = encode(Image.fromarray(rgba, "RGBA"))
    straight = rgba[..., 3:4] / 255.0  # PNG stores straight (non-premultiplied) alpha
    for name, background in (("white", (255, 255, 255)), ("black", (0, 0, 0))):
        flat = rgba[..., :3] * straight + np.array(background) * (1 - straight)
        flattened = encode(Image.fromarray(flat.round().astype(np.uint8), "RGB"))
        options = DecodeOptions(background=name)
        value = phash(transparent, options=options)
        assert hamming_distance(value, phash(flattened, options=options)) <= 2, name
    ignoring_alpha = encode(Image.fromarray(rgba[..., :3], "RGB"))
    assert hamming_distance(phash(transparent), phash(ignoring_alpha)) > DEFAULT_MAX_DISTANCE


def test_high_bit_depth_png_hashes_like_its_8_bit_rendering():
    grey = np.asarray(scene(5).convert("L"), dtype=np.float64) / 255
    twelve_bit = np.round(grey * 4095).astype(np.uint16)  # 12-bit data in a 16-bit PNG
    sixteen = encode(Image.fromarray(twelve_bit))
    eight = encode(Image.fromarray(np.round(twelve_bit / 4095 * 255).astype(np.uint8), "L"))
    assert inspect(sixteen).significant_bits == 12
    assert hamming_distance(phash(sixteen), phash(eight)) <= 2


def test_inspect_image_passes_the_hash_through():
    data = encode(scene(0), "JPEG", quality=90)
    info = inspect_image(data)
    assert info.perceptual_hash == phash(data) != ""
    assert inspect_image(encode(scene(0, 40, 40))).perceptual_hash == ""


# --- the index ---------------------------------------------------------------


def oracle(hashes: list[str], max_distance: int) -> list[tuple[int, int, int]]:
    """Every pair compared: distances from the bit matrix, D = B (1 - B)^T + (1 - B) B^T."""
    kept = [i for i, h in enumerate(hashes) if h]
    bits = np.array([[int(b) for b in f"{int(hashes[i], 16):064b}"] for i in kept], np.float32)
    distance = (bits @ (1 - bits).T + (1 - bits) @ bits.T).round().astype(int)
    rows, cols = np.nonzero(np.triu(distance <= max_distance, k=1))
    return sorted((kept[a], kept[b], int(distance[a, b])) for a, b in zip(rows, cols, strict=True))


def planted(count: int, max_distance: int, seed: int) -> list[str]:
    """Random 64-bit hashes, a tenth of them near copies of another at 0..max_distance + 2 bits."""
    rng = np.random.default_rng(seed)
    values = [int(v) for v in rng.integers(0, 2**63, size=count, dtype=np.int64)]
    values = [v | (int(rng.integers(2)) << 63) for v in values]
    for _ in range(count // 10):
        source, copy = (int(v) for v in rng.integers(0, count, size=2))
        flips = rng.choice(64, size=int(rng.integers(0, max_distance + 3)), replace=False)
        values[copy] = values[source] ^ sum(1 << int(bit) for bit in flips)
    # A chain of copies at exactly max_distance, and a clump of identical hashes.
    values[1] = values[0] ^ ((1 << max_distance) - 1)
    values[7:12] = [values[5]] * 5
    hashes = [f"{v:016x}" for v in values]
    for index in rng.choice(count, size=count // 50, replace=False):
        hashes[int(index)] = ""  # too small to hash
    hashes[0], hashes[1] = f"{values[0]:016x}", f"{values[1]:016x}"
    return hashes


@pytest.mark.parametrize("max_distance", [0, 1, 4, DEFAULT_MAX_DISTANCE, 16])
def test_pairs_equal_the_brute_force_oracle(max_distance):
    hashes = planted(3000, max_distance, seed=max_distance)
    expected = oracle(hashes, max_distance)
    found = near_duplicate_pairs(hashes, max_distance)
    assert found == expected
    assert (0, 1, max_distance) in found
    assert {d for _, _, d in found} == set(range(max_distance + 1))  # planted at every distance


def test_pairs_of_few_or_empty_hashes():
    assert near_duplicate_pairs([], 4) == []
    assert near_duplicate_pairs(["", "", "0123456789abcdef"], 4) == []
    same = "0123456789abcdef"
    assert near_duplicate_pairs([same, "", same.upper(), same], 0) == [
        (0, 2, 0),
        (0, 3, 0),
        (2, 3, 0),
    ]


@pytest.mark.parametrize("bad", [-1, 33, 2.5, True, "4", None])
def test_max_distance_is_validated(bad):
    with pytest.raises(
        ValueError, match="max_distance must be a whole number of bits from 0 to 32"
    ):
        near_duplicate_pairs(["0" * 16, "f" * 16], bad)


@pytest.mark.parametrize(
    "bad", ["abc", "0123456789abcdeg", "0123456789abcdef0", " 123456789abcdef"]
)
def test_malformed_hashes_are_reported_with_their_index(bad):
    with pytest.raises(ValueError, match=r"hashes\[1\]: a perceptual hash is 16 hex digits"):
        near_duplicate_pairs(["0" * 16, bad], 4)


def test_hamming_distance():
    assert hamming_distance("0" * 16, "f" * 16) == 64
    assert hamming_distance("8000000000000001", "0000000000000000") == 2
    assert hamming_distance("0123456789abcdef", "0123456789ABCDEF") == 0
    with pytest.raises(ValueError, match="too small to hash"):
        hamming_distance("", "0" * 16)


def test_clusters_merge_chains_and_leave_singletons_out():
    pairs = [(4, 7, 3), (0, 2, 1), (2, 5, 4), (8, 9, 0)]  # 0~2, 2~5: one cluster
    assert clusters(10, pairs) == [[0, 2, 5], [4, 7], [8, 9]]
    assert clusters(10, []) == []
    assert clusters(3, iter([(0, 1, 0), (1, 2, 0)])) == [[0, 1, 2]]


def test_clusters_reject_indices_outside_the_count():
    with pytest.raises(ValueError, match="pair indices must be in 0..2"):
        clusters(3, [(0, 3, 1)])


def test_clusters_from_near_duplicate_pairs_of_real_copies():
    picture = scene(0)
    others = [scene(seed) for seed in (1, 2)]
    files = [encode(picture), *copies(picture).values(), cropped(picture)]
    files += [encode(other) for other in others]
    files.insert(3, encode(scene(0, 40, 30)))  # too small: no hash, no cluster
    hashes = [phash(data) for data in files]
    found = clusters(len(files), near_duplicate_pairs(hashes, DEFAULT_MAX_DISTANCE))
    assert found == [[i for i in range(len(files) - 2) if i != 3]]


# --- groups in linear memory --------------------------------------------------


def nearest_of(pairs: list[tuple[int, int, int]]) -> dict[int, int]:
    nearest: dict[int, int] = {}
    for i, j, distance in pairs:
        nearest[i] = min(nearest.get(i, distance), distance)
        nearest[j] = min(nearest.get(j, distance), distance)
    return nearest


def around(bases: int, count: int, max_flips: int, seed: int) -> tuple[list[str], list[list[int]]]:
    """Hashes each within ``max_flips`` bits of one of ``bases`` random hashes, and who is whose."""
    rng = np.random.default_rng(seed)
    base = [int(v) for v in rng.integers(0, 2**63, size=bases, dtype=np.int64)]
    values, members = [], [[] for _ in range(bases)]
    for index in range(count):
        which = int(rng.integers(bases))
        flips = rng.choice(64, size=int(rng.integers(0, max_flips + 1)), replace=False)
        values.append(base[which] ^ sum(1 << int(bit) for bit in flips))
        members[which].append(index)
    return [f"{v:016x}" for v in values], members


@pytest.mark.parametrize("max_distance", [0, 4, DEFAULT_MAX_DISTANCE])
def test_groups_equal_the_components_and_nearest_distances_of_every_pair(max_distance):
    hashes = planted(3000, max_distance, seed=100 + max_distance)
    pairs = oracle(hashes, max_distance)
    expected = clusters(len(hashes), pairs)
    nearest = nearest_of(pairs)
    assert any(len(c) > 2 for c in expected)  # chains and clumps, not only pairs

    unbounded = near_duplicate_groups(hashes, max_distance)
    assert unbounded.clusters == expected and unbounded.oversized == []
    assert unbounded.nearest == {i: nearest[i] for c in expected for i in c}

    bounded = near_duplicate_groups(hashes, max_distance, max_size=2)
    assert bounded.clusters == [c for c in expected if len(c) <= 2]
    assert bounded.oversized == [c for c in expected if len(c) > 2]
    assert bounded.nearest == {i: nearest[i] for c in bounded.clusters for i in c}


def test_a_homogeneous_set_is_one_oversized_component_per_base_and_small_ones_stay_exact():
    # 6,000 hashes around 2 bases (everything of a base within 10 bits: about
    # 9 million pairs), plus 3 ordinary clusters far from both.
    hashes, members = around(2, 6000, DEFAULT_MAX_DISTANCE // 2, seed=7)
    far = ["0123456789abcdef", "0123456789abcdee", "fedcba9876543210", "fedcba9876543211"]
    far += ["fedcba9876543213", "00ff00ff00ff00ff", "00ff00ff00ff0fff"]
    start = len(hashes)
    hashes += far + [""]
    assert all(hamming_distance(h, f) > 20 for h in hashes[:start:500] for f in far)
    groups = near_duplicate_groups(hashes, DEFAULT_MAX_DISTANCE, max_size=20)
    assert groups.oversized == sorted(members)
    small = [[start, start + 1], [start + 2, start + 3, start + 4], [start + 5, start + 6]]
    assert groups.clusters == small
    assert groups.nearest == {
        start: 1, start + 1: 1, start + 2: 1, start + 3: 1, start + 4: 1,
        start + 5: 4, start + 6: 4,
    }  # fmt: skip


def test_groups_of_a_homogeneous_set_take_memory_linear_in_its_size(monkeypatch):
    # Around one base, 2,000 and 4,000 hashes give 2 and 8 million pairs within
    # 10 bits; listing them takes hundreds of MiB. The groups keep no pair:
    # their peak is the hashes' arrays plus one batch of candidates, here made
    # small (16,384) so that the batch does not hide how the rest grows.
    import tracemalloc

    import clearsight.near_duplicates as module

    monkeypatch.setattr(module, "_CANDIDATE_BATCH", 1 << 14)
    peaks = []
    for count in (2000, 4000):
        hashes, _ = around(1, count, DEFAULT_MAX_DISTANCE // 2, seed=count)
        tracemalloc.start()
        groups = near_duplicate_groups(hashes, DEFAULT_MAX_DISTANCE, max_size=20)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert groups.oversized == [list(range(count))] and groups.clusters == []
        assert groups.nearest == {}
    assert peaks[0] < 2000 * 1999 // 2 * 2, peaks  # under 2 bytes per pair
    assert peaks[1] < 2.5 * peaks[0], peaks  # twice the hashes, four times the pairs


def test_groups_of_few_hashes_and_bad_sizes():
    assert near_duplicate_groups([], 4).clusters == []
    assert near_duplicate_groups(["", "0123456789abcdef"], 4).clusters == []
    same = "0123456789abcdef"
    groups = near_duplicate_groups([same, "", same.upper(), same], 0, max_size=3)
    assert groups.clusters == [[0, 2, 3]] and groups.nearest == {0: 0, 2: 0, 3: 0}
    assert near_duplicate_groups([same] * 4, 0, max_size=3).oversized == [[0, 1, 2, 3]]
    for bad in (1, 0, True, 2.5):
        with pytest.raises(ValueError, match="max_size must be a whole number of at least 2"):
            near_duplicate_groups([same, same], 0, max_size=bad)
    with pytest.raises(ValueError, match=r"hashes\[1\]: a perceptual hash is 16 hex digits"):
        near_duplicate_groups([same, "abc"], 4)


def test_the_perceptual_hash_can_be_skipped_and_the_identity_stays():
    data = encode(scene(3), "JPEG", quality=90)
    full = inspect(data)
    quick = inspect(data, perceptual_hash=False)
    assert full.perceptual_hash and quick.perceptual_hash == ""
    assert quick.pixel_sha256 == full.pixel_sha256
