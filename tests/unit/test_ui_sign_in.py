"""The review app's sign-in rules: failed sign-ins counted in the audit log, lockout, reset, idle.

No Streamlit here (``tests/ui/test_ui_sign_in.py`` drives the page): the rules
of ``ui.signin`` on a real SQLite catalog, with the rules' clock moved by hand.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from clearsight.catalog import sqlite_url
from clearsight.review import LOCKOUT, PASSWORD_RESET, SIGN_IN, ReviewStore
from ui import config as ui_config
from ui import signin, users
from ui.signin import LockState, SignInPolicy, lock_state, sign_in
from ui.users import hash_password, save_users

PASSWORD = "correct horse battery"
POLICY = SignInPolicy(attempts=3, lockout=timedelta(minutes=15), idle=timedelta(minutes=30))
T0 = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)


class Clock:
    """The sign-in rules' clock, moved by the tests."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@pytest.fixture()
def clock(monkeypatch) -> Clock:
    clock = Clock(T0)
    monkeypatch.setattr(signin, "now", clock)
    return clock


@pytest.fixture()
def fast_hashes(monkeypatch):
    """Cheap PBKDF2 for the counting tests (the work itself is checked on its own below)."""
    monkeypatch.setattr(users, "_NO_USER_HASH", hash_password("", iterations=1000))


@pytest.fixture()
def env(tmp_path, fast_hashes):
    """A users file with ada (admin) and a catalog's review store."""
    path = tmp_path / "users.yaml"
    save_users(
        path, {"ada": {"role": "admin", "password": hash_password(PASSWORD, iterations=1000)}}
    )
    url = sqlite_url(tmp_path / "catalog.db")
    store = ReviewStore(url)
    yield store, path, url
    store.close()


def event(minutes: float, action: str = SIGN_IN, outcome: str = "failed") -> dict:
    """An audit event ``minutes`` after T0."""
    return {"at": T0 + timedelta(minutes=minutes), "action": action, "outcome": outcome}


def test_lock_state_counts_failures_since_the_last_success_reset_or_lockout():
    at = T0 + timedelta(minutes=10)
    newest_first = [event(9), event(8), event(7, outcome="ok"), event(6), event(5)]
    assert lock_state(newest_first, at=at, policy=POLICY) == LockState(2)
    after_reset = [event(9), event(8, PASSWORD_RESET, "ok"), event(7)]
    assert lock_state(after_reset, at=at, policy=POLICY) == LockState(1)
    locked = [event(9, LOCKOUT, "locked"), event(9), event(8), event(7)]
    assert lock_state(locked, at=at, policy=POLICY) == LockState(0, event(9)["at"] + POLICY.lockout)
    ended = [event(26), event(9, LOCKOUT, "locked")]  # a lockout over, a failure since
    assert lock_state(ended, at=T0 + timedelta(minutes=27), policy=POLICY) == LockState(1)
    assert lock_state([], at=at, policy=POLICY) == LockState(0)


def test_failed_sign_ins_lock_the_name_and_the_right_password_waits(env, clock):
    store, path, _ = env
    for attempt in (1, 2):
        result = sign_in(store, path, "ada", f"wrong-{attempt}", POLICY)
        assert (result.user, result.locked_until, result.failed) == (None, None, True)
        assert result.message(clock()) == "Unknown user name or wrong password."
        clock.advance(minutes=1)
    third = sign_in(store, path, "ada", "wrong-3", POLICY)
    assert third.locked_until == clock() + POLICY.lockout
    assert third.message(clock()).startswith("Unknown user name or wrong password. Too many")
    assert "try again in 15 minutes" in third.message(clock())

    clock.advance(minutes=14, seconds=30)
    refused = sign_in(store, path, "ada", PASSWORD, POLICY)  # the right password
    assert (refused.user, refused.failed) == (None, False)
    assert refused.message(clock()).startswith("Too many failed sign-ins for this user name")
    assert "try again in 1 minute," in refused.message(clock())

    clock.advance(seconds=31)  # the lockout period is over
    result = sign_in(store, path, "ada", PASSWORD, POLICY)
    assert result.user.name == "ada" and result.user.role == "admin" and result.stamp

    log = list(reversed(store.audit_log()))
    assert [(e["actor"], e["target"], e["action"], e["outcome"]) for e in log] == [
        ("ada", "ada", SIGN_IN, "failed"),
        ("ada", "ada", SIGN_IN, "failed"),
        ("ada", "ada", SIGN_IN, "failed"),
        ("ada", "ada", LOCKOUT, "locked"),
        ("ada", "ada", SIGN_IN, "refused"),
        ("ada", "ada", SIGN_IN, "ok"),
    ]
    assert [e["details"].get("failures") for e in log[:4]] == [1, 2, 3, 3]
    assert log[0]["details"]["reason"] == "wrong password" and log[-1]["role"] == "admin"
    recorded = json.dumps([e["details"] for e in log])
    assert PASSWORD not in recorded and "wrong-" not in recorded  # never a password


