"""API keys of the prediction endpoint: stored hashed, checked per request, managed by a CLI.

Clients send ``Authorization: Bearer <key>`` (RFC 6750). A key is
``cs_`` + 43 URL-safe characters from :func:`secrets.token_urlsafe` (256
random bits); the catalog database stores only its SHA-256 (table
``api_keys``, revision ``0005_api_keys``) with its name, creator, creation,
last use and revocation times. One SHA-256, no salt and no slow KDF, is the
usual choice for random API keys: NIST SP 800-63B (5.1.2.2, look-up secrets)
asks a salted, slow key derivation only of secrets with fewer than 112 bits
of entropy and an approved one-way hash for the others; a guess at a 256-bit
key costs the same with or without a salt, and a slow KDF would cost every
request its time. Names are unique among the active keys; revoked keys stay
listed.

The model server checks keys with an :class:`ApiKeyVerifier`: each key's
answer (accepted, and under which name, or refused) is cached in the server
process for :data:`DEFAULT_TTL` seconds (``CLEARSIGHT_API_KEYS_TTL``), so a
revocation takes effect within seconds and an answer costs one SHA-256 and a
dictionary look-up, plus one indexed read per key and TTL. Whether keys are
required: ``CLEARSIGHT_API_KEYS`` (``required`` or ``off``), else required
unless the server is bound to a loopback address (:func:`server_requires_keys`).

    python -m clearsight.api_keys create NAME   # prints the new key, once
    python -m clearsight.api_keys list          # name, created, last used, revoked
    python -m clearsight.api_keys revoke NAME

Framework-free: no ZenML, no seldon-core.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import click
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from clearsight.errors import CatalogError, ClearsightError

logger = logging.getLogger(__name__)

#: ``required`` or ``off`` (also on/true/1, false/0/no): whether the server asks for a key.
MODE_ENV = "CLEARSIGHT_API_KEYS"
#: Seconds a server trusts its cached answer for a key (revocations take this long at most).
TTL_ENV = "CLEARSIGHT_API_KEYS_TTL"
#: The address the server binds to, set by ``stack.seldon.launch`` (unset: every interface).
SERVING_HOST_ENV = "CLEARSIGHT_SERVING_HOST"
DEFAULT_TTL = 5.0
#: Seconds a known key keeps working while the key store cannot be read.
STALE_GRACE = 300.0
#: Answers cached per server process at most (unknown keys included); then the cache restarts.
MAX_CACHED = 10_000
KEY_PREFIX = "cs_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
HEADER = "Authorization"
SCHEME = "Bearer"
CREATE_COMMAND = "python -m clearsight.api_keys create NAME"

#: Why a request was refused: the ``reason`` of ``clearsight_rejected_total``.
MISSING = "missing_api_key"
INVALID = "invalid_api_key"
UNAVAILABLE = "api_key_store_unavailable"

metadata = MetaData()

API_KEYS = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, index=True),
    Column("key_sha256", String(64), nullable=False, unique=True, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)


class ApiKeyError(ClearsightError):
    """A key cannot be created, registered or revoked; the message says why."""


@dataclass(frozen=True)
class ApiKeyInfo:
    """One key as ``list`` shows it (never the key: it is not stored)."""

    name: str
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


@dataclass(frozen=True)
class Verdict:
    """A request's key, judged: accepted under ``name``, or refused for ``reason``."""

    name: str | None = None
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        """The key is an active one."""
        return self.reason is None


def generate_key() -> str:
    """A new key: ``cs_`` and 256 random bits, URL-safe base64 (fits a header as is)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """The SHA-256 (hex) stored for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (scheme case-insensitive)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == SCHEME.lower() and token else None


