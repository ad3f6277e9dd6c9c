"""The single decoder: every variant of a picture decodes to the picture, in every consumer."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from clearsight.dataset import build_manifest
from clearsight.decode import (
    DecodeOptions,
    InvalidImageError,
    decode,
    decode_batch,
    preview,
    read_header,
)
from clearsight.features import pixel_features
from clearsight.images import inspect_image
from clearsight.preprocess import make_dataset
from tests.imagefiles import (
    HEIGHT,
    LOSSLESS,
    LOSSY,
    WIDTH,
    Variant,
    picture,
    png_with_sbit,
    save,
    variants,
    with_exif,
)

PICTURES = (0, 6, 7)  # digits 0, 6 and 7 of the UCI set: 6 and 9 differ by a half-turn
SIZE = 32  # the model input side the consumers resize to
ALL = [v for index in PICTURES for v in variants(index)]


def options_for(variant: Variant) -> DecodeOptions:
    return DecodeOptions(background=variant.background)


def assert_close(actual: np.ndarray, expected: np.ndarray, lossy: bool, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    difference = np.abs(actual.astype(np.float64) - expected)
    if lossy:
        assert difference.mean() <= LOSSY, f"{what}: mean difference {difference.mean():.4f}"
    else:
        assert difference.max() <= LOSSLESS + 0.5 / 255, f"{what}: max {difference.max():.4f}"


def resized_reference(variant: Variant) -> np.ndarray:
    """The reference resized by TensorFlow's antialiased bilinear filter (an independent path)."""
    return tf.image.resize(variant.reference, [SIZE, SIZE], antialias=True).numpy()


@pytest.mark.parametrize("variant", ALL, ids=lambda v: v.name)
def test_every_variant_decodes_to_its_upright_picture(variant):
    decoded = decode(variant.data, options=options_for(variant))
    assert decoded.pixels.dtype == np.float32
    assert (decoded.header.width, decoded.header.height) == (WIDTH, HEIGHT)
    assert_close(decoded.pixels, variant.reference, variant.lossy, variant.name)


@pytest.mark.parametrize("variant", ALL, ids=lambda v: v.name)
def test_model_input_and_preview_match_the_reference(variant):
    options = options_for(variant)
    model_input = decode_batch([variant.data], SIZE, options=options)[0]
    # Pillow and TensorFlow place the filter slightly differently at the borders.
    difference = np.abs(model_input - resized_reference(variant))
    assert difference.mean() <= (LOSSY if variant.lossy else 1.5 / 255), variant.name

    thumbnail = np.asarray(preview(variant.data, 32, options=options), dtype=np.float64) / 255
    expected = (
        np.asarray(
            preview(
                save(Image.fromarray(np.round(variant.reference * 255).astype(np.uint8)), "PNG"), 32
            )
        )
        / 255
    )
    assert np.abs(thumbnail - expected).mean() <= (LOSSY if variant.lossy else 1 / 255)


@pytest.mark.parametrize("index", PICTURES)
def test_training_pipeline_gets_the_endpoint_tensor_for_every_variant(index):
    found = [v for v in variants(index) if v.background == (255, 255, 255)]
    store = {v.name: v.data for v in found}
    items = [(v.name, 0) for v in found]
    dataset = make_dataset(items, store.__getitem__, image_size=SIZE, batch_size=8, training=False)
    batches = np.concatenate([x.numpy() for x, _ in dataset])
    for variant, tensor in zip(found, batches, strict=True):
        np.testing.assert_array_equal(tensor, decode_batch([variant.data], SIZE)[0])
        difference = np.abs(tensor - resized_reference(variant)).mean()
        assert difference <= (LOSSY if variant.lossy else 1.5 / 255), variant.name


