"""The one image decoder: file bytes -> the model's pixels.

Every part of the platform that reads pixels goes through this module:
ingestion's validation (:func:`inspect`), the tf.data training pipeline and
the serving wrapper (:func:`decode_batch`), the gate's per-image features
(:func:`decode`), and the dashboard's sample grid and the review app's
thumbnails (:func:`preview`). So a picture looks the same to training, to
serving, to monitoring and to a person.

Decoding rules (Pillow does the decoding, pydicom for DICOM; each rule is
applied in this order):

1. **Formats**, recognised by content, never by file extension: JPEG
   (baseline and progressive; CMYK and Adobe-inverted CMYK), MPO (what many
   cameras and phones write: the primary JPEG frame is used), PNG
   (1/2/4/8/16-bit, greyscale, palette, RGB, with or without alpha), WebP,
   TIFF (first page; a multi-page file is reported), BMP, HEIC/HEIF (through
   ``pillow-heif``), and DICOM Part 10 files (``DICM`` after the 128-byte
   preamble), decoded by :mod:`clearsight.dicom`, whose own rules (modality
   LUT, VOI LUT or window centre/width or a fallback, MONOCHROME1 inverted,
   first frame, burned-in annotation, codecs) stand in for rules 3-6 below.
   Anything else is refused with its format name.
2. **Decompression-bomb guard**: the header's width x height (a DICOM
   frame's Columns x Rows) is checked against ``max_pixels`` before a single
   pixel is decoded.
3. **Orientation**: the EXIF ``Orientation`` tag (values 1-8, EXIF 2.32
   section 4.6.4 A, ``0x0112``) is applied, as every image viewer does, so a
   phone photo stored sideways is decoded upright; widths and heights are
   reported after orientation.
4. **Transparency** (alpha channel, palette + ``tRNS``, greyscale or RGB
   ``tRNS`` colour key): composited onto :attr:`DecodeOptions.background`
   (white by default, as viewers show a transparent background), with
   straight (non-premultiplied) alpha as PNG stores it (PNG spec, 12.4).
5. **Bit depth**: 8-bit samples are divided by 255, 1-bit ones map to 0 or 1.
   16-bit greyscale (PNG, TIFF) is divided by ``2**b - 1`` where ``b`` is the
   number of significant bits: a PNG's ``sBIT`` chunk (PNG spec, 11.3.3.4)
   when present and the samples are not already scaled up to 16 bits (values
   below ``2**sBIT``); otherwise, with ``high_bit_depth="auto"`` (default),
   the smallest of 10, 12 and 14 bits that holds the image's largest value,
   else 16 (DICOM-derived exports often store 12-bit data unscaled in a 16-bit
   container); with ``"full_range"``, always 16. 16-bit colour PNGs are
   reduced to 8 bits per channel by Pillow (the high byte), which is right for
   full-range data. Floating-point images are refused. (DICOM: BitsStored
   states the significant bits; see :mod:`clearsight.dicom`, rule 7.)
6. **Colour**: greyscale is replicated to three channels; CMYK, YCbCr and
   palette images are converted to RGB by Pillow (no ICC colour management).
7. **Resizing** (``size`` given): JPEGs are decoded at the smallest DCT scale
   (1/2, 1/4, 1/8; Pillow's ``Image.draft``) that keeps both sides at least
   ``size``, then resized to ``size x size`` with Pillow's antialiased
   bilinear filter (the triangle filter widened by the reduction factor, as
   ``tf.image.resize(..., antialias=True)``), aspect ratio not kept. DICOM
   pictures are resized by the same filter: as 8-bit images when every value
   is a multiple of 1/255 (colour, 8-bit greyscale shown as stored), else as
   high-bit-depth greyscale.

Output: ``float32`` arrays in [0, 1], shape ``(height, width, 3)``.

Identity and likeness (from :func:`inspect`): ``pixel_sha256`` hashes the
upright decoded samples exactly; ``perceptual_hash`` is the 64-bit DCT hash
(``imagehash.phash``) of the picture rendered by rules 3-6 and resized to 32x32
by rule 7, which copies re-saved, resized, slightly cropped or EXIF-rotated keep
within a few bits (:mod:`clearsight.near_duplicates` finds them). For DICOM,
``pixel_sha256`` hashes frame 1's stored samples before any modality or VOI
LUT, with their photometric interpretation and BitsStored: the same
acquisition re-exported with another window keeps its identity, and a DICOM
never shares one with a PNG or JPEG export of it (their perceptual hashes
match instead, exactly for 8-bit pictures).
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, field_validator

from clearsight import dicom
from clearsight.errors import InvalidImageError

try:  # HEIC/HEIF (recent iPhones' default) through pillow-heif's Pillow plugin
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF_AVAILABLE = True
except ImportError:  # pragma: no cover - pillow-heif is a pinned dependency
    HEIF_AVAILABLE = False

CHANNELS = 3
DEFAULT_MIN_SIDE = 8
DEFAULT_MAX_PIXELS = 40_000_000  # ~ 6300 x 6300; guards against decompression bombs

# Pillow format name -> extension of the stored copy (stored by content, own extension).
FORMAT_EXTENSIONS: dict[str, str] = {
    "JPEG": "jpg",
    "MPO": "jpg",  # a JPEG with extra frames: the file is a valid JPEG
    "PNG": "png",
    "WEBP": "webp",
    "TIFF": "tif",
    "BMP": "bmp",
    "HEIF": "heic",
    "DICOM": "dcm",  # recognised by content (clearsight.dicom), not by Pillow
}
# Folder scans and uploaders accept these file extensions.
SUPPORTED_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".mpo",
        ".png",
        ".webp",
        ".tif",
        ".tiff",
        ".bmp",
        ".heic",
        ".heif",
        ".dcm",
        ".dicom",
    }
)
SUPPORTED_FORMAT_NAMES = "JPEG, MPO, PNG, WebP, TIFF, BMP, HEIC/HEIF and DICOM"
_ALLOWED_FORMATS = tuple(fmt for fmt in FORMAT_EXTENSIONS if fmt != "DICOM")  # Pillow's
# Orientations 5-8 swap width and height (EXIF 2.32, Orientation).
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112
_AUTO_BIT_DEPTHS = (10, 12, 14)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Perceptual hash (imagehash.phash defaults): the 8x8 lowest frequencies of the
# DCT of a 32x32 greyscale rendering, each bit "above the median"; 64 bits.
_PHASH_BITS_SIDE = 8
_PHASH_INPUT_SIDE = 32  # _PHASH_BITS_SIDE x imagehash's highfreq_factor (4)
# Images whose smaller side (after orientation, at full size: not the 1/8
# DCT scale a JPEG is validated at) is below this, in pixels, get no perceptual
# hash: too little picture for 64 bits to tell images apart. Measured on the
# bundled UCI digits (data/digits: 1,797 greyscale 32x32 PNGs, the 8x8 originals
# enlarged), hashed as this module renders them: 81 pairs of genuinely
# different handwritten digits (different pixels; same digit) are within
# Hamming distance 4 of each other, 1,394 pairs within 8. From 64 px the 32x32
# hash input is at least a 2x reduction of the picture.
PERCEPTUAL_HASH_MIN_SIDE = 64

Background = tuple[int, int, int]
Box = tuple[float, float, float, float]  # left, top, right, bottom, in pixels
NAMED_BACKGROUNDS: dict[str, Background] = {"white": (255, 255, 255), "black": (0, 0, 0)}


class DecodeOptions(BaseModel):
    """The decoding rules that change pixels; kept with the dataset and the model.

    Attributes:
        background: RGB colour (0-255 each) that transparent pixels are
            composited onto; ``"white"`` or ``"black"`` are accepted too.
        high_bit_depth: ``"auto"``: 16-bit greyscale without a usable ``sBIT``
            is scaled by the smallest of 10/12/14/16 bits that holds its
            largest value; ``"full_range"``: always by 16 bits. Not used for
            DICOM, whose BitsStored states the significant bits.
        burned_in_annotation: DICOM with ``BurnedInAnnotation = YES`` (text in
            the pixels, which may identify the patient): ``"skip"`` refuses
            it (:class:`InvalidImageError` with that reason); ``"allow"``
            decodes it.
        dicom_without_window: DICOM greyscale of more than 8 bits with no VOI
            LUT Sequence and no WindowCenter/WindowWidth: ``"min_max"`` maps
            the frame's smallest and largest modality values to 0 and 1;
            ``"bits_stored"`` maps BitsStored's range (through the modality
            LUT), a fixed scale (:mod:`clearsight.dicom`, rule 7).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    background: Background = NAMED_BACKGROUNDS["white"]
    high_bit_depth: Literal["auto", "full_range"] = "auto"
    burned_in_annotation: Literal["skip", "allow"] = "skip"
    dicom_without_window: Literal["min_max", "bits_stored"] = "min_max"

    @field_validator("background", mode="before")
    @classmethod
    def _named_background(cls, value: object) -> object:
        if isinstance(value, str):
            key = value.strip().lower()
            if key not in NAMED_BACKGROUNDS:
                raise ValueError(
                    f"background must be an [r, g, b] list of 0-255 values or one of "
                    f"{sorted(NAMED_BACKGROUNDS)}; got {value!r}"
                )
            return NAMED_BACKGROUNDS[key]
        if isinstance(value, list | tuple) and not all(
            isinstance(v, int) and 0 <= v <= 255 for v in value
        ):
            raise ValueError(f"background values must be integers in 0-255; got {value!r}")
        return value


