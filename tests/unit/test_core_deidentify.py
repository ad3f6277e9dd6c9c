"""De-identified DICOM copies, patient pseudonyms, the key, and where they are used."""

from __future__ import annotations

import io
import json
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from clearsight.dataset import PATIENT_GROUP_PREFIX, build_manifest
from clearsight.decode import DecodeOptions, decode
from clearsight.deidentify import (
    EMPTIED_ATTRIBUTES,
    KEPT_ATTRIBUTES,
    PSEUDONYM_KEY_ENV,
    DeidentificationError,
    deidentify,
    load_pseudonym_key,
    patient_id,
    pseudonym,
    stored_copy,
)
from clearsight.errors import DataFolderError, InvalidImageError
from clearsight.images import inspect_image, sha256_bytes
from clearsight.storage import ContentStore, LocalFileSystem
from tests.identified_dicom import identified_dicom, identity, identity_values, xray

KEY = bytes(range(32))
# What a copy may hold besides KEPT_ATTRIBUTES and the emptied Type 2 attributes.
ADDED = {
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "LongitudinalTemporalInformationModified",
}
# pydicom's shipped files, one per transfer syntax and pixel kind worth checking.
SHIPPED = [
    "CT_small.dcm",  # explicit little endian, signed 16-bit, rescale
    "MR_small_implicit.dcm",  # implicit VR
    "MR_small_bigendian.dcm",  # explicit big endian
    "MR_small_RLE.dcm",  # RLE
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "JPEG2000.dcm",  # JPEG 2000
    "JPGExtended.dcm",  # JPEG extended, 12-bit
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR colour
    "SC_rgb_rle_2frame.dcm",  # multi-frame colour
    "examples_palette.dcm",  # palette colour LUTs
    "examples_overlay.dcm",  # an overlay (gone in the copy)
    "image_dfl.dcm",  # deflated explicit little endian
    "liver_1frame.dcm",  # enhanced (functional groups)
]


def shipped(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def dataset(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def without_transfer_syntax(name: str) -> bytes:
    """A Part 10 file whose File Meta Information lost its TransferSyntaxUID."""
    ds = pydicom.dcmread(get_testdata_file(name))
    del ds.file_meta.TransferSyntaxUID
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buffer, format="PNG")
    return buffer.getvalue()


# The copy ---------------------------------------------------------------------


def test_a_copy_holds_the_allow_list_and_no_identifying_value():
    original = identified_dicom(xray(1), 1, window=(2000, 3000))
    assert all(value.encode() in original for value in identity_values(1))  # the search works
    copy = deidentify(original)
    for value in identity_values(1):
        assert value.encode() not in copy, value
    assert b"ST_BARTS_PACS" not in copy and b"ACME HOSPITAL" not in copy

    ds = dataset(copy)
    keywords = {element.keyword for element in ds}
    assert keywords <= set(KEPT_ATTRIBUTES) | set(EMPTIED_ATTRIBUTES) | ADDED
    assert not any(element.tag.is_private for element in ds)
    assert not any(element.tag.group in (0x5000, 0x6000) for element in ds)  # curves, overlays
    assert all(ds[keyword].value in ("", None) for keyword in EMPTIED_ATTRIBUTES)
    assert ds.PatientIdentityRemoved == "YES"
    assert "PS3.15" in ds.DeidentificationMethod
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert set(ds.file_meta.keys()) == {
        0x00020000,
        0x00020001,
        0x00020002,
        0x00020003,
        0x00020010,
        0x00020012,
        0x00020013,
    }
    source = dataset(original)
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert ds[keyword].value != source[keyword].value  # replaced (PS3.15 action U)
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert (ds.WindowCenter, ds.WindowWidth) == (2000, 3000)
    assert "WindowCenterWidthExplanation" not in ds
    assert patient_id(copy) is None


@pytest.mark.parametrize("name", SHIPPED)
def test_a_copy_keeps_the_transfer_syntax_and_decodes_to_the_same_picture(name):
    original = shipped(name)
    copy = deidentify(original)
    source, ds = dataset(original), dataset(copy)
    assert ds.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
    if ds.file_meta.TransferSyntaxUID.is_compressed:  # compressed data kept byte for byte
        assert ds.PixelData == source.PixelData
    stored = source.pixel_array
    np.testing.assert_array_equal(ds.pixel_array, stored)
    if source.get("SamplesPerPixel", 1) == 1 and "PALETTE" not in source.PhotometricInterpretation:
        np.testing.assert_array_equal(
            apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds),
            apply_voi_lut(apply_modality_lut(stored, source), source),
        )
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName"):
        value = str(source.get(keyword) or "")
        if len(value) >= 4:
            assert value.encode() not in copy


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"])
def test_the_decoder_sees_the_same_picture_in_the_copy(name):
    original = shipped(name)
    copy = deidentify(original)
    before, after = inspect_image(original, min_side=1), inspect_image(copy, min_side=1)
    assert after.format == before.format == "DICOM"
    assert after.pixel_sha256 == before.pixel_sha256
    assert after.perceptual_hash == before.perceptual_hash
    assert after.sha256 == sha256_bytes(copy) != before.sha256


