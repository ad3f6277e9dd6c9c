"""Exceptions raised by the core, each with a message that says what to do."""


class ClearsightError(Exception):
    """Base class for every error the platform raises on purpose."""


class DataFolderError(ClearsightError):
    """The data folder is missing, empty or laid out in a way we cannot read."""


class CatalogError(ClearsightError):
    """The metadata catalog cannot be opened or written."""


class InvalidImageError(ValueError):
    """The bytes are not a usable image; ``str(error)`` is the reason.

    Defined here so that :mod:`clearsight.decode` and :mod:`clearsight.dicom`
    share it; importable from either, and from :mod:`clearsight.images`.
    """
