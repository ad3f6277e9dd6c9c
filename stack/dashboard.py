"""Open the ZenML dashboard on the runs, not on its account form.

Usage: ``python -m stack.dashboard onboard`` (``make dashboard`` runs it).

A ZenML server's dashboard greets each user whose account it considers new
with an "Add your account details" form (name, e-mail and a pre-ticked
newsletter box) before any page of runs. It shows that form while the user's
``email_opted_in`` is unset, or while the user's metadata has neither
``finished_onboarding_survey`` nor any ``awareness_channels`` (the check of
ZenML 0.98's dashboard bundle, mirrored by :func:`shows_account_form`).

``onboard`` completes that step for the user the client is logged in as (the
local server's ``default`` user): a full name from ``$USER`` (else "Local
user"), e-mail updates declined, the survey marked finished; whatever the user
already chose is kept. It is idempotent and prints what it changed. A local
server (``zenml login --local``) activates itself when it starts; a server
that is not active is reported, since activating one means choosing an admin
password.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FINISHED_SURVEY = "finished_onboarding_survey"
AWARENESS_CHANNELS = "awareness_channels"
FALLBACK_FULL_NAME = "Local user"
RUNS_PAGE = "/projects/default/runs"  # the open-source dashboard's one project


class DashboardError(RuntimeError):
    """The dashboard's server cannot be onboarded (not running, not a server, not active)."""


@dataclass(frozen=True)
class Account:
    """What the dashboard reads of a user to decide whether to show the account form."""

    name: str
    full_name: str
    email_opted_in: bool | None
    user_metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Onboarding:
    """The changes that get an account past the form (None: leave as it is)."""

    full_name: str | None = None
    email_opted_in: bool | None = None
    user_metadata: dict[str, Any] | None = None

    def describe(self) -> list[str]:
        """One line per change, as printed."""
        lines = []
        if self.full_name is not None:
            lines.append(f"full name set to {self.full_name!r}")
        if self.email_opted_in is not None:
            lines.append("e-mail updates declined (no newsletter opt-in)")
        if self.user_metadata is not None:
            lines.append("first-visit account form marked as done")
        return lines

    def __bool__(self) -> bool:
        return bool(self.describe())


def shows_account_form(account: Account) -> bool:
    """Whether ZenML 0.98's dashboard shows its account form to ``account`` first."""
    if account.email_opted_in is None:
        return True
    metadata = account.user_metadata or {}
    return not metadata.get(FINISHED_SURVEY) and not metadata.get(AWARENESS_CHANNELS)


def local_full_name(environ: Mapping[str, str]) -> str:
    """The local user's name for the account: ``$USER``, else ``Local user``."""
    return (environ.get("USER") or "").strip() or FALLBACK_FULL_NAME


def plan(account: Account, environ: Mapping[str, str]) -> Onboarding:
    """The changes that take ``account`` past the form; empty when already past it.

    Never opts in to e-mail: an unset choice becomes "no", a choice the user
    made is kept. A full name the user set is kept too. The metadata is
    merged, so other keys (a role the user picked, say) stay.
    """
    if not shows_account_form(account):
        return Onboarding()
    metadata = dict(account.user_metadata or {})
    finished = bool(metadata.get(FINISHED_SURVEY) or metadata.get(AWARENESS_CHANNELS))
    return Onboarding(
        full_name=None if account.full_name else local_full_name(environ),
        email_opted_in=False if account.email_opted_in is None else None,
        user_metadata=None if finished else metadata | {FINISHED_SURVEY: True},
    )


def _server_url() -> str | None:
    """The URL of the ZenML server the client is logged in to (None: its local database)."""
    from zenml.config.global_config import GlobalConfiguration

    store = GlobalConfiguration().store_configuration
    if not str(getattr(store, "type", "")).lower().endswith("rest"):
        return None
    return str(store.url).rstrip("/")


def _answers(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout):  # noqa: S310 - configured URL
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _update_current_user(client: Any, changes: Onboarding) -> None:
    """Apply ``changes`` as the dashboard's own form does: ``PUT /current-user``.

    Not ``Client().update_user``: over REST it goes to ``PUT /users/<id>``, whose
    ZenML 0.98 handler drops ``email_opted_in`` (it leaves the safe copy's unset
    value in place), so the form would keep showing.
    """
    from zenml.constants import CURRENT_USER
    from zenml.models import UserUpdate

    fields = {
        "full_name": changes.full_name,
        "email_opted_in": changes.email_opted_in,
        "user_metadata": changes.user_metadata,
    }
    update = UserUpdate(**{k: v for k, v in fields.items() if v is not None})
    client.zen_store.put(CURRENT_USER, body=update)


def onboard(environ: Mapping[str, str]) -> list[str]:
    """Take the logged-in user of the client's ZenML server past the dashboard's account form.

    Returns:
        What was done or found, one line each.

    Raises:
        DashboardError: no server is logged in to, it does not answer, or it is not active.
    """
    url = _server_url()
    if url is None:
        raise DashboardError(
            "The ZenML client uses its local database, not a server: there is no dashboard "
            "to prepare. Start the local server first: make dashboard "
            "(or python -m stack.services start zenml)"
        )
    if not _answers(url):
        raise DashboardError(
            f"The ZenML server {url} does not answer. Start it: make dashboard "
            "(or python -m stack.services start zenml)"
        )
    from zenml.client import Client

    client = Client()
    if not client.zen_store.get_server_settings().active:
        raise DashboardError(
            f"The ZenML server {url} is not activated yet: open {url} and create its admin "
            "account (a local server from zenml login --local activates itself)"
        )
    user = client.active_user
    account = Account(
        name=user.name,
        full_name=user.full_name or "",
        email_opted_in=user.email_opted_in,
        user_metadata=user.user_metadata or {},
    )
    changes = plan(account, environ)
    runs = f"Runs: {url}{RUNS_PAGE}"
    if not changes:
        return [f"Dashboard {url}: user '{user.name}' is past the account form already.", runs]
    _update_current_user(client, changes)
    done = [f"  {line}" for line in changes.describe()]
    return [f"Dashboard {url}: account form filled in for user '{user.name}':", *done, runs]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; 1 (with the reason, no traceback) when nothing could be done."""
    parser = argparse.ArgumentParser(
        description="Prepare the ZenML dashboard for the local user (idempotent).",
        epilog="Example: make dashboard (it runs python -m stack.dashboard onboard)",
    )
    parser.add_argument(
        "command",
        choices=("onboard",),
        help="onboard: fill in the first-visit account form (a name, no e-mail opt-in)",
    )
    parser.parse_args(argv)
    from stack.runtime import quiet_shutdown

    quiet_shutdown()
    try:
        lines = onboard(os.environ)
    except DashboardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