def parse_mode(value: str | None) -> bool | None:
    """``CLEARSIGHT_API_KEYS``: True (required), False (off), None (unset: the default).

    Raises:
        ValueError: Another value; the message lists the accepted ones.
    """
    text = (value or "").strip().lower()
    if not text or text == "auto":
        return None
    if text in ("required", "on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{MODE_ENV}={value!r}: use required or off (unset: by the bound address)")


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a bind address or host name) is this machine's loopback only."""
    if not host:
        return False
    text = host.strip().strip("[]")
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def server_requires_keys(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this server asks for keys: ``CLEARSIGHT_API_KEYS``, else unless on loopback.

    A server bound to a loopback address (``CLEARSIGHT_SERVING_HOST``, which
    ``stack.seldon.launch`` sets) answers without keys unless told otherwise;
    any other server, including one whose address is unknown (seldon-core's
    own command in a pod binds every interface), asks for them.

    Raises:
        ValueError: ``CLEARSIGHT_API_KEYS`` holds an unusable value.
    """
    env = os.environ if environ is None else environ
    explicit = parse_mode(env.get(MODE_ENV))
    if explicit is not None:
        return explicit
    return not is_loopback(env.get(SERVING_HOST_ENV))


def ttl_from_env(environ: Mapping[str, str] | None = None) -> float:
    """``CLEARSIGHT_API_KEYS_TTL`` in seconds (default :data:`DEFAULT_TTL`).

    Raises:
        ValueError: Not a number from 0 to 300.
    """
    env = os.environ if environ is None else environ
    value = env.get(TTL_ENV, "").strip()
    if not value:
        return DEFAULT_TTL
    try:
        ttl = float(value)
    except ValueError:
        ttl = -1.0
    if not 0 <= ttl <= 300:
        raise ValueError(f"{TTL_ENV}={value!r}: seconds from 0 to 300")
    return ttl


def refusal_message(reason: str) -> str:
    """What a refused client reads in the 401's ``status.info`` (or the gRPC details)."""
    if reason == MISSING:
        return (
            f"This endpoint requires an API key: send the header '{HEADER}: {SCHEME} <key>' "
            f"(gRPC: metadata 'authorization'). An operator creates a key with: {CREATE_COMMAND}"
        )
    if reason == INVALID:
        return (
            f"The API key in the {HEADER} header is not valid (unknown or revoked): ask an "
            f"operator for a key ({CREATE_COMMAND}; `list` shows which are revoked)"
        )
    return (
        "The endpoint cannot read its API keys now (the catalog database does not answer, or "
        "CLEARSIGHT_CATALOG_URL is not set on the server): try again later"
    )


class ApiKeyStore:
    """The ``api_keys`` table of the catalog database."""

    def __init__(self, url: str | None = None) -> None:
        """Open (and migrate) the catalog.

        Args:
            url: The catalog URL; default :func:`clearsight.catalog.resolve_catalog_url`.

        Raises:
            CatalogError: The URL is unusable or the database cannot be migrated.
        """
        from clearsight.catalog import resolve_catalog_url
        from clearsight.prediction_log import connect

        self.url = resolve_catalog_url(url)
        self.engine = connect(self.url)

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def _active(self, connection, name: str):  # noqa: ANN001, ANN202 - SQLAlchemy internals
        return connection.execute(
            select(API_KEYS.c.id).where(API_KEYS.c.name == name, API_KEYS.c.revoked_at.is_(None))
        ).first()

    def register(self, name: str, key: str, created_by: str = "") -> None:
        """Store the hash of ``key`` as the active key ``name``.

        Raises:
            ApiKeyError: A bad name, an active key of that name, or a key stored before.
        """
        if not NAME_PATTERN.match(name):
            raise ApiKeyError("A key's name is 1-64 letters, digits, '_', '.', '@' or '-'.")
        digest = key_digest(key)
        try:
            with self.engine.begin() as connection:
                if self._active(connection, name) is not None:
                    raise ApiKeyError(
                        f"An active key is already named {name!r}: revoke it first "
                        f"(python -m clearsight.api_keys revoke {name}) or choose another name."
                    )
                if connection.execute(
                    select(API_KEYS.c.id).where(API_KEYS.c.key_sha256 == digest)
                ).first():
                    raise ApiKeyError("This key was registered before: generate a new one.")
                connection.execute(
                    insert(API_KEYS).values(
                        name=name,
                        key_sha256=digest,
                        created_at=datetime.now(UTC),
                        created_by=created_by,
                    )
                )
        except SQLAlchemyError as error:
            raise CatalogError(f"Cannot store the API key {name!r}: {error}") from error

    def create(self, name: str, created_by: str = "") -> str:
        """Generate, store (hashed) and return a new key named ``name``.

        Raises:
            ApiKeyError: A bad name, or an active key of that name.
        """
        key = generate_key()
        self.register(name, key, created_by)
        return key

    def revoke(self, name: str) -> None:
        """Revoke the active key ``name`` (servers refuse it within their cache's TTL).

        Raises:
            ApiKeyError: No active key has that name.
        """
        with self.engine.begin() as connection:
            row = self._active(connection, name)
            if row is None:
                raise ApiKeyError(
                    f"No active key is named {name!r} (python -m clearsight.api_keys list)."
                )
            connection.execute(
                update(API_KEYS).where(API_KEYS.c.id == row.id).values(revoked_at=datetime.now(UTC))
            )

    def list_keys(self) -> list[ApiKeyInfo]:
        """Every key, oldest first, revoked ones included."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    API_KEYS.c.name,
                    API_KEYS.c.created_at,
                    API_KEYS.c.created_by,
                    API_KEYS.c.last_used_at,
                    API_KEYS.c.revoked_at,
                ).order_by(API_KEYS.c.id)
            )
            return [
                ApiKeyInfo(
                    name=row.name,
                    created_at=_utc(row.created_at),
                    created_by=row.created_by,
                    last_used_at=_utc(row.last_used_at),
                    revoked_at=_utc(row.revoked_at),
                )
                for row in rows
            ]

    def state(self, key: str) -> str | None:
        """``active``, ``revoked`` or None (unknown) for ``key``."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(API_KEYS.c.revoked_at).where(API_KEYS.c.key_sha256 == key_digest(key))
            ).first()
        if row is None:
            return None
        return "active" if row.revoked_at is None else "revoked"

    def active_name(self, digest: str) -> str | None:
        """The name of the active key whose SHA-256 is ``digest``, else None."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(API_KEYS.c.name).where(
                    API_KEYS.c.key_sha256 == digest, API_KEYS.c.revoked_at.is_(None)
                )
            ).first()
        return row.name if row else None

    def touch(self, digest: str, at: datetime) -> None:
        """Record that the key was used at ``at``."""
        with self.engine.begin() as connection:
            connection.execute(
                update(API_KEYS).where(API_KEYS.c.key_sha256 == digest).values(last_used_at=at)
            )


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every time in the catalog is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _Answer:
    name: str | None
    checked_at: float


class ApiKeyVerifier:
    """Judge request keys against the store, with a short per-process cache.

    An answer (a key's name, or "unknown or revoked") is reused for ``ttl``
    seconds, then read again: a revoked key is refused at most ``ttl``
    seconds after ``revoke``, a new key accepted at most ``ttl`` seconds
    after a refused attempt with it. A key's last use is written by a
    background thread when its answer is read again, never on the request's
    path. While the store cannot be read, a key accepted within
    :data:`STALE_GRACE` seconds stays accepted and others get ``UNAVAILABLE``.
    Thread-safe; the store is opened on first use (after gunicorn's fork).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
        store: ApiKeyStore | None = None,
    ) -> None:
        self._url = url
        self.ttl = ttl
        self._clock = clock
        self._store = store
        self._store_pid = os.getpid() if store is not None else None
        self._answers: dict[str, _Answer] = {}
        self._lock = threading.Lock()
        self._failing = False

    def _opened(self) -> ApiKeyStore:
        with self._lock:
            if self._store is None or self._store_pid != os.getpid():
                self._store = ApiKeyStore(self._url)
                self._store_pid = os.getpid()
            return self._store

    def verify(self, key: str | None) -> Verdict:
        """Judge a request's key (None: none was sent)."""
        if not key:
            return Verdict(reason=MISSING)
        digest = key_digest(key)
        now = self._clock()
        known = self._answers.get(digest)
        if known is not None and now - known.checked_at < self.ttl:
            return Verdict(known.name) if known.name else Verdict(reason=INVALID)
        try:
            store = self._opened()
            name = store.active_name(digest)
        except (CatalogError, SQLAlchemyError) as error:
            if not self._failing:
                logger.error("API keys cannot be read: %s", error)
                self._failing = True
            if known is not None and known.name and now - known.checked_at < STALE_GRACE:
                return Verdict(known.name)
            return Verdict(reason=UNAVAILABLE)
        if self._failing:
            logger.info("API keys can be read again.")
            self._failing = False
        if len(self._answers) >= MAX_CACHED:
            self._answers.clear()  # unknown keys sent in bulk must not grow memory
        self._answers[digest] = _Answer(name, now)
        if name is None:
            return Verdict(reason=INVALID)
        threading.Thread(
            target=self._touch, args=(store, digest), name="api-key-last-used", daemon=True
        ).start()
        return Verdict(name)

    @staticmethod
    def _touch(store: ApiKeyStore, digest: str) -> None:
        try:
            store.touch(digest, datetime.now(UTC))
        except Exception as error:  # noqa: BLE001 - a last-used time never fails a request
            logger.debug("Could not record an API key's last use: %s", error)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _store(url: str | None) -> ApiKeyStore:
    try:
        return ApiKeyStore(url)
    except CatalogError as error:
        raise click.ClickException(str(error)) from None


url_option = click.option(
    "--url",
    default=None,
    help="Catalog database URL. [default: CLEARSIGHT_CATALOG_URL, else .state/catalog.db]",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Manage the prediction endpoint's API keys (stored hashed in the catalog database).

    Clients send the key as the header 'Authorization: Bearer <key>'.
    """


@cli.command()
@click.argument("name")
@url_option
def create(name: str, url: str | None) -> None:
    """Create a key and print it (only now: it is stored hashed)."""
    store = _store(url)
    try:
        key = store.create(name, created_by=os.environ.get("USER", ""))
    except (ApiKeyError, CatalogError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()
    click.echo(key)
    click.echo(
        f"Key {name!r} created. It is shown only this once; clients send it as\n"
        f"  {HEADER}: {SCHEME} <key>\n"
        "(the platform's own clients read CLEARSIGHT_ENDPOINT_API_KEY).",
        err=True,
    )


@cli.command(name="list")
@url_option
def list_keys(url: str | None) -> None:
    """List the keys: name, created, last used, revoked (never the key)."""
    store = _store(url)
    try:
        keys = store.list_keys()
    finally:
        store.close()
    rows = [("NAME", "CREATED", "BY", "LAST USED", "REVOKED")] + [
        (
            k.name,
            _when(k.created_at),
            k.created_by or "-",
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
        for k in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@cli.command()
@click.argument("name")
@url_option
def revoke(name: str, url: str | None) -> None:
    """Revoke the active key NAME; servers refuse it within seconds."""
    store = _store(url)
    try:
        store.revoke(name)
    except ApiKeyError as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()
    ttl = DEFAULT_TTL
    with contextlib.suppress(ValueError):
        ttl = ttl_from_env()
    click.echo(f"Revoked {name}; running servers refuse it within {ttl:g} s.")


if __name__ == "__main__":
    sys.exit(cli())
