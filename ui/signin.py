"""The review app's sign-in rules: a lockout after failed sign-ins, and idle sessions.

No Streamlit here: :mod:`ui.components.auth` wires these functions into the
app, and ``python -m ui.users reset`` ends a lockout with
:func:`record_password_reset`. The rules follow OWASP's Authentication Cheat
Sheet (*Account Lockout*; *Authentication and Error Messages*) and its Session
Management Cheat Sheet (*Idle Timeout*):

- Failed sign-ins are counted per user name in the catalog database's audit log
  (``audit_log``, :meth:`clearsight.review.ReviewStore.sign_in_history`), not
  in the app's memory, so a lockout holds across app restarts and in every app
  process that shares the catalog.
- ``attempts`` failed sign-ins within the lockout period lock the name for the
  lockout period, counted from the last of them. While locked, the password is
  not even checked: the right one is refused too. A successful sign-in or a
  password reset (``python -m ui.users reset NAME``) starts the count again.
- A name that is no user is counted and locked exactly like a real one, with the
  same messages and the same work (one PBKDF2 at the users file's iterations,
  the same audit writes), so neither the answer nor its timing tells whether a
  name exists.
- A signed-in session that has been idle for longer than the idle period must
  sign in again at its next interaction.

Every attempt is audited: ``sign-in`` (outcome ``ok``, ``failed``, or
``refused`` during a lockout), ``lockout`` when one starts, ``password-reset``;
the name tried is the entry's ``actor`` and ``target``, the password never.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clearsight.review import LOCKOUT, PASSWORD_RESET, SIGN_IN, ReviewStore
from ui.config import UIConfig
from ui.users import User, authenticate, lookup_user

FAILED = "Unknown user name or wrong password."
# The audit log's actor and target columns hold at most this many characters.
MAX_LOGGED_NAME = 255
OPERATOR_ROLE = "operator"  # the audit role of whoever runs `python -m ui.users reset`


@dataclass(frozen=True)
class SignInPolicy:
    """How many failed sign-ins lock a name, for how long; when a session expires."""

    attempts: int = 5
    lockout: timedelta = timedelta(minutes=15)
    idle: timedelta = timedelta(minutes=30)

    @classmethod
    def from_config(cls, config: UIConfig) -> SignInPolicy:
        """The policy the app's settings give (``CLEARSIGHT_UI_*``, see ``ui.config``)."""
        return cls(
            attempts=config.sign_in_attempts,
            lockout=timedelta(minutes=config.lockout_minutes),
            idle=timedelta(minutes=config.idle_minutes),
        )


@dataclass(frozen=True)
class LockState:
    """Where a name stands: failed sign-ins counted so far, and the lockout's end if locked."""

    failures: int
    locked_until: datetime | None = None


@dataclass(frozen=True)
class SignInResult:
    """The outcome of one sign-in attempt."""

    user: User | None = None
    stamp: str = ""  # the password stamp the session keeps (``ui.users.password_stamp``)
    locked_until: datetime | None = None
    failed: bool = False  # this attempt's password was checked and refused

    def message(self, at: datetime) -> str:
        """What the sign-in page says; the same whether or not the name is a user."""
        if self.locked_until is None:
            return FAILED
        locked = lockout_message(self.locked_until, at)
        return f"{FAILED} {locked}" if self.failed else locked


def now() -> datetime:
    """The sign-in rules' clock (UTC, timezone-aware); the tests move it."""
    return datetime.now(UTC)


def lockout_message(until: datetime, at: datetime) -> str:
    """Tell a locked-out user how long to wait (whole minutes, rounded up)."""
    minutes = max(1, math.ceil((until - at).total_seconds() / 60))
    return (
        "Too many failed sign-ins for this user name: try again in "
        f"{minutes} minute{'s' if minutes != 1 else ''}, or ask an administrator to reset "
        "the password."
    )


