"""No patient's identity is written anywhere: ingest, train, serve and review DICOM X-rays.

A hospital export is built: DICOM files of several patients whose every field
names them (name, id, birth date, other ids, accession number, institution,
physicians, dates, descriptions, a private tag, an overlay, a curve), pydicom's
own anonymised samples (CT, MR, NM, US, colour; RLE, JPEG 2000, JPEG), PNG and
JPEG X-rays. It goes through the ingest pipeline on the embedded stack, one
tiny training run, the real seldon-core microservice (a DICOM ``binData``
answered, its prediction logged and kept), the review queue (queued, reviewed,
merged by a second ingestion). Then every byte under the test's state folder
(ZenML's store, the artifact store with its images, logs and MLflow database),
the catalog database and the server's log is searched for every identifying
value: none is found. The same search finds them all in the export itself.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image
from pydicom.data import get_testdata_file
from zenml import Model
from zenml.client import Client
from zenml.enums import ExecutionStatus

from clearsight.catalog import Catalog, sqlite_url
from clearsight.config import LabelReviewParameters, TrainingParameters
from clearsight.dataset import PATIENT_GROUP_PREFIX
from clearsight.deidentify import PSEUDONYM_KEY_ENV
from clearsight.names import ArtifactName
from clearsight.prediction_log import PREDICTION_IMAGES_FOLDER, PREDICTION_LOG
from clearsight.review import ReviewStore
from clearsight.serving import ServingConfig, export_model_dir
from clearsight.storage import ContentStore, LocalFileSystem
from tests.conftest import TEST_STATE
from tests.identified_dicom import identified_dicom, identity_values, xray
from tests.integration.test_prediction_log import table
from tests.integration.test_seldon_endpoint import free_port, running_microservice

pytestmark = pytest.mark.integration

PATIENTS = 10
IMAGES_PER_PATIENT = 2
LABELS = ("normal", "pneumonia")
# A fixed key (this test's installation), so the splits are the same every run; with it,
# val and test each hold 3 patients and both classes (a random key can leave a split empty).
KEY = "07" * 32
MODEL_NAME = "dicom-privacy-classifier"
# pydicom's anonymised samples, one per modality and codec worth sending through.
SHIPPED = [
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "JPEG2000.dcm",
    "examples_jpeg2k.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
]
# The identifying attributes searched for in pydicom's samples (at any depth).
IDENTIFYING = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "PatientBirthDate",
    "AccessionNumber",
    "InstitutionName",
    "ReferringPhysicianName",
)


def shipped_values(data: bytes) -> set[str]:
    """The identifying values of one of pydicom's samples (4 characters or more)."""
    found: set[str] = set()
    for element in pydicom.dcmread(io.BytesIO(data)).iterall():
        if element.keyword in IDENTIFYING and element.value:
            values = element.value if element.VM > 1 else [element.value]
            found.update(str(v) for v in values if len(str(v)) >= 4)
    return found


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, list[str], dict[str, str]]:
    """The hospital's folder (outside the state folder), its identifying values, patients."""
    root = tmp_path_factory.mktemp("hospital-export") / "xrays"
    values: set[str] = set()
    patient_of: dict[str, str] = {}  # file name -> patient id, for the split check
    seed = 0
    for patient in range(PATIENTS):
        values.update(identity_values(patient))
        for n in range(IMAGES_PER_PATIENT):
            seed += 1
            label = LABELS[(patient + n) % 2]
            name = f"patient{patient:02d}_{n}.dcm"
            data = identified_dicom(
                xray(seed), patient, bits_stored=12, window=(2000, 3500), rle=n == 1
            )
            (root / label).mkdir(parents=True, exist_ok=True)
            (root / label / name).write_bytes(data)
            patient_of[name] = f"own-{patient}"
    for n, name in enumerate(SHIPPED):
        data = Path(get_testdata_file(name)).read_bytes()
        values.update(shipped_values(data))
        (root / LABELS[n % 2] / name).write_bytes(data)
        patient_of[name] = f"shipped-{name}"
    for n in range(6):  # the same folder holds PNG and JPEG X-rays too
        picture = Image.fromarray((xray(100 + n, bits_stored=8)).astype(np.uint8))
        suffix, fmt = (".png", "PNG") if n % 2 else (".jpg", "JPEG")
        picture.save(root / LABELS[n % 2] / f"film{n}{suffix}", format=fmt)
    return root, sorted(values), patient_of