def test_every_decodable_pydicom_sample_decodes_alike_from_its_copy():
    """The decoder's pixels, notes and header (clearsight.dicom) are the copy's too."""
    options = DecodeOptions(burned_in_annotation="allow")
    decoded = 0
    # The wheel's own files (get_testdata_files would also try to download more).
    for path in sorted((Path(pydicom.data.__file__).parent / "test_files").glob("*.dcm")):
        original = Path(path).read_bytes()
        try:
            before = decode(original, options=options)
        except InvalidImageError:
            continue
        after = decode(deidentify(original), options=options)
        np.testing.assert_array_equal(after.pixels, before.pixels, err_msg=path)
        assert (after.header, after.notes) == (before.header, before.notes), path
        decoded += 1
    assert decoded >= 50


def test_a_copy_is_deterministic_idempotent_and_distinct_per_picture():
    first = identified_dicom(xray(2), 2)
    again = identified_dicom(xray(2), 2)  # same pixels, new UIDs in the original
    assert first != again
    copy = deidentify(first)
    assert deidentify(first) == copy
    assert deidentify(again) == copy  # same content kept, same bytes: one address
    assert deidentify(copy) == copy
    other = deidentify(identified_dicom(xray(3), 2))
    assert dataset(other).SOPInstanceUID != dataset(copy).SOPInstanceUID
    assert stored_copy(first) == copy
    assert stored_copy(png()) == png()


def test_multi_frame_rle_and_burned_in_annotation_survive():
    pixels = xray(4)
    copy = deidentify(identified_dicom(pixels, 4, rle=True, burned_in=True))
    ds = dataset(copy)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    assert ds.BurnedInAnnotation == "YES"  # ingestion's skip rule still applies to the copy
    np.testing.assert_array_equal(ds.pixel_array, pixels)
    frames = dataset(deidentify(shipped("SC_rgb_rle_2frame.dcm")))
    assert frames.NumberOfFrames == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a DICOM Part 10 file"),
        (png(), "not a DICOM Part 10 file"),
        (shipped("no_meta.dcm"), "not a DICOM Part 10 file"),
        (shipped("rtplan.dcm"), "no pixel data"),
        (without_transfer_syntax("MR_small_RLE.dcm"), "names no transfer syntax"),
    ],
)
def test_what_cannot_be_deidentified_is_refused_with_the_reason(data, reason):
    with pytest.raises(DeidentificationError, match=reason) as raised:
        deidentify(data)
    assert isinstance(raised.value, InvalidImageError)  # skipped like any bad image
    if data[128:132] == b"DICM":  # nothing of a DICOM file is kept when it fails
        with pytest.raises(DeidentificationError):
            stored_copy(data)
    else:  # other bytes are not DICOM's business
        assert stored_copy(data) == data