@pytest.mark.parametrize("variant", ALL, ids=lambda v: v.name)
def test_gate_features_measure_the_picture_the_model_sees(variant):
    features = pixel_features(variant.data, options_for(variant))
    luminance = variant.reference.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    tolerance = LOSSY if variant.lossy else 0.5 / 255  # 8-bit compositing rounds
    assert features["brightness"] == pytest.approx(luminance.mean(), abs=tolerance)
    assert features["mean_b"] == pytest.approx(variant.reference[..., 2].mean(), abs=tolerance)
    assert (features["width"], features["height"]) == (WIDTH, HEIGHT)


# Regression tests: each fault measured on the platform before the single decoder.


def test_exif_orientation_3_is_not_a_different_digit():
    upright = Image.fromarray(picture(6))
    tagged = with_exif(upright, 3, "JPEG")
    rotated = save(upright, "JPEG", quality=95)  # the same photo, physically upright
    a, b = decode(tagged, size=SIZE).pixels, decode(rotated, size=SIZE).pixels
    assert np.abs(a - b).mean() < 2 / 255  # was: the 6 decoded upside down (a 9)
    flipped = decode(save(upright.rotate(180), "JPEG", quality=95), size=SIZE).pixels
    assert np.abs(a - flipped).mean() > 10 / 255


def test_ingestion_records_dimensions_after_orientation():
    info = inspect_image(with_exif(Image.fromarray(picture(7)), 6, "JPEG"), min_side=1)
    assert (info.width, info.height, info.orientation) == (WIDTH, HEIGHT, 6)  # stored 64x48


def test_transparent_png_is_composited_not_black():
    variant = next(v for v in variants(0) if v.name == "rgba on white")
    pixels = decode(variant.data).pixels
    assert pixels.mean() > 0.6  # was: every pixel 0.0, an all-black tensor
    black = decode(variant.data, options=DecodeOptions(background="black")).pixels
    assert black.mean() < 0.2
    assert inspect_image(variant.data).transparency


def test_16_bit_brightness_and_preview_are_not_clipped():
    grey = np.linspace(0, 0.734 * 2, WIDTH * HEIGHT).reshape(HEIGHT, WIDTH).clip(0, 1)
    data = save(Image.fromarray(np.round(grey * 65535).astype(np.uint16)), "PNG")
    assert pixel_features(data)["brightness"] == pytest.approx(grey.mean(), abs=1e-4)
    tile = np.asarray(preview(data, 64))
    assert tile.mean() / 255 == pytest.approx(grey.mean(), abs=2 / 255)  # was: white tiles


@pytest.mark.parametrize("sbit", [None, 12])
def test_12_bit_data_in_16_is_scaled_by_its_bits(sbit):
    values = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (HEIGHT, 1))[:, :WIDTH]
    data = save(Image.fromarray(values), "PNG") if sbit is None else png_with_sbit(values, sbit)
    decoded = decode(data)
    np.testing.assert_allclose(decoded.pixels[..., 0], values / 4095, atol=1e-6)  # was max 0.004
    assert decoded.significant_bits == 12
    assert decoded.bit_depth_source == ("detected" if sbit is None else "sBIT")
    assert any("12-bit" in note for note in inspect_image(data).notes)
    full = decode(data, options=DecodeOptions(high_bit_depth="full_range"))
    # The file's own sBIT statement wins over the rule for files without one.
    expected = values / 65535 if sbit is None else values / 4095
    np.testing.assert_allclose(full.pixels[..., 0], expected, atol=1e-6)


def test_a_dark_full_range_16_bit_image_with_sbit_16_is_not_brightened():
    values = np.full((HEIGHT, WIDTH), 1000, dtype=np.uint16)
    decoded = decode(png_with_sbit(values, 16))
    np.testing.assert_allclose(decoded.pixels, 1000 / 65535, atol=1e-6)


def test_mpo_is_read_as_its_primary_jpeg():
    upright = Image.fromarray(picture(7))
    data = save(upright, "MPO", save_all=True, append_images=[upright.resize((20, 20))])
    info = inspect_image(data, min_side=1)
    assert (info.format, info.frames, info.extension) == ("MPO", 2, "jpg")
    jpeg = decode(save(upright, "JPEG", quality=75), size=SIZE).pixels
    assert np.abs(decode(data, size=SIZE).pixels - jpeg).mean() < 1e-6


