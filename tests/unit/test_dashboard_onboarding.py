"""The dashboard onboarding's decisions, without a server (stack/dashboard.py)."""

from __future__ import annotations

import pytest

from stack.dashboard import (
    FALLBACK_FULL_NAME,
    FINISHED_SURVEY,
    Account,
    DashboardError,
    main,
    plan,
    shows_account_form,
)

NEW = Account(name="default", full_name="", email_opted_in=None, user_metadata={})


@pytest.mark.parametrize(
    ("account", "shown"),
    [
        (NEW, True),
        # The e-mail choice alone is not enough, nor the survey alone.
        (Account("default", "", False, {}), True),
        (Account("default", "", None, {FINISHED_SURVEY: True}), True),
        (Account("default", "", False, {FINISHED_SURVEY: False}), True),
        (Account("default", "", False, {FINISHED_SURVEY: True}), False),
        (Account("default", "", True, {"awareness_channels": ["friend"]}), False),
        (Account("default", "", False, {"awareness_channels": []}), True),
    ],
)
def test_the_form_shows_as_the_dashboard_decides(account, shown):
    assert shows_account_form(account) is shown


def test_a_new_account_gets_the_users_name_no_opt_in_and_the_survey_done():
    changes = plan(NEW, {"USER": "ada"})
    assert changes.full_name == "ada"
    assert changes.email_opted_in is False
    assert changes.user_metadata == {FINISHED_SURVEY: True}
    assert not shows_account_form(
        Account("default", "ada", changes.email_opted_in, changes.user_metadata)
    )
    assert changes.describe() == [
        "full name set to 'ada'",
        "e-mail updates declined (no newsletter opt-in)",
        "first-visit account form marked as done",
    ]


@pytest.mark.parametrize("environ", [{}, {"USER": ""}, {"USER": "  "}])
def test_without_a_user_name_the_account_is_called_local_user(environ):
    assert plan(NEW, environ).full_name == FALLBACK_FULL_NAME


def test_what_the_user_chose_is_kept_and_other_metadata_merged():
    account = Account(
        name="default",
        full_name="Ada Lovelace",
        email_opted_in=True,  # opted in on purpose, in the dashboard
        user_metadata={"primary_role": "ml_engineer"},
    )
    changes = plan(account, {"USER": "root"})
    assert changes.full_name is None and changes.email_opted_in is None
    assert changes.user_metadata == {"primary_role": "ml_engineer", FINISHED_SURVEY: True}
    assert changes.describe() == ["first-visit account form marked as done"]


def test_an_account_past_the_form_is_left_alone():
    done = Account("default", "", False, {FINISHED_SURVEY: True})
    assert not plan(done, {"USER": "ada"})  # idempotent: nothing to change, even the name


def test_without_a_server_the_command_says_how_to_start_one(capsys):
    # The unit tests' ZenML config uses its local database: no server, no dashboard.
    assert main(["onboard"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "make dashboard" in error
    assert "Traceback" not in error


def test_a_server_that_does_not_answer_is_named(monkeypatch):
    import stack.dashboard as dashboard

    monkeypatch.setattr(dashboard, "_server_url", lambda: "http://127.0.0.1:9")
    with pytest.raises(DashboardError, match=r"http://127.0.0.1:9 does not answer"):
        dashboard.onboard({"USER": "ada"})
