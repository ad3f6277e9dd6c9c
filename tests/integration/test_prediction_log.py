"""The real seldon-core microservice logs every answer and takes Seldon feedback.

One server (the model of ``test_seldon_endpoint``), its prediction log switched
on and pointed at a throw-away SQLite catalog; a handful of REST predictions,
feedback over REST and gRPC.
"""

from __future__ import annotations

import shutil
import time
import uuid

import pytest
import requests
from sqlalchemy import create_engine, select

from clearsight.catalog import sqlite_url
from clearsight.features import (
    PIXEL_COLUMNS,
    EmbeddingProjection,
    fit_embedding_pca,
    pixel_features,
)
from clearsight.images import inspect_image
from clearsight.models import embedding_model
from clearsight.prediction_log import GROUND_TRUTHS, PREDICTION_LOG
from clearsight.preprocess import preprocess_batch
from clearsight.serving import MONITORING_FILE
from tests.integration.test_seldon_endpoint import (  # noqa: F401 - model_dir: a fixture
    b64,
    free_port,
    model_dir,
    running_microservice,
    sample_images,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def projection(model_dir, digits_dir):  # noqa: F811 - the imported fixture
    """A reference PCA of the model's embeddings, fitted on 40 digits (as the gate does)."""
    _, model = model_dir
    files = sorted((digits_dir / "train").rglob("*.png"))[:40]
    reference = preprocess_batch([f.read_bytes() for f in files], 32)
    embeddings = embedding_model(model).predict(reference, verbose=0)
    return EmbeddingProjection.from_pca(fit_embedding_pca(embeddings, 3))


@pytest.fixture(scope="module")
def logging_endpoint(model_dir, projection, tmp_path_factory):  # noqa: F811 - imported fixture
    served, _ = model_dir
    folder = tmp_path_factory.mktemp("served-with-projection") / "model"
    shutil.copytree(served, folder)
    (folder / MONITORING_FILE).write_text(projection.model_dump_json())
    catalog = sqlite_url(tmp_path_factory.mktemp("prediction-log") / "catalog.db")
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    env = {"CLEARSIGHT_PREDICTION_LOG": "on", "CLEARSIGHT_CATALOG_URL": catalog}
    with running_microservice(folder, ports, env) as (base, metrics):
        yield {"base": base, "metrics": metrics, "grpc": f"127.0.0.1:{ports['grpc']}"}, catalog


def table(url: str, which) -> list[dict]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(select(which).order_by("id"))]
    finally:
        engine.dispose()


