"""Content-addressed image storage on any file system.

Images are stored once under ``<root>/images/sha256/<ab>/<sha256>.<ext>``. The
file-system object is injected: the ZenML step passes ``zenml.io.fileio`` so
the same code writes to local disk or to S3/MinIO, whichever artifact store
the active stack has; tests and scripts can pass :class:`LocalFileSystem`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from clearsight.dataset import DatasetManifest, ImageRecord
from clearsight.deidentify import DeidentificationError, deidentify, is_dicom
from clearsight.errors import DataFolderError
from clearsight.images import FORMAT_EXTENSIONS, sha256_bytes


class FileSystem(Protocol):
    """The subset of ``zenml.io.fileio`` this module uses."""

    def open(self, path: str, mode: str = "r") -> IO[Any]: ...  # noqa: D102

    def exists(self, path: str) -> bool: ...  # noqa: D102

    def makedirs(self, path: str) -> None: ...  # noqa: D102

    def rename(self, src: str, dst: str, overwrite: bool = False) -> None: ...  # noqa: D102

    def walk(self, top: str) -> Iterable[tuple[Any, Any, Any]]: ...  # noqa: D102


class LocalFileSystem:
    """A :class:`FileSystem` over the local disk, for use without ZenML."""

    def open(self, path: str, mode: str = "r") -> IO[Any]:  # noqa: D102
        return open(path, mode)  # noqa: SIM115

    def exists(self, path: str) -> bool:  # noqa: D102
        return os.path.exists(path)

    def makedirs(self, path: str) -> None:  # noqa: D102
        os.makedirs(path, exist_ok=True)

    def rename(self, src: str, dst: str, overwrite: bool = False) -> None:  # noqa: D102
        if os.path.exists(dst) and not overwrite:
            raise FileExistsError(dst)
        shutil.move(src, dst)

    def walk(self, top: str) -> Iterator[tuple[str, list[str], list[str]]]:  # noqa: D102
        return os.walk(top)

    def remove(self, path: str) -> None:  # noqa: D102
        os.remove(path)


def _is_remote(path: str) -> bool:
    return "://" in path


class ContentStore:
    """Store image bytes once, addressed by their SHA-256."""

    def __init__(self, root: str, fs: FileSystem) -> None:
        self.root = root.rstrip("/")
        self.fs = fs
        self.images_root = f"{self.root}/images/sha256"

    def uri_for(self, sha256: str, fmt: str) -> str:
        """Return the storage URI of an image with this hash and format."""
        return f"{self.images_root}/{sha256[:2]}/{sha256}.{FORMAT_EXTENSIONS[fmt]}"

    def existing(self) -> set[str]:
        """Return the file names already in the store, listed once."""
        if not self.fs.exists(self.images_root):
            return set()
        names: set[str] = set()
        for _, _, files in self.fs.walk(self.images_root):
            names.update(os.fsdecode(f) if isinstance(f, bytes) else str(f) for f in files)
        return names

    def put(self, uri: str, data: bytes) -> None:
        """Write ``data`` at ``uri`` so that a reader never sees a partial file.

        Object stores make a single PUT atomic; on local disks the bytes go to
        a temporary name first and are renamed into place.
        """
        parent = uri.rsplit("/", 1)[0]
        if not self.fs.exists(parent):
            self.fs.makedirs(parent)
        if _is_remote(uri):
            with self.fs.open(uri, "wb") as handle:
                handle.write(data)
            return
        temporary = f"{uri}.{uuid.uuid4().hex}.partial"
        with self.fs.open(temporary, "wb") as handle:
            handle.write(data)
        self.fs.rename(temporary, uri, overwrite=True)

    def read(self, uri: str) -> bytes:
        """Read the bytes stored at ``uri``."""
        with self.fs.open(uri, "rb") as handle:
            return handle.read()

    def delete(self, uri: str) -> bool:
        """Delete the file at ``uri``; False when it was not there.

        Uses the file system's ``remove`` (``zenml.io.fileio``,
        :class:`LocalFileSystem`) or fsspec's ``rm_file``.
        """
        if not self.fs.exists(uri):
            return False
        remove = getattr(self.fs, "remove", None) or self.fs.rm_file
        remove(uri)
        return True

    def store_manifest(
        self,
        manifest: DatasetManifest,
        *,
        progress: Callable[[Iterable[ImageRecord]], Iterable[ImageRecord]] | None = None,
    ) -> tuple[DatasetManifest, int, int]:
        """Upload the images a candidate manifest lists, skipping stored ones.

        A DICOM source is stored as its de-identified copy
        (:func:`clearsight.deidentify.deidentify`), the bytes the record's
        ``sha256`` was computed from at the scan; never the original.

        Args:
            manifest: A manifest whose uris are readable source paths.
            progress: Optional wrapper around the record iterable.

        Returns:
            A manifest whose uris point into the store, the number of images
            uploaded, and the number already there.

        Raises:
            clearsight.errors.DataFolderError: When a DICOM source no longer
                gives the copy it gave at the scan (the file changed since).
        """
        present = self.existing()
        uploaded = already = 0
        stored_records: list[ImageRecord] = []
        records = progress(manifest.records) if progress else manifest.records
        for record in records:
            uri = self.uri_for(record.sha256, record.format)
            if uri.rsplit("/", 1)[1] in present:
                already += 1
            else:
                self.put(uri, _stored_bytes(record))
                uploaded += 1
            stored_records.append(record.model_copy(update={"uri": uri}))
        stored = manifest.model_copy(update={"records": stored_records, "stored": True})
        return stored, uploaded, already


def _stored_bytes(record: ImageRecord) -> bytes:
    """The bytes to store for a record read from its source: a DICOM file's copy."""
    data = Path(record.uri).read_bytes()
    if not is_dicom(data):
        return data
    try:
        data = deidentify(data)
    except DeidentificationError as error:
        raise DataFolderError(
            f"{record.uri} cannot be de-identified any more ({error}); it changed since the "
            "scan: ingest again"
        ) from error
    if sha256_bytes(data) != record.sha256:
        raise DataFolderError(
            f"{record.uri} changed since the scan: its de-identified copy is no longer "
            f"{record.sha256[:12]}; ingest again"
        )
    return data