DEFAULT_OPTIONS = DecodeOptions()


@dataclass(frozen=True)
class ImageHeader:
    """What a file says about itself, after the checks that need no pixel.

    Attributes:
        format: Pillow's format name (``JPEG``, ``MPO``, ``PNG``, ``WEBP``,
            ``TIFF``, ``BMP``, ``HEIF``), or ``DICOM``.
        mode: Pillow's mode of the stored pixels (``L``, ``RGB``, ``I;16``...;
            for DICOM the mode of like samples: ``1``, ``L``, ``I;16``,
            ``I;16S``, ``I``, ``P`` or ``RGB``, see ``DicomHeader.mode``).
        width: Width in pixels, after the EXIF orientation (DICOM: Columns).
        height: Height in pixels, after the EXIF orientation (DICOM: Rows).
        orientation: EXIF orientation tag, 1 (upright, or no tag; DICOM) to 8.
        frames: Frames or pages in the file (only the first is used; DICOM:
            NumberOfFrames).
    """

    format: str
    mode: str
    width: int
    height: int
    orientation: int
    frames: int

    @property
    def extension(self) -> str:
        """Extension of the stored copy (``jpg``, ``png``, ``webp``, ``tif``...)."""
        return FORMAT_EXTENSIONS[self.format]


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image and what decoding did to it.

    Attributes:
        pixels: ``float32`` array ``(height, width, 3)`` in [0, 1]; the full
            image, or ``(size, size, 3)`` when a size was asked for.
        header: The file's header (full-resolution, oriented dimensions).
        transparency: The image had transparent pixels (composited).
        bit_depth: Bits per sample of the stored data (1, 2, 4, 8 or 16;
            DICOM: BitsAllocated, up to 32).
        significant_bits: Bits the scaling used (``bit_depth`` unless a 16-bit
            image holds fewer significant bits; DICOM: BitsStored).
        bit_depth_source: ``"container"``, ``"sBIT"``, ``"detected"`` or
            ``"BitsStored"`` (DICOM).
        notes: What decoding did, in words, for reports.
        pixel_sha256: Identity of the picture (from :func:`inspect` only, else
            empty): hex SHA-256 of the upright decoded samples, their mode and
            size. Equal for copies that differ only in metadata (EXIF, text
            chunks, re-exports of the same pixels). JPEGs are hashed at their
            1/8 DCT scale, a function of the compressed scan data alone.
        perceptual_hash: Likeness of the picture (from :func:`inspect` only,
            else empty): ``imagehash.phash`` (64 bits, 16 hex digits) of the
            upright picture rendered by this module's rules (transparency
            composited onto the background, high bit depths scaled) and
            resized to 32x32; ``""`` when the smaller side is below
            :data:`PERCEPTUAL_HASH_MIN_SIDE`. Re-saved, resized, slightly
            cropped and EXIF-rotated copies hash a few bits apart
            (:mod:`clearsight.near_duplicates`); equal pixels hash equally.
            JPEGs are hashed from their 1/8 DCT scale, as for ``pixel_sha256``.
    """

    pixels: np.ndarray
    header: ImageHeader
    transparency: bool = False
    bit_depth: int = 8
    significant_bits: int = 8
    bit_depth_source: str = "container"
    notes: tuple[str, ...] = field(default=())
    pixel_sha256: str = ""
    perceptual_hash: str = ""


def read_header(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Identify an image and check its size without decoding any pixel.

    Args:
        data: The file's bytes.
        max_pixels: Largest accepted width x height (decompression-bomb guard).

    Returns:
        The header, with oriented dimensions.

    Raises:
        InvalidImageError: Empty, not an image, an unsupported format, or
            larger than ``max_pixels``; for DICOM also no pixel data,
            floating-point pixel data, or a transfer syntax no installed codec
            decodes (:func:`clearsight.dicom.read_header`).
    """
    if dicom.is_dicom(data):
        return _dicom_header(dicom.read_header(data, max_pixels=max_pixels))
    with _open(data, max_pixels) as image:
        return _header(image)


