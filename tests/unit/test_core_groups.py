"""Patient-, lesion- or field-level splits from a metadata table (clearsight.groups)."""

import hashlib
from collections import defaultdict
from pathlib import Path

import pytest

from clearsight.dataset import (
    DatasetManifest,
    ImageRecord,
    assign_split,
    build_manifest,
    merge_reviewed,
)
from clearsight.errors import DataFolderError
from clearsight.groups import group_hash, validate_groups_option
from tests.unit.conftest import image_bytes

RATIOS = (0.70, 0.15, 0.15)
HAM = {"file": "HAM10000_metadata.csv", "image_column": "image_id", "group_column": "lesion_id"}


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def write_ham(folder: Path, patients: range, per_patient: int = 4, seed0: int = 0) -> list[str]:
    """Images ``<label>/ISIC_<n>.png`` and a HAM10000-style table; returns the table rows."""
    rows = []
    for patient in patients:
        label = "mel" if patient % 2 else "nv"
        for k in range(per_patient):
            seed = seed0 + patient * per_patient + k
            image_id = f"ISIC_{seed:07d}"
            write(folder / label / f"{image_id}.png", image_bytes(seed))
            rows.append(f"HAM_{patient:07d},{image_id},{label}")
    return rows


def write_table(folder: Path, rows: list[str]) -> None:
    write(folder / HAM["file"], "lesion_id,image_id,dx\n" + "\n".join(rows) + "\n")


