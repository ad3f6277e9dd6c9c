"""A DICOM upload in the review app: answered, shown, queued as its de-identified copy."""

from __future__ import annotations

import io

import pydicom
import pytest

from clearsight.deidentify import deidentify
from clearsight.images import sha256_bytes
from clearsight.review import ReviewStore
from tests.identified_dicom import identified_dicom, identity_values, xray
from tests.ui.conftest import ADMIN
from tests.ui.test_ui_app import app, ask_endpoint
from ui.data.reviews import read_image

pytestmark = pytest.mark.integration


def test_a_dicom_upload_is_answered_and_queued_without_its_identity(served_app):
    original = identified_dicom(xray(41), 41, bits_stored=12, window=(2000, 3500))
    copy = deidentify(original)
    at = app(ADMIN)
    at.slider(key="threshold").set_value(1.0)  # every answer uncertain: queued
    at.file_uploader(key="uploads").set_value(("chest.dcm", original, "application/dicom"))
    at.run()
    assert not at.exception, at.exception
    assert not any("not usable" in w.value for w in at.warning), [w.value for w in at.warning]
    expected = ask_endpoint(served_app.prediction_url, copy)
    assert at.subheader[0].value == f"{expected['label']} · {expected['confidence']:.2%}"
    assert ask_endpoint(served_app.prediction_url, original) == expected  # same picture

    store = ReviewStore(served_app.catalog_url)
    try:
        (entry,) = [e for e in store.queue(limit=1000) if e["filename"] == "chest.dcm"]
    finally:
        store.close()
    assert entry["sha256"] == sha256_bytes(copy) and entry["format"] == "DICOM"
    kept = read_image(entry["uri"])
    assert kept == copy
    assert pydicom.dcmread(io.BytesIO(kept)).PatientIdentityRemoved == "YES"
    for value in identity_values(41):
        assert value.encode() not in kept
