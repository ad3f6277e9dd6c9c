"""DICOM through the single decoder: each rule's pixel values, refusals, consumers, privacy.

Expected values are computed by hand from DICOM PS3.3's formulas (C.11.1
modality LUT, C.11.2.1.1 VOI LUT, C.11.2.1.2 / C.11.2.1.3 window centre/width,
C.7.6.3.1.2 MONOCHROME1), not by calling pydicom.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from pydantic import ValidationError
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)

from clearsight import dicom
from clearsight.decode import (
    DEFAULT_OPTIONS,
    FORMAT_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    SUPPORTED_FORMAT_NAMES,
    DecodeOptions,
    InvalidImageError,
    decode,
    decode_batch,
    inspect,
    preview,
    read_header,
)
from clearsight.features import pixel_features
from clearsight.images import inspect_image
from tests.dicomfiles import Lut, dicom_bytes, dicom_without_pixels, relabelled, sample
from tests.imagefiles import photo, save

EXACT = 1e-6  # float32 arithmetic, [0, 1] units
RAMP_12 = np.array([0, 1000, 1536, 1537, 2000, 2048, 2304, 2559, 2560, 3000, 4095], np.uint16)
ALLOW = DecodeOptions(burned_in_annotation="allow")


def ramp_image(values: np.ndarray, rows: int = 8) -> np.ndarray:
    """``values`` repeated on ``rows`` rows: one column per value."""
    return np.tile(np.asarray(values), (rows, 1))


def grey(data: bytes, options: DecodeOptions = DEFAULT_OPTIONS) -> np.ndarray:
    """The first row of the decoded picture's first channel (full resolution)."""
    pixels = decode(data, options=options).pixels
    assert pixels.dtype == np.float32 and pixels.shape[2] == 3
    assert np.array_equal(pixels[..., 0], pixels[..., 2]), "greyscale replicated"
    return pixels[0, :, 0].astype(np.float64)


