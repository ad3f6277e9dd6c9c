"""Discover the images of a data folder and the labels and splits they carry.

Two layouts are accepted, the ones image-classification datasets ship in:

* pre-split: ``<split>/<label>/<file>`` with split one of train, val, test
  (``valid`` and ``validation`` are read as val);
* unsplit: ``<label>/<file>``; splits are then assigned from the content hash.

Files below a label folder are taken recursively. Archive and OS metadata is
ignored everywhere, silently: hidden files and folders (a leading ``.``, which
covers ``.DS_Store`` and AppleDouble ``._*`` files), ``__MACOSX`` (and any
``__*`` folder), ``Thumbs.db`` and ``desktop.ini``. Any other file whose
extension is not a supported image is reported as skipped.

Archives often wrap the dataset in one folder (``chest_xray/train/...``): a
data folder whose only visible entry is a folder of folders is descended into,
and the descent is reported. Label folder names are normalised (Unicode NFC,
surrounding whitespace stripped), mapped through the configured
``label_aliases``, and names that still differ only by case are refused.
"""

from __future__ import annotations

import os
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from clearsight.decode import SUPPORTED_FORMAT_NAMES
from clearsight.errors import DataFolderError
from clearsight.images import SUPPORTED_EXTENSIONS

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}

EXPECTED_LAYOUT = (
    "Expected either <split>/<label>/<image> with split in train|val|test, "
    "or <label>/<image>, with images in one of the formats "
    f"{SUPPORTED_FORMAT_NAMES} ({', '.join(sorted(SUPPORTED_EXTENSIONS))})."
)

#: File names written by operating systems and archivers, never data (compared
#: case-insensitively; names starting with ``.`` or ``__`` are metadata too).
OS_METADATA_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})

#: How many wrapping folders are descended at most (``a/b/c/<split>/...``).
MAX_WRAPPING_DEPTH = 3

#: A dataset needs at least this many classes to be trained on.
MIN_CLASSES = 2


class Layout(StrEnum):
    """How a data folder is organised."""

    PRE_SPLIT = "pre-split"
    UNSPLIT = "unsplit"


class LabelCaseConflictError(DataFolderError):
    """Label folders whose names differ only by case (``melanoma``, ``Melanoma``)."""


class TooFewClassesError(DataFolderError):
    """A dataset with fewer than :data:`MIN_CLASSES` classes."""


@dataclass(frozen=True)
class Candidate:
    """A file that may become a dataset image."""

    path: Path
    label: str
    split: str | None