# Patient ids and pseudonyms ------------------------------------------------------


def test_patient_id_is_read_alone_and_decoded_in_its_character_set():
    assert patient_id(identified_dicom(xray(5), 5)) == identity(5)["PatientID"]
    assert patient_id(identified_dicom(xray(5), None)) is None
    assert patient_id(shipped("CT_small.dcm")) == "1CT1"
    ds = dataset(identified_dicom(xray(6), 6))
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientID = " Zoë-0042 "
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert "ë".encode("latin-1") in buffer.getvalue()
    assert patient_id(buffer.getvalue()) == "Zoë-0042"
    ds.PatientID = ""
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert patient_id(buffer.getvalue()) is None
    with pytest.raises(DeidentificationError, match="not a DICOM"):
        patient_id(png())


def test_pseudonym_is_rfc_4231s_hmac_sha256():
    # RFC 4231, test case 6: a 131-byte key, SHA-256.
    key = b"\xaa" * 131
    assert pseudonym("Test Using Larger Than Block-Size Key - Hash Key First", key) == (
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    )
    assert pseudonym("MRN-1", KEY) == pseudonym("MRN-1", KEY)
    assert pseudonym("MRN-1", KEY) != pseudonym("MRN-2", KEY)
    assert pseudonym("MRN-1", KEY) != pseudonym("MRN-1", bytes(32))
    with pytest.raises(ValueError, match="at least 32"):
        pseudonym("MRN-1", b"short")


# The key -------------------------------------------------------------------------


def test_the_key_comes_from_the_environment_first(tmp_path):
    path = tmp_path / "secrets" / "pseudonym.key"
    assert load_pseudonym_key(path, {PSEUDONYM_KEY_ENV: KEY.hex()}) == KEY
    assert not path.exists()  # nothing generated when the variable is set
    with pytest.raises(ValueError, match="not hexadecimal.*token_hex"):
        load_pseudonym_key(path, {PSEUDONYM_KEY_ENV: "correct horse battery staple"})
    with pytest.raises(ValueError, match="has 4 bytes; at least 32"):
        load_pseudonym_key(path, {PSEUDONYM_KEY_ENV: "deadbeef"})


def test_the_key_file_is_made_once_private_and_then_reused(tmp_path):
    path = tmp_path / "state" / "secrets" / "pseudonym.key"
    key = load_pseudonym_key(path, {})
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text().strip() == key.hex()
    assert load_pseudonym_key(path, {}) == key
    assert load_pseudonym_key(tmp_path / "other.key", {}) != key  # each installation its own
    assert sorted(p.name for p in path.parent.iterdir()) == ["pseudonym.key"]  # no temp left
    path.write_text("not a key\n")
    with pytest.raises(ValueError, match=f"{path}.*not hexadecimal"):
        load_pseudonym_key(path, {})


def test_concurrent_first_uses_agree_on_one_key(tmp_path):
    path = tmp_path / "secrets" / "pseudonym.key"
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(load_pseudonym_key(path, {}))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1


# Ingestion -----------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture()
def xrays(tmp_path) -> Path:
    """An unsplit folder: 6 patients with 3 DICOM files each, PNGs, one DICOM without id."""
    root = tmp_path / "xrays"
    seed = 0
    for patient in range(6):
        for n in range(3):
            seed += 1
            label = "pneumonia" if (patient + n) % 2 else "normal"
            rle = n == 2
            write(
                root / label / f"p{patient}_{n}.dcm",
                identified_dicom(xray(seed), patient, window=(2000, 3500), rle=rle),
            )
    for n in range(4):
        buffer = io.BytesIO()
        Image.fromarray((xray(100 + n) >> 4).astype(np.uint8)).save(buffer, format="PNG")
        write(root / ("normal" if n % 2 else "pneumonia") / f"png_{n}.png", buffer.getvalue())
    write(root / "normal" / "anonymous.dcm", identified_dicom(xray(200), None))
    write(root / "normal" / "burned.dcm", identified_dicom(xray(201), 9, burned_in=True))
    write(root / "normal" / "report.dcm", shipped("rtplan.dcm"))
    return root


