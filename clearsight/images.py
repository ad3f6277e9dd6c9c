"""Validate image files and hash their bytes.

Every image is fully decoded once with Pillow, so truncated or corrupt files
are caught at ingestion rather than in the middle of a training epoch.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

SUPPORTED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
SUPPORTED_FORMATS = {"JPEG": "jpg", "PNG": "png"}

DEFAULT_MIN_SIDE = 8
DEFAULT_MAX_PIXELS = 40_000_000  # ~ 6300 x 6300; guards against decompression bombs


@dataclass(frozen=True)
class ImageInfo:
    """What ingestion records about one valid image."""

    sha256: str
    width: int
    height: int
    mode: str
    format: str
    num_bytes: int

    @property
    def extension(self) -> str:
        """File extension used when the image is stored by content."""
        return SUPPORTED_FORMATS[self.format]


class InvalidImageError(ValueError):
    """The bytes are not a usable image; ``str(error)`` is the reason."""


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def inspect_image(
    data: bytes,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageInfo:
    """Decode ``data`` completely and describe it.

    Args:
        data: The raw file bytes.
        min_side: Smallest accepted width or height, in pixels.
        max_pixels: Largest accepted width x height (decompression-bomb guard).
            The check runs on the header, before any pixel is decoded.

    Returns:
        The image's hash, size, mode and format.

    Raises:
        InvalidImageError: With a human-readable reason when the image is
            empty, not an image, not JPEG/PNG, truncated, too small or too large.
    """
    if not data:
        raise InvalidImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                fmt = image.format or "unknown"
                width, height = image.size
                if fmt not in SUPPORTED_FORMATS:
                    raise InvalidImageError(
                        f"unsupported image format {fmt}: only JPEG and PNG are accepted"
                    )
                if width * height > max_pixels:
                    raise InvalidImageError(
                        f"image too large: {width}x{height} = {width * height:,} pixels "
                        f"exceeds max_pixels={max_pixels:,} (decompression-bomb guard)"
                    )
                if min(width, height) < min_side:
                    raise InvalidImageError(
                        f"image too small: {width}x{height}, "
                        f"the smallest side must be at least {min_side} px"
                    )
                mode = image.mode
                image.load()
    except InvalidImageError:
        raise
    except Image.DecompressionBombError as error:
        raise InvalidImageError(f"image too large (decompression-bomb guard): {error}") from error
    except UnidentifiedImageError as error:
        raise InvalidImageError("not an image: Pillow cannot identify the file's format") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise InvalidImageError(f"corrupt or truncated image: {error}") from error
    return ImageInfo(
        sha256=sha256_bytes(data),
        width=width,
        height=height,
        mode=mode,
        format=fmt,
        num_bytes=len(data),
    )