def splits_by_group(records: list[ImageRecord]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for record in records:
        found[record.group].add(record.split)
    return found


def test_unsplit_folder_is_split_by_group(tmp_path):
    write_table(tmp_path, write_ham(tmp_path, range(40)))
    manifest, report = build_manifest(tmp_path, groups=HAM)
    assert len(manifest.records) == 160
    assert all(r.group for r in manifest.records)
    by_group = splits_by_group(manifest.records)
    assert len(by_group) == 40
    assert all(len(splits) == 1 for splits in by_group.values()), "a patient in two splits"
    for record in manifest.records:
        assert record.split == assign_split(group_hash(record.group), RATIOS)
    # the split follows the group, not the image: images of a group differ in content hash
    assert {r.split for r in manifest.records} == {"train", "val", "test"}
    assert sum(report.groups.values()) == 40
    assert report.groups == {
        s: len({r.group for r in manifest.records if r.split == s})
        for s in ("train", "val", "test")
    }
    assert report.ungrouped == 0
    assert report.cross_split_groups == {}
    assert report.groups_file == str((tmp_path / HAM["file"]).resolve())
    # the table next to the images is not reported as a stray file
    assert report.skipped == []
    assert report.scanned == 160
    assert "groups per split: train" in report.summary()
    assert "0 images without a group" in report.summary()


def test_growing_the_dataset_moves_no_image(tmp_path):
    rows = write_ham(tmp_path, range(30))
    write_table(tmp_path, rows)
    before, _ = build_manifest(tmp_path, groups=HAM)
    # new patients, and new images of known patients (seeds beyond the first batch)
    rows += write_ham(tmp_path, range(30, 60))
    extra = []
    for patient in range(0, 30, 3):
        label = "mel" if patient % 2 else "nv"
        image_id = f"extra_{patient}"
        write(tmp_path / label / f"{image_id}.png", image_bytes(10_000 + patient))
        extra.append(f"HAM_{patient:07d},{image_id},{label}")
    write_table(tmp_path, rows + extra)
    after, _ = build_manifest(tmp_path, groups=HAM)
    old = {r.sha256: r.split for r in before.records}
    new = {r.sha256: r.split for r in after.records}
    assert len(new) == len(old) + 30 * 4 + 10
    assert {sha: new[sha] for sha in old} == old
    assert all(len(s) == 1 for s in splits_by_group(after.records).values())


def test_images_without_a_row_keep_their_content_hash_split(tmp_path):
    rows = write_ham(tmp_path, range(10))
    for n in range(12):
        write(tmp_path / "nv" / f"orphan_{n}.png", image_bytes(5_000 + n))
    write_table(tmp_path, rows)
    manifest, report = build_manifest(tmp_path, groups=HAM)
    orphans = [r for r in manifest.records if Path(r.source_path).name.startswith("orphan_")]
    assert len(orphans) == 12
    for record in orphans:
        assert record.group is None
        assert record.split == assign_split(record.pixel_sha256, RATIOS)
    assert report.ungrouped == 12
    assert "12 images without a group" in report.summary()


def test_pre_split_folder_with_a_patient_in_train_and_test_is_leakage(tmp_path):
    write(tmp_path / "train" / "nv" / "a1.png", image_bytes(1))
    write(tmp_path / "train" / "mel" / "a2.png", image_bytes(2))
    write(tmp_path / "test" / "nv" / "a3.png", image_bytes(3))
    write(tmp_path / "train" / "nv" / "b1.png", image_bytes(4))
    write(tmp_path / "val" / "mel" / "c1.png", image_bytes(5))
    write(tmp_path / "test" / "mel" / "d1.png", image_bytes(6))
    write(
        tmp_path / "meta.csv",
        "image,patient\na1,P1\na2,P1\na3,P1\nb1,P2\nc1,P3\nd1,P4\n",
    )
    groups = {"file": "meta.csv", "image_column": "image", "group_column": "patient"}
    manifest, report = build_manifest(tmp_path, groups=groups)
    # nothing moves in a pre-split dataset
    assert {Path(r.source_path).name: r.split for r in manifest.records} == {
        "a1.png": "train",
        "a2.png": "train",
        "a3.png": "test",
        "b1.png": "train",
        "c1.png": "val",
        "d1.png": "test",
    }
    assert report.cross_split_groups == {"P1": ["train", "test"]}
    assert report.groups == {"train": 2, "val": 1, "test": 2}
    leakage = [w for w in report.warnings if "P1" in w]
    assert len(leakage) == 1
    assert "train and test splits" in leakage[0] and "leakage" in leakage[0]
    assert "group 'P1'" in report.summary()
    # merging reviewed images keeps the warning and the counts
    merged, merged_report = merge_reviewed(manifest, report, [])
    assert merged_report.cross_split_groups == {"P1": ["train", "test"]}
    assert any("P1" in w for w in merged_report.warnings)


def test_rows_match_by_relative_path_and_file_name(tmp_path):
    write(tmp_path / "nv" / "x" / "a.png", image_bytes(1))
    write(tmp_path / "nv" / "b.png", image_bytes(2))
    write(tmp_path / "mel" / "c.png", image_bytes(3))
    # semicolon-delimited, with a byte-order mark, as spreadsheet exports write
    write(tmp_path / "t.csv", "\ufeffimage;group\nnv/x/a.png;G1\nb.png;G1\nc;G2\n")
    manifest, report = build_manifest(tmp_path, groups={"file": "t.csv"})
    assert {Path(r.source_path).name: r.group for r in manifest.records} == {
        "a.png": "G1",
        "b.png": "G1",
        "c.png": "G2",
    }
    assert report.ungrouped == 0


def test_table_by_absolute_path(tmp_path):
    data = tmp_path / "data"
    write(data / "nv" / "a.png", image_bytes(1))
    write(data / "mel" / "b.png", image_bytes(2))
    table = write(tmp_path / "elsewhere" / "t.csv", "image,group\na,G1\nb,G2\n")
    manifest, _ = build_manifest(data, groups={"file": str(table)})
    assert sorted(r.group for r in manifest.records) == ["G1", "G2"]


def test_missing_table_is_a_clear_error(tmp_path):
    write(tmp_path / "nv" / "a.png", image_bytes(1))
    with pytest.raises(DataFolderError, match=r"nope\.csv does not exist.*groups\.file"):
        build_manifest(tmp_path, groups={"file": "nope.csv"})


def test_missing_column_names_the_columns_found(tmp_path):
    write(tmp_path / "nv" / "a.png", image_bytes(1))
    write(tmp_path / "t.csv", "image_id,lesion_id\na,L1\n")
    with pytest.raises(DataFolderError) as raised:
        build_manifest(tmp_path, groups={"file": "t.csv", "image_column": "image_id"})
    message = str(raised.value)
    assert "t.csv" in message
    assert "no column 'group'" in message
    assert "'image_id', 'lesion_id'" in message
    assert "groups.group_column" in message


def test_one_image_with_two_groups_is_an_error(tmp_path):
    write(tmp_path / "nv" / "a.png", image_bytes(1))
    write(tmp_path / "t.csv", "image,group\na,G1\nb,G2\na,G1\na,G3\n")
    with pytest.raises(DataFolderError, match=r"image 'a' two groups.*'G1' \(line 2\).*'G3'"):
        build_manifest(tmp_path, groups={"file": "t.csv"})


@pytest.mark.parametrize(
    "value",
    [
        "metadata.csv",
        {"file": 3},
        {"file": "m.csv", "image_column": ""},
        {"file": "m.csv", "colum": "x"},
        {"file": "m.csv", "image_column": "id", "group_column": "id"},
    ],
)
def test_invalid_groups_option_is_refused(value):
    with pytest.raises(ValueError, match="groups"):
        validate_groups_option(value)


def test_without_a_table_fingerprint_and_manifest_json_are_unchanged(tmp_path):
    for n in range(12):
        write(tmp_path / ("nv" if n % 2 else "mel") / f"{n}.png", image_bytes(n))
    plain, plain_report = build_manifest(tmp_path)
    nulled, nulled_report = build_manifest(
        tmp_path, groups={"file": None, "image_column": "image", "group_column": "group"}
    )
    assert nulled.model_dump_json() == plain.model_dump_json()
    assert '"group"' not in plain.model_dump_json()
    assert nulled.fingerprint == plain.fingerprint
    digest = hashlib.sha256()
    for record in plain.records:
        assert record.split == assign_split(record.pixel_sha256, RATIOS)
    for sha, label, split in sorted((r.sha256, r.label, r.split) for r in plain.records):
        digest.update(f"{sha}\t{label}\t{split}\n".encode())
    assert plain.fingerprint == digest.hexdigest()
    assert nulled_report.groups == {} and nulled_report.groups_file is None
    assert "group" not in nulled_report.summary()
    # a manifest written before groups existed reads back identically
    again = DatasetManifest.model_validate_json(plain.model_dump_json())
    assert again.model_dump_json() == plain.model_dump_json()
    assert all(r.group is None for r in again.records)
