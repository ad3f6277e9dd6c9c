"""Validate image files and hash their bytes.

Every image is fully decoded once, by the platform's single decoder
(:mod:`clearsight.decode`), so truncated or corrupt files are caught at
ingestion rather than in the middle of a training epoch, and what is recorded
(dimensions after the EXIF orientation, transparency, significant bits) is
what the model will see.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from clearsight.decode import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    DEFAULT_OPTIONS,
    FORMAT_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    DecodeOptions,
    InvalidImageError,
    inspect,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_SIDE",
    "FORMAT_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "ImageInfo",
    "InvalidImageError",
    "inspect_image",
    "sha256_bytes",
]


@dataclass(frozen=True)
class ImageInfo:
    """What ingestion records about one valid image.

    Attributes:
        sha256: Hex SHA-256 of the file's bytes (its storage address).
        width: Width in pixels after the EXIF orientation.
        height: Height in pixels after the EXIF orientation.
        mode: Pillow's mode of the stored pixels (``L``, ``RGB``, ``I;16``...;
            for DICOM the mode of like samples, ``clearsight.dicom.DicomHeader.mode``).
        format: Pillow's format name (``JPEG``, ``MPO``, ``PNG``, ``WEBP``...) or
            ``DICOM``.
        num_bytes: File size in bytes.
        orientation: EXIF orientation applied when decoding (1: none).
        transparency: The image has transparent pixels (composited when decoded).
        significant_bits: Bits per sample used for scaling (8 for 8-bit images;
            DICOM: BitsStored).
        frames: Frames or pages in the file (only the first is used; DICOM:
            NumberOfFrames).
        notes: What decoding does to this image, for the ingestion report.
        pixel_sha256: Identity of the picture (``clearsight.decode.DecodedImage``):
            equal for copies whose bytes differ only in metadata.
        perceptual_hash: 64-bit DCT hash of the picture, 16 hex digits, or
            ``""`` below 64 px a side (``clearsight.decode.DecodedImage``).
    """

    sha256: str
    width: int
    height: int
    mode: str
    format: str
    num_bytes: int
    orientation: int = 1
    transparency: bool = False
    significant_bits: int = 8
    frames: int = 1
    notes: tuple[str, ...] = ()
    pixel_sha256: str = ""
    perceptual_hash: str = ""

    @property
    def extension(self) -> str:
        """File extension used when the image is stored by content."""
        return FORMAT_EXTENSIONS[self.format]


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def inspect_image(
    data: bytes,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    options: DecodeOptions = DEFAULT_OPTIONS,
    perceptual_hash: bool = True,
) -> ImageInfo:
    """Decode ``data`` completely and describe it.

    Args:
        data: The raw file bytes.
        min_side: Smallest accepted width or height, in pixels (after orientation).
        max_pixels: Largest accepted width x height (decompression-bomb guard).
            The check runs on the header, before any pixel is decoded.
        options: The decoding rules (for the significant-bits rule).
        perceptual_hash: Compute the perceptual hash (``""`` when False).

    Returns:
        The image's hash, oriented size, mode, format and what decoding does to it.

    Raises:
        InvalidImageError: With a human-readable reason when the image is
            empty, not an image, of an unsupported format, truncated, too
            small or too large.
    """
    decoded = inspect(
        data,
        min_side=min_side,
        max_pixels=max_pixels,
        options=options,
        perceptual_hash=perceptual_hash,
    )
    header = decoded.header
    return ImageInfo(
        sha256=sha256_bytes(data),
        width=header.width,
        height=header.height,
        mode=header.mode,
        format=header.format,
        num_bytes=len(data),
        orientation=header.orientation,
        transparency=decoded.transparency,
        significant_bits=decoded.significant_bits,
        frames=header.frames,
        notes=decoded.notes,
        pixel_sha256=decoded.pixel_sha256,
        perceptual_hash=decoded.perceptual_hash,
    )
