"""The sign-in page's lockout and the idle session expiry, with Streamlit's AppTest.

The default settings (5 failed sign-ins lock a name for 15 minutes; 30 idle
minutes end a session); the rules' clock (``ui.signin.now``, the app runs in
this process) is moved instead of waiting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clearsight.catalog import sqlite_url
from clearsight.review import ReviewStore
from tests.ui.test_ui_app import app, page, sign_in
from ui import signin
from ui.users import add_user

pytestmark = pytest.mark.integration
LENA = ("lena", "lena-password-1")


@pytest.fixture()
def own_users(served_app, monkeypatch, tmp_path):
    """Users and a catalog of this test's own, so no lockout reaches the other tests."""
    users = tmp_path / "users.yaml"
    add_user(users, LENA[0], "reviewer", LENA[1])
    catalog = sqlite_url(tmp_path / "catalog.db")
    monkeypatch.setenv("CLEARSIGHT_UI_USERS", str(users))
    monkeypatch.setenv("CLEARSIGHT_CATALOG_URL", catalog)
    clock = {"at": datetime.now(UTC)}
    monkeypatch.setattr(signin, "now", lambda: clock["at"])
    return catalog, clock


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def test_wrong_passwords_lock_a_name_and_unknown_names_get_the_same_answers(own_users):
    catalog, clock = own_users
    answers = {}
    for name in (LENA[0], "no-such-user"):
        at = app()
        for attempt in range(5):
            sign_in(at, name, f"wrong-password-{attempt}")
        answers[name] = errors(at)
        sign_in(at, name, LENA[1])  # lena's right password, during the lockout
        answers[name] += errors(at)
        assert [t.value for t in at.title] == ["Clearsight"]
    assert answers[LENA[0]] == answers["no-such-user"]  # no user-enumeration oracle
    fifth, refused = answers[LENA[0]]
    assert fifth.startswith("Unknown user name or wrong password. Too many failed sign-ins")
    assert "try again in 15 minutes" in fifth
    assert refused.startswith("Too many failed sign-ins for this user name: try again in 15")

    clock["at"] += timedelta(minutes=14)
    at = app()
    sign_in(at, *LENA)
    assert any("try again in 1 minute," in e for e in errors(at))
    clock["at"] += timedelta(minutes=1, seconds=1)  # the lockout period is over
    app(LENA)  # signs in, on the Predict page

    store = ReviewStore(catalog)
    try:
        log = [(e["actor"], e["action"], e["outcome"]) for e in reversed(store.audit_log())]
    finally:
        store.close()
    lena = [entry for entry in log if entry[0] == LENA[0]]
    assert lena == [
        *[(LENA[0], "sign-in", "failed")] * 5,
        (LENA[0], "lockout", "locked"),
        (LENA[0], "sign-in", "refused"),
        (LENA[0], "sign-in", "refused"),
        (LENA[0], "sign-in", "ok"),
    ]
    assert ("no-such-user", "lockout", "locked") in log


def test_an_idle_session_must_sign_in_again(own_users):
    _, clock = own_users
    at = page(app(LENA), "review")
    title = [t.value for t in at.title]
    for _ in range(2):  # an interaction within the idle period keeps the session alive
        clock["at"] += timedelta(minutes=29)
        at.run()
        assert [t.value for t in at.title] == title != ["Clearsight"]

    clock["at"] += timedelta(minutes=30, seconds=1)
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Clearsight"]
    assert any("idle for more than 30 minutes" in w.value for w in at.warning)
    sign_in(at, *LENA)
    assert [t.value for t in at.title] == ["Predict"]
