"""DICOM pixel decoding: a DICOM file's bytes -> its first frame as a picture in [0, 1].

:mod:`clearsight.decode` calls this module for every file it recognises as
DICOM, so ingestion, training, serving, the gate's features and the previews
see the same pixels as for any other format. It uses pydicom only (no ZenML,
no TensorFlow); pydicom's own functions do the DICOM arithmetic
(``pydicom.pixels.apply_modality_lut``, ``apply_voi``, ``apply_windowing``,
``apply_color_lut``, and its decoders' YCbCr to RGB conversion).

Decoding rules, applied in this order (PS3.3 is DICOM Part 3, Information
Object Definitions):

1. **File format**: a DICOM Part 10 file (PS3.10 section 7.1): a 128-byte
   preamble, ``DICM``, then the File Meta Information, whose
   TransferSyntaxUID says how the data set and its pixels are encoded. A bare
   data set without that header (what ``dcmread(..., force=True)`` reads) is
   refused with its own reason: its transfer syntax would have to be guessed,
   and ``force=True`` parses almost any bytes as something, so detecting it is
   a heuristic, used only to word the refusal (:func:`looks_like_bare_dataset`).
2. **Refusals before any pixel is decoded** (:class:`InvalidImageError`, with
   the reason and what to do): no PixelData (a structured report, a
   presentation state, a DICOMDIR...: not an image); FloatPixelData or
   DoubleFloatPixelData (floating-point parametric maps: refused, as
   floating-point images of other formats are); a PhotometricInterpretation
   other than MONOCHROME1, MONOCHROME2, PALETTE COLOR, RGB, YBR_FULL,
   YBR_FULL_422, YBR_ICT or YBR_RCT (PS3.3 C.7.6.3.1.2); a transfer syntax
   without a pydicom decoder, or whose decoder has no installed plugin (the
   UID, its name, and the packages pydicom names, from
   ``pydicom.pixels.get_decoder(uid).missing_dependencies``); Rows x Columns
   above ``max_pixels`` (decompression-bomb guard); and, unless allowed,
   ``BurnedInAnnotation = YES`` (PS3.3 C.7.6.1.1.5: the pixels carry text,
   which may identify the patient).
3. **Frame**: only the first frame is decoded (``index=0``); the header reports
   NumberOfFrames. For Enhanced multi-frame objects, frame 1's Pixel Value
   Transformation and Frame VOI LUT functional groups (PS3.3 C.7.6.16.2.9 and
   C.7.6.16.2.10; per-frame first, else shared) supply the rescale and window
   when the top level has none.
4. **Pixel decoding**: pydicom's decoder for the transfer syntax (Pillow,
   pylibjpeg and pylibjpeg-libjpeg are installed: uncompressed, deflated, RLE,
   JPEG baseline/extended/lossless, JPEG-LS and JPEG 2000). When every
   installed plugin fails (e.g. 12-bit JPEG extended data libjpeg rejects, as
   pydicom's ``JPEG-lossy.dcm``) the file is refused with each plugin's reason
   and the plugins that are not installed. YBR_* colour is converted to RGB by
   the decoder (pydicom's default ``as_rgb=True``, ``convert_color_space``);
   PALETTE COLOR through ``apply_color_lut`` (PS3.3 C.7.6.3.1.5).
5. **Modality LUT** (greyscale; PS3.3 C.11.1): the Modality LUT Sequence, else
   RescaleSlope and RescaleIntercept, by ``pydicom.pixels.apply_modality_lut``.
   Invalid values refuse the file (the stored values mean nothing without it).
6. **VOI LUT** (greyscale; PS3.3 C.11.2): the VOI LUT Sequence (C.11.2.1.1)
   when present, else WindowCenter/WindowWidth (C.11.2.1.2) with the
   VOILUTFunction LINEAR, LINEAR_EXACT or SIGMOID (C.11.2.1.3); when both are
   present the LUT wins (pydicom's ``apply_voi_lut(prefer_lut=True)``
   default); when several are given, the first (``index=0``), and the notes
   say how many there were. ``apply_voi`` / ``apply_windowing`` compute the
   values; their output range is mapped to [0, 1]: ``0 .. 2**n - 1`` for a
   LUT of n bits per entry (the LUT Descriptor's third value, or the bits its
   entries actually use when fewer, at least 8: some CR devices declare 16
   bits for 12-bit entries, and Horos and Cornerstone scale by the entries'
   range too), and for a
   window the range ``apply_windowing`` itself maps minus and plus infinity
   to (BitsStored's range through the modality LUT). A window or LUT pydicom
   rejects (e.g. WindowWidth < 1 with LINEAR) is ignored, with a note, and
   rule 7 applies.
7. **No VOI in the file**: BitsStored <= 8 (secondary captures, already
   rendered): BitsStored's range through the modality LUT is mapped to
   [0, 1], i.e. 8-bit samples are divided by 255 like other 8-bit images.
   BitsStored > 8, by ``DecodeOptions.dicom_without_window``: ``"min_max"``
   (default) maps the smallest and largest modality value of the frame to 0
   and 1 (a constant frame gives 0), as DICOM viewers do for an image without
   a window (DCMTK's ``dcm2pnm --min-max-window``): raw CR/DX detector values
   and CT numbers fill a small part of BitsStored's range, so a fixed scale
   shows them almost uniformly grey; ``"bits_stored"`` maps BitsStored's
   range through the modality LUT instead, a fixed scale like a PNG's
   ``sBIT`` (the analogue of ``DecodeOptions.high_bit_depth`` for DICOM,
   which ignores that option: BitsStored states the significant bits, as
   ``sBIT`` does, so they are never guessed from the values).
8. **MONOCHROME1** (PS3.3 C.7.6.3.1.2: the minimum sample is white): inverted
   after the VOI (``1 - v``), so higher is brighter, as for MONOCHROME2. The
   Presentation LUT Shape (2050,0020) is not applied: where it is defined for
   radiographs (DX, PS3.3 C.8.11.1.1.1) it restates the photometric
   interpretation (INVERSE for MONOCHROME1), so applying both would invert
   twice.
9. **Colour** (RGB after rule 4): like other colour images, 8 bits per
   sample divided by 255; more than 8 bits reduced to the 8 high bits of
   BitsStored (as Pillow reduces 16-bit colour PNGs). No modality or VOI LUT
   applies to colour (PS3.3 C.11.1, C.11.2 are for greyscale).

Output (:class:`DicomPicture`): ``float32`` in [0, 1], ``(Rows, Columns)``
for greyscale, ``(Rows, Columns, 3)`` for colour; :mod:`clearsight.decode`
replicates greyscale to three channels and resizes.

Privacy: nothing this module returns (header, notes, error messages) carries
an identifying attribute. Only these technical attributes are read into them:
Modality, PhotometricInterpretation, Rows, Columns, SamplesPerPixel,
BitsAllocated, BitsStored, PixelRepresentation, NumberOfFrames, the transfer
syntax, the rescale and window values, LUT descriptors and
BurnedInAnnotation; free-text attributes (WindowCenterWidthExplanation,
LUTExplanation) are not. Errors raised while parsing the file are reported by
their exception type only; codec errors are quoted (they describe the
compressed stream, not the data set).
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    apply_windowing,
    as_pixel_options,
    convert_color_space,
    get_decoder,
)
from pydicom.uid import UID

from clearsight.errors import InvalidImageError

__all__ = [
    "BARE_DATASET_REASON",
    "MAGIC",
    "PREAMBLE_LENGTH",
    "DicomHeader",
    "DicomPicture",
    "InvalidImageError",
    "decode",
    "is_dicom",
    "looks_like_bare_dataset",
    "read_header",
]

PREAMBLE_LENGTH = 128  # PS3.10 section 7.1
MAGIC = b"DICM"
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
PALETTE = "PALETTE COLOR"

BARE_DATASET_REASON = (
    "DICOM data set without the Part 10 file header (128-byte preamble, 'DICM' and the "
    "File Meta Information with its TransferSyntaxUID): its encoding would have to be "
    "guessed, so it is not decoded; re-save it as a DICOM file, e.g. with pydicom's "
    "dcmwrite(path, dataset, enforce_file_format=True) or DCMTK's dcmconv"
)

BurnedInPolicy = Literal["skip", "allow"]
WithoutWindow = Literal["min_max", "bits_stored"]

# PyPI packages whose name differs from the plugin name pydicom reports.
_PLUGIN_PACKAGES = {"gdcm": "python-gdcm"}
# Code strings (CS) and UIDs quoted in notes and errors must look like them.
_CODE_STRING = re.compile(r"[A-Z0-9_ ]{1,16}")
_UID = re.compile(r"[0-9.]{1,64}")
# Functional-group attributes copied to the top level for frame 1 (rule 3).
_FRAME_GROUPS = {
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_MESSAGE_LIMIT = 300  # characters of a codec's error quoted in a refusal


@dataclass(frozen=True)
class DicomHeader:
    """The technical attributes of a DICOM image, read without decoding a pixel.

    Attributes:
        rows: Rows, the height of a frame in pixels.
        columns: Columns, the width of a frame in pixels.
        frames: NumberOfFrames (1 when absent); only the first is decoded.
        samples_per_pixel: SamplesPerPixel, 1 (greyscale, palette) or 3.
        photometric: PhotometricInterpretation as stored (``MONOCHROME1``,
            ``MONOCHROME2``, ``PALETTE COLOR``, ``RGB``, ``YBR_FULL``...).
        bits_allocated: BitsAllocated (1, 8, 16 or 32).
        bits_stored: BitsStored, the significant bits of each sample.
        signed: PixelRepresentation is 1 (two's complement samples).
        modality: Modality (``CR``, ``DX``, ``CT``, ``MR``...), or ``""``.
        transfer_syntax_uid: The File Meta Information's TransferSyntaxUID.
        transfer_syntax_name: Its name (``Explicit VR Little Endian``...).
        burned_in_annotation: BurnedInAnnotation is ``YES``.
    """

    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    signed: bool
    modality: str
    transfer_syntax_uid: str
    transfer_syntax_name: str
    burned_in_annotation: bool

    @property
    def colour(self) -> bool:
        """Decoded to RGB (colour or palette), not greyscale."""
        return self.photometric not in MONOCHROME

    @property
    def mode(self) -> str:
        """Pillow's name for samples like the stored ones (``L``, ``I;16``, ``RGB``...).

        ``1`` (BitsAllocated 1), ``L`` (up to 8 bits), ``I;16`` / ``I;16S``
        (9-16 bits, unsigned / signed), ``I`` (more), ``P`` (palette) or
        ``RGB``; at most 16 characters, as the catalog stores it.
        """
        if self.photometric == PALETTE:
            return "P"
        if self.colour:
            return "RGB"
        if self.bits_allocated == 1:
            return "1"
        if self.bits_stored <= 8:
            return "L"
        if self.bits_stored <= 16:
            return "I;16S" if self.signed else "I;16"
        return "I"

    def describe(self) -> str:
        """Technical summary, e.g. ``DICOM CR, MONOCHROME1, 12 of 16 bits, Deflated...``."""
        kind = f"DICOM {self.modality}" if self.modality else "DICOM"
        return (
            f"{kind}, {self.photometric}, {self.bits_stored} of {self.bits_allocated} bits"
            f"{' signed' if self.signed else ''}, {self.transfer_syntax_name}"
        )


@dataclass(frozen=True)
class DicomPicture:
    """The first frame of a DICOM image, decoded by this module's rules.

    Attributes:
        header: The file's technical attributes.
        pixels: ``float32`` in [0, 1]: ``(rows, columns)`` for greyscale,
            ``(rows, columns, 3)`` RGB for colour; higher is brighter.
        stored: Frame 1's samples as decoded, before any modality or VOI
            LUT, little-endian integers: ``(rows, columns)`` greyscale, or
            ``(rows, columns, 3)`` RGB (YBR converted, a palette looked up,
            as :mod:`clearsight.decode` resolves PNG palettes for identity).
        identity: What the samples are, for hashing them with
            ``stored``: photometric interpretation, dtype (little-endian) and
            BitsStored, e.g. ``DICOM MONOCHROME1 <u2 12``.
        eight_bit: Every value of ``pixels`` is a multiple of 1/255 (colour,
            or greyscale of at most 8 bits shown as stored or inverted): it
            may be handled as an 8-bit image without loss.
        notes: What decoding did, in words (technical attributes only).
    """

    header: DicomHeader
    pixels: np.ndarray
    stored: np.ndarray
    identity: str
    eight_bit: bool
    notes: tuple[str, ...]


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` starts like a DICOM Part 10 file, by content alone.

    ``DICM`` after the 128-byte preamble, then a group 0002 tag (the File Meta
    Information, always explicit VR little endian: PS3.10 section 7.1). The
    preamble itself is not looked at: it may hold another format's header
    (PS3.10 section 7.5 allows a TIFF one); such dual files are read as DICOM.
    """
    start = PREAMBLE_LENGTH + len(MAGIC)
    return data[PREAMBLE_LENGTH:start] == MAGIC and data[start : start + 2] == b"\x02\x00"


def looks_like_bare_dataset(data: bytes) -> bool:
    """Whether ``data`` looks like a DICOM data set without the Part 10 header.

    A heuristic for wording a refusal, never for decoding: the bytes start
    with a group 0008 (or 0002) tag in little- or big-endian order and
    ``pydicom.dcmread(force=True)`` finds a SOPClassUID or Rows in them.
    """
    if data[:2] not in (b"\x08\x00", b"\x02\x00", b"\x00\x08", b"\x00\x02"):
        return False
    try:
        with _quiet():
            dataset = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
            return "SOPClassUID" in dataset or "Rows" in dataset
    except Exception:  # noqa: BLE001 - not a data set after all
        return False


def read_header(data: bytes, *, max_pixels: int) -> DicomHeader:
    """Read a DICOM file's technical attributes and check them, decoding no pixel.

    Args:
        data: The file's bytes (a DICOM Part 10 file).
        max_pixels: Largest accepted Rows x Columns (decompression-bomb guard).

    Returns:
        The header.

    Raises:
        InvalidImageError: Not a Part 10 file, unparseable, no pixel data,
            floating-point pixel data, an unsupported photometric
            interpretation, a transfer syntax no installed codec decodes, or
            larger than ``max_pixels`` (rule 2; the reason says what to do).
    """
    return _header(_read(data), max_pixels)


def decode(
    data: bytes,
    *,
    max_pixels: int,
    burned_in_annotation: BurnedInPolicy = "skip",
    without_window: WithoutWindow = "min_max",
    before_pixels: Callable[[DicomHeader], None] | None = None,
) -> DicomPicture:
    """Decode the first frame of a DICOM file by this module's rules.

    Args:
        data: The file's bytes (a DICOM Part 10 file).
        max_pixels: Largest accepted Rows x Columns, checked before decoding.
        burned_in_annotation: ``"skip"`` refuses ``BurnedInAnnotation = YES``;
            ``"allow"`` decodes it (with a note).
        without_window: Greyscale of more than 8 bits without VOI LUT or
            window: ``"min_max"`` or ``"bits_stored"`` (rule 7).
        before_pixels: Called with the header once it passed rule 2's
            checks, before any pixel is decoded (a caller's own checks, e.g.
            a minimum size); may raise :class:`InvalidImageError`.

    Returns:
        The picture (``float32`` in [0, 1]), frame 1's stored samples and notes.

    Raises:
        InvalidImageError: Everything :func:`read_header` refuses, burned-in
            annotation when not allowed, and pixel data the installed codecs
            cannot decode (corrupt, truncated, or an unsupported variant).
    """
    dataset = _read(data)
    header = _header(dataset, max_pixels)
    if header.burned_in_annotation and burned_in_annotation != "allow":
        raise InvalidImageError(
            "DICOM with burned-in annotation (BurnedInAnnotation = YES): its pixels show "
            "text that may identify the patient, so it is skipped; to use such files, "
            "check them and set the decoding option burned_in_annotation: allow"
        )
    if before_pixels is not None:
        before_pixels(header)
    notes = [header.describe()]
    if header.burned_in_annotation:
        notes.append("burned-in annotation (BurnedInAnnotation = YES) allowed by the options")
    if header.frames > 1:
        notes.append(f"frame 1 of {header.frames} used")
    with _quiet():
        if header.frames > 1:
            notes.extend(_frame_groups(dataset))
        stored, photometric = _decode_frame(dataset, header)
        if header.colour:
            pixels, stored = _colour(stored, dataset, header, notes)
            photometric = "RGB" if header.photometric == PALETTE else photometric
            eight_bit = True
        else:
            pixels, eight_bit = _greyscale(stored, dataset, header, without_window, notes)
    samples = np.ascontiguousarray(stored, dtype=stored.dtype.newbyteorder("<"))
    return DicomPicture(
        header=header,
        pixels=np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32),
        stored=samples,
        identity=f"DICOM {photometric} {samples.dtype.str} {header.bits_stored}",
        eight_bit=eight_bit,
        notes=tuple(notes),
    )


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence pydicom's warnings (invalid values, guessed VRs) while we read."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _read(data: bytes) -> Dataset:
    if not is_dicom(data):
        raise InvalidImageError(
            "not a DICOM Part 10 file (no 'DICM' and File Meta Information after the "
            "128-byte preamble)"
        )
    try:
        with _quiet():
            return pydicom.dcmread(io.BytesIO(data))
    except Exception as error:  # noqa: BLE001 - pydicom raises many types on bad input
        raise InvalidImageError(
            f"corrupt or truncated DICOM file: pydicom cannot parse it ({type(error).__name__})"
        ) from None


