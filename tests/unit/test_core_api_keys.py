"""API keys of the endpoint: the CLI round trip, hashing, the verifier's cache, the settings."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from clearsight import api_keys
from clearsight.api_keys import ApiKeyError, ApiKeyStore, ApiKeyVerifier, cli
from clearsight.catalog import sqlite_url
from clearsight.errors import CatalogError


@pytest.fixture()
def url(tmp_path) -> str:
    return sqlite_url(tmp_path / "catalog.db")


def run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    return result


def test_create_list_revoke_round_trip(url):
    created = run("create", "north-site", "--url", url)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("cs_") and len(key) == 3 + 43  # 256 bits, URL-safe base64
    assert "only this once" in created.stderr

    listed = run("list", "--url", url)
    assert listed.exit_code == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "CREATED", "BY", "LAST", "USED", "REVOKED"]
    assert row.startswith("north-site") and row.rstrip().endswith("-") and "UTC" in row
    assert key not in listed.output and key[3:20] not in listed.output

    again = run("create", "north-site", "--url", url)
    assert again.exit_code != 0 and "already named 'north-site'" in again.output

    revoked = run("revoke", "north-site", "--url", url)
    assert revoked.exit_code == 0 and "within 5 s" in revoked.output
    (row,) = run("list", "--url", url).stdout.splitlines()[1:]
    assert row.count("UTC") == 2  # created and revoked
    assert run("revoke", "north-site", "--url", url).exit_code != 0  # nothing active left

    # The name is free again; the old key stays revoked and listed.
    renewed = run("create", "north-site", "--url", url).stdout.strip()
    assert renewed != key
    store = ApiKeyStore(url)
    try:
        assert [(k.name, k.active) for k in store.list_keys()] == [
            ("north-site", False),
            ("north-site", True),
        ]
        assert (store.state(key), store.state(renewed), store.state("cs_x")) == (
            "revoked",
            "active",
            None,
        )
    finally:
        store.close()


def test_only_the_sha256_of_a_key_is_stored(url):
    store = ApiKeyStore(url)
    try:
        key = store.create("app", created_by="ada")
    finally:
        store.close()
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = list(connection.execute(text("SELECT name, key_sha256, created_by FROM api_keys")))
    engine.dispose()
    assert rows == [("app", hashlib.sha256(key.encode()).hexdigest(), "ada")]
    assert key.encode() not in Path(url.removeprefix("sqlite:///")).read_bytes()


def test_names_are_checked(url):
    store = ApiKeyStore(url)
    try:
        for bad in ("", "a b", "x" * 65, "tab\tname"):
            with pytest.raises(ApiKeyError, match="1-64 letters"):
                store.create(bad)
        key = store.create("ok")
        with pytest.raises(ApiKeyError, match="registered before"):
            store.register("other", key)
    finally:
        store.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_verifier_caches_answers_for_the_ttl(url):
    store = ApiKeyStore(url)
    clock = Clock()
    verifier = ApiKeyVerifier(url, ttl=5, clock=clock, store=store)
    try:
        key = store.create("app")
        assert verifier.verify(None).reason == api_keys.MISSING
        assert verifier.verify("").reason == api_keys.MISSING
        assert verifier.verify("cs_unknown").reason == api_keys.INVALID
        verdict = verifier.verify(key)
        assert verdict.accepted and verdict.name == "app"

        store.revoke("app")
        clock.now += 4.9
        assert verifier.verify(key).accepted  # the cached answer, within the TTL
        clock.now += 0.2
        assert verifier.verify(key).reason == api_keys.INVALID  # read again: revoked

        # A key created after a refused attempt works once the refusal expires.
        fresh = api_keys.generate_key()
        assert verifier.verify(fresh).reason == api_keys.INVALID
        store.register("late", fresh)
        assert not verifier.verify(fresh).accepted
        clock.now += 5
        assert verifier.verify(fresh).name == "late"
    finally:
        store.close()


def test_an_unreadable_store_keeps_known_keys_for_a_while_and_refuses_others(url):
    store = ApiKeyStore(url)
    key = store.create("app")
    clock = Clock()
    verifier = ApiKeyVerifier(url, ttl=5, clock=clock, store=store)
    assert verifier.verify(key).accepted

    def down(_digest):
        raise CatalogError("the database does not answer")

    store.active_name = down
    clock.now += 10
    assert verifier.verify(key).accepted  # known a moment ago: kept during an outage
    assert verifier.verify("cs_other").reason == api_keys.UNAVAILABLE
    clock.now += api_keys.STALE_GRACE
    assert verifier.verify(key).reason == api_keys.UNAVAILABLE
    assert "try again later" in api_keys.refusal_message(api_keys.UNAVAILABLE)
    store.close()


def test_bearer_tokens_modes_and_hosts():
    assert api_keys.bearer_token("Bearer cs_abc") == "cs_abc"
    assert api_keys.bearer_token("bearer   cs_abc ") == "cs_abc"
    assert api_keys.bearer_token("Basic dXNlcjpw") is None
    assert api_keys.bearer_token("Bearer") is None and api_keys.bearer_token(None) is None

    assert api_keys.parse_mode("required") is True and api_keys.parse_mode("OFF") is False
    assert api_keys.parse_mode("") is None and api_keys.parse_mode("auto") is None
    with pytest.raises(ValueError, match="required or off"):
        api_keys.parse_mode("maybe")

    required = api_keys.server_requires_keys
    assert required({"CLEARSIGHT_SERVING_HOST": "127.0.0.1"}) is False
    assert required({"CLEARSIGHT_SERVING_HOST": "::1"}) is False
    assert required({"CLEARSIGHT_SERVING_HOST": "0.0.0.0"}) is True  # noqa: S104
    assert required({}) is True  # seldon-core's own command in a pod: every interface
    assert required({"CLEARSIGHT_SERVING_HOST": "0.0.0.0", "CLEARSIGHT_API_KEYS": "off"}) is False
    assert required({"CLEARSIGHT_SERVING_HOST": "127.0.0.1", "CLEARSIGHT_API_KEYS": "on"}) is True

    assert api_keys.ttl_from_env({}) == api_keys.DEFAULT_TTL
    assert api_keys.ttl_from_env({"CLEARSIGHT_API_KEYS_TTL": "0.5"}) == 0.5
    with pytest.raises(ValueError, match="seconds"):
        api_keys.ttl_from_env({"CLEARSIGHT_API_KEYS_TTL": "forever"})
