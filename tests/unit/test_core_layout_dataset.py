import hashlib
import os
import random
import shutil
from pathlib import Path

import pytest

from clearsight.dataset import assign_split, build_manifest, merge_reviewed, validate_ratios
from clearsight.errors import DataFolderError
from clearsight.images import inspect_image
from clearsight.layout import Layout, detect_layout, discover
from tests.unit.conftest import image_bytes


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def test_pre_split_layout_with_aliases_and_case_insensitive_extensions(tmp_path):
    write(tmp_path / "train" / "cat" / "a.PNG", image_bytes(1))
    write(tmp_path / "valid" / "cat" / "b.jpg", image_bytes(2, fmt="JPEG"))
    write(tmp_path / "Validation" / "dog" / "c.JPEG", image_bytes(3, fmt="JPEG"))
    write(tmp_path / "test" / "dog" / "d.png", image_bytes(4))
    write(tmp_path / "test" / "dog" / ".DS_Store", "junk")
    layout, candidates, skipped = discover(tmp_path)
    assert layout is Layout.PRE_SPLIT
    assert sorted((c.path.name, c.label, c.split) for c in candidates) == [
        ("a.PNG", "cat", "train"),
        ("b.jpg", "cat", "val"),
        ("c.JPEG", "dog", "val"),
        ("d.png", "dog", "test"),
    ]
    assert skipped == []


def test_unsplit_layout_reports_stray_and_unsupported_files(tmp_path):
    write(tmp_path / "weed" / "a.png", image_bytes(1))
    write(tmp_path / "weed" / "nested" / "b.png", image_bytes(2))
    write(tmp_path / "grass" / "notes.txt", "hello")
    write(tmp_path / "grass" / "anim.gif", b"GIF89a")
    write(tmp_path / "README.md", "top-level file")
    write(tmp_path / "__MACOSX" / "weed" / "._a.png", b"resource fork")
    layout, candidates, skipped = discover(tmp_path)
    assert layout is Layout.UNSPLIT
    assert {(c.path.name, c.label, c.split) for c in candidates} == {
        ("a.png", "weed", None),
        ("b.png", "weed", None),
    }
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert reasons["README.md"] == "file outside any label folder"
    assert "unsupported extension .txt" in reasons["notes.txt"]
    assert "unsupported extension .gif" in reasons["anim.gif"]
    assert "._a.png" not in reasons


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "has no sub-folders"),
        (lambda root: write(root / "cat" / "a.txt", "x"), "contains no supported images"),
        (
            lambda root: (
                write(root / "train" / "cat" / "a.png", image_bytes(1)),
                write(root / "cat" / "b.png", image_bytes(2)),
            ),
            "mixes split folders",
        ),
    ],
)
def test_unusable_folders_fail_with_the_expected_layout(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DataFolderError, match=message) as failure:
        discover(root)
    assert "<split>/<label>/<image>" in str(failure.value)


def test_a_file_is_not_a_data_folder(tmp_path):
    path = write(tmp_path / "file.png", image_bytes(1))
    with pytest.raises(DataFolderError, match="is a file"):
        detect_layout(path)


@pytest.fixture()
def messy(tmp_path):
    root = tmp_path / "messy"
    for i in range(6):
        write(root / "a" / f"a{i}.png", image_bytes(i))
        write(root / "b" / f"b{i}.png", image_bytes(100 + i))
    write(root / "a" / "zz_dup.png", image_bytes(0))  # same bytes as a0.png
    write(root / "a" / "conflict.png", image_bytes(50))
    write(root / "b" / "conflict.png", image_bytes(50))
    write(root / "a" / "empty.png", b"")
    write(root / "b" / "cut.png", image_bytes(7, size=64)[:70])
    write(root / "b" / "text.jpg", "not an image")
    write(root / "b" / "tiny.png", image_bytes(9, size=3))
    os.symlink(root / "gone.png", root / "a" / "dangling.png")
    (root / "b" / "folder.png").mkdir()
    (root / "b" / "folder.png" / "inner.txt").write_text("x")
    return root


def test_bad_files_are_skipped_with_reasons_and_never_stop_the_scan(messy):
    manifest, report = build_manifest(messy)
    reasons = {str(Path(s.path).relative_to(messy)): s.reason for s in report.skipped}
    assert reasons["a/zz_dup.png"] == f"duplicate of {messy / 'a' / 'a0.png'} (same bytes)"
    assert reasons["a/conflict.png"].startswith("label conflict")
    assert reasons["b/conflict.png"].startswith("label conflict")
    assert reasons["a/empty.png"] == "empty file (0 bytes)"
    assert "truncated" in reasons["b/cut.png"]
    assert "not an image" in reasons["b/text.jpg"]
    assert "too small" in reasons["b/tiny.png"]
    assert reasons["a/dangling.png"].startswith("unreadable")
    assert "unsupported extension .txt" in reasons["b/folder.png/inner.txt"]
    assert report.kept == len(manifest.records) == 12
    assert (report.duplicates, report.conflicts) == (1, 2)
    assert report.valid == 15  # 12 kept + 1 duplicate + 2 conflicting copies
    assert manifest.classes == ["a", "b"]
    assert report.counts == manifest.counts()


def test_hash_split_is_deterministic_stable_and_near_70_15_15(tmp_path):
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(3000)]
    splits = [assign_split(h, (0.7, 0.15, 0.15)) for h in hashes]
    assert splits == [assign_split(h, (0.7, 0.15, 0.15)) for h in hashes]
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.70, abs=0.04)
    assert share["val"] == pytest.approx(0.15, abs=0.03)
    assert share["test"] == pytest.approx(0.15, abs=0.03)