def test_ingestion_keeps_copies_and_groups_patients_by_keyed_hash(xrays, tmp_path):
    manifest, report = build_manifest(xrays, pseudonym_key=KEY)
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert "BurnedInAnnotation = YES" in reasons["burned.dcm"]
    assert "pixel data" in reasons["report.dcm"]
    dicoms = [r for r in manifest.records if r.format == "DICOM"]
    assert len(dicoms) == 19 and len(manifest.records) == 23

    split_of: dict[str, set[str]] = {}
    for record in dicoms:
        original = Path(record.source_path).read_bytes()
        assert record.sha256 == sha256_bytes(deidentify(original))  # the copy's address
        assert record.num_bytes == len(deidentify(original))
        if record.source_path.endswith("anonymous.dcm"):
            assert record.group is None  # no PatientID: its own content-hash split
            continue
        patient = int(Path(record.source_path).name[1])
        assert record.group == PATIENT_GROUP_PREFIX + pseudonym(identity(patient)["PatientID"], KEY)
        split_of.setdefault(record.group, set()).add(record.split)
    assert len(split_of) == 6 and all(len(splits) == 1 for splits in split_of.values())
    assert report.patient_id_groups == 18
    assert sum(report.groups.values()) == 6 and report.ungrouped == 5  # 4 PNGs, 1 anonymous
    assert report.groups_summary().startswith("patients per split: train ")
    assert "(by DICOM PatientID; 5 images without one)" in report.groups_summary()
    assert "patients per split" in report.summary()

    text = manifest.model_dump_json() + report.model_dump_json()
    for patient in range(6):
        for value in identity_values(patient):
            assert value not in text

    store = ContentStore(str(tmp_path / "store"), LocalFileSystem())
    stored, uploaded, _ = store.store_manifest(manifest)
    assert uploaded == 23
    for record in stored.records:
        data = store.read(record.uri)
        assert sha256_bytes(data) == record.sha256
        if record.format == "DICOM":
            assert record.uri.endswith(".dcm")
            assert dataset(data).PatientIdentityRemoved == "YES"
    everything = b"".join(p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file())
    for patient in range(6):
        for value in identity_values(patient):
            assert value.encode() not in everything


def test_the_group_table_wins_over_the_patient_id(xrays):
    (xrays / "groups.csv").write_text("image,group\np0_0.dcm,lung-study-7\n")
    manifest, report = build_manifest(xrays, groups={"file": "groups.csv"}, pseudonym_key=KEY)
    by_name = {Path(r.source_path).name: r for r in manifest.records}
    assert by_name["p0_0.dcm"].group == "lung-study-7"
    assert by_name["p0_1.dcm"].group.startswith(PATIENT_GROUP_PREFIX)
    assert report.patient_id_groups == 17
    assert report.groups_summary().startswith("groups per split: ")
    assert "17 grouped by DICOM PatientID" in report.groups_summary()


def test_pre_split_leakage_names_the_patients_files_not_the_patient(tmp_path):
    root = tmp_path / "split"
    write(root / "train" / "a" / "x1.dcm", identified_dicom(xray(1), 1))
    write(root / "test" / "a" / "x2.dcm", identified_dicom(xray(2), 1))
    write(root / "train" / "b" / "x3.dcm", identified_dicom(xray(3), 2))
    write(root / "val" / "b" / "x4.dcm", identified_dicom(xray(4), 3))
    _, report = build_manifest(root, pseudonym_key=KEY)
    (warning,) = [w for w in report.warnings if "DICOM patient" in w]
    assert "x1.dcm" in warning and "x2.dcm" in warning and "train and test" in warning
    assert identity(1)["PatientID"] not in json.dumps(report.model_dump(mode="json"))
    assert "1 patients in several splits" in report.groups_summary()


