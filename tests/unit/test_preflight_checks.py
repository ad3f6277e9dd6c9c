"""The production stack's preflight: what each check says when a server is not right.

Real servers on loopback: moto's S3 server and a tiny HTTP server that answers
like Airflow's health endpoint. Nothing of ZenML is started.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import boto3
import pytest
from moto.server import ThreadedMotoServer

from stack import preflight
from stack.services import airflow_health


@pytest.fixture()
def airflow_health_answer():
    """An HTTP server answering /api/v2/monitor/health with whatever the test sets."""
    answer: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield answer, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_airflow_with_a_dead_scheduler_is_not_up(airflow_health_answer, monkeypatch):
    answer, url = airflow_health_answer
    healthy = {"status": "healthy"}
    answer.update(metadatabase=healthy, scheduler=healthy, dag_processor=healthy)
    assert airflow_health(url) == []
    answer["scheduler"] = {"status": "unhealthy", "latest_scheduler_heartbeat": None}
    answer["dag_processor"] = None
    assert airflow_health(url) == ["scheduler", "dag_processor"]
    monkeypatch.setenv("CLEARSIGHT_AIRFLOW_URL", url)
    message = preflight._airflow_problem(SimpleNamespace(name="airflow"))
    assert "scheduler, dag_processor are not healthy" in message
    assert "python -m stack.services stop airflow && make services" in message


def test_airflow_that_does_not_answer_is_named(monkeypatch):
    monkeypatch.setenv("CLEARSIGHT_AIRFLOW_URL", "http://127.0.0.1:9")
    assert airflow_health("http://127.0.0.1:9") is None
    message = preflight._airflow_problem(SimpleNamespace(name="airflow"))
    assert "does not answer" in message and "make services" in message


def test_a_missing_bucket_is_named_with_its_fix(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        store = SimpleNamespace(
            name="s3_store",
            configuration={
                "path": "s3://clearsight-artifacts/zenml",
                "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            },
        )
        message = preflight._s3_problem(store)
        assert "bucket 'clearsight-artifacts'" in message and "does not exist" in message
        assert "make services" in message and f"--endpoint-url {endpoint}" in message
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket="clearsight-artifacts"
        )
        assert preflight._s3_problem(store) is None
    finally:
        server.stop()
    assert "does not answer" in preflight._s3_problem(store)


def test_a_zenml_server_that_is_down_is_named_not_a_traceback(monkeypatch):
    from zenml.config.global_config import GlobalConfiguration

    store = SimpleNamespace(type="rest", url="http://127.0.0.1:9")
    monkeypatch.setattr(GlobalConfiguration, "store_configuration", store, raising=False)
    message = preflight.zenml_server_problem()
    assert "ZenML server http://127.0.0.1:9 does not answer" in message
    assert "make services" in message and "make dashboard" in message
    with pytest.raises(preflight.ServiceDownError, match="nothing was submitted"):
        preflight.check_active_stack()
