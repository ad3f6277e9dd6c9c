"""The review queue and audit log, on the catalog database and the active artifact store."""

from __future__ import annotations

from functools import cache

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


def read_image(uri: str) -> bytes:
    """The bytes of a stored image."""
    return content_store().read(uri)
