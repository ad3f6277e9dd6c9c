"""Discover the images of a data folder and the labels and splits they carry.

Two layouts are accepted, the ones image-classification datasets ship in:

* pre-split: ``<split>/<label>/<file>`` with split one of train, val, test
  (``valid`` and ``validation`` are read as val);
* unsplit: ``<label>/<file>``; splits are then assigned from the content hash.

Files below a label folder are taken recursively. Hidden files and folders
(``.DS_Store``, ``__MACOSX``) are ignored; any other file whose extension is
not JPEG or PNG is reported as skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

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
    "or <label>/<image>, with .jpg, .jpeg or .png images."
)


class Layout(StrEnum):
    """How a data folder is organised."""

    PRE_SPLIT = "pre-split"
    UNSPLIT = "unsplit"


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


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(p.name))


def _walk_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if not _hidden(f))
    return found


def detect_layout(root: Path) -> Layout:
    """Tell whether ``root`` is pre-split or unsplit.

    Raises:
        DataFolderError: When the folder is missing, has no sub-folders, or
            mixes split folders with label folders.
    """
    if not root.exists():
        raise DataFolderError(
            f"Data folder {root} does not exist. {EXPECTED_LAYOUT} "
            "Run `make data` to write the bundled sample dataset, or pass "
            "--data-dir PATH."
        )
    if not root.is_dir():
        raise DataFolderError(f"{root} is a file, not a folder. {EXPECTED_LAYOUT}")
    dirs = _visible_dirs(root)
    if not dirs:
        raise DataFolderError(
            f"Data folder {root} has no sub-folders, so no labels. {EXPECTED_LAYOUT}"
        )
    split_dirs = [d for d in dirs if d.name.lower() in SPLIT_ALIASES]
    if split_dirs and len(split_dirs) != len(dirs):
        others = ", ".join(d.name for d in dirs if d not in split_dirs)
        raise DataFolderError(
            f"Data folder {root} mixes split folders "
            f"({', '.join(d.name for d in split_dirs)}) with other folders "
            f"({others}). {EXPECTED_LAYOUT}"
        )
    return Layout.PRE_SPLIT if split_dirs else Layout.UNSPLIT


def discover(root: Path) -> tuple[Layout, list[Candidate], list[Skipped]]:
    """List the candidate images below ``root``.

    Returns:
        The layout, the candidates in a deterministic (sorted) order, and the
        files skipped for their extension or position.

    Raises:
        DataFolderError: When the folder is missing, empty or mixed.
    """
    root = Path(root).expanduser().resolve()
    layout = detect_layout(root)
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []

    for stray in sorted(p for p in root.iterdir() if p.is_file() and not _hidden(p.name)):
        skipped.append(Skipped(str(stray), "file outside any label folder"))

    label_dirs: list[tuple[Path, str | None]] = []
    if layout is Layout.PRE_SPLIT:
        for split_dir in _visible_dirs(root):
            split = SPLIT_ALIASES[split_dir.name.lower()]
            for stray in sorted(p for p in split_dir.iterdir() if p.is_file()):
                if not _hidden(stray.name):
                    skipped.append(Skipped(str(stray), "file outside any label folder"))
            label_dirs.extend((d, split) for d in _visible_dirs(split_dir))
    else:
        label_dirs.extend((d, None) for d in _visible_dirs(root))

    for label_dir, split in label_dirs:
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
            candidates.append(Candidate(path=path, label=label_dir.name, split=split))

    if not candidates:
        raise DataFolderError(
            f"Data folder {root} contains no .jpg, .jpeg or .png images "
            f"({len(skipped)} other files). {EXPECTED_LAYOUT}"
        )
    return layout, candidates, skipped