def inspect(
    data: bytes,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    options: DecodeOptions = DEFAULT_OPTIONS,
    perceptual_hash: bool = True,
) -> DecodedImage:
    """Validate an image completely, as ingestion and serving do, cheaply.

    Every pixel is decoded (truncated or corrupt files fail here, not in a
    training epoch), JPEGs at their smallest DCT scale since only validity is
    checked, DICOM's first frame only; transparency and significant bits are
    measured, and the pixel identity and perceptual hash computed. ``pixels``
    is an empty ``(0, 0, 3)`` array.

    Args:
        data: The file's bytes.
        min_side: Smallest accepted width or height, in pixels.
        max_pixels: Largest accepted width x height, checked on the header.
        options: Decoding rules (significant bits; background and bit depth
            of the picture the perceptual hash is computed from).
        perceptual_hash: Compute the perceptual hash (about 40% of the cost
            on a 640x480 JPEG); the prediction log needs only the identity.

    Returns:
        The decoded image's description (no pixels).

    Raises:
        InvalidImageError: With a human-readable reason.
    """
    if dicom.is_dicom(data):
        return _inspect_dicom(data, min_side, max_pixels, options, perceptual_hash)
    with _open(data, max_pixels) as image:
        header = _header(image)
        _check_min_side(header.width, header.height, min_side)
        draft = image.draft(None, (1, 1)) if header.format in ("JPEG", "MPO") else None
        _load(image)
        return _described(
            image,
            data,
            header,
            options,
            pixels=None,
            draft_box=draft[1] if draft else None,
            with_perceptual_hash=perceptual_hash,
        )


