"""API keys in the local deployer flavor and the endpoint-discovery module (no server)."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from clearsight import api_keys
from clearsight.api_keys import ApiKeyStore
from clearsight.catalog import sqlite_url
from stack import endpoint
from stack.seldon import launch
from stack.seldon.flavor import LocalSeldonModelDeployerConfig, keys_required
from stack.seldon.service import LocalSeldonDeploymentConfig


@pytest.fixture(autouse=True)
def no_mode(monkeypatch):
    monkeypatch.delenv("CLEARSIGHT_API_KEYS", raising=False)


def test_the_flavor_refuses_a_host_beyond_loopback_without_keys(monkeypatch):
    with pytest.raises(ValidationError, match="beyond loopback, without API keys"):
        LocalSeldonModelDeployerConfig(host="0.0.0.0", api_keys="off")  # noqa: S104
    assert LocalSeldonModelDeployerConfig(host="0.0.0.0").api_keys == "auto"  # noqa: S104
    assert keys_required("0.0.0.0") is True  # noqa: S104 - auto: required beyond loopback
    assert keys_required("192.168.1.20") is True
    assert keys_required("127.0.0.1") is False  # the embedded stack: off by default
    assert keys_required("127.0.0.1", "required") is True
    monkeypatch.setenv("CLEARSIGHT_API_KEYS", "required")
    assert keys_required("127.0.0.1") is True
    monkeypatch.setenv("CLEARSIGHT_API_KEYS", "off")
    with pytest.raises(ValueError, match="beyond loopback"):
        keys_required("0.0.0.0")  # noqa: S104

    config = LocalSeldonDeploymentConfig(model_dir="/m", model_name="m", host="0.0.0.0")  # noqa: S104
    with pytest.raises(ValueError, match="beyond loopback"):
        config.check_exposure()  # provision() calls it before anything starts
    config.model_copy(update={"api_keys": True}).check_exposure()
    LocalSeldonDeploymentConfig(model_dir="/m", model_name="m").check_exposure()


def test_the_launcher_tells_the_model_class_its_address():
    assert launch.HOST_ENV == api_keys.SERVING_HOST_ENV


def test_the_platform_key_is_made_once_stored_0600_and_registered_hashed(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEARSIGHT_SERVICES_DIR", str(tmp_path / "services"))
    monkeypatch.delenv("CLEARSIGHT_ENDPOINT_API_KEY", raising=False)
    url = sqlite_url(tmp_path / "catalog.db")
    assert endpoint.client_api_key() is None

    key = endpoint.ensure_platform_key(url)
    credentials = tmp_path / "services" / "credentials.env"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert f"CLEARSIGHT_ENDPOINT_API_KEY={key}\n" in credentials.read_text()
    assert endpoint.ensure_platform_key(url) == key  # idempotent
    assert endpoint.client_api_key() == key
    monkeypatch.setenv("CLEARSIGHT_ENDPOINT_API_KEY", "cs_mine")
    assert endpoint.client_api_key() == "cs_mine"  # the variable wins

    store = ApiKeyStore(url)
    try:
        assert store.state(key) == "active"
        (info,) = store.list_keys()
        assert info.name == endpoint.platform_key_name() and info.name.startswith("platform@")
        store.revoke(info.name)
        rotated = endpoint.ensure_platform_key(url)  # revoking the platform key rotates it
        assert rotated != key and store.state(rotated) == "active"
        assert store.state(key) == "revoked"
    finally:
        store.close()
    # A new catalog learns the stored key instead of getting another one.
    other = sqlite_url(tmp_path / "other.db")
    assert endpoint.ensure_platform_key(other) == rotated


def test_the_endpoint_and_its_curl():
    found = endpoint.Endpoint("http://127.0.0.1:8003/api/v1.0/predictions", api_key="cs_k")
    assert found.base_url == "http://127.0.0.1:8003"
    assert found.feedback_url == "http://127.0.0.1:8003/api/v1.0/feedback"
    assert found.headers() == {"Authorization": "Bearer cs_k"}
    assert endpoint.Endpoint("http://h/api/v1.0/predictions").headers() == {}

    plain = endpoint.curl_command(found.prediction_url, "digit.png", keys_required=False)
    assert "Authorization" not in plain and "base64 -w0 digit.png" in plain
    keyed = endpoint.curl_command(found.prediction_url, None, keys_required=True)
    assert '-H "Authorization: Bearer $CLEARSIGHT_ENDPOINT_API_KEY"' in keyed
    assert "cs_k" not in keyed  # never the key itself


def test_which_servers_require_keys():
    local = SimpleNamespace(config=LocalSeldonDeploymentConfig(model_dir="/m", model_name="m"))
    assert endpoint.server_requires_keys(local) is False
    local.config = local.config.model_copy(update={"api_keys": True})
    assert endpoint.server_requires_keys(local) is True

    def pod(value: str | None) -> SimpleNamespace:
        env = [] if value is None else [{"name": "CLEARSIGHT_API_KEYS", "value": value}]
        return SimpleNamespace(config=SimpleNamespace(spec={"containers": [{"env": env}]}))

    assert endpoint.server_requires_keys(pod("required")) is True
    assert endpoint.server_requires_keys(pod("off")) is False  # behind the Istio JWT policy
    assert endpoint.server_requires_keys(pod(None)) is True