def search(roots: list[Path], values: list[str]) -> dict[str, list[str]]:
    """``{value: [files holding its UTF-8 bytes]}`` over every file below ``roots``.

    A value of digits only (a date) counts when no digit touches it: inside a
    longer number (a float's digits, a timestamp in microseconds) it is chance.
    """
    found: dict[str, list[str]] = defaultdict(list)
    for root in roots:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            for value in values:
                needle = value.encode()
                if needle not in data:
                    continue
                if value.isdigit():
                    bounded = rb"(?<![0-9])" + re.escape(needle) + rb"(?![0-9])"
                    if not re.search(bounded, data):
                        continue
                found[value].append(str(path))
    return dict(found)


@contextlib.contextmanager
def serving(folder: Path, env: dict[str, str], log: Path):
    """The seldon-core microservice on loopback, its output kept in ``log`` (searched too)."""
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    with running_microservice(folder, ports, env, log=log) as (base, _):
        yield base


@pytest.fixture(scope="module")
def journey(embedded_stack, export, tmp_path_factory):
    """Ingest, train once, serve a DICOM request, queue and review it, ingest again."""
    from pipelines import ingest_pipeline, training_pipeline

    root, _, _ = export
    catalog_dir = tmp_path_factory.mktemp("privacy-catalog")
    catalog = sqlite_url(catalog_dir / "catalog.db")
    store_root = Client().active_stack.artifact_store.path
    timings: dict[str, float] = {}
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PSEUDONYM_KEY_ENV, KEY)
        first = ingest_pipeline.with_options(enable_cache=False)(
            data_dir=str(root), catalog_url=catalog
        )
        timings["ingest"] = time.monotonic() - started
        train = training_pipeline.with_options(
            enable_cache=False, model=Model(name=MODEL_NAME, tags=["dicom-privacy"])
        )(
            hyperparameters=TrainingParameters(epochs=1, image_size=32, batch_size=16),
            label_review=LabelReviewParameters(catalog_url=catalog, folds=2, share=0.5),
        )
        timings["train"] = time.monotonic() - started - timings["ingest"]
        first, train = Client().get_pipeline_run(first.id), Client().get_pipeline_run(train.id)
        assert first.status == ExecutionStatus.COMPLETED
        assert train.status == ExecutionStatus.COMPLETED
        dataset = first.steps["store_images"].outputs[ArtifactName.DATASET][0].load()
        model = train.steps["calibrate_model"].outputs[ArtifactName.MODEL][0].load()

        folder = export_model_dir(
            model,
            ServingConfig(
                model_name=MODEL_NAME,
                model_version="1",
                classes=dataset.classes,
                image_size=32,
                decoding=dataset.decoding.model_dump(mode="json"),
                keep_images="all",
                images_uri=f"{store_root}/{PREDICTION_IMAGES_FOLDER}",
            ),
            tmp_path_factory.mktemp("privacy-served") / "model",
        )
        request = (root / "pneumonia" / "patient01_0.dcm").read_bytes()
        server_log = TEST_STATE / "dicom-privacy-server.log"
        env = {"CLEARSIGHT_PREDICTION_LOG": "on", "CLEARSIGHT_CATALOG_URL": catalog}
        with serving(folder, env, server_log) as base:
            response = requests.post(
                f"{base}/api/v1.0/predictions",
                json={"binData": base64.b64encode(request).decode()},
                timeout=60,
            )
            burned = identified_dicom(xray(500), 0, window=(2000, 3500), burned_in=True)
            refused = requests.post(
                f"{base}/api/v1.0/predictions",
                json={"binData": base64.b64encode(burned).decode()},
                timeout=60,
            )
            deadline = time.monotonic() + 20
            while not table(catalog, PREDICTION_LOG) and time.monotonic() < deadline:
                time.sleep(0.5)
        timings["serve"] = time.monotonic() - started - timings["ingest"] - timings["train"]

        answer = response.json()
        reviews = ReviewStore(catalog)
        try:
            entry = reviews.keep_prediction(  # as the review app does with an upload
                request,
                {"label": dataset.classes[0], "confidence": 0.3, "probabilities": {}},
                store=ContentStore(store_root, LocalFileSystem()),
                requested_by="ann",
                threshold=0.7,
                filename="upload.dcm",
            )
            reviews.review(entry, reviewer="bob", label="pneumonia")
            (queued,) = [i for i in reviews.reviewed_images() if i.prediction_id == entry]
        finally:
            reviews.close()
        second = ingest_pipeline.with_options(enable_cache=False)(
            data_dir=str(root), catalog_url=catalog
        )
        second = Client().get_pipeline_run(second.id)
        timings["review"] = time.monotonic() - started - sum(timings.values())
    return {
        "catalog": catalog,
        "catalog_dir": catalog_dir,
        "dataset": dataset,
        "report": first.steps["store_images"].outputs[ArtifactName.INGESTION_REPORT][0].load(),
        "second": second,
        "response": response,
        "refused": refused,
        "answer": answer,
        "server_log": server_log,
        "store_root": Path(store_root),
        "timings": timings,
        "review_sha256": queued.sha256,
    }