def linear_window(x: np.ndarray, centre: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 (LINEAR), output range [0, 1]."""
    x = np.asarray(x, np.float64)
    low, high = centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2
    inside = (x - (centre - 0.5)) / (width - 1) + 0.5
    return np.where(x <= low, 0.0, np.where(x > high, 1.0, inside))


# --- rule 6: window centre/width ---------------------------------------------------------


def test_window_centre_width_on_a_12_bit_cr():
    data = dicom_bytes(ramp_image(RAMP_12), bits_stored=12, window_center=2048, window_width=1024)
    values = dict(zip(RAMP_12.tolist(), grey(data), strict=True))
    assert values[0] == values[1000] == values[1536] == 0.0  # <= c - 0.5 - (w - 1) / 2
    assert values[2560] == values[3000] == values[4095] == 1.0  # > c - 0.5 + (w - 1) / 2
    assert values[2048] == pytest.approx(0.5 + 0.5 / 1023, abs=EXACT)  # ~0.5
    assert values[1537] == pytest.approx(1 / 1023, abs=EXACT)
    assert values[2304] == pytest.approx((2304 - 2047.5) / 1023 + 0.5, abs=EXACT)
    np.testing.assert_allclose(grey(data), linear_window(RAMP_12, 2048, 1024), atol=EXACT)
    assert "window centre 2048 / width 1024 (LINEAR) from the file" in decode(data).notes


def test_monochrome1_is_the_same_ramp_inverted():
    data = dicom_bytes(
        ramp_image(RAMP_12),
        photometric="MONOCHROME1",
        bits_stored=12,
        window_center=2048,
        window_width=1024,
    )
    np.testing.assert_allclose(grey(data), 1 - linear_window(RAMP_12, 2048, 1024), atol=EXACT)
    assert grey(data)[0] == 1.0  # the lowest value is white in MONOCHROME1
    assert "MONOCHROME1 inverted (higher is brighter)" in decode(data).notes


def test_rescale_slope_and_intercept_then_window():
    stored = np.array([0, 12, 13, 400, 512, 700, 1011, 1012, 2000], np.uint16)
    data = dicom_bytes(
        ramp_image(stored),
        bits_stored=12,
        modality="CT",
        rescale_slope=2,
        rescale_intercept=-1024,
        window_center=0,
        window_width=2000,
    )
    hounsfield = 2.0 * stored - 1024  # C.11.1.1.2: output = m * SV + b
    expected = linear_window(hounsfield, 0, 2000)
    np.testing.assert_allclose(grey(data), expected, atol=EXACT)
    assert grey(data)[4] == pytest.approx(0.5 + 0.5 / 1999, abs=EXACT)  # stored 512 -> 0 HU
    notes = decode(data).notes
    assert "modality LUT: RescaleSlope 2 / RescaleIntercept -1024 applied" in notes


def test_linear_exact_and_sigmoid_window_functions():
    exact = dicom_bytes(
        ramp_image(RAMP_12),
        bits_stored=12,
        window_center=2048,
        window_width=1024,
        voi_function="LINEAR_EXACT",
    )
    x = RAMP_12.astype(np.float64)
    expected = np.clip((x - 2048) / 1024 + 0.5, 0, 1)  # C.11.2.1.3.2
    np.testing.assert_allclose(grey(exact), expected, atol=EXACT)

    sigmoid = dicom_bytes(
        ramp_image(RAMP_12),
        bits_stored=12,
        window_center=2048,
        window_width=1024,
        voi_function="SIGMOID",
    )
    expected = 1 / (1 + np.exp(-4 * (x - 2048) / 1024))  # C.11.2.1.3.1
    np.testing.assert_allclose(grey(sigmoid), expected, atol=EXACT)
    assert grey(sigmoid)[RAMP_12.tolist().index(2560)] == pytest.approx(1 / (1 + math.exp(-2)))


def test_the_first_of_several_windows_is_used_and_named():
    data = dicom_bytes(
        ramp_image(RAMP_12), bits_stored=12, window_center=[2048, 500], window_width=[1024, 100]
    )
    np.testing.assert_allclose(grey(data), linear_window(RAMP_12, 2048, 1024), atol=EXACT)
    assert any("the first of 2" in note for note in decode(data).notes)


def test_a_window_pydicom_rejects_is_ignored_with_a_note():
    values = np.array([100, 350, 600, 1100], np.uint16)
    data = dicom_bytes(ramp_image(values), bits_stored=12, window_center=600, window_width=0)
    np.testing.assert_allclose(grey(data), (values - 100) / 1000, atol=EXACT)
    assert any(note.startswith("VOI LUT or window ignored") for note in decode(data).notes)


# --- rule 6: VOI LUT Sequence --------------------------------------------------------------


def test_voi_lut_sequence_maps_through_its_entries():
    stored = np.array([0, 999, 1000, 1001, 1002, 1003, 1004, 4095], np.uint16)
    lut = Lut(first_mapped=1000, bits=8, entries=[0, 85, 170, 255])
    data = dicom_bytes(ramp_image(stored), bits_stored=12, voi_lut=lut)
    # C.11.2.1.1: below the first mapped value -> first entry, past the end -> last;
    # an 8-bit LUT's output range is 0..255.
    expected = np.array([0, 0, 0, 85, 170, 255, 255, 255]) / 255
    np.testing.assert_allclose(grey(data), expected, atol=EXACT)


def test_voi_lut_sequence_wins_over_a_window_and_the_first_lut_is_used():
    stored = np.array([1000, 1001, 1002, 1003], np.uint16)
    first = Lut(first_mapped=1000, bits=12, entries=[0, 1365, 2730, 4095])
    second = Lut(first_mapped=1000, bits=12, entries=[4095, 2730, 1365, 0])
    data = dicom_bytes(
        ramp_image(stored),
        bits_stored=12,
        voi_lut=[first, second],
        window_center=2048,
        window_width=1024,
    )
    np.testing.assert_allclose(grey(data), np.array([0, 1365, 2730, 4095]) / 4095, atol=EXACT)
    assert any("the first of 2, preferred to the window" in n for n in decode(data).notes)


def test_an_8_bit_voi_lut_with_4096_entries_maps_every_entry():
    # 12-bit input, 8-bit output: the common CR shape (pydicom 3.0.2's apply_voi
    # alone would wrap its indices past entry 255).
    stored = np.array([0, 255, 256, 1000, 4095], np.uint16)
    lut = Lut(first_mapped=0, bits=8, entries=(np.arange(4096) // 16).tolist())
    data = dicom_bytes(ramp_image(stored), bits_stored=12, voi_lut=lut)
    np.testing.assert_allclose(grey(data), (stored // 16) / 255, atol=EXACT)


def test_a_voi_lut_declaring_more_bits_than_its_entries_use_is_scaled_by_the_entries():
    stored = np.array([0, 1000, 2048, 4095], np.uint16)
    lut = Lut(first_mapped=0, bits=16, entries=list(range(4096)))  # 12-bit entries
    data = dicom_bytes(ramp_image(stored), bits_stored=12, voi_lut=lut)
    np.testing.assert_allclose(grey(data), stored / 4095, atol=EXACT)
    assert any("use 12 of the 16 bits" in note for note in decode(data).notes)


# --- rule 5: Modality LUT Sequence ---------------------------------------------------------


def test_modality_lut_sequence_then_the_min_max_fallback():
    stored = np.array([0, 1, 2, 3, 3000], np.uint16)
    lut = Lut(first_mapped=0, bits=16, entries=[10, 20, 40, 80])
    data = dicom_bytes(ramp_image(stored), bits_stored=12, modality_lut=lut)
    modality_values = np.array([10, 20, 40, 80, 80])  # past the last entry: the last
    np.testing.assert_allclose(grey(data), (modality_values - 10) / 70, atol=EXACT)
    assert "modality LUT: Modality LUT Sequence applied" in decode(data).notes


# --- rule 7: no VOI in the file ------------------------------------------------------------


def test_without_a_window_high_bit_depth_is_min_max_by_default():
    values = np.array([100, 350, 600, 1100], np.uint16)
    data = dicom_bytes(ramp_image(values), bits_stored=12)
    np.testing.assert_allclose(grey(data), (values - 100) / 1000, atol=EXACT)
    assert any("min-max of the modality values (100 to 1100)" in n for n in decode(data).notes)


def test_without_a_window_bits_stored_option_is_a_fixed_scale():
    values = np.array([100, 350, 600, 1100, 4095], np.uint16)
    options = DecodeOptions(dicom_without_window="bits_stored")
    data = dicom_bytes(ramp_image(values), bits_stored=12)
    np.testing.assert_allclose(grey(data, options), values / 4095, atol=EXACT)
    # With a rescale, BitsStored's range goes through it: [-1024, 4095 * 2 - 1024].
    rescaled = dicom_bytes(
        ramp_image(values), bits_stored=12, rescale_slope=2, rescale_intercept=-1024
    )
    np.testing.assert_allclose(grey(rescaled, options), values / 4095, atol=EXACT)


def test_a_constant_frame_without_window_is_black():
    data = dicom_bytes(np.full((8, 8), 700, np.uint16), bits_stored=12)
    assert decode(data).pixels.max() == 0.0


def test_eight_bit_greyscale_decodes_exactly_as_the_same_png():
    picture = np.asarray(photo(3).convert("L"))
    data = dicom_bytes(picture, modality="OT")
    png = save(Image.fromarray(picture, "L"), "PNG")
    np.testing.assert_array_equal(decode(data).pixels, decode(png).pixels)
    np.testing.assert_array_equal(decode(data, size=32).pixels, decode(png, size=32).pixels)
    assert inspect(data).perceptual_hash == inspect(png).perceptual_hash != ""
    inverted = dicom_bytes(255 - picture, photometric="MONOCHROME1", modality="OT")
    np.testing.assert_array_equal(decode(inverted, size=32).pixels, decode(png, size=32).pixels)


# --- rule 9: colour ------------------------------------------------------------------------


def test_rgb_decodes_exactly_as_the_same_png():
    rgb = np.asarray(photo(4))
    data = dicom_bytes(rgb, photometric="RGB", modality="OT")
    png = save(Image.fromarray(rgb, "RGB"), "PNG")
    np.testing.assert_array_equal(decode(data).pixels, decode(png).pixels)
    np.testing.assert_array_equal(decode(data, size=32).pixels, decode(png, size=32).pixels)
    assert inspect(data).perceptual_hash == inspect(png).perceptual_hash
    assert read_header(data).mode == "RGB"


def test_ybr_full_is_converted_to_rgb():
    rgb = np.asarray(photo(5))
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    data = dicom_bytes(ybr, photometric="YBR_FULL", modality="OT")
    difference = np.abs(decode(data).pixels - rgb / 255)
    assert difference.max() <= 2 / 255  # 8-bit YCbCr round trip (PS3.3 C.7.6.3.1.2)
    assert "YBR_FULL converted to RGB" in decode(data).notes


def test_sixteen_bit_colour_keeps_its_high_byte():
    rgb = np.asarray(photo(6))
    data = dicom_bytes(rgb.astype(np.uint16) * 256 + 255, photometric="RGB", modality="OT")
    np.testing.assert_array_equal(decode(data).pixels, rgb.astype(np.float32) / 255)


# --- rule 3: frames ------------------------------------------------------------------------


def test_multi_frame_uses_frame_one_and_reports_the_count():
    frames = np.stack([np.full((8, 8), value, np.uint16) for value in (1000, 2000, 3000)])
    data = dicom_bytes(frames, frames=3, bits_stored=12, window_center=2048, window_width=4096)
    expected = (1000 - 2047.5) / 4095 + 0.5  # frame 1's value, C.11.2.1.2.1
    pixels = decode(data).pixels
    assert pixels.shape == (8, 8, 3)
    np.testing.assert_allclose(pixels, expected, atol=EXACT)
    assert read_header(data).frames == 3
    assert inspect(data).header.frames == 3
    assert "frame 1 of 3 used" in decode(data).notes
    assert inspect_image(data).frames == 3


def test_enhanced_multi_frame_takes_frame_one_window_from_the_functional_groups():
    window = Dataset()
    window.WindowCenter, window.WindowWidth = 2048, 1024
    shared = Dataset()
    shared.FrameVOILUTSequence = [window]
    frames = np.stack([ramp_image(RAMP_12), ramp_image(RAMP_12[::-1])])
    data = dicom_bytes(
        frames, frames=2, bits_stored=12, extra={"SharedFunctionalGroupsSequence": [shared]}
    )
    np.testing.assert_allclose(grey(data), linear_window(RAMP_12, 2048, 1024), atol=EXACT)
    assert any("FrameVOILUTSequence of frame 1" in n for n in decode(data).notes)


# --- rule 2: refusals ----------------------------------------------------------------------


def test_a_file_without_pixel_data_is_refused_with_the_reason():
    with pytest.raises(InvalidImageError) as error:
        inspect(dicom_without_pixels())
    assert str(error.value) == (
        "DICOM file without pixel data (e.g. a structured report or a presentation state): "
        "not an image"
    )
    with pytest.raises(InvalidImageError, match="without pixel data"):
        read_header(sample("reportsi.dcm"))


def test_floating_point_pixel_data_is_refused():
    data = dicom_without_pixels(
        modality="OT",
        extra={"Rows": 2, "Columns": 2, "FloatPixelData": np.zeros(4, "<f4").tobytes()},
    )
    with pytest.raises(InvalidImageError, match="floating-point pixel data"):
        decode(data)


def test_burned_in_annotation_is_refused_by_default_and_decoded_when_allowed():
    data = dicom_bytes(ramp_image(RAMP_12), bits_stored=12, burned_in=True)
    for call in (inspect, decode, lambda d: decode_batch([d], 8), lambda d: preview(d, 8)):
        with pytest.raises(InvalidImageError, match=r"BurnedInAnnotation = YES.*allow"):
            call(data)
    decoded = decode(data, options=ALLOW)
    assert decoded.pixels.shape == (8, len(RAMP_12), 3)
    assert any("burned-in annotation" in note for note in decoded.notes)
    assert inspect(data, options=ALLOW).pixel_sha256
    not_burned = dicom_bytes(ramp_image(RAMP_12), bits_stored=12, burned_in=False)
    assert decode(not_burned).pixels.shape == (8, len(RAMP_12), 3)


def test_max_pixels_is_checked_on_rows_and_columns_before_decoding():
    # The header claims 20000 x 20000 but holds 64 samples: decoding would fail as
    # truncated; the refusal says "too large", so no pixel was decoded.
    data = dicom_bytes(np.zeros((8, 8), np.uint16), extra={"Rows": 20000, "Columns": 20000})
    for call in (read_header, inspect, decode):
        with pytest.raises(InvalidImageError, match="image too large: 20000x20000.*bomb"):
            call(data)
    small = dicom_bytes(np.zeros((8, 8), np.uint16))
    with pytest.raises(InvalidImageError, match="exceeds max_pixels=63"):
        decode(small, max_pixels=63)
    assert decode(small, max_pixels=64).pixels.shape == (8, 8, 3)


def test_jpeg_lossy_sample_is_refused_with_the_codec_reason():
    with pytest.raises(InvalidImageError) as error:
        inspect(sample("JPEG-lossy.dcm"))
    reason = str(error.value)
    assert "1.2.840.10008.1.2.4.51 (JPEG Extended (Process 2 and 4))" in reason
    assert "could not be decoded by the installed codecs" in reason
    assert "pillow:" in reason and "pylibjpeg:" in reason
    assert "python-gdcm" in reason  # the plugin pydicom says is missing


def test_a_transfer_syntax_without_an_installed_codec_is_refused_from_the_header():
    data = relabelled(dicom_bytes(ramp_image(RAMP_12), bits_stored=12), HTJ2KLossless)
    with pytest.raises(InvalidImageError) as error:
        read_header(data)
    reason = str(error.value)
    assert "1.2.840.10008.1.2.4.201 (High-Throughput JPEG 2000" in reason
    assert "no installed codec decodes it" in reason and "pylibjpeg-openjpeg" in reason


def test_a_corrupt_compressed_stream_is_refused():
    data = relabelled(dicom_bytes(ramp_image(RAMP_12).astype(np.uint8)), JPEGBaseline8Bit)
    with pytest.raises(InvalidImageError, match="could not be decoded by the installed codecs"):
        decode(data)


def test_truncated_or_unparseable_dicom_is_refused():
    with pytest.raises(InvalidImageError, match="corrupt or truncated DICOM pixel data"):
        decode(sample("MR_truncated.dcm"))
    ct = sample("CT_small.dcm")
    with pytest.raises(InvalidImageError, match="without its pixel data: .* truncated"):
        read_header(ct[: ct.index(b"\xe0\x7f\x10\x00")])  # cut before PixelData (7FE0,0010)
    with pytest.raises(InvalidImageError, match="corrupt or truncated DICOM file"):
        read_header(ct[:140])  # cut inside the File Meta Information


def test_a_data_set_without_the_part_10_header_is_refused_with_its_reason():
    with pytest.raises(InvalidImageError) as error:
        read_header(sample("ExplVR_LitEndNoMeta.dcm"))
    assert str(error.value) == dicom.BARE_DATASET_REASON


# --- pydicom's shipped files -----------------------------------------------------------------

SHIPPED = [
    "CT_small.dcm",
    "MR_small.dcm",
    "dicomdirtests/77654033/CR1/6154",  # CR, MONOCHROME1, rescale and window
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "JPEG2000.dcm",  # JPEG 2000, NM
    "693_J2KI.dcm",  # JPEG 2000, 14-bit signed CT
    "JPGExtended.dcm",  # JPEG extended, 12-bit
    "JPEGLSNearLossless_08.dcm",
    "JPEGLSNearLossless_16.dcm",
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless, RGB
    "SC_rgb_rle.dcm",
    "SC_rgb_rle_16bit.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",  # JPEG baseline, YBR_FULL_422
    "SC_ybr_full_422_uncompressed.dcm",
    "examples_ybr_color.dcm",  # 30 frames
    "examples_palette.dcm",
    "examples_jpeg2k.dcm",  # JPEG 2000, YBR_RCT
    "image_dfl.dcm",  # deflated
    "liver_1frame.dcm",  # 1-bit segmentation
]


@pytest.mark.parametrize("name", SHIPPED)
def test_pydicom_shipped_files_decode(name):
    data = sample(name)
    header = read_header(data)
    assert header.format == "DICOM" and header.extension == "dcm"
    decoded = decode(data)
    assert decoded.pixels.shape == (header.height, header.width, 3)
    assert decoded.pixels.dtype == np.float32
    assert np.isfinite(decoded.pixels).all()
    assert 0.0 <= decoded.pixels.min() <= decoded.pixels.max() <= 1.0
    assert decoded.pixels.max() > decoded.pixels.min()
    info = inspect(data)
    assert len(info.pixel_sha256) == 64
    assert info.notes[0].startswith("DICOM")


def test_shipped_cr_monochrome1_is_rescaled_windowed_and_inverted():
    notes = decode(sample("dicomdirtests/77654033/CR1/6154")).notes
    assert notes[0] == "DICOM CR, MONOCHROME1, 12 of 16 bits, Explicit VR Little Endian"
    assert "modality LUT: RescaleSlope 0.684 / RescaleIntercept 200 applied" in notes
    assert "window centre 1600 / width 2800 (LINEAR) from the file" in notes
    assert "MONOCHROME1 inverted (higher is brighter)" in notes


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_expb.dcm",
    ],
)
def test_lossless_variants_give_the_pixels_of_the_uncompressed_original(name):
    original, variant = sample("MR_small.dcm"), sample(name)
    np.testing.assert_array_equal(decode(variant).pixels, decode(original).pixels)
    assert inspect(variant).pixel_sha256 == inspect(original).pixel_sha256
    assert inspect(variant).perceptual_hash == inspect(original).perceptual_hash


@pytest.mark.parametrize(
    "syntax",
    [ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian, RLELossless],
    ids=lambda uid: uid.name,
)
def test_built_files_decode_alike_in_every_transfer_syntax(syntax):
    pixels = ramp_image(RAMP_12)
    options = {"bits_stored": 12, "window_center": 2048, "window_width": 1024}
    original = dicom_bytes(pixels, **options)
    variant = dicom_bytes(pixels, transfer_syntax=syntax, **options)
    np.testing.assert_array_equal(decode(variant).pixels, decode(original).pixels)
    assert inspect(variant).pixel_sha256 == inspect(original).pixel_sha256


def test_pixel_identity_includes_the_photometric_interpretation():
    pixels = ramp_image(RAMP_12)
    monochrome2 = dicom_bytes(pixels, bits_stored=12)
    monochrome1 = dicom_bytes(pixels, bits_stored=12, photometric="MONOCHROME1")
    rewindowed = dicom_bytes(pixels, bits_stored=12, window_center=100, window_width=50)
    assert inspect(monochrome2).pixel_sha256 != inspect(monochrome1).pixel_sha256
    # The same stored samples under another window: the same acquisition.
    assert inspect(monochrome2).pixel_sha256 == inspect(rewindowed).pixel_sha256


# --- every consumer --------------------------------------------------------------------------


def test_every_consumer_reads_dicom():
    files = [
        sample("CT_small.dcm"),
        sample("MR_small.dcm"),
        dicom_bytes(
            ramp_image(RAMP_12, rows=40), bits_stored=12, window_center=2048, window_width=1024
        ),
        dicom_bytes(np.asarray(photo(7)), photometric="RGB", modality="OT"),
    ]
    batch = decode_batch(files, 32)
    assert batch.shape == (4, 32, 32, 3) and batch.dtype == np.float32
    assert batch.min() >= 0.0 and batch.max() <= 1.0
    for data, model_input in zip(files, batch, strict=True):
        np.testing.assert_array_equal(model_input, decode(data, size=32).pixels)

    thumbnail = preview(files[0], 48)
    assert thumbnail.mode == "RGB" and max(thumbnail.size) <= 48

    info = inspect_image(files[2])
    assert (info.format, info.extension, info.mode) == ("DICOM", "dcm", "I;16")
    assert (info.width, info.height, info.significant_bits) == (len(RAMP_12), 40, 12)
    assert pixel_features(files[0], size=32)["width"] == 128.0


def test_extensions_and_options():
    assert FORMAT_EXTENSIONS["DICOM"] == "dcm"
    assert {".dcm", ".dicom"} <= SUPPORTED_EXTENSIONS
    assert "DICOM" in SUPPORTED_FORMAT_NAMES
    old = DecodeOptions.model_validate({"background": [255, 255, 255], "high_bit_depth": "auto"})
    assert (old.burned_in_annotation, old.dicom_without_window) == ("skip", "min_max")
    with pytest.raises(ValidationError):
        DecodeOptions(burned_in_annotation="maybe")


def test_files_that_are_not_dicom_are_unaffected():
    # A PNG whose text chunk puts "DICM" at offset 128 is still a PNG.
    image = Image.fromarray(np.full((16, 16), 77, np.uint8), "L")

    def with_text(text: str) -> bytes:
        info = PngImagePlugin.PngInfo()
        info.add_text("note", text)
        return save(image, "PNG", pnginfo=info)

    offset = with_text("x" * 200).index(b"x" * 200)
    crafted = with_text("x" * (128 - offset) + "DICM" + "y" * (196 - 128 + offset))
    assert crafted[128:132] == b"DICM"
    assert not dicom.is_dicom(crafted)
    assert read_header(crafted).format == "PNG"
    assert inspect(crafted).header.format == "PNG"
    np.testing.assert_array_equal(decode(crafted).pixels, decode(save(image, "PNG")).pixels)


# --- privacy ---------------------------------------------------------------------------------

IDENTITY = {
    "patient_name": "Doe^Jane^Secretname",
    "patient_id": "PID-424242",
    "extra": {
        "PatientBirthDate": "19700101",
        "AccessionNumber": "ACC998877",
        "InstitutionName": "Saint Nowhere Hospital",
        "StudyDescription": "Chest of Secretname",
        "WindowCenterWidthExplanation": "Secretname preset",
    },
}
SECRETS = ("Doe", "Jane", "Secretname", "424242", "19700101", "998877", "Nowhere")


def identified(**options) -> bytes:
    return dicom_bytes(ramp_image(RAMP_12, rows=70), bits_stored=12, **IDENTITY, **options)


def refusals() -> list[tuple[str, bytes, dict]]:
    return [
        ("burned-in", identified(burned_in=True), {}),
        ("too large", identified(), {"max_pixels": 10}),
        ("no codec", relabelled(identified(), HTJ2KLossless), {}),
        ("codec failure", relabelled(identified(), JPEGBaseline8Bit), {}),
        ("no pixels", dicom_without_pixels(patient_name=IDENTITY["patient_name"]), {}),
    ]


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_a_malformed_window_function_is_not_quoted():
    data = identified(window_center=2048, window_width=1024, voi_function="Doe Jane")
    notes = " ".join(decode(data).notes)
    assert "VOI LUT or window ignored" in notes
    assert "Doe" not in notes and "DOE" not in notes


def test_identifying_values_never_reach_notes_headers_or_errors():
    data = identified(window_center=[2048, 1000], window_width=[1024, 500])
    decoded, info = decode(data), inspect(data)
    told = " ".join([*decoded.notes, *info.notes, repr(decoded.header), repr(read_header(data))])
    told += repr(dicom.read_header(data, max_pixels=10**8))
    for secret in SECRETS:
        assert secret not in told
    for what, bad, keywords in refusals():
        with pytest.raises(InvalidImageError) as error:
            inspect(bad, **keywords)
        for secret in SECRETS:
            assert secret not in str(error.value), what


def test_the_test_files_do_carry_the_identifying_values():
    from pydicom import dcmread

    dataset = dcmread(io.BytesIO(identified()))
    assert str(dataset.PatientName) == "Doe^Jane^Secretname"
    assert dataset.PatientID == "PID-424242"