@dataclass(frozen=True)
class Skipped:
    """A file that was left out, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    """What :func:`scan_folder` found below a data folder.

    Attributes:
        layout: Pre-split or unsplit.
        root: The folder the layout was read from (below any wrapping folders).
        wrappers: The wrapping folders descended into, outermost first.
        candidates: The candidate images, in a deterministic (sorted) order.
        skipped: Files left out for their extension or position.
        label_folders: Each label (normalised, aliases applied) and the label
            folders it was read from, relative to ``root``.
    """

    layout: Layout
    root: Path
    wrappers: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    label_folders: dict[str, list[str]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """The labels that have at least one candidate image, sorted."""
        return sorted({c.label for c in self.candidates})


def is_os_metadata(name: str) -> bool:
    """Tell whether a file or folder name is archive or OS metadata, never data.

    Args:
        name: A file or folder name (no path).

    Returns:
        True for hidden names (``.DS_Store``, AppleDouble ``._*``, ``.git``),
        ``__MACOSX`` and other ``__*`` names, ``Thumbs.db``, ``desktop.ini``.
    """
    return name.startswith((".", "__")) or name.lower() in OS_METADATA_NAMES


def normalize_label(name: str) -> str:
    """Normalise a label folder name: Unicode NFC, surrounding whitespace stripped.

    macOS writes file names decomposed (NFD: ``e`` + combining accent), most
    other systems composed (NFC); both print alike and must be one label. The
    normalisation forms are those of Unicode Standard Annex #15 (UAX #15,
    https://unicode.org/reports/tr15/).

    Args:
        name: The folder name as found on disk.

    Returns:
        The NFC form of ``name`` without leading or trailing whitespace.
    """
    return unicodedata.normalize("NFC", name).strip()


def validate_label_aliases(aliases: Mapping[str, str] | None) -> dict[str, str]:
    """Check and normalise the ``label_aliases`` option (spelling -> label).

    Keys and values are normalised like folder names (:func:`normalize_label`),
    so an alias matches a folder however its name was encoded.

    Args:
        aliases: A mapping of label spellings to the label they stand for, or None.

    Returns:
        The normalised mapping (empty when ``aliases`` is None).

    Raises:
        ValueError: When it is not a mapping of non-empty strings to non-empty
            strings, or maps a label to a label that is itself mapped (a chain).
    """
    if aliases is None:
        return {}
    if not isinstance(aliases, Mapping):
        raise ValueError(
            "label_aliases must be a mapping of folder spellings to labels, "
            f"e.g. {{Melanoma: melanoma}}; got {aliases!r}"
        )
    normalised: dict[str, str] = {}
    for key, value in aliases.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(
                f"label_aliases maps names to names; got {key!r}: {value!r} "
                "(quote numbers and booleans in YAML, e.g. '1': one)"
            )
        if not normalize_label(key) or not normalize_label(value):
            raise ValueError(f"label_aliases has an empty label: {key!r}: {value!r}")
        normalised[normalize_label(key)] = normalize_label(value)
    chained = sorted(v for k, v in normalised.items() if v in normalised and normalised[v] != v)
    if chained:
        raise ValueError(
            f"label_aliases maps onto labels that are themselves mapped ({', '.join(chained)}); "
            "map every spelling directly to the final label"
        )
    return normalised


def validate_class_count(labels: Iterable[str], where: str) -> None:
    """Refuse a dataset with fewer than :data:`MIN_CLASSES` classes.

    A classifier of one class learns nothing and scores perfectly, so such a
    dataset must never reach training.

    Args:
        labels: The dataset's classes.
        where: The data folder, for the message.

    Raises:
        TooFewClassesError: When there are fewer than two distinct labels.
    """
    found = sorted(set(labels))
    if len(found) >= MIN_CLASSES:
        return
    named = f"one class ('{found[0]}')" if found else "no class"
    raise TooFewClassesError(
        f"Data folder {where} has {named}; at least {MIN_CLASSES} classes are needed "
        "to train a classifier, so nothing was ingested. Each label is a folder of "
        f"images: add a folder for every other class. {EXPECTED_LAYOUT}"
    )


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_os_metadata(p.name))


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not is_os_metadata(p.name))


def _walk_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_os_metadata(d))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if not is_os_metadata(f))
    return found


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in SUPPORTED_EXTENSIONS for p in _visible_files(folder))


def _is_split(folder: Path) -> bool:
    return normalize_label(folder.name).lower() in SPLIT_ALIASES


def _check_exists(root: Path) -> None:
    if not root.exists():
        raise DataFolderError(
            f"Data folder {root} does not exist. {EXPECTED_LAYOUT} "
            "Run `make data` to write the bundled sample dataset, or pass "
            "--data-dir PATH."
        )
    if not root.is_dir():
        raise DataFolderError(f"{root} is a file, not a folder. {EXPECTED_LAYOUT}")


def find_data_root(root: Path) -> tuple[Path, list[str]]:
    """Descend the wrapping folders an archive puts around a dataset.

    A folder is a wrapper when it is the only visible entry of its parent that
    is a folder, no image sits next to it, its name is not a split name, and
    it holds sub-folders but no image of its own (``chest_xray/`` next to
    ``__MACOSX/``). At most :data:`MAX_WRAPPING_DEPTH` levels are descended.

    Args:
        root: The data folder given.

    Returns:
        The folder to read the layout from and the wrappers descended, outermost
        first (empty when ``root`` is the dataset itself).

    Raises:
        DataFolderError: When ``root`` is missing or a file.
    """
    _check_exists(root)
    current, wrappers = root, []
    for _ in range(MAX_WRAPPING_DEPTH):
        dirs = _visible_dirs(current)
        if len(dirs) != 1 or _has_images(current):
            break
        (only,) = dirs
        if _is_split(only) or _has_images(only) or not _visible_dirs(only):
            break
        current = only
        wrappers.append(only.name)
    return current, wrappers


def _layout_of(root: Path, given: Path) -> Layout:
    dirs = _visible_dirs(root)
    if not dirs:
        raise DataFolderError(
            f"Data folder {given} has no sub-folders, so no labels. {EXPECTED_LAYOUT}"
        )
    split_dirs = [d for d in dirs if _is_split(d)]
    if split_dirs and len(split_dirs) != len(dirs):
        others = ", ".join(d.name for d in dirs if d not in split_dirs)
        raise DataFolderError(
            f"Data folder {root} mixes split folders "
            f"({', '.join(d.name for d in split_dirs)}) with other folders "
            f"({others}). {EXPECTED_LAYOUT}"
        )
    if not split_dirs:
        wrapped = [d.name for d in dirs if any(_is_split(s) for s in _visible_dirs(d))]
        if wrapped:
            raise DataFolderError(
                f"Data folder {root}: the folders {', '.join(wrapped)} hold split folders "
                "(train, val, test), so they are wrapping folders, not labels. Expected the "
                f"split folders or the label folders directly in {root}. {EXPECTED_LAYOUT} "
                "Fix: pass the folder that holds train/val/test (--data-dir "
                f"{root / wrapped[0]}), or merge the wrapping folders into one."
            )
    return Layout.PRE_SPLIT if split_dirs else Layout.UNSPLIT


def detect_layout(root: Path) -> Layout:
    """Tell whether ``root`` is pre-split or unsplit (below any wrapping folder).

    Raises:
        DataFolderError: When the folder is missing, has no sub-folders, mixes
            split folders with label folders, or holds several wrapping folders.
    """
    data_root, _ = find_data_root(Path(root))
    return _layout_of(data_root, Path(root))


def _case_conflicts(label_folders: dict[str, list[str]], root: Path) -> None:
    by_fold: dict[str, list[str]] = defaultdict(list)
    for label in label_folders:
        by_fold[label.casefold()].append(label)
    clashes = [sorted(spellings) for spellings in by_fold.values() if len(spellings) > 1]
    if not clashes:
        return
    lines = []
    for spellings in sorted(clashes):
        lines.append(
            ", ".join(
                f"'{s}' (folder {', '.join(repr(f) for f in label_folders[s])})" for s in spellings
            )
        )
    first = clashes[0]
    example = ", ".join(f"{s}: {first[0]}" for s in first[1:])
    raise LabelCaseConflictError(
        f"Data folder {root} has labels that differ only by case: {'; '.join(lines)}. "
        "A class has one spelling; nothing was ingested. Fix: rename the folders to one "
        "spelling, or map the others in configs/ingest.yaml, e.g. "
        f"label_aliases: {{{example}}}."
    )


def scan_folder(root: Path, label_aliases: Mapping[str, str] | None = None) -> Discovery:
    """Read the layout, labels and candidate images below a data folder.

    Label folder names are normalised (:func:`normalize_label`: Unicode NFC per
    UAX #15, whitespace stripped), then mapped through ``label_aliases``;
    folders that end up with the same label are one class.

    Args:
        root: The data folder.
        label_aliases: Label spellings mapped to the label they stand for
            (applied after normalisation), e.g. ``{"Melanoma": "melanoma"}``.

    Returns:
        The layout, data root, wrappers descended, candidates and skipped files.

    Raises:
        DataFolderError: When the folder is missing, empty, mixed, wrapped in
            several folders, holds no image, or has a label folder whose name
            is blank.
        LabelCaseConflictError: When labels differ only by case.
        ValueError: When ``label_aliases`` is invalid.
    """
    aliases = validate_label_aliases(label_aliases)
    given = Path(root).expanduser().resolve()
    data_root, wrappers = find_data_root(given)
    layout = _layout_of(data_root, given)
    skipped = [Skipped(str(p), "file outside any label folder") for p in _visible_files(data_root)]

    label_dirs: list[tuple[Path, str | None]] = []
    if layout is Layout.PRE_SPLIT:
        for split_dir in _visible_dirs(data_root):
            split = SPLIT_ALIASES[normalize_label(split_dir.name).lower()]
            skipped.extend(
                Skipped(str(p), "file outside any label folder") for p in _visible_files(split_dir)
            )
            label_dirs.extend((d, split) for d in _visible_dirs(split_dir))
    else:
        label_dirs.extend((d, None) for d in _visible_dirs(data_root))

    candidates: list[Candidate] = []
    label_folders: dict[str, list[str]] = defaultdict(list)
    for label_dir, split in label_dirs:
        label = normalize_label(label_dir.name)
        if not label:
            raise DataFolderError(
                f"Label folder {str(label_dir)!r} has a blank name; rename it to the class "
                "it holds."
            )
        label = aliases.get(label, label)
        label_folders[label].append(str(label_dir.relative_to(data_root)))
        for path in _walk_files(label_dir):
            if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
                skipped.append(
                    Skipped(
                        str(path),
                        f"unsupported extension {path.suffix or '(none)'}: only "
                        f"{', '.join(sorted(SUPPORTED_EXTENSIONS))} are read",
                    )
                )
                continue
            candidates.append(Candidate(path=path, label=label, split=split))

    _case_conflicts(label_folders, given)
    if not candidates:
        raise DataFolderError(
            f"Data folder {given} contains no supported images "
            f"({len(skipped)} other files). {EXPECTED_LAYOUT}"
        )
    return Discovery(
        layout=layout,
        root=data_root,
        wrappers=wrappers,
        candidates=candidates,
        skipped=skipped,
        label_folders=dict(label_folders),
    )


def discover(
    root: Path, label_aliases: Mapping[str, str] | None = None
) -> tuple[Layout, list[Candidate], list[Skipped]]:
    """List the candidate images below ``root`` (see :func:`scan_folder`).

    Returns:
        The layout, the candidates in a deterministic (sorted) order, and the
        files skipped for their extension or position.

    Raises:
        DataFolderError: When the folder is missing, empty, mixed or wrapped
            in several folders.
        LabelCaseConflictError: When labels differ only by case.
    """
    found = scan_folder(root, label_aliases)
    return found.layout, found.candidates, found.skipped