def test_an_unknown_name_gets_the_same_answers_and_is_locked_too(env, clock):
    store, path, _ = env
    answers = {}
    for name in ("ada", "nobody"):
        answers[name] = [
            sign_in(store, path, name, "guess", POLICY).message(clock()) for _ in "123"
        ]
        answers[name].append(sign_in(store, path, name, PASSWORD, POLICY).message(clock()))
    assert answers["ada"] == answers["nobody"]
    assert "try again in 15 minutes" in answers["nobody"][-1]
    reasons = {
        e["actor"]: e["details"]["reason"] for e in store.audit_log() if "reason" in e["details"]
    }
    assert reasons == {"ada": "wrong password", "nobody": "unknown user"}  # for the admins only


def test_unknown_and_known_names_cost_the_same_pbkdf2(tmp_path, monkeypatch):
    path = tmp_path / "users.yaml"
    users.add_user(path, "ada", "admin", PASSWORD)
    calls = []
    real = users.hashlib.pbkdf2_hmac

    def counted(name, password, salt, iterations):
        calls.append(iterations)
        return real(name, password, salt, 1)

    monkeypatch.setattr(users.hashlib, "pbkdf2_hmac", counted)
    assert users.authenticate(path, "ada", "wrong password") is None
    assert users.authenticate(path, "nobody", "wrong password") is None
    assert calls == [users.ITERATIONS, users.ITERATIONS]


def test_the_count_holds_across_app_restarts_and_processes(env, clock):
    store, path, url = env
    sign_in(store, path, "ada", "wrong", POLICY)
    other = ReviewStore(url)  # another app process, or the app after a restart
    try:
        sign_in(other, path, "ada", "wrong", POLICY)
        assert sign_in(other, path, "ada", "wrong", POLICY).locked_until is not None
    finally:
        other.close()
    assert sign_in(store, path, "ada", PASSWORD, POLICY).user is None


def test_old_failures_are_forgotten_and_a_success_starts_the_count_again(env, clock):
    store, path, _ = env
    sign_in(store, path, "ada", "wrong", POLICY)
    sign_in(store, path, "ada", "wrong", POLICY)
    clock.advance(minutes=16)  # older than the lockout period: no longer counted
    assert sign_in(store, path, "ada", "wrong", POLICY).locked_until is None
    assert sign_in(store, path, "ada", PASSWORD, POLICY).user is not None
    sign_in(store, path, "ada", "wrong", POLICY)
    assert sign_in(store, path, "ada", "wrong", POLICY).locked_until is None
    assert signin.current_lock(store, "ada", POLICY) == LockState(2)