def _header(dataset: Dataset, max_pixels: int) -> DicomHeader:
    with _quiet():
        if "PixelData" not in dataset:
            if "FloatPixelData" in dataset or "DoubleFloatPixelData" in dataset:
                raise InvalidImageError(
                    "DICOM with floating-point pixel data (FloatPixelData or "
                    "DoubleFloatPixelData, e.g. a parametric map) is not supported: "
                    "export it with integer PixelData"
                )
            if "Rows" in dataset or _image_storage(dataset):
                raise InvalidImageError(
                    "DICOM image without its pixel data: the file is probably truncated "
                    "(or the pixel data was removed)"
                )
            if "SOPClassUID" not in dataset:
                raise InvalidImageError(
                    "corrupt or truncated DICOM file: no SOPClassUID and no pixel data"
                )
            raise InvalidImageError(
                "DICOM file without pixel data (e.g. a structured report or a "
                "presentation state): not an image"
            )
        syntax = _transfer_syntax(dataset)
        photometric = _code_string(dataset.get("PhotometricInterpretation"))
        if photometric not in (*MONOCHROME, PALETTE, *COLOUR):
            raise InvalidImageError(
                f"unsupported DICOM PhotometricInterpretation {photometric or '(missing)'}: "
                f"accepted are {', '.join((*MONOCHROME, PALETTE, *COLOUR))}"
            )
        rows, columns = _integer(dataset, "Rows"), _integer(dataset, "Columns")
        samples = _integer(dataset, "SamplesPerPixel", default=1)
        if samples != (3 if photometric in COLOUR else 1):
            raise InvalidImageError(
                f"invalid DICOM image: SamplesPerPixel {samples} with {photometric}"
            )
        bits_allocated = _integer(dataset, "BitsAllocated")
        bits_stored = _integer(dataset, "BitsStored", default=bits_allocated)
        frames = _integer(dataset, "NumberOfFrames", default=1)
        if min(rows, columns, frames, bits_stored) < 1 or bits_stored > bits_allocated:
            raise InvalidImageError(
                f"invalid DICOM image: {columns}x{rows} pixels, {frames} frames, "
                f"{bits_stored} of {bits_allocated} bits"
            )
        if rows * columns > max_pixels:
            raise InvalidImageError(
                f"image too large: {columns}x{rows} = {rows * columns:,} pixels "
                f"exceeds max_pixels={max_pixels:,} (decompression-bomb guard)"
            )
        burned_in = str(dataset.get("BurnedInAnnotation") or "").strip().upper() == "YES"
        return DicomHeader(
            rows=rows,
            columns=columns,
            frames=frames,
            samples_per_pixel=samples,
            photometric=photometric,
            bits_allocated=bits_allocated,
            bits_stored=bits_stored,
            signed=_integer(dataset, "PixelRepresentation", default=0) == 1,
            modality=_code_string(dataset.get("Modality")),
            transfer_syntax_uid=str(syntax),
            transfer_syntax_name=_syntax_name(syntax),
            burned_in_annotation=burned_in,
        )