def test_growing_an_unsplit_folder_never_moves_an_image(tmp_path):
    root = tmp_path / "grow"
    for i in range(40):
        write(root / ("x" if i % 2 else "y") / f"{i}.png", image_bytes(i))
    before, _ = build_manifest(root)
    for i in range(40, 80):
        write(root / ("x" if i % 2 else "y") / f"{i}.png", image_bytes(i))
    after, _ = build_manifest(root)
    old = {r.sha256: r.split for r in before.records}
    new = {r.sha256: r.split for r in after.records}
    assert len(new) == 80
    assert all(new[sha] == split for sha, split in old.items())


def _seeds_in(split: str, count: int, start: int = 0) -> list[int]:
    """Seeds of ``image_bytes`` whose pixel hash puts the image in ``split``."""
    seeds = []
    seed = start
    while len(seeds) < count:
        digest = inspect_image(image_bytes(seed)).pixel_sha256
        if assign_split(digest, (0.7, 0.15, 0.15)) == split:
            seeds.append(seed)
        seed += 1
    return seeds


def test_a_class_missing_from_a_split_is_reported_and_its_split_kept(tmp_path):
    root = tmp_path / "unsplit"
    for i in range(60):
        write(root / "big" / f"{i}.png", image_bytes(i))
    for seed in _seeds_in("train", 2, start=1000):  # a small class, all in train by hash
        write(root / "rare" / f"{seed}.png", image_bytes(seed))
    # 43 big / 2 rare in train is imbalanced too: that warning has its own test.
    manifest, report = build_manifest(root, imbalance_warning_ratio=None)

    # The hash-derived assignment is untouched: only reported.
    assert all(r.split == assign_split(r.pixel_sha256, (0.7, 0.15, 0.15)) for r in manifest.records)
    assert manifest.counts()["train"]["rare"] == 2
    assert report.warnings == [
        "class 'rare' has no images in the val split (the hash-derived split put all its "
        "2 image(s) elsewhere; add images to this class)",
        "class 'rare' has no images in the test split (the hash-derived split put all its "
        "2 image(s) elsewhere; add images to this class)",
    ]
    assert "Warning: class 'rare' has no images in the val split" in report.summary()
    assert report.model_dump(mode="json")["warnings"] == report.warnings  # kept in the catalog

    # Merging (no) reviewed images recomputes the warnings with the counts.
    _, merged_report = merge_reviewed(manifest, report, [])
    assert merged_report.warnings == report.warnings


def test_split_warnings_for_pre_split_folders_and_empty_splits(tmp_path):
    seeds = iter(range(100))
    for split, labels in (("train", "ab"), ("val", "ab"), ("test", "a")):
        for label in labels:
            write(tmp_path / "pre" / split / label / "1.png", image_bytes(next(seeds)))
    _, report = build_manifest(tmp_path / "pre")
    assert report.warnings == [
        "class 'b' has no images in the test split (the folder has no test/b images)"
    ]

    for tiny_seed in _seeds_in("train", 3, start=200):
        write(tmp_path / "tiny" / "c" / f"{tiny_seed}.png", image_bytes(tiny_seed))
    _, tiny = build_manifest(tmp_path / "tiny")
    assert [w.split(";")[0] for w in tiny.warnings] == [
        "the val split has no images (too few images for the split ratios)",
        "the test split has no images (too few images for the split ratios)",
    ]

    balanced = tmp_path / "balanced"
    for split in ("train", "val", "test"):
        for label in "xy":
            write(balanced / split / label / "1.png", image_bytes(next(seeds)))
    _, fine = build_manifest(balanced)
    assert fine.warnings == [] and "Warning" not in fine.summary()


@pytest.mark.parametrize("ratios", [(0.5, 0.5), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_bad_ratios_are_refused(ratios):
    with pytest.raises(ValueError, match="summing to 1"):
        validate_ratios(ratios)


def test_fingerprint_depends_on_images_labels_and_splits_only(tmp_path):
    first = tmp_path / "one"
    for i in range(10):
        write(first / ("p" if i < 5 else "q") / f"{i}.png", image_bytes(i))
    copy = tmp_path / "two"
    shutil.copytree(first, copy)
    for path in sorted(copy.rglob("*.png")):
        path.rename(path.with_name("renamed_" + path.name))
    a, _ = build_manifest(first)
    b, _ = build_manifest(copy)
    assert a.fingerprint == b.fingerprint
    shuffled = a.model_copy(update={"records": random.Random(0).sample(a.records, len(a.records))})
    assert shuffled.fingerprint == a.fingerprint
    relabelled = a.model_copy(
        update={"records": [a.records[0].model_copy(update={"label": "zz"}), *a.records[1:]]}
    )
    assert relabelled.fingerprint != a.fingerprint
    write(first / "p" / "new.png", image_bytes(77))
    grown, _ = build_manifest(first)
    assert grown.fingerprint != a.fingerprint


def test_counts_and_split_sizes(tmp_path):
    seeds = iter(range(100, 200))  # distinct pictures: equal ones would be de-duplicated
    for split, n in (("train", 4), ("val", 2), ("test", 1)):
        for i in range(n):
            write(tmp_path / split / "k" / f"{i}.png", image_bytes(next(seeds)))
    manifest, _ = build_manifest(tmp_path)
    assert manifest.split_sizes() == {"train": 4, "val": 2, "test": 1}
    assert manifest.counts() == {"train": {"k": 4}, "val": {"k": 2}, "test": {"k": 1}}
    assert manifest.label_index() == {"k": 0}