def test_reset_sets_a_new_password_and_ends_the_lockout(env, clock, monkeypatch):
    store, path, url = env
    for _ in range(POLICY.attempts):
        sign_in(store, path, "ada", "wrong", POLICY)
    assert signin.current_lock(store, "ada", POLICY).locked_until is not None
    monkeypatch.setenv(ui_config.CATALOG_URL_ENV, url)
    monkeypatch.setenv(ui_config.SIGN_IN_ATTEMPTS_ENV, str(POLICY.attempts))
    runner = CliRunner()
    args = ["reset", "ada", "--file", str(path), "--password-stdin"]

    short = runner.invoke(users.cli, args, input="eleven-char\n")
    assert short.exit_code != 0 and "at least 12 characters" in short.output
    assert signin.current_lock(store, "ada", POLICY).locked_until is not None
    unknown = runner.invoke(users.cli, ["reset", "bob", "--file", str(path), "--password-stdin"])
    assert unknown.exit_code != 0 and "No user 'bob'" in unknown.output

    reset = runner.invoke(users.cli, args, input="a new long passphrase\n")
    assert reset.exit_code == 0, reset.output
    assert "Lockout of ada ended." in reset.output
    assert users.load_users(path)["ada"]["role"] == "admin"  # the role is kept
    assert signin.current_lock(store, "ada", POLICY) == LockState(0)
    assert sign_in(store, path, "ada", PASSWORD, POLICY).user is None  # the old one is gone
    assert sign_in(store, path, "ada", "a new long passphrase", POLICY).user.name == "ada"
    entry = next(e for e in store.audit_log() if e["action"] == PASSWORD_RESET)
    assert (entry["target"], entry["role"], entry["details"]) == (
        "ada",
        "operator",
        {"lockout_cleared": True},
    )
    assert "a new long passphrase" not in json.dumps(entry["details"])


def test_add_asks_the_configured_minimum_length(tmp_path, monkeypatch):
    path = tmp_path / "users.yaml"
    runner = CliRunner()
    args = ["add", "zoe", "--file", str(path), "--password-stdin"]
    assert "at least 12 characters" in runner.invoke(users.cli, args, input="11-chars-ok\n").output
    monkeypatch.setenv(ui_config.MIN_PASSWORD_LENGTH_ENV, "16")
    result = runner.invoke(users.cli, args, input="fifteen-chars-x\n")
    assert result.exit_code != 0 and "at least 16 characters" in result.output
    assert runner.invoke(users.cli, args, input="sixteen-chars-xx\n").exit_code == 0


def test_idle_sessions_expire_after_the_idle_period():
    last = T0.timestamp()
    assert not signin.idle_expired(last, at=T0 + timedelta(minutes=30), policy=POLICY)
    assert signin.idle_expired(last, at=T0 + timedelta(minutes=30, seconds=1), policy=POLICY)
    assert not signin.idle_expired(None, at=T0, policy=POLICY)


def test_sign_in_settings_come_from_the_environment(monkeypatch):
    for name in (
        ui_config.SIGN_IN_ATTEMPTS_ENV,
        ui_config.LOCKOUT_MINUTES_ENV,
        ui_config.IDLE_MINUTES_ENV,
        ui_config.MIN_PASSWORD_LENGTH_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    default = SignInPolicy.from_config(ui_config.load_config())
    assert default == SignInPolicy(5, timedelta(minutes=15), timedelta(minutes=30))
    assert ui_config.load_config().min_password_length == 12
    monkeypatch.setenv(ui_config.SIGN_IN_ATTEMPTS_ENV, "3")
    monkeypatch.setenv(ui_config.LOCKOUT_MINUTES_ENV, "0.5")
    monkeypatch.setenv(ui_config.IDLE_MINUTES_ENV, "10")
    config = ui_config.load_config()
    assert SignInPolicy.from_config(config) == SignInPolicy(
        3, timedelta(seconds=30), timedelta(minutes=10)
    )
    for value in ("0", "-1", "2.5", "many"):
        monkeypatch.setenv(ui_config.SIGN_IN_ATTEMPTS_ENV, value)
        with pytest.raises(ValueError, match="CLEARSIGHT_UI_SIGN_IN_ATTEMPTS must be"):
            ui_config.load_config()
    monkeypatch.setenv(ui_config.SIGN_IN_ATTEMPTS_ENV, "3")
    monkeypatch.setenv(ui_config.IDLE_MINUTES_ENV, "nan")
    with pytest.raises(ValueError, match="CLEARSIGHT_UI_IDLE_MINUTES"):
        ui_config.load_config()


def test_the_lockout_message_rounds_the_wait_up_to_minutes():
    assert "in 15 minutes," in signin.lockout_message(T0 + timedelta(minutes=15), T0)
    assert "in 2 minutes," in signin.lockout_message(T0 + timedelta(seconds=61), T0)
    assert "in 1 minute," in signin.lockout_message(T0 + timedelta(seconds=5), T0)