def wait_for_rows(url: str, expected: int, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            rows = table(url, PREDICTION_LOG)
        except Exception:  # noqa: BLE001 - the writer has not created the tables yet
            rows = []
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def post(base: str, path: str, body, **kwargs) -> requests.Response:
    return requests.post(f"{base}{path}", json=body, timeout=30, **kwargs)


def test_every_answer_is_logged_and_feedback_becomes_ground_truth(
    logging_endpoint,
    digits_dir,
    model_dir,  # noqa: F811 - the imported fixture
    projection,
):
    urls, catalog = logging_endpoint
    _, model = model_dir
    base = urls["base"]
    images = sample_images(digits_dir)[:5]
    site = {"site": "north", "device": "scanner-2"}

    # A client's own request id; Seldon's executor header; none (the server makes one).
    own = post(
        base,
        "/api/v1.0/predictions",
        {"binData": b64(images[0]), "meta": {"puid": "client-req-1", "tags": site}},
    )
    header = post(
        base,
        "/api/v1.0/predictions",
        {"binData": b64(images[1])},
        headers={"Seldon-Puid": "executor-puid-1"},
    )
    batch = post(
        base,
        "/api/v1.0/predictions",
        {"jsonData": {"images": [b64(i) for i in images[2:5]]}, "meta": {"tags": {"site": "x"}}},
    )
    for response in (own, header, batch):
        assert response.status_code == 200, response.text
    assert own.json()["meta"]["puid"] == "client-req-1"
    assert header.json()["meta"]["puid"] == "executor-puid-1"
    made = batch.json()["meta"]["puid"]
    assert str(uuid.UUID(made)) == made

    # Feedback right away: the log is asynchronous, the server looks in its queue.
    labels = [p["label"] for p in batch.json()["jsonData"]["predictions"]]
    truth = [[label] for label in reversed(labels)]
    response = post(
        base,
        "/api/v1.0/feedback",
        {"response": batch.json(), "truth": {"data": {"ndarray": truth}}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["jsonData"]["labels"] == [label for (label,) in truth]
    plain = post(
        base,
        "/api/v1.0/feedback",
        {"response": {"meta": {"puid": "client-req-1"}}, "truth": "7"},
    )
    assert plain.status_code == 200, plain.text

    rows = wait_for_rows(catalog, 5)
    assert len(rows) == 5, rows
    by_request = {(r["puid"], r["item"]): r for r in rows}
    expected = {
        ("client-req-1", 0): (images[0], site, own),
        ("executor-puid-1", 0): (images[1], None, header),
        **{(made, i): (images[2 + i], {"site": "x"}, batch) for i in range(3)},
    }
    assert set(by_request) == set(expected)
    for key, (image, tags, answer) in expected.items():
        row = by_request[key]
        info = inspect_image(image, min_side=1)
        predicted = answer.json()["jsonData"]["predictions"][key[1]]
        assert (row["image_sha256"], row["pixel_sha256"]) == (info.sha256, info.pixel_sha256)
        assert (row["model_name"], row["model_version"], row["registered_version"]) == (
            "image-classifier",
            "7",
            "4",
        )
        assert row["tags"] == tags and row["input_kind"] == "images"
        assert row["label"] == predicted["label"] and row["uncertain"] == predicted["uncertain"]
        assert row["confidence"] == pytest.approx(predicted["confidence"])
        assert [t["label"] for t in row["top_k"]] == [t["label"] for t in predicted["top_k"]]
        assert row["created_at"] is not None
        # The gate's features: pixel statistics, and the embedding through the saved PCA.
        embedding = embedding_model(model).predict(preprocess_batch([image], 32), verbose=0)
        expected_features = {
            **pixel_features(image, size=32),  # the picture the model answered
            **projection.project_rows(embedding)[0],
        }
        assert set(row["features"]) == set(PIXEL_COLUMNS) | {
            "embedding_0",
            "embedding_1",
            "embedding_2",
        }
        for name, value in expected_features.items():
            assert row["features"][name] == pytest.approx(value, rel=1e-4, abs=1e-4), name

    truths = table(catalog, GROUND_TRUTHS)
    assert [(t["puid"], t["item"], t["label"], t["source"]) for t in truths] == [
        *[(made, i, truth[i][0], "feedback") for i in range(3)],
        ("client-req-1", 0, "7", "feedback"),
    ]

    # Refused, with what to do: an unknown request id, a label the model does not know.
    unknown = post(
        base,
        "/api/v1.0/feedback",
        {"response": {"meta": {"puid": "no-such-request"}}, "truth": "3"},
    )
    assert unknown.status_code == 400, unknown.text
    assert "No answer with request id 'no-such-request'" in unknown.json()["status"]["info"]
    bad_label = post(
        base,
        "/api/v1.0/feedback",
        {
            "response": {"meta": {"puid": "executor-puid-1"}},
            "truth": {"jsonData": {"label": "cat"}},
        },
    )
    assert bad_label.status_code == 400, bad_label.text
    assert "'cat' is not one of the model's 10 classes" in bad_label.json()["status"]["info"]

    # gRPC SendFeedback reaches the same method, in the gRPC server's own process
    # (it finds the REST worker's rows in the database).
    import grpc
    from seldon_core.proto import prediction_pb2, prediction_pb2_grpc

    with grpc.insecure_channel(urls["grpc"]) as channel:
        stub = prediction_pb2_grpc.ModelStub(channel)
        reply = stub.SendFeedback(
            prediction_pb2.Feedback(
                response=prediction_pb2.SeldonMessage(
                    meta=prediction_pb2.Meta(puid="executor-puid-1")
                ),
                truth=prediction_pb2.SeldonMessage(strData="4"),
            ),
            timeout=30,
        )
        assert reply.meta.puid == "executor-puid-1"
        with pytest.raises(grpc.RpcError) as refused:
            stub.SendFeedback(
                prediction_pb2.Feedback(
                    response=prediction_pb2.SeldonMessage(meta=prediction_pb2.Meta(puid="nope")),
                    truth=prediction_pb2.SeldonMessage(strData="4"),
                ),
                timeout=30,
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "No answer with request id 'nope'" in refused.value.details()
    assert table(catalog, GROUND_TRUTHS)[-1]["label"] == "4"

    metrics = requests.get(f"{urls['metrics']}/metrics", timeout=5).text
    rejected = [line for line in metrics.splitlines() if line.startswith("clearsight_rejected")]
    for reason in ("unknown_puid", "unknown_label"):
        assert any(
            f'reason="{reason}"' in line and 'method="feedback"' in line for line in rejected
        )
    assert "clearsight_feedback_total" in metrics
    assert "clearsight_prediction_log_dropped_total" not in metrics  # nothing was lost