def test_the_installation_key_is_read_only_when_a_patient_id_needs_it(tmp_path, monkeypatch):
    import clearsight.deidentify as module

    key_file = tmp_path / "secrets" / "pseudonym.key"
    monkeypatch.delenv(PSEUDONYM_KEY_ENV, raising=False)
    monkeypatch.setattr(module, "DEFAULT_KEY_FILE", key_file)
    root = tmp_path / "data"
    write(root / "a" / "one.dcm", identified_dicom(xray(1), None))
    write(root / "b" / "two.dcm", identified_dicom(xray(2), None))
    build_manifest(root)
    assert not key_file.exists()
    write(root / "b" / "three.dcm", identified_dicom(xray(3), 3))
    manifest, _ = build_manifest(root)
    assert key_file.exists()
    group = next(r.group for r in manifest.records if r.source_path.endswith("three.dcm"))
    assert group == PATIENT_GROUP_PREFIX + pseudonym(
        identity(3)["PatientID"], load_pseudonym_key(key_file, {})
    )
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, "not-hex")
    with pytest.raises(ValueError, match=PSEUDONYM_KEY_ENV):
        build_manifest(root)


def test_a_dicom_file_changed_after_the_scan_is_not_stored(xrays, tmp_path):
    manifest, _ = build_manifest(xrays, pseudonym_key=KEY)
    record = next(r for r in manifest.records if r.source_path.endswith("p1_0.dcm"))
    Path(record.source_path).write_bytes(identified_dicom(xray(999), 1))
    store = ContentStore(str(tmp_path / "store"), LocalFileSystem())
    with pytest.raises(DataFolderError, match="p1_0.dcm changed since the scan"):
        store.store_manifest(manifest.model_copy(update={"records": [record]}))
    assert not list((tmp_path / "store").rglob("*.dcm"))


# Serving and review --------------------------------------------------------------


def test_the_prediction_log_and_the_review_queue_keep_the_copy(tmp_path):
    from sqlalchemy import create_engine, select

    from clearsight.catalog import sqlite_url
    from clearsight.prediction_log import PREDICTION_LOG, LoggedRequest, PredictionLog
    from clearsight.review import ReviewStore

    original = identified_dicom(xray(7), 7, window=(2000, 3500))
    copy = deidentify(original)
    url = sqlite_url(tmp_path / "catalog.db")
    log = PredictionLog(
        url, flush_interval=30, images_uri=str(tmp_path / "kept"), keep_images="all"
    )
    try:
        request = LoggedRequest(
            at=datetime.now(UTC),
            puid="dicom-1",
            model_name="image-classifier",
            model_version="1",
            registered_version="1",
            answers=[{"label": "1", "confidence": 0.4, "uncertain": True, "top_k": []}],
            images=[original],
        )
        assert log.log(request)
        assert log.flush(timeout=20)
    finally:
        log.close(timeout=2)
    engine = create_engine(url)
    with engine.connect() as connection:
        (row,) = [dict(r._mapping) for r in connection.execute(select(PREDICTION_LOG))]
    engine.dispose()
    assert row["image_sha256"] == sha256_bytes(copy)
    assert row["image_uri"].endswith(f"{sha256_bytes(copy)}.dcm")
    assert Path(row["image_uri"]).read_bytes() == copy

    reviews = ReviewStore(url)
    try:
        store = ContentStore(str(tmp_path / "store"), LocalFileSystem())
        reviews.keep_prediction(
            original,
            {"label": "normal", "confidence": 0.4, "probabilities": {"normal": 0.4}},
            store=store,
            requested_by="ann",
            threshold=0.7,
            filename="upload.dcm",
        )
        (entry,) = reviews.queue()
        assert entry["sha256"] == sha256_bytes(copy)
        assert store.read(entry["uri"]) == copy
    finally:
        reviews.close()
    everything = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for value in identity_values(7):
        assert value.encode() not in everything