def test_each_patient_is_in_exactly_one_split(journey, export):
    _, _, patient_of = export
    dataset, report = journey["dataset"], journey["report"]
    splits_of: dict[str, set[str]] = defaultdict(set)
    groups_of: dict[str, set[str]] = defaultdict(set)
    for record in dataset.records:
        name = Path(record.source_path).name
        if name in patient_of:
            assert record.format == "DICOM" and record.uri.endswith(".dcm")
            assert record.group is not None and record.group.startswith(PATIENT_GROUP_PREFIX)
            splits_of[patient_of[name]].add(record.split)
            groups_of[patient_of[name]].add(record.group)
        else:
            assert record.group is None  # PNG and JPEG: their own content-hash split
    assert len(splits_of) == PATIENTS + len(SHIPPED)
    assert all(len(splits) == 1 for splits in splits_of.values()), splits_of
    assert all(len(groups) == 1 for groups in groups_of.values())
    assert sum(report.groups.values()) == PATIENTS + len(SHIPPED)
    assert report.groups_summary().startswith("patients per split: ")
    assert all(size > 0 for size in dataset.split_sizes().values())


def test_a_dicom_request_is_answered_logged_and_kept_as_its_copy(journey):
    assert journey["response"].status_code == 200, journey["response"].text
    (answer,) = journey["answer"]["jsonData"]["predictions"]
    assert answer["label"] in journey["dataset"].classes
    refused = journey["refused"]  # burned-in annotation: skipped, as at ingestion
    assert refused.status_code == 400 and "BurnedInAnnotation = YES" in refused.text
    (row,) = table(journey["catalog"], PREDICTION_LOG)
    kept = Path(row["image_uri"])
    assert kept.suffix == ".dcm" and kept.is_file()
    assert pydicom.dcmread(kept).PatientIdentityRemoved == "YES"
    # The copy is deterministic: logged, queued and ingested, the file has one address.
    (ingested,) = [
        r for r in journey["dataset"].records if r.source_path.endswith("patient01_0.dcm")
    ]
    assert row["image_sha256"] == ingested.sha256
    assert journey["review_sha256"] == ingested.sha256
    merged = journey["second"]
    assert merged.status == ExecutionStatus.COMPLETED
    report = merged.steps["store_images"].outputs[ArtifactName.INGESTION_REPORT][0].load()
    assert report.reviewed == 1  # the reviewed copy read back: the same picture, same label
    (duplicate,) = [s for s in report.skipped if ingested.sha256 in s.path]
    assert duplicate.reason.startswith("duplicate of ") and "patient01_0.dcm" in duplicate.reason
    assert len(Catalog(journey["catalog"]).images()) == len(journey["dataset"].records)


def test_no_identifying_value_is_written_anywhere(journey, export):
    root, values, _ = export
    assert len(values) > 10 * PATIENTS
    # The search works: it finds every value in the export, and in an SQLite file.
    in_export = search([root], values)
    assert sorted(in_export) == values
    control = journey["catalog_dir"] / "control.db"
    with contextlib.closing(sqlite3.connect(control)) as connection:
        connection.execute("CREATE TABLE t (v TEXT)")
        connection.execute("INSERT INTO t VALUES (?)", (values[0],))
        connection.commit()
    assert list(search([control], values)) == [values[0]]
    control.unlink()

    roots = [TEST_STATE, journey["catalog_dir"]]
    assert journey["store_root"].is_relative_to(TEST_STATE)  # artifact store, MLflow DB, logs
    assert any(journey["store_root"].rglob("mlflow.db"))
    assert any(journey["store_root"].rglob("*.dcm"))
    assert journey["server_log"].stat().st_size > 0
    assert search(roots, values) == {}
    print("timings (s):", {k: round(v, 1) for k, v in journey["timings"].items()})
