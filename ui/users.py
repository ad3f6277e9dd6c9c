"""The app's users: roles, hashed passwords, and a command to manage them.

The users file is YAML, kept outside git (``.state/ui-users.yaml`` unless
``CLEARSIGHT_UI_USERS`` names another path)::

    users:
      ada:
        role: admin
        password: pbkdf2_sha256$600000$<salt>$<hash>

Passwords are never stored: only a salted PBKDF2-HMAC-SHA256 hash (the
standard library's ``hashlib.pbkdf2_hmac``), compared in constant time. A new
password needs at least ``CLEARSIGHT_UI_MIN_PASSWORD_LENGTH`` characters (12
unless set; NIST SP 800-63B section 5.1.1.2 asks at least 8, and no composition
rules: none are imposed).

    python -m ui.users add NAME --role reviewer|admin   # asks for the password twice
    python -m ui.users reset NAME                       # a new password; ends a lockout
    python -m ui.users list
    python -m ui.users remove NAME
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import yaml

if TYPE_CHECKING:
    from ui.config import UIConfig

ROLES = ("reviewer", "admin")
ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 600_000  # OWASP's figure for PBKDF2-HMAC-SHA256
# The default shortest password (setting CLEARSIGHT_UI_MIN_PASSWORD_LENGTH, ui.config).
MIN_PASSWORD_LENGTH = 12
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class UsersError(Exception):
    """The users file is missing, unreadable or malformed; the message says how to fix it."""


@dataclass(frozen=True)
class User:
    """A signed-in user."""

    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        """Admins may deploy and roll back; reviewers may not."""
        return self.role == "admin"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Checked against when the name is no user: a hash of no password (a zero salt
# and digest, never a PBKDF2 output to match), at the iterations real hashes use,
# so an unknown name costs the same one PBKDF2 as a known one (no timing oracle).
_NO_USER_HASH = f"{ALGORITHM}${ITERATIONS}${_b64(bytes(16))}${_b64(bytes(32))}"


def hash_password(password: str, *, iterations: int = ITERATIONS) -> str:
    """Return ``pbkdf2_sha256$<iterations>$<salt>$<hash>`` for ``password``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Check ``password`` against a stored hash, in constant time."""
    try:
        algorithm, iterations, salt, expected = stored.split("$")
        if algorithm != ALGORITHM:
            return False
        digest = hashlib.pbkdf2_hmac(
            "sha256", password.encode("utf-8"), base64.b64decode(salt), int(iterations)
        )
        return hmac.compare_digest(digest, base64.b64decode(expected))
    except (ValueError, TypeError):
        return False


def load_users(path: Path) -> dict[str, dict[str, str]]:
    """Read the users file: ``{name: {"role": ..., "password": <hash>}}``."""
    if not path.is_file():
        raise UsersError(
            f"No users file at {path}. Create the first admin with:\n"
            "    python -m ui.users add NAME --role admin\n"
            "(another path: set CLEARSIGHT_UI_USERS; example: ui/users.example.yaml)"
        )
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise UsersError(f"Cannot read the users file {path}: {error}") from error
    users = content.get("users") if isinstance(content, dict) else None
    if not isinstance(users, dict):
        raise UsersError(f"{path} must hold a mapping 'users: {{NAME: {{role, password}}}}'.")
    for name, entry in users.items():
        if not isinstance(entry, dict) or entry.get("role") not in ROLES:
            raise UsersError(f"User {name!r} in {path} needs a role: one of {', '.join(ROLES)}.")
        if not str(entry.get("password", "")).startswith(f"{ALGORITHM}$"):
            raise UsersError(
                f"User {name!r} in {path} has no {ALGORITHM} password hash (plain-text "
                f"passwords are refused). Reset it: python -m ui.users add {name} "
                f"--role {entry['role']}"
            )
    return users


def authenticate(path: Path, name: str, password: str) -> User | None:
    """Return the user when the name and password match, else ``None``."""
    users = load_users(path)
    entry = users.get(name)
    if entry is None:
        verify_password(password, _NO_USER_HASH)  # the same work as for a real user
        return None
    if not verify_password(password, str(entry["password"])):
        return None
    return User(name=name, role=str(entry["role"]))


def password_stamp(stored: str) -> str:
    """A short fingerprint of a stored hash: it changes when the password is reset."""
    return hashlib.sha256(stored.encode("utf-8")).hexdigest()[:16]


def lookup_user(path: Path, name: str) -> tuple[User, str] | None:
    """The user as the users file says now, and their password stamp.

    The app calls this on every rerun and before every admin action, so a
    user removed, demoted or given a new password loses the old rights at once.

    Returns:
        ``(user, stamp)``, or ``None`` when the user is no longer in the file.

    Raises:
        UsersError: When the file is missing or malformed.
    """
    entry = load_users(path).get(name)
    if entry is None:
        return None
    return User(name=name, role=str(entry["role"])), password_stamp(str(entry["password"]))


def save_users(path: Path, users: dict[str, dict[str, str]]) -> None:
    """Write the users file, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# Clearsight app users; manage with python -m ui.users (never commit)\n")
        yaml.safe_dump({"users": users}, handle, sort_keys=True)
    os.replace(temporary, path)


