"""Group-level splits: a metadata table gives each image its patient, lesion or field.

Real datasets ship a table next to the images (HAM10000's
``HAM10000_metadata.csv`` with ``image_id`` and ``lesion_id``, a chest X-ray
set's patient id, a farm's plot id). Images of one group must share a split,
or the test metrics measure memory of the patient rather than skill. For an
unsplit folder the split is derived from the group id's hash (so it stays
stable as the dataset grows); for a pre-split folder a group found in two
splits is reported as leakage.

A row's image is matched to a file by its path relative to the data folder,
by its file name, or by its file name without extension (HAM10000's
``ISIC_0024306`` names ``ISIC_0024306.jpg``).
"""

from __future__ import annotations

import csv
import hashlib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clearsight.errors import DataFolderError

DEFAULT_IMAGE_COLUMN = "image"
DEFAULT_GROUP_COLUMN = "group"
_DELIMITERS = (",", ";", "\t")
_CONFIG_HINT = "configs/ingest.yaml (parameters.groups)"


@dataclass(frozen=True)
class GroupsOption:
    """The ``groups`` option: which table, and which of its columns to read.

    Attributes:
        file: The CSV path, relative to the data folder or absolute; None: no table.
        image_column: The column naming the image (path, file name, or file
            name without extension).
        group_column: The column giving the image's group (patient, lesion, field).
    """

    file: str | None = None
    image_column: str = DEFAULT_IMAGE_COLUMN
    group_column: str = DEFAULT_GROUP_COLUMN


def validate_groups_option(value: Mapping[str, Any] | GroupsOption | None) -> GroupsOption:
    """Check the ``groups`` option (``{file, image_column, group_column}``).

    Args:
        value: The option as configured, or None (no table).

    Returns:
        The option; its ``file`` is None when no table is configured.

    Raises:
        ValueError: When it is not a mapping of those keys to non-empty strings.
    """
    if value is None:
        return GroupsOption()
    if isinstance(value, GroupsOption):
        return value
    example = "e.g. {file: metadata.csv, image_column: image_id, group_column: lesion_id}"
    if not isinstance(value, Mapping):
        raise ValueError(f"groups must be a mapping, {example}; got {value!r}")
    unknown = sorted(str(k) for k in value if k not in ("file", "image_column", "group_column"))
    if unknown:
        raise ValueError(
            f"groups has unknown keys {', '.join(unknown)}; the keys are file, image_column "
            f"and group_column, {example}"
        )
    file = value.get("file")
    if file is not None and (not isinstance(file, str) or not file.strip()):
        raise ValueError(f"groups.file must be a CSV path or null (no table); got {file!r}")
    columns: dict[str, str] = {}
    for key, default in (
        ("image_column", DEFAULT_IMAGE_COLUMN),
        ("group_column", DEFAULT_GROUP_COLUMN),
    ):
        column = value.get(key, default)
        if column is None:
            column = default
        if not isinstance(column, str) or not column.strip():
            raise ValueError(f"groups.{key} must be a column name; got {column!r}")
        columns[key] = column.strip()
    if columns["image_column"] == columns["group_column"]:
        raise ValueError(
            f"groups.image_column and groups.group_column are both {columns['image_column']!r}; "
            "they name two different columns"
        )
    return GroupsOption(file=file.strip() if file else None, **columns)


def resolve_table_path(data_dir: str | Path, file: str) -> Path:
    """The table's absolute path: ``file`` itself when absolute, else below ``data_dir``."""
    path = Path(file).expanduser()
    if not path.is_absolute():
        path = Path(data_dir).expanduser() / path
    return path.resolve()


def _key(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip().replace("\\", "/").strip("/")


def _delimiter(header: str) -> str:
    return max(_DELIMITERS, key=header.count) if any(d in header for d in _DELIMITERS) else ","


def read_group_table(path: Path, image_column: str, group_column: str) -> dict[str, str]:
    """Read a metadata CSV into ``{image: group}``.

    The delimiter (comma, semicolon or tab) is taken from the header line; a
    UTF-8 byte-order mark is ignored. Rows with an empty image or group cell
    are left out (those images count as without a group).

    Args:
        path: The CSV file.
        image_column: The column naming each image.
        group_column: The column giving each image's group.

    Returns:
        The group of each image, keyed by the image cell (NFC, stripped,
        forward slashes).

    Raises:
        DataFolderError: When the file is missing or unreadable, lacks a
            column, or gives one image two different groups.
    """
    fix = f"set groups.file in {_CONFIG_HINT} to the metadata CSV, or null for no table"
    if not path.is_file():
        raise DataFolderError(f"Group table {path} does not exist (groups.file); {fix}.")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = handle.readline()
            handle.seek(0)
            reader = csv.DictReader(handle, delimiter=_delimiter(header))
            found = [(name or "").strip() for name in (reader.fieldnames or [])]
            reader.fieldnames = found
            missing = [c for c in (image_column, group_column) if c not in found]
            if missing:
                raise DataFolderError(
                    f"Group table {path} has no column {' or '.join(repr(c) for c in missing)}; "
                    f"its columns are {', '.join(repr(c) for c in found) or '(none)'}. Fix: set "
                    f"groups.image_column and groups.group_column in {_CONFIG_HINT} to the "
                    "columns naming the image and its group (HAM10000: image_id, lesion_id)."
                )
            table: dict[str, str] = {}
            lines: dict[str, int] = {}
            for row in reader:
                image = _key(row.get(image_column) or "")
                group = unicodedata.normalize("NFC", row.get(group_column) or "").strip()
                if not image or not group:
                    continue
                known = table.get(image)
                if known is not None and known != group:
                    raise DataFolderError(
                        f"Group table {path} gives image {image!r} two groups in column "
                        f"{group_column!r}: {known!r} (line {lines[image]}) and {group!r} "
                        f"(line {reader.line_num}); columns found: {', '.join(found)}. Fix: "
                        "give each image one row (or rows with the same group)."
                    )
                table[image] = group
                lines.setdefault(image, reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataFolderError(
            f"Group table {path} cannot be read as a UTF-8 CSV ({error}); {fix}."
        ) from error
    return table


@dataclass(frozen=True)
class GroupTable:
    """A read metadata table and where it came from."""

    path: Path
    groups: dict[str, str]

    def group_of(self, path: Path, roots: list[Path]) -> str | None:
        """The group of an image file: by relative path, file name, or name without extension.

        Args:
            path: The image file.
            roots: Folders its relative path may be read from (the data root
                below any wrapping folder, then the folder given).

        Returns:
            The group, or None when the table has no row for the file.
        """
        keys: list[str] = []
        for root in roots:
            try:
                keys.append(_key(path.relative_to(root).as_posix()))
            except ValueError:
                continue
        keys += [_key(path.name), _key(path.stem)]
        for key in keys:
            group = self.groups.get(key)
            if group is not None:
                return group
        return None


def load_group_table(data_dir: str | Path, option: GroupsOption) -> GroupTable | None:
    """Read the configured table (None when ``option.file`` is None).

    Raises:
        DataFolderError: As :func:`read_group_table`.
    """
    if option.file is None:
        return None
    path = resolve_table_path(data_dir, option.file)
    return GroupTable(path, read_group_table(path, option.image_column, option.group_column))


def group_hash(group: str) -> str:
    """The hash a group's split is derived from (SHA-256 of ``group:<id>``, hex)."""
    return hashlib.sha256(f"group:{group}".encode()).hexdigest()
