"""The review queue and audit log, on the catalog database and the active artifact store."""

from __future__ import annotations

from functools import cache
from typing import Any

from PIL import Image

from clearsight.decode import DecodeOptions, preview
from clearsight.review import ReviewStore
from clearsight.storage import ContentStore
from ui.data.zenml import client


@cache
def review_store(catalog_url: str) -> ReviewStore:
    """One store (connection pool) per catalog URL and process."""
    return ReviewStore(catalog_url)


def content_store() -> ContentStore:
    """Images are kept where the pipelines keep them: the active stack's artifact store."""
    from zenml.io import fileio

    return ContentStore(client().active_stack.artifact_store.path, fileio)


THUMBNAIL_SIDE = 320  # px, the longest side of a thumbnail (shown at 140-160 px, sharp on HiDPI)


def thumbnail(data: bytes, decoding: dict[str, Any]) -> Image.Image:
    """What the model sees, as an 8-bit picture a browser can show (HEIC and TIFF too).

    Args:
        data: The image file's bytes.
        decoding: The decoding rules (``clearsight.decode.DecodeOptions`` fields).

    Raises:
        clearsight.decode.InvalidImageError: When the bytes are not a usable image.
    """
    return preview(data, THUMBNAIL_SIDE, options=DecodeOptions(**decoding))


def read_image(uri: str) -> bytes:
    """The bytes of a stored image."""
    return content_store().read(uri)