def _image_storage(dataset: Dataset) -> bool:
    """The SOP class (data set's or File Meta's) is an image storage class."""
    meta = getattr(dataset, "file_meta", None)
    for value in (dataset.get("SOPClassUID"), meta and meta.get("MediaStorageSOPClassUID")):
        if value and _UID.fullmatch(str(value)) and "Image Storage" in UID(str(value)).name:
            return True
    return False


def _transfer_syntax(dataset: Dataset) -> UID:
    """The TransferSyntaxUID, checked to have a pydicom decoder with a plugin installed."""
    meta = getattr(dataset, "file_meta", None)
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    if not value or not _UID.fullmatch(str(value)):
        raise InvalidImageError(
            "DICOM file without a valid TransferSyntaxUID in its File Meta Information: "
            "the pixel encoding is unknown"
        )
    syntax = UID(str(value))
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise InvalidImageError(
            f"DICOM transfer syntax {syntax} ({_syntax_name(syntax)}) has no pixel decoder "
            "in pydicom (e.g. video or a private syntax): re-export the images uncompressed "
            "(Explicit VR Little Endian)"
        ) from None
    if not decoder.is_available:
        raise InvalidImageError(
            f"DICOM transfer syntax {syntax} ({_syntax_name(syntax)}): no installed codec "
            f"decodes it; {_missing_plugins(decoder)}, or re-export the images "
            "uncompressed (Explicit VR Little Endian)"
        )
    return syntax