def add_user(
    path: Path, name: str, role: str, password: str, *, min_length: int = MIN_PASSWORD_LENGTH
) -> bool:
    """Add a user, or reset an existing one's role and password.

    Args:
        path: The users file (created when missing).
        name: The user name.
        role: ``reviewer`` or ``admin``.
        password: The new password (only its hash is stored).
        min_length: The shortest password accepted, in characters (Unicode code
            points, as NIST SP 800-63B counts them).

    Returns:
        True when the user is new.
    """
    if not NAME_PATTERN.match(name):
        raise UsersError("A user name is 1-64 letters, digits, '_', '.', '@' or '-'.")
    if role not in ROLES:
        raise UsersError(f"Role must be one of {', '.join(ROLES)}.")
    if len(password) < min_length:
        raise UsersError(
            f"Passwords need at least {min_length} characters (a passphrase of a few "
            "words is easiest to remember)."
        )
    users = load_users(path) if path.is_file() else {}
    new = name not in users
    users[name] = {"role": role, "password": hash_password(password)}
    save_users(path, users)
    return new


def _users_file(path: str | None) -> Path:
    return Path(path).expanduser() if path else _config().users_file


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Manage the review app's users (file: CLEARSIGHT_UI_USERS or .state/ui-users.yaml)."""


@cli.command()
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="reviewer", show_default=True)
@click.option("--file", "file_", default=None, help="Users file. [default: from config]")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
def add(name: str, role: str, file_: str | None, password_stdin: bool) -> None:
    """Add a user (or reset their role and password; a lockout stays: see reset)."""
    password = _read_password(name, password_stdin)
    path = _users_file(file_)
    try:
        new = add_user(path, name, role, password, min_length=_min_length())
    except UsersError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{'Added' if new else 'Updated'} {name} ({role}) in {path}")


@cli.command()
@click.argument("name")
@click.option("--file", "file_", default=None, help="Users file. [default: from config]")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
def reset(name: str, file_: str | None, password_stdin: bool) -> None:
    """Set a new password for an existing user and end their sign-in lockout.

    The role is kept; the user's open sessions are signed out. The reset is
    recorded in the audit log of the catalog (CLEARSIGHT_CATALOG_URL, else
    .state/catalog.db), which starts the failed sign-in count again.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from clearsight.errors import CatalogError
    from clearsight.review import ReviewStore
    from ui.signin import SignInPolicy, record_password_reset

    path = _users_file(file_)
    try:
        entry = load_users(path).get(name)
    except UsersError as error:
        raise click.ClickException(str(error)) from None
    if entry is None:
        raise click.ClickException(f"No user {name!r} in {path}: add it with `add`.")
    password = _read_password(name, password_stdin)
    config = _config()
    try:
        add_user(path, name, str(entry["role"]), password, min_length=config.min_password_length)
    except UsersError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"New password for {name} ({entry['role']}) in {path}")
    store = None
    try:
        store = ReviewStore(config.catalog_url)
        cleared = record_password_reset(
            store, name, actor=_operator(), policy=SignInPolicy.from_config(config)
        )
    except (CatalogError, SQLAlchemyError) as error:
        raise click.ClickException(
            "The password is set, but the reset could not be recorded in the catalog's "
            f"audit log, so a lockout runs on (at most {config.lockout_minutes:g} minutes): "
            f"{error}"
        ) from None
    finally:
        if store is not None:
            store.close()
    click.echo(f"Lockout of {name} ended." if cleared else f"{name} was not locked out.")


def _read_password(name: str, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass(f"Password for {name}: ")
    if getpass.getpass("Again: ") != password:
        raise click.ClickException("The passwords differ.")
    return password


def _config() -> UIConfig:
    from ui.config import load_config

    try:
        return load_config()
    except ValueError as error:  # a malformed CLEARSIGHT_UI_* setting
        raise click.ClickException(str(error)) from None


def _min_length() -> int:
    return _config().min_password_length


def _operator() -> str:
    """Who runs the command, for the audit log (the operating-system user)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        return f"uid:{os.getuid()}"


@cli.command(name="list")
@click.option("--file", "file_", default=None, help="Users file. [default: from config]")
def list_users(file_: str | None) -> None:
    """List the users and their roles."""
    try:
        users = load_users(_users_file(file_))
    except UsersError as error:
        raise click.ClickException(str(error)) from None
    for name, entry in sorted(users.items()):
        click.echo(f"{name}\t{entry['role']}")


@cli.command()
@click.argument("name")
@click.option("--file", "file_", default=None, help="Users file. [default: from config]")
def remove(name: str, file_: str | None) -> None:
    """Remove a user."""
    path = _users_file(file_)
    try:
        users = load_users(path)
    except UsersError as error:
        raise click.ClickException(str(error)) from None
    if users.pop(name, None) is None:
        raise click.ClickException(f"No user {name!r} in {path}.")
    save_users(path, users)
    click.echo(f"Removed {name} from {path}")


if __name__ == "__main__":
    cli()