def decode(
    data: bytes,
    *,
    size: int | None = None,
    options: DecodeOptions = DEFAULT_OPTIONS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedImage:
    """Decode an image by the rules of this module.

    Args:
        data: The file's bytes.
        size: Output height and width in pixels, or ``None`` for the full image.
        options: Background colour, high-bit-depth and DICOM rules.
        max_pixels: Largest accepted width x height, checked on the header.

    Returns:
        The pixels, ``float32`` ``(h, w, 3)`` (or ``(size, size, 3)``) in [0, 1],
        and what decoding did.

    Raises:
        InvalidImageError: For anything that is not a usable image.
    """
    if dicom.is_dicom(data):
        picture = _dicom_picture(data, options, max_pixels)
        return _dicom_described(picture, _dicom_rgb(picture, size))
    with _open(data, max_pixels) as image:
        header = _header(image)
        if size is not None and header.format in ("JPEG", "MPO"):
            image.draft(None, (size, size))  # DCT scaling: both sides stay >= size
        _load(image)
        return _described(image, data, header, options, pixels=size or 0)


def decode_batch(
    images: Sequence[bytes],
    size: int,
    *,
    options: DecodeOptions = DEFAULT_OPTIONS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode and resize several images into one model input batch.

    Returns:
        ``float32`` array ``(n, size, size, 3)`` in [0, 1].

    Raises:
        InvalidImageError: For the first unusable image, prefixed by its index.
    """
    batch = np.zeros((len(images), size, size, CHANNELS), dtype=np.float32)
    for i, data in enumerate(images):
        try:
            batch[i] = decode(data, size=size, options=options, max_pixels=max_pixels).pixels
        except InvalidImageError as error:
            raise InvalidImageError(f"image {i}: {error}") from None
    return batch


def preview(
    data: bytes,
    max_side: int,
    *,
    options: DecodeOptions = DEFAULT_OPTIONS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """An 8-bit RGB thumbnail of what the model sees, for people to look at.

    Args:
        data: The file's bytes.
        max_side: Longest side of the thumbnail in pixels (aspect ratio kept).
        options: Decoding rules (background, bit depth), as for the model.
        max_pixels: Decompression-bomb guard.

    Returns:
        A Pillow ``RGB`` image no larger than ``max_side`` on either side.

    Raises:
        InvalidImageError: For anything that is not a usable image.
    """
    pixels = decode(data, options=options, max_pixels=max_pixels).pixels
    image = Image.fromarray(np.round(pixels * 255).astype(np.uint8), "RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return image


def _described(
    image: Image.Image,
    data: bytes,
    header: ImageHeader,
    options: DecodeOptions,
    pixels: int | None,
    draft_box: Box | None = None,
    with_perceptual_hash: bool = True,
) -> DecodedImage:
    """Measure a loaded image and, unless ``pixels`` is None, convert it.

    ``pixels``: ``None`` for no pixels (validation), ``0`` for the full image,
    else the output side in pixels. ``draft_box``: the picture's extent in the
    DCT-scaled (``draft``) pixels, as ``Image.draft`` returns it.
    """
    bits, significant, source = _significant_bits(image, data, options)
    transparency = _has_transparency(image)
    oriented = ImageOps.exif_transpose(image) if header.orientation != 1 else image
    identity = perceptual = ""
    if pixels is None:
        array = np.zeros((0, 0, CHANNELS), np.float32)
        identity = _pixel_sha256(oriented)
        if with_perceptual_hash and min(header.width, header.height) >= PERCEPTUAL_HASH_MIN_SIDE:
            box = _oriented_box(header.orientation, image.size, draft_box)
            perceptual = _perceptual_hash(oriented, significant, options.background, box)
    else:
        array = _to_rgb_float(oriented, significant, options.background, pixels or None)
    return DecodedImage(
        pixels=array,
        header=header,
        transparency=transparency,
        bit_depth=bits,
        significant_bits=significant,
        bit_depth_source=source,
        notes=_notes(header, transparency, bits, significant, source),
        pixel_sha256=identity,
        perceptual_hash=perceptual,
    )


def _check_min_side(width: int, height: int, min_side: int) -> None:
    if min(width, height) < min_side:
        raise InvalidImageError(
            f"image too small: {width}x{height}, the smallest side must be at least {min_side} px"
        )


def _dicom_picture(
    data: bytes,
    options: DecodeOptions,
    max_pixels: int,
    before_pixels: Callable[[dicom.DicomHeader], None] | None = None,
) -> dicom.DicomPicture:
    return dicom.decode(
        data,
        max_pixels=max_pixels,
        burned_in_annotation=options.burned_in_annotation,
        without_window=options.dicom_without_window,
        before_pixels=before_pixels,
    )


def _inspect_dicom(
    data: bytes,
    min_side: int,
    max_pixels: int,
    options: DecodeOptions,
    with_perceptual_hash: bool,
) -> DecodedImage:
    """:func:`inspect` for DICOM: frame 1 decoded, its identity and likeness."""
    picture = _dicom_picture(
        data,
        options,
        max_pixels,
        before_pixels=lambda h: _check_min_side(h.columns, h.rows, min_side),
    )
    header = picture.header
    digest = hashlib.sha256(f"{picture.identity}:{header.columns}x{header.rows}:".encode())
    digest.update(picture.stored.tobytes())
    perceptual = ""
    if with_perceptual_hash and min(header.columns, header.rows) >= PERCEPTUAL_HASH_MIN_SIDE:
        perceptual = _phash(_dicom_rgb(picture, _PHASH_INPUT_SIDE))
    return _dicom_described(
        picture,
        np.zeros((0, 0, CHANNELS), np.float32),
        pixel_sha256=digest.hexdigest(),
        perceptual_hash=perceptual,
    )


def _dicom_header(header: dicom.DicomHeader) -> ImageHeader:
    return ImageHeader(
        format="DICOM",
        mode=header.mode,
        width=header.columns,
        height=header.rows,
        orientation=1,
        frames=header.frames,
    )


def _dicom_described(
    picture: dicom.DicomPicture,
    pixels: np.ndarray,
    pixel_sha256: str = "",
    perceptual_hash: str = "",
) -> DecodedImage:
    return DecodedImage(
        pixels=pixels,
        header=_dicom_header(picture.header),
        bit_depth=picture.header.bits_allocated,
        significant_bits=picture.header.bits_stored,
        bit_depth_source="BitsStored",
        notes=picture.notes,
        pixel_sha256=pixel_sha256,
        perceptual_hash=perceptual_hash,
    )


def _dicom_rgb(picture: dicom.DicomPicture, size: int | None) -> np.ndarray:
    """A DICOM picture as ``(h, w, 3)`` float32, resized as other images are.

    Pictures whose values are all multiples of 1/255 (colour, 8-bit greyscale
    shown as stored or inverted) take the 8-bit path, so they decode exactly
    as a PNG of the same pixels; others the high-bit-depth greyscale path.
    """
    if picture.eight_bit:
        samples = np.rint(picture.pixels * 255).astype(np.uint8)
        image = Image.fromarray(samples, "RGB" if samples.ndim == 3 else "L")
        return _to_rgb_float(image, 8, NAMED_BACKGROUNDS["white"], size)
    return _grey_rgb(picture.pixels, size)


def _pixel_sha256(image: Image.Image) -> str:
    """SHA-256 of an image's samples with their mode and size (palettes resolved)."""
    samples = image.convert("RGBA") if image.mode in ("P", "PA") else image
    digest = hashlib.sha256(f"{samples.mode}:{samples.size[0]}x{samples.size[1]}:".encode())
    digest.update(samples.tobytes())
    return digest.hexdigest()


def _perceptual_hash(
    image: Image.Image, significant_bits: int, background: Background, box: Box | None
) -> str:
    """``imagehash.phash`` of the picture as this module renders it, 16 hex digits.

    The oriented image is composited and scaled as for the model and resized
    to 32x32 from ``box`` by ``_to_rgb_float`` (bilinear, antialiased, aspect
    ratio not kept, as phash does), then rounded to 8 bits; phash's own
    resize to 32x32 is then a copy. So pixels equal under this module's rules
    hash equally.
    """
    return _phash(_to_rgb_float(image, significant_bits, background, _PHASH_INPUT_SIDE, box=box))


def _phash(rgb: np.ndarray) -> str:
    """``imagehash.phash`` of a 32x32 float RGB rendering, rounded to 8 bits."""
    small = Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")
    bits = imagehash.phash(small, hash_size=_PHASH_BITS_SIDE).hash  # 8x8 bool, row-major
    return np.packbits(bits).tobytes().hex()  # = str(ImageHash), first bit most significant


def _oriented_box(
    orientation: int, draft_size: tuple[int, int], draft_box: Box | None
) -> Box | None:
    """The picture's extent in the oriented draft pixels, or None when it fills them.

    A JPEG decoded at 1/s scale has ``ceil(side / s)`` pixels per side, the
    last row and column covering only part of an 8x8 block; ``Image.draft``
    returns the true extent, ``(0, 0, width / s, height / s)``, in stored
    coordinates. Orientation moves the partial right and bottom edges to
    other sides; resizing from the true extent keeps copies with different
    block grids (resized, cropped) aligned.
    """
    if draft_box is None:
        return None
    right = draft_size[0] - draft_box[2]
    bottom = draft_size[1] - draft_box[3]
    if right == 0 and bottom == 0:
        return None
    # Margins (left, top, right, bottom) after each EXIF orientation's transpose.
    left, top, right, bottom = {
        1: (0, 0, right, bottom),
        2: (right, 0, 0, bottom),  # mirrored left-right
        3: (right, bottom, 0, 0),  # rotated 180
        4: (0, bottom, right, 0),  # mirrored top-bottom
        5: (0, 0, bottom, right),  # transposed
        6: (bottom, 0, 0, right),  # rotated 90 clockwise to display
        7: (bottom, right, 0, 0),  # transversed
        8: (0, right, bottom, 0),  # rotated 90 counter-clockwise to display
    }[orientation]
    width, height = draft_size
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return (left, top, width - right, height - bottom)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise InvalidImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise InvalidImageError(f"image too large (decompression-bomb guard): {error}") from None
    except UnidentifiedImageError:
        if dicom.looks_like_bare_dataset(data):
            raise InvalidImageError(dicom.BARE_DATASET_REASON) from None
        raise InvalidImageError(
            "not an image: Pillow cannot identify the file's format "
            f"(accepted: {SUPPORTED_FORMAT_NAMES})"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InvalidImageError(f"corrupt or truncated image: {error}") from None
    fmt = image.format or "unknown"
    if fmt == "PNG":
        _verify_png(data)
    if fmt not in _ALLOWED_FORMATS:
        image.close()
        raise InvalidImageError(
            f"unsupported image format {fmt}: accepted are {SUPPORTED_FORMAT_NAMES}"
        )
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise InvalidImageError(
            f"image too large: {width}x{height} = {width * height:,} pixels "
            f"exceeds max_pixels={max_pixels:,} (decompression-bomb guard)"
        )
    if image.mode == "F" or image.mode.startswith("I;32") or image.mode == "I;16S":
        image.close()
        raise InvalidImageError(
            f"unsupported pixel type {image.mode} (floating-point or signed samples): "
            "export as 8- or 16-bit unsigned"
        )
    return image


def _verify_png(data: bytes) -> None:
    """Check every chunk's CRC (PNG spec, 5.3): Pillow's decoder skips IDAT's."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError, struct.error) as error:
        raise InvalidImageError(f"corrupt or truncated image: {error}") from None


def _load(image: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Image.DecompressionBombError as error:
        raise InvalidImageError(f"image too large (decompression-bomb guard): {error}") from None
    except (OSError, SyntaxError, ValueError, struct.error) as error:
        raise InvalidImageError(f"corrupt or truncated image: {error}") from None


def _header(image: Image.Image) -> ImageHeader:
    orientation = _orientation(image)
    width, height = image.size
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    frames = int(getattr(image, "n_frames", 1) or 1)
    return ImageHeader(
        format=image.format or "unknown",
        mode=image.mode,
        width=width,
        height=height,
        orientation=orientation,
        frames=frames,
    )


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block: the pixels are still usable
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _has_transparency(image: Image.Image) -> bool:
    if not image.has_transparency_data:
        return False
    if image.mode.startswith("I"):  # a tRNS grey value on 16-bit samples
        key = image.info.get("transparency")
        return isinstance(key, int) and bool((np.asarray(image) == key).any())
    # Alpha channel, palette or colour-key tRNS: transparent only if a pixel is.
    alpha = image.getchannel("A") if "A" in image.getbands() else image.convert("RGBA")
    low, _ = (alpha.getchannel("A") if alpha.mode == "RGBA" else alpha).getextrema()
    return low < 255


def _significant_bits(
    image: Image.Image, data: bytes, options: DecodeOptions
) -> tuple[int, int, str]:
    """Bits per stored sample, bits used for scaling, and where the latter came from."""
    if image.mode == "1":
        return 1, 1, "container"
    if not image.mode.startswith("I"):
        bits = int(image.info.get("bits", 8)) if image.mode in ("L", "P") else 8
        return bits, 8, "container"  # Pillow scales 1/2/4-bit PNG samples to 8 bits
    largest = int(image.getextrema()[1])
    sbit = _png_sbit(data) if image.format == "PNG" else None
    if sbit is not None and 0 < sbit < 16 and largest < 2**sbit:
        return 16, sbit, "sBIT"  # unscaled samples in the low bits, as the chunk says
    if sbit is not None or options.high_bit_depth == "full_range":
        return 16, 16, "sBIT" if sbit is not None else "container"
    for bits in _AUTO_BIT_DEPTHS:
        if largest < 2**bits:
            return 16, bits, "detected"
    return 16, 16, "container"


def _png_sbit(data: bytes) -> int | None:
    """The greyscale significant bits of a PNG's ``sBIT`` chunk, if any (before IDAT)."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    offset = len(_PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind in (b"IDAT", b"IEND"):
            return None
        if kind == b"sBIT" and length >= 1:
            return max(data[offset + 8 : offset + 8 + min(length, 2)])  # grey (+ alpha)
        offset += 12 + length
    return None


def _to_rgb_float(
    image: Image.Image,
    significant_bits: int,
    background: Background,
    size: int | None,
    box: Box | None = None,
) -> np.ndarray:
    if image.mode.startswith("I"):
        return _high_bit_depth_rgb(image, significant_bits, background, size, box)
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        rgb = canvas.convert("RGB")
    else:
        rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy
    if size is not None and (rgb.size != (size, size) or box is not None):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(rgb, dtype=np.float32) / np.float32(255)


def _high_bit_depth_rgb(
    image: Image.Image,
    significant_bits: int,
    background: Background,
    size: int | None,
    box: Box | None = None,
) -> np.ndarray:
    values = np.asarray(image, dtype=np.float32)
    scale = np.float32(2**significant_bits - 1)
    grey = np.clip(values / scale, 0.0, 1.0)
    key = image.info.get("transparency")
    if isinstance(key, int):  # a tRNS grey value: those pixels are transparent
        shade = np.float32(np.mean(background) / 255)
        grey = np.where(values == key, shade, grey)
    return _grey_rgb(grey, size, box)


def _grey_rgb(grey: np.ndarray, size: int | None, box: Box | None = None) -> np.ndarray:
    """Greyscale in [0, 1], resized as a float image (antialiased bilinear), to RGB."""
    channel = Image.fromarray(np.asarray(grey, dtype=np.float32), mode="F")
    if size is not None and (channel.size != (size, size) or box is not None):
        channel = channel.resize((size, size), Image.Resampling.BILINEAR, box=box)
    single = np.clip(np.asarray(channel, dtype=np.float32), 0.0, 1.0)
    return np.repeat(single[:, :, np.newaxis], CHANNELS, axis=2)


def _notes(
    header: ImageHeader, transparency: bool, bits: int, significant: int, source: str
) -> tuple[str, ...]:
    notes = []
    if header.orientation != 1:
        notes.append(f"EXIF orientation {header.orientation} applied")
    if transparency:
        notes.append("transparency composited onto the background")
    if bits == 16:
        how = {"sBIT": "from the PNG's sBIT chunk", "detected": "detected from the values"}
        notes.append(
            f"{significant}-bit data in a 16-bit image ({how[source]})"
            if significant < 16
            else "16-bit samples"
        )
    if header.format == "MPO":
        notes.append(f"MPO: the primary JPEG frame of {header.frames}")
    elif header.frames > 1:
        notes.append(f"{header.frames} frames or pages: only the first is used")
    return tuple(notes)