def _decode_frame(dataset: Dataset, header: DicomHeader) -> tuple[np.ndarray, str]:
    """Frame 1's samples and their photometric interpretation after decoding."""
    syntax = UID(header.transfer_syntax_uid)
    decoder = get_decoder(syntax)
    try:
        options = as_pixel_options(dataset)
        array, meta = decoder.as_array(dataset, index=0, validate=True, **options)
    except RuntimeError as error:  # every installed plugin failed
        lines = [" ".join(line.split()) for line in str(error).splitlines()] or [""]
        reasons = "; ".join(line for line in lines[1:] if line) or lines[0]  # one per plugin
        raise InvalidImageError(
            f"DICOM pixel data in transfer syntax {syntax} ({header.transfer_syntax_name}) "
            f"could not be decoded by the installed codecs ({reasons[:_MESSAGE_LIMIT]}); "
            f"the data may be corrupt or need another codec: {_missing_plugins(decoder)}, "
            "or re-export the images uncompressed (Explicit VR Little Endian)"
        ) from None
    except Exception as error:  # noqa: BLE001 - validation of group 0028 and the pixel bytes
        reason = " ".join(str(error).split())[:_MESSAGE_LIMIT]
        raise InvalidImageError(f"corrupt or truncated DICOM pixel data: {reason}") from None
    photometric = str(meta.get("photometric_interpretation", header.photometric))
    if photometric in ("YBR_FULL", "YBR_FULL_422"):  # as_rgb did not apply (never seen)
        array, photometric = convert_color_space(array, photometric, "RGB"), "RGB"
    if array.ndim != (3 if header.samples_per_pixel == 3 else 2):  # pragma: no cover
        raise InvalidImageError(f"unexpected DICOM frame shape {array.shape}")
    return array, photometric


