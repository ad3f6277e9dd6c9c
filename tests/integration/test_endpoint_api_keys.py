"""API keys on the real seldon-core microservice: REST, feedback, gRPC, revocation, clients.

One server (the model of ``test_seldon_endpoint``) on loopback with keys
required (``CLEARSIGHT_API_KEYS=required``, a 1 s cache) and its keys in a
throw-away SQLite catalog, which its prediction log shares (feedback needs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import grpc
import pytest
import requests

from clearsight.api_keys import ApiKeyStore
from clearsight.catalog import sqlite_url
from clearsight.dataset import DatasetManifest, ImageRecord
from tests.conftest import ROOT
from tests.integration.test_seldon_endpoint import (  # noqa: F401 - fixtures: model_dir, deployer
    DEPLOYED_MODEL,
    b64,
    deploy_server,
    deployer,
    free_port,
    model_dir,
    running_microservice,
    sample_images,
)

pytestmark = pytest.mark.integration
TTL = 1.0


@pytest.fixture(scope="module")
def keyed(model_dir, tmp_path_factory):  # noqa: F811 - the imported fixture
    """The server, its catalog and two keys: ``key`` (kept) and ``doomed`` (revoked by a test)."""
    folder, _ = model_dir
    catalog = sqlite_url(tmp_path_factory.mktemp("api-keys") / "catalog.db")
    store = ApiKeyStore(catalog)
    key, doomed = store.create("client", created_by="test"), store.create("doomed")
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    env = {
        "CLEARSIGHT_API_KEYS": "required",
        "CLEARSIGHT_API_KEYS_TTL": str(TTL),
        "CLEARSIGHT_CATALOG_URL": catalog,
        "CLEARSIGHT_PREDICTION_LOG": "on",
    }
    try:
        with running_microservice(folder, ports, env) as (base, metrics):
            yield SimpleNamespace(
                base=base,
                url=f"{base}/api/v1.0/predictions",
                metrics=f"{metrics}/metrics",
                grpc=f"127.0.0.1:{ports['grpc']}",
                catalog=catalog,
                store=store,
                key=key,
                doomed=doomed,
            )
    finally:
        store.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def rejected(metrics: str, reason: str, method: str = "predict") -> float:
    for line in requests.get(metrics, timeout=5).text.splitlines():
        if (
            line.startswith("clearsight_rejected_total{")
            and f'reason="{reason}"' in line
            and f'method="{method}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_rest_needs_a_valid_key_and_the_probes_stay_open(keyed, digits_dir):
    body = {"binData": b64(sample_images(digits_dir)[0])}
    missing = requests.post(keyed.url, json=body, timeout=30)
    assert missing.status_code == 401, missing.text
    info = missing.json()["status"]["info"]
    assert "Authorization: Bearer <key>" in info and "clearsight.api_keys create" in info
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="clearsight"'
    wrong = requests.post(keyed.url, json=body, headers=bearer("cs_not-a-key"), timeout=30)
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert "not valid" in wrong.json()["status"]["info"]
    assert requests.get(f"{keyed.base}/metadata", timeout=5).status_code == 401

    good = requests.post(keyed.url, json=body, headers=bearer(keyed.key), timeout=30)
    assert good.status_code == 200, good.text
    assert good.json()["jsonData"]["predictions"][0]["label"]
    lower = requests.post(
        keyed.url, json=body, headers={"Authorization": f"bearer {keyed.key}"}, timeout=30
    )
    assert lower.status_code == 200  # the scheme is case-insensitive (RFC 7235)
    assert requests.get(f"{keyed.base}/health/ping", timeout=5).status_code == 200
    assert requests.get(f"{keyed.base}/health/status", timeout=5).json()["ready"] is True

    assert rejected(keyed.metrics, "missing_api_key") >= 2  # the prediction and /metadata
    assert rejected(keyed.metrics, "invalid_api_key") >= 1
    deadline = time.monotonic() + 10  # the last use is written in the background
    while time.monotonic() < deadline:
        (client,) = [k for k in keyed.store.list_keys() if k.name == "client"]
        if client.last_used_at is not None:
            break
        time.sleep(0.2)
    assert client.last_used_at is not None and client.created_by == "test"


def test_a_revoked_key_is_refused_within_the_ttl(keyed, digits_dir):
    body = {"binData": b64(sample_images(digits_dir)[1])}
    assert requests.post(keyed.url, json=body, headers=bearer(keyed.doomed), timeout=30).ok
    revoke = subprocess.run(
        [sys.executable, "-m", "clearsight.api_keys", "revoke", "doomed", "--url", keyed.catalog],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert revoke.returncode == 0, revoke.stderr
    revoked_at = time.monotonic()
    while True:
        answer = requests.post(keyed.url, json=body, headers=bearer(keyed.doomed), timeout=30)
        if answer.status_code == 401:
            break
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - revoked_at < TTL + 2, "the revoked key still works"
        time.sleep(0.1)
    assert time.monotonic() - revoked_at < TTL + 2
    assert requests.post(keyed.url, json=body, headers=bearer(keyed.key), timeout=30).ok


def test_feedback_needs_the_key(keyed, digits_dir):
    body = {"binData": b64(sample_images(digits_dir)[2])}
    answer = requests.post(keyed.url, json=body, headers=bearer(keyed.key), timeout=30)
    feedback = {"response": {"meta": {"puid": answer.json()["meta"]["puid"]}}, "truth": "3"}
    url = f"{keyed.base}/api/v1.0/feedback"
    refused = requests.post(url, json=feedback, timeout=30)
    assert refused.status_code == 401
    assert rejected(keyed.metrics, "missing_api_key", method="feedback") >= 1
    taken = requests.post(url, json=feedback, headers=bearer(keyed.key), timeout=30)
    assert taken.status_code == 200, taken.text
    assert taken.json()["jsonData"]["labels"] == ["3"]


def test_grpc_calls_need_the_key(keyed, digits_dir):
    from seldon_core.proto import prediction_pb2, prediction_pb2_grpc
    from seldon_core.utils import seldon_message_to_json

    message = prediction_pb2.SeldonMessage(binData=sample_images(digits_dir)[0])
    with grpc.insecure_channel(keyed.grpc) as channel:
        stub = prediction_pb2_grpc.ModelStub(channel)
        for metadata in ((), (("authorization", "Bearer cs_wrong"),)):
            with pytest.raises(grpc.RpcError) as refused:
                stub.Predict(message, metadata=metadata, timeout=60)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "API key" in refused.value.details()
        answer = stub.Predict(
            message, metadata=(("authorization", f"Bearer {keyed.key}"),), timeout=60
        )
    assert seldon_message_to_json(answer)["jsonData"]["predictions"][0]["label"]


def test_the_review_app_and_the_smoke_test_send_the_platform_key(
    keyed, digits_dir, monkeypatch, tmp_path
):
    from steps.deployment.smoke_test import smoke_test
    from ui.data.endpoint import RequestRefusedError, predict

    monkeypatch.setenv("CLEARSIGHT_SERVICES_DIR", str(tmp_path / "services"))  # no key file
    monkeypatch.delenv("CLEARSIGHT_ENDPOINT_API_KEY", raising=False)
    images = sample_images(digits_dir)[:2]
    with pytest.raises(RequestRefusedError, match="CLEARSIGHT_ENDPOINT_API_KEY"):
        predict(keyed.url, images)

    monkeypatch.setenv("CLEARSIGHT_ENDPOINT_API_KEY", keyed.key)
    assert len(predict(keyed.url, images).answers) == 2

    path = sorted((digits_dir / "test" / "3").glob("*.png"))[0]
    record = ImageRecord(
        sha256="0" * 64,
        label="3",
        split="test",
        uri=str(path),
        width=8,
        height=8,
        mode="L",
        format="PNG",
        num_bytes=path.stat().st_size,
        source_path=str(path),
    )
    dataset = DatasetManifest(source="digits", layout="split", classes=["3"], records=[record])
    result = smoke_test.entrypoint({"prediction_url": keyed.url}, dataset)
    assert result["true_label"] == "3" and result["answer"]["label"]


def test_the_local_deployer_serves_with_keys_and_run_py_s_module_finds_both(
    deployer,  # noqa: F811 - the imported fixture
    model_dir,  # noqa: F811
    monkeypatch,
    tmp_path,
):
    """A deployer set to ``api_keys: required``: the server asks for keys, the platform has one."""
    from stack.endpoint import find_endpoint

    monkeypatch.setenv("CLEARSIGHT_SERVICES_DIR", str(tmp_path / "services"))
    monkeypatch.setenv("CLEARSIGHT_CATALOG_URL", sqlite_url(tmp_path / "catalog.db"))
    monkeypatch.delenv("CLEARSIGHT_ENDPOINT_API_KEY", raising=False)
    monkeypatch.setattr(
        deployer, "_config", deployer.config.model_copy(update={"api_keys": "required"})
    )
    service = deploy_server(deployer, model_dir[0], "5")
    try:
        assert deployer.get_model_server_info(service)["API_KEYS"] == "required"
        found = find_endpoint(DEPLOYED_MODEL)
        assert found.prediction_url == service.prediction_url and found.keys_required is True
        assert found.api_key and found.api_key.startswith("cs_")  # the platform key, made once
        body = {"jsonData": {"images": [b64(b"\x89PNG")]}}
        assert requests.post(found.prediction_url, json=body, timeout=30).status_code == 401
        answer = requests.post(found.prediction_url, json=body, headers=found.headers(), timeout=30)
        assert answer.status_code == 400, answer.text  # past the key: a bad image's 400
    finally:
        deployer.delete_model_server(service.uuid, timeout=60, force=True)