def lock_state(
    events: Iterable[Mapping[str, Any]], *, at: datetime, policy: SignInPolicy
) -> LockState:
    """Count a name's failed sign-ins and find its lockout, from its audit events.

    Args:
        events: The name's sign-in events within the lockout period, newest
            first (``ReviewStore.sign_in_history``): mappings with ``at``,
            ``action`` and ``outcome``.
        at: The time of the question.
        policy: The lockout period.

    Returns:
        The failed sign-ins since the last success, reset or lockout, and the
        end of a lockout still running (``None`` when the name may sign in).
    """
    failures = 0
    for event in events:
        action, outcome = event["action"], event["outcome"]
        if action == LOCKOUT:
            until = event["at"] + policy.lockout
            return LockState(failures, until if until > at else None)
        if action == PASSWORD_RESET or (action == SIGN_IN and outcome == "ok"):
            break
        if action == SIGN_IN and outcome == "failed":
            failures += 1
    return LockState(failures)


def current_lock(
    store: ReviewStore, name: str, policy: SignInPolicy, at: datetime | None = None
) -> LockState:
    """The lock state of ``name`` now (or at ``at``), read from the audit log."""
    at = at or now()
    account = name[:MAX_LOGGED_NAME]
    events = store.sign_in_history(account, at - policy.lockout, policy.attempts + 1)
    return lock_state(events, at=at, policy=policy)


def sign_in(
    store: ReviewStore, users_file: Path, name: str, password: str, policy: SignInPolicy
) -> SignInResult:
    """Check one sign-in attempt against the lockout and the users file, and audit it.

    Args:
        store: The catalog's review store (its audit log counts the attempts).
        users_file: The users file (hashed passwords).
        name: The user name as typed (surrounding blanks removed by the caller).
        password: The password as typed; never stored or logged.
        policy: Attempts, lockout period.

    Returns:
        The user and their password stamp on success; otherwise whether the
        name is (now) locked out and until when.

    Raises:
        ui.users.UsersError: When the users file is missing or malformed.
        clearsight.errors.CatalogError, sqlalchemy.exc.SQLAlchemyError: When the
            catalog database cannot be read or written (the attempt is refused).
    """
    at = now()
    account = name[:MAX_LOGGED_NAME]
    state = current_lock(store, account, policy, at)

    def audit(action: str, outcome: str, role: str = "", **details: Any) -> None:
        store.record_action(
            actor=account,
            role=role,
            action=action,
            target=account,
            outcome=outcome,
            details=details,
            at=at,
        )

    if state.locked_until is not None:
        audit(SIGN_IN, "refused", locked_until=state.locked_until.isoformat())
        return SignInResult(locked_until=state.locked_until)
    user = authenticate(users_file, name, password)
    found = lookup_user(users_file, user.name) if user else None
    if user is not None and found is not None:
        audit(SIGN_IN, "ok", role=user.role)
        return SignInResult(user=user, stamp=found[1])
    failures = state.failures + 1
    audit(
        SIGN_IN,
        "failed",
        reason="wrong password" if _is_user(users_file, name) else "unknown user",
        failures=failures,
    )
    if failures < policy.attempts:
        return SignInResult(failed=True)
    until = at + policy.lockout
    audit(
        LOCKOUT,
        "locked",
        failures=failures,
        minutes=policy.lockout.total_seconds() / 60,
        locked_until=until.isoformat(),
    )
    return SignInResult(locked_until=until, failed=True)


def _is_user(users_file: Path, name: str) -> bool:
    """Whether ``name`` is in the users file, for the audit entry (never for the answer)."""
    return lookup_user(users_file, name) is not None


def record_password_reset(
    store: ReviewStore, name: str, *, actor: str, policy: SignInPolicy
) -> bool:
    """Audit a password reset of ``name``, which ends its lockout and its failure count.

    Args:
        store: The catalog's review store.
        name: The user whose password was reset.
        actor: Who reset it (the operating-system user running the command).
        policy: The lockout period (to say whether a lockout was running).

    Returns:
        Whether a lockout was running (it is over now).
    """
    at = now()
    locked = current_lock(store, name, policy, at).locked_until is not None
    store.record_action(
        actor=actor[:MAX_LOGGED_NAME],
        role=OPERATOR_ROLE,
        action=PASSWORD_RESET,
        target=name[:MAX_LOGGED_NAME],
        outcome="ok",
        details={"lockout_cleared": locked},
        at=at,
    )
    return locked


def idle_expired(last_active: float | None, *, at: datetime, policy: SignInPolicy) -> bool:
    """Whether a session last active at ``last_active`` (a POSIX time) has been idle too long."""
    return last_active is not None and at.timestamp() - last_active > policy.idle.total_seconds()