def test_decompression_bomb_guard_runs_before_decoding():
    huge = save(Image.new("L", (5000, 5000)), "PNG")
    with pytest.raises(InvalidImageError, match="decompression-bomb guard"):
        read_header(huge, max_pixels=1_000_000)
    with pytest.raises(InvalidImageError, match="decompression-bomb guard"):
        decode(huge, max_pixels=1_000_000)


def corrupt_idat() -> bytes:
    data = bytearray(save(Image.new("RGB", (20, 20), (3, 4, 5)), "PNG"))
    data[data.index(b"IDAT") + 4] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (save(Image.new("F", (20, 20)), "TIFF"), "floating-point"),
        (save(Image.new("RGB", (20, 20)), "GIF"), "unsupported image format GIF"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "not an image|corrupt"),
        (corrupt_idat(), "corrupt.*checksum"),  # Pillow alone decodes it without a word
    ],
)
def test_unusable_files_are_refused_with_the_reason(data, reason):
    with pytest.raises(InvalidImageError, match=reason):
        decode(data)


def test_decoding_options_refuse_bad_values():
    with pytest.raises(ValueError, match="background"):
        DecodeOptions(background="purple")
    with pytest.raises(ValueError, match="0-255"):
        DecodeOptions(background=[0, 0, 300])
    with pytest.raises(ValueError):
        DecodeOptions(high_bit_depth="12")
    assert DecodeOptions(background=[0, 0, 0]).background == (0, 0, 0)


def test_ingestion_report_counts_what_decoding_does(tmp_path):
    folder = tmp_path / "photos" / "seven"
    folder.mkdir(parents=True)
    names = {
        "png exif orientation 6": "rotated.png",
        "rgba on white": "transparent.png",
        "12-bit in 16, no sBIT": "xray12.png",
        "greyscale 16-bit": "xray16.png",
        "mpo": "camera.mpo",
        "tiff, 2 pages": "scan.tiff",
        "heic": "phone.heic",
        "webp": "web.webp",
    }
    # Each file of another picture: variants of one picture are one image (same pixels).
    for picture_index, (variant, filename) in enumerate(names.items(), start=10):
        found = {v.name: v for v in variants(picture_index)}
        (folder / filename).write_bytes(found[variant].data)
    (folder / "old.bmp").write_bytes(next(v for v in variants(6) if v.name == "bmp").data)
    other = tmp_path / "photos" / "zero"
    other.mkdir()
    (other / "zero.png").write_bytes(variants(0)[0].data)
    manifest, report = build_manifest(tmp_path / "photos", min_side=8)
    assert report.kept == len(names) + 2, report.skipped
    assert report.decoding == {
        "exif_orientation": 1,
        "transparency": 1,
        "high_bit_depth": 2,
        "fewer_significant_bits": 1,
        "multi_frame": 2,  # the MPO's preview frame and the TIFF's second page
    }
    assert "1 with transparency" in report.decoding_summary()
    formats = {r.source_path.rsplit("/", 1)[1]: r.format for r in manifest.records}
    assert formats["phone.heic"] == "HEIF" and formats["camera.mpo"] == "MPO"
    assert manifest.decoding == DecodeOptions()


def test_a_corrupt_heic_or_webp_is_skipped_with_a_reason(tmp_path):
    folder = tmp_path / "x" / "a"
    folder.mkdir(parents=True)
    good = variants(0)
    heic = next(v for v in good if v.name == "heic").data
    (folder / "cut.heic").write_bytes(heic[: len(heic) // 2])
    (folder / "ok.png").write_bytes(good[0].data)
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buffer, "WEBP")
    (folder / "cut.webp").write_bytes(buffer.getvalue()[:20])
    _, report = build_manifest(tmp_path / "x", min_side=8)
    reasons = {s.path.rsplit("/", 1)[1]: s.reason for s in report.skipped}
    assert set(reasons) == {"cut.heic", "cut.webp"}
    assert all(reason for reason in reasons.values())
