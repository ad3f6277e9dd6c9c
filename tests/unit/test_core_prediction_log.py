"""The prediction log's queue and writer, retention, a database that is down; feedback parsing.

Real SQLite catalogs (migrated, WAL) in a temporary folder; a PostgreSQL URL on
a port where nothing listens stands for a database that is down.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sqlite3
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select, text

from clearsight import migrations
from clearsight import prediction_log as plog
from clearsight.catalog import sqlite_url
from clearsight.features import (
    PIXEL_COLUMNS,
    STATISTICS_COLUMNS,
    EmbeddingProjection,
    fit_embedding_pca,
    geometry,
)
from clearsight.images import inspect_image
from clearsight.prediction_log import (
    DATABASE_ERROR,
    GROUND_TRUTHS,
    PREDICTION_LOG,
    QUEUE_FULL,
    LoggedRequest,
    PredictionLog,
    log_settings,
)
from clearsight.serving import BadRequestError, parse_feedback, request_meta
from tests.unit.conftest import image_bytes

CLASSES = [str(d) for d in range(10)]


def answer(label: str = "3", confidence: float = 0.9) -> dict:
    return {
        "label": label,
        "confidence": confidence,
        "uncertain": confidence < 0.7,
        "top_k": [{"label": label, "probability": confidence}],
        "probabilities": {label: confidence},
    }


def entry(puid: str, images: list[bytes] | None = None, at: datetime | None = None, **kw):
    count = len(images) if images is not None else kw.pop("count", 1)
    return LoggedRequest(
        at=at or datetime.now(UTC),
        puid=puid,
        model_name="image-classifier",
        model_version="7",
        registered_version="4",
        answers=[answer(str(i % 10)) for i in range(count)],
        images=images,
        **kw,
    )


def rows(url: str, table=PREDICTION_LOG) -> list[dict]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(select(table).order_by("id"))]
    finally:
        engine.dispose()


def count(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(PREDICTION_LOG)).scalar()
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def fresh_migration_cache(monkeypatch):
    monkeypatch.setattr(migrations, "_at_head", set())


@pytest.fixture()
def url(tmp_path) -> str:
    return sqlite_url(tmp_path / "state" / "catalog.db")


@pytest.fixture()
def opened():
    """Logs made by a test, closed after it."""
    logs: list[PredictionLog] = []
    yield logs
    for log in logs:
        log.close(timeout=2)


def test_the_queue_writes_batches_of_hashed_rows(url, opened):
    log = PredictionLog(url, batch_size=4, flush_interval=30)
    opened.append(log)
    batches: list[int] = []
    write = log._write
    log._write = lambda batch: (batches.append(len(batch)), write(batch))[1]
    images = [image_bytes(seed) for seed in range(20)]
    tags = {"site": "north", "device": "scanner-2"}
    for i in range(10):
        assert log.log(entry(f"req-{i}", images[2 * i : 2 * i + 2], tags=tags))
    assert log.flush(timeout=20)
    # Nothing is written one by one: full batches as they fill, the rest on flush.
    assert sum(batches) == 10 and max(batches) <= 4 and len(batches) == 3, batches
    logged = rows(url)
    assert len(logged) == 20 and log.written == 20 and not log.dropped
    for i, row in enumerate(logged):
        image = images[i]
        info = inspect_image(image, min_side=1)
        assert (row["puid"], row["item"]) == (f"req-{i // 2}", i % 2)
        assert (row["image_sha256"], row["pixel_sha256"]) == (info.sha256, info.pixel_sha256)
        assert (row["model_name"], row["model_version"], row["registered_version"]) == (
            "image-classifier",
            "7",
            "4",
        )
        assert row["input_kind"] == "images" and row["tags"] == tags
        assert row["label"] == str(i % 2) and row["top_k"][0]["label"] == str(i % 2)
        assert row["confidence"] == pytest.approx(0.9) and row["uncertain"] is False
    assert log.pending_items("req-0") == 0 and log.logged_items("req-0") == 2
    assert log.logged_items("never-seen") == 0

    # A tensor request has no image hashes; oversized tags are replaced by a note.
    assert log.log(entry("tensor", count=3, tags={"x": "y" * 5000}))
    assert log.flush(timeout=20)
    tensor_rows = [r for r in rows(url) if r["puid"] == "tensor"]
    assert [r["item"] for r in tensor_rows] == [0, 1, 2]
    assert all(r["input_kind"] == "tensor" and r["pixel_sha256"] is None for r in tensor_rows)
    assert "exceeds 4096" in tensor_rows[0]["tags"]["_dropped"]
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rows_carry_the_servers_features_and_the_writers_geometry(url, opened):
    log = PredictionLog(url, image_features=geometry, flush_interval=30)
    opened.append(log)
    good, other = image_bytes(1), image_bytes(2)
    broken = b"\x89PNG\r\n\x1a\n not an image"
    server = [
        {"embedding_0": 0.5, "embedding_1": -1.25},
        {"embedding_0": float("nan"), "embedding_1": 2.0},  # JSON has no NaN: left out
        {"embedding_0": 3.0, "embedding_1": 4.0},
    ]
    assert log.log(entry("with-features", [good, other, broken], features=server))
    assert log.log(entry("pixels-only", [good]))
    assert log.log(entry("tensor", count=1))
    assert log.flush(timeout=20)
    by_request = {(r["puid"], r["item"]): r["features"] for r in rows(url)}
    assert by_request[("with-features", 0)] == pytest.approx({**geometry(good), **server[0]})
    assert by_request[("with-features", 1)] == pytest.approx(
        {**geometry(other), "embedding_1": 2.0}
    )
    # An image the writer cannot read keeps the server's features; no pixel statistics.
    assert by_request[("with-features", 2)] == server[2]
    assert by_request[("pixels-only", 0)] == pytest.approx(geometry(good))
    assert set(by_request[("pixels-only", 0)]) == set(PIXEL_COLUMNS) - set(STATISTICS_COLUMNS)
    assert by_request[("tensor", 0)] is None


def test_uncertain_answers_and_a_sample_keep_their_bytes_content_addressed(url, opened, tmp_path):
    store = tmp_path / "artifacts" / "prediction-log"
    draws = iter([0.05, 0.95, 0.05, 0.95])  # one per certain image: kept or not (share 0.1)
    log = PredictionLog(
        url,
        flush_interval=30,
        images_uri=str(store),
        keep_images="uncertain",
        keep_images_sample_share=0.1,
        random=lambda: next(draws),
    )
    opened.append(log)
    images = [image_bytes(seed) for seed in range(4)]
    request = dataclasses.replace(
        entry("r", images[:3]), answers=[answer("1", 0.5), answer("2"), answer("2")]
    )
    assert log.log(request)
    assert log.log(entry("again", [images[0], images[3]]))
    assert log.flush(timeout=20)
    logged = {(r["puid"], r["item"]): r for r in rows(url)}
    uncertain = logged[("r", 0)]
    info = inspect_image(images[0], min_side=1)
    assert uncertain["image_uri"] == (f"{store}/images/sha256/{info.sha256[:2]}/{info.sha256}.png")
    assert (store / uncertain["image_uri"].split(f"{store}/")[1]).read_bytes() == images[0]
    assert logged[("r", 1)]["image_uri"] is not None  # sampled (0.05 < 0.1)
    assert logged[("r", 2)]["image_uri"] is None  # not sampled (0.95)
    # The same bytes again: the same address, written once.
    assert logged[("again", 0)]["image_uri"] == uncertain["image_uri"]
    assert logged[("again", 1)]["image_uri"] is None
    assert len(list(store.rglob("*.png"))) == 2

    nothing = PredictionLog(url, images_uri=str(store), keep_images="never")
    opened.append(nothing)
    assert not nothing._keeps(answer("1", 0.1))
    assert not PredictionLog(url, keep_images="all")._keeps(answer())  # no images_uri
    with pytest.raises(ValueError, match="keep_images must be one of never, uncertain, all"):
        PredictionLog(url, keep_images="some")
    with pytest.raises(ValueError, match="between 0 and 1"):
        PredictionLog(url, keep_images_sample_share=1.5)


def test_an_unwritable_image_store_leaves_the_row_without_its_image(url, opened, tmp_path, caplog):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    log = PredictionLog(url, flush_interval=30, images_uri=str(blocked), keep_images="all")
    opened.append(log)
    with caplog.at_level(logging.ERROR):
        assert log.log(entry("r", [image_bytes(1), image_bytes(2)]))
        assert log.flush(timeout=20)
    logged = rows(url)
    assert len(logged) == 2 and all(r["image_uri"] is None for r in logged)
    assert sum("cannot keep images" in r.message for r in caplog.records) == 1


def test_the_embedding_projection_is_sklearns_pca_transform():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16))
    pca = fit_embedding_pca(embeddings, 4)
    projection = EmbeddingProjection.from_pca(pca)
    live = rng.normal(size=(7, 16))
    np.testing.assert_allclose(projection.project(live), pca.transform(live), atol=1e-9)
    saved = EmbeddingProjection.model_validate_json(projection.model_dump_json())
    np.testing.assert_allclose(saved.project(live), pca.transform(live), atol=1e-9)
    assert saved.columns == ["embedding_0", "embedding_1", "embedding_2", "embedding_3"]
    assert list(saved.project_rows(live[:1])[0]) == saved.columns
    with pytest.raises(ValueError, match="do not fit a projection of width 16"):
        projection.project(live[:, :8])


def test_a_full_queue_drops_and_counts_without_blocking(url, opened):
    log = PredictionLog(url, max_pending=100, batch_size=10, flush_interval=0.05)
    opened.append(log)
    image = image_bytes(1)
    assert log.log(entry("warm-up", [image])) and log.flush(timeout=20)

    # Another writer holds the database's write lock: our writer stalls inside its insert.
    blocker = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(10):
            assert log.log(entry(f"first{i}", [image, image]))
        deadline = time.monotonic() + 10
        while log._inflight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log._inflight == 10, "the writer did not take its batch"
        durations, accepted = [], 0
        for i in range(300):
            started = time.perf_counter_ns()
            queued = log.log(entry(f"r{i}", [image, image]))
            durations.append(time.perf_counter_ns() - started)
            accepted += queued
        assert log.flush(timeout=0.5) is False  # the writer is still stuck
    finally:
        blocker.rollback()
        blocker.close()
    assert accepted == 100  # max_pending; the rest was dropped and counted, in rows
    assert log.dropped == {QUEUE_FULL: 2 * 200}
    median_us = statistics.median(durations) / 1000
    worst_ms = max(durations) / 1e6
    assert median_us < 100, f"log() took {median_us:.1f} us (median) while the writer stalled"
    assert worst_ms < 20, f"log() took {worst_ms:.1f} ms at worst while the writer stalled"

    assert log.flush(timeout=30)
    assert count(url) == 1 + 2 * (10 + 100) and log.dropped == {QUEUE_FULL: 400}


def test_retention_deletes_old_rows_at_most_once_an_hour(url, opened):
    now = [1000.0]
    log = PredictionLog(url, retention_days=30, flush_interval=30, clock=lambda: now[0])
    opened.append(log)
    old = datetime.now(UTC) - timedelta(days=40)
    recent = datetime.now(UTC) - timedelta(days=29)
    log.log(entry("old", at=old))
    log.log(entry("recent", at=recent))
    assert log.flush(timeout=20)
    assert [r["puid"] for r in rows(url)] == ["recent"] and log.pruned == 1

    log.log(entry("old-again", at=old))
    assert log.flush(timeout=20)
    assert {r["puid"] for r in rows(url)} == {"recent", "old-again"}  # pruned < 1 h ago

    now[0] += plog.RETENTION_EVERY
    log.log(entry("new"))
    assert log.flush(timeout=20)
    assert {r["puid"] for r in rows(url)} == {"recent", "new"} and log.pruned == 2

    keep = PredictionLog(url, retention_days=0)
    opened.append(keep)
    assert keep.prune(datetime.now(UTC) + timedelta(days=10_000)) == 0


def test_retention_deletes_the_kept_images_no_younger_row_refers_to(url, opened, tmp_path):
    store = tmp_path / "artifacts" / "prediction-log"
    log = PredictionLog(url, flush_interval=30, images_uri=str(store), keep_images="all")
    opened.append(log)
    shared, alone, young = (image_bytes(seed) for seed in (11, 12, 13))
    old = datetime.now(UTC) - timedelta(days=40)
    log.log(entry("old", [shared, alone], at=old))
    log.log(entry("young", [shared, young]))
    assert log.flush(timeout=20)
    files = {r["puid"] + str(r["item"]): Path(r["image_uri"]) for r in rows(url)}
    assert all(path.exists() for path in files.values()) and len(set(files.values())) == 3

    log.retention_days = 30
    assert log.prune() == 2
    assert [r["puid"] for r in rows(url)] == ["young", "young"]
    assert not files["old1"].exists()  # only the old rows referred to it
    assert files["old0"].exists() and files["young1"].exists()  # a young row still does
    assert log.images_pruned == 1
    # Gone already (deleted by hand): nothing to do, nothing raised.
    files["young1"].unlink()
    log.retention_days = 1
    assert log.prune(datetime.now(UTC) + timedelta(days=2)) == 2
    assert not files["old0"].exists() and log.images_pruned == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_database_that_is_down_does_not_raise_into_the_caller(opened, caplog):
    down = f"postgresql+psycopg://clearsight@127.0.0.1:{free_port()}/clearsight"
    reported: list[tuple[str, int]] = []
    log = PredictionLog(
        down, flush_interval=0.05, on_dropped=lambda reason, n: reported.append((reason, n))
    )
    opened.append(log)
    with caplog.at_level(logging.ERROR, logger="clearsight.prediction_log"):
        for round_ in range(3):
            started = time.perf_counter()
            assert log.log(entry(f"a{round_}", [image_bytes(round_)] * 2))
            assert log.log(entry(f"b{round_}", count=1))
            assert time.perf_counter() - started < 0.05
            assert log.flush(timeout=30)
    assert log.dropped == {DATABASE_ERROR: 9} and log.written == 0
    assert sum(n for _, n in reported) == 9 and {r for r, _ in reported} == {DATABASE_ERROR}
    errors = [r for r in caplog.records if r.name == "clearsight.prediction_log"]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "cannot write to the catalog" in errors[0].getMessage()
    assert "127.0.0.1" in errors[0].getMessage()


def test_a_forked_child_starts_with_an_empty_queue_and_its_own_writer(url, opened):
    log = PredictionLog(url, flush_interval=30)
    opened.append(log)
    assert log.log(entry("parent", count=1))  # waits in the parent's queue
    pid = os.fork()
    if pid == 0:  # the child: as a gunicorn worker after the fork
        code = 1
        try:
            if log.pending_items("parent") == 0 and log.log(entry("child", count=1)):
                code = 0 if log.flush(timeout=20) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [r["puid"] for r in rows(url)] == ["child"]
    assert log.pending_items("parent") == 1 and log.flush(timeout=20)
    assert sorted(r["puid"] for r in rows(url)) == ["child", "parent"]


def test_settings_come_from_serving_json_unless_the_environment_overrides_them():
    assert log_settings(True, 90, {}) == (True, 90)
    assert log_settings(True, 90, {"CLEARSIGHT_PREDICTION_LOG": "off"}) == (False, 90)
    assert log_settings(False, 90, {"CLEARSIGHT_PREDICTION_LOG": "ON"}) == (True, 90)
    assert log_settings(True, 90, {"CLEARSIGHT_PREDICTION_LOG_RETENTION_DAYS": "7"}) == (True, 7)
    with pytest.raises(ValueError, match="use on or off"):
        log_settings(True, 90, {"CLEARSIGHT_PREDICTION_LOG": "maybe"})
    with pytest.raises(ValueError, match="whole number of days"):
        log_settings(True, 90, {"CLEARSIGHT_PREDICTION_LOG_RETENTION_DAYS": "-1"})


def test_truths_are_recorded_by_request_and_item(url, opened):
    log = PredictionLog(url)
    opened.append(log)
    assert log.record_truths("req-1", ["3", "7"], recorded_by="dr-lee") == 2
    truths = rows(url, GROUND_TRUTHS)
    assert [(t["puid"], t["item"], t["label"], t["source"]) for t in truths] == [
        ("req-1", 0, "3", "feedback"),
        ("req-1", 1, "7", "feedback"),
    ]
    assert truths[0]["recorded_by"] == "dr-lee" and truths[0]["created_at"] is not None
    with pytest.raises(ValueError, match="source"):
        log.record_truths("req-1", ["3"], source="rumour")


# --- request ids, client tags and the feedback message -------------------------


def feedback(truth: dict | None = None, puid: str | None = "req-1", **kw):
    from google.protobuf import json_format
    from seldon_core.proto import prediction_pb2

    body: dict = {}
    if puid is not None:
        body["response"] = {"meta": {"puid": puid}}
    if truth is not None:
        body["truth"] = truth
    body.update(kw)
    return json_format.ParseDict(body, prediction_pb2.Feedback())


@pytest.mark.parametrize(
    ("truth", "labels"),
    [
        ({"data": {"ndarray": [["3"]]}}, ["3"]),
        ({"data": {"ndarray": [["3"], ["7"]]}}, ["3", "7"]),
        ({"data": {"ndarray": ["3", "7"]}}, ["3", "7"]),
        ({"data": {"ndarray": [[3]]}}, ["3"]),
        ({"data": {"tensor": {"shape": [2, 1], "values": [3, 7]}}}, ["3", "7"]),
        ({"jsonData": {"label": "3"}}, ["3"]),
        ({"jsonData": {"labels": ["3", "7"]}}, ["3", "7"]),
        ({"strData": " 3 "}, ["3"]),
    ],
)
def test_every_documented_truth_form_is_read(truth, labels):
    assert parse_feedback(feedback(truth), CLASSES).labels == labels


def test_feedback_names_its_request_and_who_recorded_it():
    parsed = parse_feedback(
        feedback({"strData": "3", "meta": {"tags": {"recorded_by": "dr-lee"}}}), CLASSES
    )
    assert (parsed.puid, parsed.recorded_by) == ("req-1", "dr-lee")
    fallback = feedback({"strData": "3"}, puid=None, request={"meta": {"puid": "from-request"}})
    assert parse_feedback(fallback, CLASSES).puid == "from-request"


@pytest.mark.parametrize(
    ("message", "reason", "needle"),
    [
        (feedback({"strData": "3"}, puid=None), "missing_puid", "response.meta.puid"),
        (feedback(None), "missing_truth", "no truth"),
        (feedback({"binData": "AAAA"}), "missing_truth", "truth.binData cannot carry"),
        (feedback({"strData": "cat"}), "unknown_label", "'cat' is not one of the model's 10"),
        (feedback({"data": {"ndarray": [["3", "4"]]}}), "bad_truth", "exactly one label"),
        (feedback({"data": {"ndarray": [[True]]}}), "bad_truth", "not a boolean"),
        (feedback({"jsonData": {"class": "3"}}), "bad_truth", "{'label': '<label>'}"),
        (feedback({"strData": "3"}, puid="x" * 200), "bad_meta", "at most 128"),
    ],
)
def test_bad_feedback_is_refused_with_what_to_send(message, reason, needle):
    with pytest.raises(BadRequestError) as raised:
        parse_feedback(message, CLASSES)
    assert raised.value.reason == reason
    assert needle in str(raised.value)


def test_request_meta_of_rest_and_grpc_requests():
    from seldon_core.proto import prediction_pb2
    from seldon_core.utils import json_to_seldon_message

    rest = {"binData": "x", "meta": {"puid": "p-1", "tags": {"site": "north"}}}
    assert request_meta(rest) == ("p-1", {"site": "north"})
    assert request_meta({"binData": "x"}) == (None, None)
    grpc = json_to_seldon_message({"meta": {"puid": "p-2", "tags": {"device": "s2"}}})
    assert request_meta(grpc) == ("p-2", {"device": "s2"})
    assert request_meta(prediction_pb2.SeldonMessage(binData=b"x")) == (None, None)
    for bad, needle in (
        ({"meta": "north"}, "meta must be an object"),
        ({"meta": {"tags": ["north"]}}, "meta.tags must be an object"),
        ({"meta": {"puid": {"id": 1}}}, "meta.puid must be a string"),
    ):
        with pytest.raises(BadRequestError, match=needle):
            request_meta(bad)


# --- the seldon-core model class's feedback, in process (no model loaded) --------


@pytest.fixture()
def classifier(tmp_path, url, monkeypatch, opened):
    from clearsight import seldon_model
    from clearsight.serving import ServingConfig

    monkeypatch.setenv("CLEARSIGHT_PREDICTION_LOG", "on")
    monkeypatch.setenv("CLEARSIGHT_CATALOG_URL", url)
    monkeypatch.setattr(seldon_model, "FEEDBACK_WAIT", 0.2)
    ServingConfig(
        model_name="image-classifier", model_version="7", classes=CLASSES, image_size=8
    ).save(tmp_path)
    model = seldon_model.ImageClassifier(str(tmp_path))
    model.prediction_log.flush_interval = 30  # entries stay queued unless flushed
    opened.append(model.prediction_log)
    return model


def test_feedback_finds_a_prediction_still_in_the_queue(classifier, url):
    from seldon_core.flask_utils import SeldonMicroserviceException

    log = classifier.prediction_log
    assert log.log(entry("queued", count=2))
    assert log.pending_items("queued") == 2 and log.written == 0
    reply = classifier.send_feedback_raw(feedback({"data": {"ndarray": [["3"], ["5"]]}}, "queued"))
    assert reply.meta.puid == "queued"
    truths = rows(url, GROUND_TRUTHS)
    assert [(t["puid"], t["item"], t["label"]) for t in truths] == [
        ("queued", 0, "3"),
        ("queued", 1, "5"),
    ]

    with pytest.raises(SeldonMicroserviceException) as raised:
        classifier.send_feedback_raw(feedback({"strData": "3"}, "queued"))
    assert raised.value.status_code == 400 and "had 2 image(s)" in raised.value.message

    started = time.monotonic()
    with pytest.raises(SeldonMicroserviceException) as raised:
        classifier.send_feedback_raw(feedback({"strData": "3"}, "nobody-sent-this"))
    assert raised.value.status_code == 400 and time.monotonic() - started >= 0.2
    assert "No answer with request id 'nobody-sent-this'" in raised.value.message
    assert log.flush(timeout=20) and count(url) == 2


def test_feedback_when_the_log_is_off_says_so(classifier, monkeypatch):
    from seldon_core.flask_utils import SeldonMicroserviceException

    classifier.prediction_log = None
    with pytest.raises(SeldonMicroserviceException) as raised:
        classifier.send_feedback_raw(feedback({"strData": "3"}))
    assert "keeps no prediction log" in raised.value.message


def test_feedback_with_the_database_down_is_a_503(classifier, opened):
    from seldon_core.flask_utils import SeldonMicroserviceException

    down = PredictionLog(f"postgresql+psycopg://x@127.0.0.1:{free_port()}/x")
    opened.append(down)
    classifier.prediction_log = down
    with pytest.raises(SeldonMicroserviceException) as raised:
        classifier.send_feedback_raw(feedback({"strData": "3"}))
    assert raised.value.status_code == 503 and "Send it again later" in raised.value.message


def test_sqlite_catalog_left_in_wal_mode_is_readable_by_the_catalog(url, opened):
    from clearsight.catalog import Catalog

    log = PredictionLog(url)
    opened.append(log)
    assert log.log(entry("r", count=1)) and log.flush(timeout=20)
    catalog = Catalog(url)
    try:
        assert catalog.image_count() == 0
    finally:
        catalog.close()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()


class _NoMetrics:
    def update(self, *_args, **_kwargs):
        pass


def test_grpc_predict_hands_the_seldon_puid_metadata_to_the_model():
    from seldon_core import wrapper
    from seldon_core.proto import prediction_pb2

    from clearsight import seldon_model

    seldon_model._grpc_errors_as_status_codes()

    class Model:  # answers with the request id predict_raw would use
        def predict_raw(self, request):
            return prediction_pb2.SeldonMessage(strData=str(seldon_model._header_puid(True)))

    class Context:
        def invocation_metadata(self):
            return (("user-agent", "grpc-python"), ("seldon-puid", "executor-7"))

    servicer = wrapper.SeldonModelGRPC(Model(), seldon_metrics=_NoMetrics())
    answer = servicer.Predict(prediction_pb2.SeldonMessage(strData="x"), Context())
    assert answer.strData == "executor-7"
    assert seldon_model._header_puid(True) is None  # cleared after the call


def test_the_local_deployer_gives_its_servers_an_absolute_catalog_url(monkeypatch, url):
    from stack.seldon.service import catalog_env

    monkeypatch.delenv("CLEARSIGHT_PREDICTION_LOG", raising=False)  # the tests' "off"
    monkeypatch.setenv("CLEARSIGHT_CATALOG_URL", url)
    assert catalog_env() == {"CLEARSIGHT_CATALOG_URL": url}
    monkeypatch.delenv("CLEARSIGHT_CATALOG_URL")
    default = catalog_env()["CLEARSIGHT_CATALOG_URL"]  # the repository's .state/catalog.db
    assert default.startswith("sqlite:////") and default.endswith("/.state/catalog.db")
    monkeypatch.setenv("CLEARSIGHT_CATALOG_URL", "sqlite:///relative.db")
    assert catalog_env() == {}  # reported; the server counts its entries as dropped
    monkeypatch.setenv("CLEARSIGHT_PREDICTION_LOG", "off")
    monkeypatch.setenv("CLEARSIGHT_CATALOG_URL", url)
    assert catalog_env() == {}