def _colour(
    stored: np.ndarray, dataset: Dataset, header: DicomHeader, notes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Rule 9: RGB (palette looked up) reduced to 8 bits, divided by 255; and the RGB samples."""
    if header.signed:
        raise InvalidImageError("unsupported DICOM colour image with signed samples")
    rgb, bits = stored, header.bits_stored
    if header.photometric == PALETTE:
        try:
            rgb = apply_color_lut(stored, dataset)
        except Exception as error:  # noqa: BLE001 - a missing or malformed palette
            reason = _unquoted(error)
            raise InvalidImageError(f"invalid DICOM palette: {reason}") from None
        rgb = np.ascontiguousarray(rgb[..., :3])
        bits = 8 * rgb.dtype.itemsize
        notes.append("PALETTE COLOR looked up (apply_color_lut)")
    elif header.photometric != "RGB":
        notes.append(f"{header.photometric} converted to RGB")
    samples = rgb
    if bits > 8:
        rgb = np.right_shift(rgb, bits - 8)
        notes.append(f"{bits}-bit colour reduced to its 8 high bits")
    return np.clip(rgb, 0, 255).astype(np.float32) / np.float32(255), samples


def _greyscale(
    stored: np.ndarray,
    dataset: Dataset,
    header: DicomHeader,
    without_window: WithoutWindow,
    notes: list[str],
) -> tuple[np.ndarray, bool]:
    """Rules 5-8: modality LUT, VOI LUT or window (or the fallback), MONOCHROME1."""
    values, modality_note = _modality(stored, dataset)
    if modality_note:
        notes.append(modality_note)
    picture = _voi(values, dataset, notes)
    plain = False
    if picture is None:
        low, high, plain = _fallback_range(values, dataset, header, without_window, notes)
        scale = (high - low) or 1.0  # a constant frame maps to 0
        picture = (np.asarray(values, dtype=np.float64) - low) / scale
        plain = plain and modality_note == "" and 255 % (2**header.bits_stored - 1) == 0
    if header.photometric == "MONOCHROME1":
        picture = 1.0 - picture
        notes.append("MONOCHROME1 inverted (higher is brighter)")
    return picture, plain


def _modality(stored: np.ndarray, dataset: Dataset) -> tuple[np.ndarray, str]:
    """Rule 5: ``apply_modality_lut`` when a Modality LUT or a rescale is present."""
    if dataset.get("ModalityLUTSequence"):
        note = "modality LUT: Modality LUT Sequence applied"
    else:
        slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
        if slope is None or intercept is None:
            return stored, ""
        try:
            slope, intercept = float(slope), float(intercept)
        except (TypeError, ValueError):
            raise InvalidImageError(
                "invalid DICOM RescaleSlope or RescaleIntercept (not one number each)"
            ) from None
        if (slope, intercept) == (1.0, 0.0):
            return stored, ""
        note = f"modality LUT: RescaleSlope {slope:g} / RescaleIntercept {intercept:g} applied"
    try:
        return apply_modality_lut(stored, dataset), note
    except Exception as error:  # noqa: BLE001 - malformed LUT descriptor or data
        reason = _unquoted(error)
        raise InvalidImageError(f"invalid DICOM Modality LUT Sequence: {reason}") from None


def _voi(values: np.ndarray, dataset: Dataset, notes: list[str]) -> np.ndarray | None:
    """Rule 6: the VOI LUT or window mapped to [0, 1], or None without a usable one."""
    sequence = dataset.get("VOILUTSequence")
    lut_ok = bool(sequence) and all(
        sequence[0].get(keyword) is not None for keyword in ("LUTDescriptor", "LUTData")
    )
    centre, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    window_ok = centre is not None and width is not None
    if not lut_ok and not window_ok:
        return None
    try:
        if lut_ok:
            mapped, low, high, narrower = _voi_lut(values, dataset, sequence[0])
            details = [
                f"the first of {len(sequence)}" if len(sequence) > 1 else "",
                "preferred to the window" if window_ok else "",
            ]
            said = ", ".join(d for d in details if d)
            notes.append("VOI LUT Sequence from the file" + (f" ({said})" if said else ""))
            if narrower:
                notes.append(narrower)
        else:
            mapped = apply_windowing(np.asarray(values, dtype=np.float64), dataset, 0)
            low, high = apply_windowing(np.array([-np.inf, np.inf]), dataset, 0)
            notes.append(_window_note(dataset))
    except Exception as error:  # noqa: BLE001 - pydicom rejects the window or LUT
        reason = _unquoted(error)
        notes.append(f"VOI LUT or window ignored ({reason})")
        return None
    return (mapped - low) / ((high - low) or 1.0)


def _voi_lut(
    values: np.ndarray, dataset: Dataset, item: Dataset
) -> tuple[np.ndarray, float, float, str]:
    """The first VOI LUT applied by ``apply_voi``: values, output range, a note or ``""``.

    The output range is ``0 .. 2**n - 1`` for n bits per entry, the LUT
    Descriptor's third value (C.11.2.1.1), unless the entries use fewer bits
    (never below 8): some CR devices (Agfa) declare 16 bits for 12-bit entries,
    and viewers (Horos, Cornerstone; dicom-rs PR #825) scale by the entries'
    actual range, as ``high_bit_depth="auto"`` does for 16-bit PNGs.
    """
    descriptor = [int(v) for v in item.LUTDescriptor]
    entries, first, bits = descriptor[0] or 2**16, descriptor[1], descriptor[2]
    if bits == 8:
        # pydicom 3.0.2's apply_voi indexes an 8-bit LUT with uint8 indices,
        # which wrap past entry 255; declared 16-bit, the same entries are
        # looked up with uint16 indices (LUT Data is read alike: US or OW words).
        item.LUTDescriptor = [descriptor[0], first, 16]
    # Inputs outside the LUT take its first or last entry (C.11.2.1.1);
    # clamping first keeps them in the integer range apply_voi indexes with.
    inputs = np.clip(np.rint(values), first, first + entries - 1).astype(np.int64)
    mapped = apply_voi(inputs, dataset, 0).astype(np.float64)
    table = apply_voi(np.arange(first, first + entries, dtype=np.int64), dataset, 0)
    used = max(8, int(np.max(table)).bit_length())
    note = ""
    if used < bits:
        note = (
            f"VOI LUT entries use {used} of the {bits} bits its descriptor declares: "
            f"scaled by {used} bits"
        )
        bits = used
    return mapped, 0.0, float(2**bits - 1), note


def _window_note(dataset: Dataset) -> str:
    centres, widths = _numbers(dataset["WindowCenter"]), _numbers(dataset["WindowWidth"])
    function = _code_string(dataset.get("VOILUTFunction")) or "LINEAR"
    count = max(len(centres), len(widths))
    first = f", the first of {count}" if count > 1 else ""
    return f"window centre {centres[0]:g} / width {widths[0]:g} ({function}) from the file{first}"


def _fallback_range(
    values: np.ndarray,
    dataset: Dataset,
    header: DicomHeader,
    without_window: WithoutWindow,
    notes: list[str],
) -> tuple[float, float, bool]:
    """Rule 7: the value range mapped to [0, 1] without a VOI; True when plain 8-bit."""
    if header.bits_stored > 8 and without_window == "min_max":
        low, high = float(np.min(values)), float(np.max(values))
        notes.append(
            f"no VOI LUT or window in the file: min-max of the modality values "
            f"({low:g} to {high:g}) mapped to [0, 1]"
        )
        return low, high, False
    low, high = _bits_stored_range(dataset, header)
    if header.bits_stored > 8:
        notes.append(
            f"no VOI LUT or window in the file: the BitsStored range ({low:g} to {high:g}) "
            "mapped to [0, 1]"
        )
    return low, high, not header.signed


def _bits_stored_range(dataset: Dataset, header: DicomHeader) -> tuple[float, float]:
    """BitsStored's range of stored values through the modality LUT (rule 7)."""
    if header.signed:
        low, high = -(2 ** (header.bits_stored - 1)), 2 ** (header.bits_stored - 1) - 1
    else:
        low, high = 0, 2**header.bits_stored - 1
    if header.bits_stored <= 16:  # every stored value: a Modality LUT need not be monotonic
        stored = np.arange(low, high + 1, dtype=np.int64)
    else:
        stored = np.array([low, high], dtype=np.int64)
    values, _ = _modality(stored, dataset)
    return float(np.min(values)), float(np.max(values))


def _frame_groups(dataset: Dataset) -> list[str]:
    """Rule 3: frame 1's rescale and window from the functional groups, when needed."""
    notes = []
    for sequence, keywords in _FRAME_GROUPS.items():
        if any(dataset.get(keyword) is not None for keyword in keywords[:2]):
            continue  # the top level has its own
        for groups in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
            items = dataset.get(groups)
            item = items[0].get(sequence) if items else None
            if item:
                for keyword in keywords:
                    if item[0].get(keyword) is not None:
                        setattr(dataset, keyword, item[0].get(keyword))
                notes.append(f"{sequence} of frame 1 from {groups}")
                break
    return notes


def _unquoted(error: Exception) -> str:
    """The message of pydicom's error about an attribute, quoted values left out.

    Messages about the LUT and window attributes quote the offending value
    (``Unsupported (0028,1056) VOI LUT Function value 'X'``); in a malformed
    file that could be any text, so it is dropped.
    """
    message = _QUOTED.sub("'...'", " ".join(str(error).split()))
    return message[:_MESSAGE_LIMIT] or type(error).__name__


def _integer(dataset: Dataset, keyword: str, default: int | None = None) -> int:
    value = dataset.get(keyword)
    if value is None or value == "":
        if default is None:
            raise InvalidImageError(f"invalid DICOM image: {keyword} is missing")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidImageError(f"invalid DICOM image: {keyword} is not an integer") from None


def _numbers(element: object) -> list[float]:
    value = element.value  # type: ignore[attr-defined]
    return [float(v) for v in value] if element.VM > 1 else [float(value)]  # type: ignore[attr-defined]


def _code_string(value: object) -> str:
    """A code string (CS) fit to quote, or ``""``: never free text."""
    text = str(value or "").strip().upper()
    return text if _CODE_STRING.fullmatch(text) else ""


def _syntax_name(syntax: UID) -> str:
    try:
        return syntax.name if syntax.is_transfer_syntax else "unknown transfer syntax"
    except ValueError:  # a private UID: pydicom cannot tell its type
        return "private transfer syntax"


def _missing_plugins(decoder: object) -> str:
    """Which packages would add a decoder plugin, from pydicom's own list.

    pydicom reports e.g. ``gdcm - requires gdcm>=3.0.10``; this gives
    ``python-gdcm (plugin gdcm: requires gdcm>=3.0.10)``.
    """
    missing = list(getattr(decoder, "missing_dependencies", []))
    if not missing:
        return "no other pydicom plugin is known for it"
    described = []
    for entry in missing:
        plugin, _, needs = (part.strip() for part in entry.partition(" - "))
        package = _PLUGIN_PACKAGES.get(plugin, plugin)
        described.append(f"{package} (plugin {plugin}: {needs})" if needs else package)
    return "pydicom plugins not installed: " + "; ".join(described)
