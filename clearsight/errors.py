"""Exceptions raised by the core, each with a message that says what to do."""


class ClearsightError(Exception):
    """Base class for every error the platform raises on purpose."""


class DataFolderError(ClearsightError):
    """The data folder is missing, empty or laid out in a way we cannot read."""


class CatalogError(ClearsightError):
    """The metadata catalog cannot be opened or written."""
