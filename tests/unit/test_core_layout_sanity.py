"""Layout sanity: wrapping folders, archive junk, label normalisation, class counts, imbalance."""

import unicodedata
from itertools import count
from pathlib import Path

import pytest
import yaml

from clearsight.dataset import build_manifest, merge_reviewed, validate_imbalance_ratio
from clearsight.errors import DataFolderError
from clearsight.layout import (
    LabelCaseConflictError,
    Layout,
    TooFewClassesError,
    detect_layout,
    discover,
    scan_folder,
    validate_class_count,
    validate_label_aliases,
)
from tests.unit.conftest import image_bytes

ROOT = Path(__file__).resolve().parents[2]
SEEDS = count(1)


def images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(n):
        seed = next(SEEDS)
        (folder / f"{seed}.png").write_bytes(image_bytes(seed))


def junk(folder: Path) -> None:
    """What macOS, Windows and zip tools leave in a folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (folder / "._1.png").write_bytes(b"\0\5\26\7AppleDouble")


def chest_xray_archive(root: Path) -> Path:
    """``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}`` next to ``__MACOSX/``, as unzipped."""
    for split in ("train", "val", "test"):
        for label in ("NORMAL", "PNEUMONIA"):
            images(root / "chest_xray" / split / label, 2)
            junk(root / "__MACOSX" / "chest_xray" / split / label)
        junk(root / "chest_xray" / split)
    junk(root / "chest_xray")
    junk(root)
    return root


def test_a_wrapping_folder_is_descended_and_reported(tmp_path):
    root = chest_xray_archive(tmp_path / "download")
    assert detect_layout(root) is Layout.PRE_SPLIT
    manifest, report = build_manifest(root)
    assert manifest.classes == ["NORMAL", "PNEUMONIA"]
    assert manifest.layout == "pre-split"
    assert {(r.split, r.label) for r in manifest.records} == {
        (s, label) for s in ("train", "val", "test") for label in ("NORMAL", "PNEUMONIA")
    }
    assert all(Path(r.source_path).parts[-3] == r.split for r in manifest.records)
    assert report.wrappers == ["chest_xray"]
    assert "read from wrapping folder chest_xray/" in report.summary()
    assert report.skipped == []  # __MACOSX, .DS_Store, Thumbs.db... are not data
    assert report.model_dump(mode="json")["wrappers"] == ["chest_xray"]  # kept in the catalog


def test_nested_wrappers_are_descended_but_not_a_split_or_a_label_folder(tmp_path):
    nested = tmp_path / "nested"
    images(nested / "chest_xray" / "chest_xray" / "train" / "a", 1)
    images(nested / "chest_xray" / "chest_xray" / "train" / "b", 1)
    found = scan_folder(nested)
    assert found.wrappers == ["chest_xray", "chest_xray"]
    assert found.labels == ["a", "b"]

    only_train = tmp_path / "only_train"  # a split folder is never a wrapper
    images(only_train / "train" / "a", 1)
    images(only_train / "train" / "b", 1)
    assert scan_folder(only_train).wrappers == []
    assert scan_folder(only_train).layout is Layout.PRE_SPLIT

    one_label = tmp_path / "one_label"  # a folder of images is a label, not a wrapper
    images(one_label / "cat", 2)
    images(one_label / "cat" / "kittens", 1)
    found = scan_folder(one_label)
    assert (found.wrappers, found.labels) == ([], ["cat"])


def test_sibling_wrappers_stop_with_the_expected_level(tmp_path):
    root = tmp_path / "two_archives"
    for wrapper in ("chest_xray", "chest_xray_2"):
        for split in ("train", "test"):
            images(root / wrapper / split / "NORMAL", 1)
            images(root / wrapper / split / "PNEUMONIA", 1)
    with pytest.raises(DataFolderError) as failure:
        build_manifest(root)
    message = str(failure.value)
    assert "chest_xray, chest_xray_2 hold split folders" in message
    assert "wrapping folders, not labels" in message
    assert f"Expected the split folders or the label folders directly in {root}" in message
    assert f"--data-dir {root / 'chest_xray'}" in message


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_dataset_with_one_class_is_refused(tmp_path, wrapped):
    root = tmp_path / "xrays"
    images(root / ("chest_xray" if wrapped else ".") / "NORMAL", 3)
    found = scan_folder(root)
    assert found.labels == ["NORMAL"]
    with pytest.raises(TooFewClassesError) as failure:
        validate_class_count(found.labels, str(root))
    message = str(failure.value)
    assert "one class ('NORMAL')" in message
    assert "at least 2 classes are needed" in message
    assert "add a folder for every other class" in message
    with pytest.raises(DataFolderError, match="no class"):
        validate_class_count([], str(root))
    validate_class_count(["NORMAL", "PNEUMONIA"], str(root))


NAEVUS = "nævus pigmenté"


def test_labels_are_nfc_normalised_and_stripped(tmp_path):
    root = tmp_path / "skin"
    nfd = unicodedata.normalize("NFD", NAEVUS)
    assert nfd != NAEVUS
    images(root / NAEVUS, 2)
    images(root / nfd, 2)  # as macOS writes it
    images(root / f"{NAEVUS} ", 1)
    images(root / "melanoma", 2)
    images(root / " melanoma\t", 1)
    manifest, report = build_manifest(root)
    assert manifest.classes == ["melanoma", NAEVUS]
    assert report.kept == 8
    found = scan_folder(root)
    assert sorted(found.label_folders[NAEVUS]) == sorted([NAEVUS, nfd, f"{NAEVUS} "])


def test_labels_differing_only_by_case_stop_with_each_spelling_and_the_fix(tmp_path):
    root = tmp_path / "skin"
    images(root / "train" / "melanoma", 1)
    images(root / "train" / "melanoma ", 1)
    images(root / "test" / "Melanoma", 1)
    images(root / "train" / NAEVUS, 1)
    with pytest.raises(LabelCaseConflictError) as failure:
        build_manifest(root)
    message = str(failure.value)
    assert "differ only by case" in message
    assert "'Melanoma' (folder 'test/Melanoma')" in message
    assert "'melanoma' (folder 'train/melanoma', 'train/melanoma ')" in message
    assert "label_aliases: {melanoma: Melanoma}" in message
    assert isinstance(failure.value, DataFolderError)


def test_label_aliases_resolve_a_case_conflict_after_normalisation(tmp_path):
    root = tmp_path / "skin"
    images(root / "melanoma", 2)
    images(root / "Melanoma", 2)
    images(root / "MELANOMA ", 1)
    images(root / unicodedata.normalize("NFD", NAEVUS), 2)
    aliases = {"Melanoma": "melanoma", " MELANOMA": "melanoma", "Nævus Pigmenté": NAEVUS}
    manifest, report = build_manifest(root, label_aliases=aliases)
    assert manifest.classes == ["melanoma", NAEVUS]
    assert report.kept == 7
    # The shipped configuration maps nothing and is valid.
    params = yaml.safe_load((ROOT / "configs" / "ingest.yaml").read_text())["parameters"]
    assert validate_label_aliases(params["label_aliases"]) == {}
    assert validate_imbalance_ratio(params["imbalance_warning_ratio"]) == 10.0


@pytest.mark.parametrize(
    ("aliases", "message"),
    [
        (["Melanoma"], "must be a mapping"),
        ({"1": 2}, "maps names to names"),
        ({"Melanoma": " "}, "empty label"),
        ({"a": "b", "b": "c"}, "themselves mapped"),
    ],
)
def test_invalid_label_aliases_are_refused(tmp_path, aliases, message):
    with pytest.raises(ValueError, match=message):
        validate_label_aliases(aliases)
    images(tmp_path / "a", 1)
    images(tmp_path / "b", 1)
    with pytest.raises(ValueError, match=message):
        build_manifest(tmp_path, label_aliases=aliases)


def test_archive_and_os_metadata_is_ignored_everywhere(tmp_path):
    root = tmp_path / "photos"
    images(root / "cat", 2)
    images(root / "dog", 2)
    for folder in (root, root / "cat", root / "dog"):
        junk(folder)
    images(root / "cat" / ".thumbnails", 1)  # hidden folder inside a label
    images(root / ".Trash-1000" / "files", 1)  # hidden folder at the top
    images(root / "__MACOSX" / "cat", 1)
    layout, candidates, skipped = discover(root)
    assert layout is Layout.UNSPLIT
    assert sorted({c.label for c in candidates}) == ["cat", "dog"]
    assert len(candidates) == 4
    assert skipped == []


def imbalanced(root: Path) -> Path:
    images(root / "train" / "a", 12)
    images(root / "train" / "b", 1)
    images(root / "val" / "a", 2)
    images(root / "val" / "b", 2)
    images(root / "test" / "a", 3)
    images(root / "test" / "b", 1)
    return root


def test_the_report_gives_the_class_imbalance_per_split_and_warns_above_the_threshold(tmp_path):
    root = imbalanced(tmp_path / "pre")
    _, report = build_manifest(root)
    assert report.imbalance == {"train": 12.0, "val": 1.0, "test": 3.0}
    assert report.imbalance_warning_ratio == 10.0
    assert report.warnings == [
        "the train split is imbalanced: class 'a' has 12 images, class 'b' 1 (ratio 12.0, "
        "above imbalance_warning_ratio 10); add images to the small classes or check the "
        "per-class recall of the trained model"
    ]
    summary = report.summary()
    assert "class imbalance (largest/smallest): train 12.0, val 1.0, test 3.0" in summary
    assert "Warning: the train split is imbalanced" in summary
    assert report.model_dump(mode="json")["imbalance"]["train"] == 12.0

    _, merged = merge_reviewed(*build_manifest(root), [])  # recomputed with the same threshold
    assert merged.imbalance == report.imbalance and merged.warnings == report.warnings

    _, relaxed = build_manifest(root, imbalance_warning_ratio=20)
    assert relaxed.imbalance == report.imbalance and relaxed.warnings == []
    _, silent = build_manifest(root, imbalance_warning_ratio=None)
    assert silent.warnings == [] and silent.imbalance["train"] == 12.0


def test_a_split_with_one_class_has_no_ratio(tmp_path):
    root = tmp_path / "pre"
    images(root / "train" / "a", 2)
    images(root / "train" / "b", 1)
    images(root / "test" / "a", 1)
    _, report = build_manifest(root)
    assert report.imbalance == {"train": 2.0, "val": None, "test": None}
    assert "class imbalance (largest/smallest): train 2.0. Warning" in report.summary()


@pytest.mark.parametrize("value", [0.5, 0, -3, "10", True, [10]])
def test_invalid_imbalance_thresholds_are_refused(value):
    with pytest.raises(ValueError, match="imbalance_warning_ratio must be a number of at least 1"):
        validate_imbalance_ratio(value)
