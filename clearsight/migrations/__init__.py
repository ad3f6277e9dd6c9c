"""Schema migrations of the catalog database (Alembic), run when the catalog opens.

The catalog database holds the tables of :mod:`clearsight.catalog` (``images``,
``ingestions``, ``image_events``), :mod:`clearsight.review`
(``review_predictions``, ``reviews``, ``audit_log``),
:mod:`clearsight.prediction_log` (``prediction_log``, ``ground_truths``) and
:mod:`clearsight.api_keys` (``api_keys``). Their
schema is defined by the revisions in ``versions/``; the live ``Table`` objects
of these modules match the newest (head) revision. :class:`~clearsight.catalog.Catalog` and
:class:`~clearsight.review.ReviewStore` call :func:`upgrade_database` when they
open, so a catalog is always migrated before it is read or written.

A catalog created before migrations existed (tables made by ``create_all``, no
``alembic_version`` table) is adopted: the baseline tables it lacks are created
from revision ``0001_baseline``, the database is stamped at that revision, then
upgraded to head.

There is no ``alembic.ini``: :func:`alembic_config` builds the configuration in
code and ``env.py`` runs on the connection passed in
``config.attributes["connection"]``. From a shell::

    python -m clearsight.migrations current   # the catalog's revision
    python -m clearsight.migrations upgrade   # migrate it to head
    python -m clearsight.migrations history   # the revisions, oldest first

A schema change is a new file ``versions/000N_<name>.py`` (revision id
``000N_<name>``, ``down_revision`` the current head) plus the matching change
of the live ``Table``; ``alembic.command.revision(alembic_config(connection),
message, autogenerate=True, rev_id="000N_<name>")`` drafts it from the
difference (batch operations, for SQLite). The unit tests check that a
migrated database and the live tables agree.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from clearsight.errors import CatalogError

logger = logging.getLogger(__name__)

#: The folder holding ``env.py``, ``script.py.mako`` and ``versions/``.
MIGRATIONS_DIR = Path(__file__).resolve().parent
#: The revision that describes the schema as ``create_all`` made it before migrations.
BASELINE_REVISION = "0001_baseline"
#: Alembic's bookkeeping table: one row holding the database's revision.
VERSION_TABLE = "alembic_version"
# PostgreSQL advisory lock key ("clearsig" in ASCII, fits a bigint): two
# processes opening a fresh shared catalog at once migrate it one after the other.
_POSTGRES_LOCK_KEY = 0x636C656172736967
#: Seconds a migration waits for another process's migration of a SQLite catalog.
SQLITE_LOCK_TIMEOUT = 120.0

_lock = threading.Lock()
_at_head: set[str] = set()  # URLs migrated to head by this process


def alembic_config(connection: Connection | None = None) -> Config:
    """Build Alembic's configuration in code (no ``alembic.ini``).

    Args:
        connection: The open connection ``env.py`` runs the migrations on
            (``config.attributes["connection"]``); None for commands that do
            not touch a database (``history``, ``heads``).

    Returns:
        A configuration whose ``script_location`` is this package's folder.
    """
    config = Config()
    # ConfigParser interpolation: a literal "%" in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """Return the newest revision id, the one the live ``Table`` objects match."""
    head = _script().get_current_head()
    if head is None:  # pragma: no cover - the package always ships its revisions
        raise CatalogError(f"No migration revisions found in {MIGRATIONS_DIR / 'versions'}.")
    return head


def revision_history() -> list[tuple[str, str]]:
    """Return ``(revision id, description)`` of every revision, oldest first."""
    scripts = reversed(list(_script().walk_revisions()))
    return [(s.revision, " ".join(s.doc.split())) for s in scripts]


def _display(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL, None for other back ends."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def _engine(url: str) -> Engine:
    if _sqlite_file(url) is not None:
        return create_engine(url, future=True, connect_args={"timeout": SQLITE_LOCK_TIMEOUT})
    return create_engine(url, future=True)


def _lock_schema(connection: Connection) -> None:
    """Serialise migrations across processes for the rest of the connection's transaction.

    SQLite: ``BEGIN IMMEDIATE`` takes the write lock now, so the revision read
    next stays true and every DDL statement joins one transaction (Python's
    ``sqlite3`` only begins one before DML, so without it two processes creating
    a fresh catalog interleave their ``CREATE TABLE`` statements). PostgreSQL: a
    transaction-scoped advisory lock. Other back ends: nothing.
    """
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_LOCK_KEY})


def _known(revision: str | None) -> None:
    """Refuse a database revision that this version of clearsight does not ship.

    Raises:
        CatalogError: When the revision is unknown (a newer clearsight migrated it).
    """
    if revision is None:
        return
    try:
        _script().get_revision(revision)
    except (CommandError, RevisionError) as error:
        raise CatalogError(
            f"The catalog is at schema revision {revision!r}, which this version of "
            f"clearsight does not know (its newest is {head_revision()!r}): a newer "
            "clearsight migrated it. Update clearsight (git pull; make setup), or point "
            "CLEARSIGHT_CATALOG_URL at a catalog of this version."
        ) from error


def _adopt(connection: Connection, existing: set[str]) -> None:
    """Create the baseline tables a pre-migration catalog lacks, stamp it at the baseline."""
    context = MigrationContext.configure(connection)
    baseline = _script().get_revision(BASELINE_REVISION).module
    missing = [name for name in baseline.TABLES if name not in existing]
    with Operations.context(context):
        for name in missing:
            baseline.create_table(name)
    context.stamp(_script(), BASELINE_REVISION)
    logger.info(
        "Adopted a catalog created before migrations: stamped at %s%s.",
        BASELINE_REVISION,
        f" after creating {', '.join(missing)}" if missing else "",
    )


def _upgrade(connection: Connection, url: str) -> str:
    """Bring the database on ``connection`` to head, inside its open transaction."""
    head = head_revision()
    if MigrationContext.configure(connection).get_current_revision() == head:
        return head  # the usual case: no lock taken
    _lock_schema(connection)
    current = MigrationContext.configure(connection).get_current_revision()
    if current == head:  # another process migrated it while this one waited
        return head
    _known(current)
    if current is None:
        existing = set(inspect(connection).get_table_names())
        baseline_tables = _script().get_revision(BASELINE_REVISION).module.TABLES
        if existing.intersection(baseline_tables):
            _adopt(connection, existing)
    command.upgrade(alembic_config(connection), "head")
    logger.info("Catalog %s: schema upgraded from %s to %s.", _display(url), current, head)
    return head


def upgrade_database(url: str) -> str:
    """Migrate the catalog database at ``url`` to the newest schema revision.

    Everything happens on one connection in one transaction, so a failure
    leaves the database as it was (SQLite and PostgreSQL both roll back DDL).
    Processes that open the same outdated catalog at once migrate it one after
    the other (SQLite's write lock, waited for up to
    :data:`SQLITE_LOCK_TIMEOUT` seconds; a PostgreSQL advisory lock); a
    catalog already at head is only read. A catalog created before migrations
    is adopted first (see the module docstring). A URL found at head is
    remembered, so opening the catalog again in the same process costs nothing.

    Args:
        url: A SQLAlchemy database URL (``sqlite:////abs/path.db``,
            ``postgresql+psycopg://user:pass@host/db``). A SQLite file and its
            folder are created when missing.

    Returns:
        The head revision id, which the database is now at.

    Raises:
        CatalogError: When the database cannot be reached or migrated, or is at
            a revision this version of clearsight does not know.
    """
    with _lock:
        if url in _at_head:
            return head_revision()
        database = _sqlite_file(url)
        if database is not None:
            try:
                database.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise CatalogError(
                    f"Cannot create the catalog's folder for {database}: {error}"
                ) from error
        engine = _engine(url)
        try:
            with engine.begin() as connection:
                head = _upgrade(connection, url)
        except (SQLAlchemyError, CommandError) as error:
            raise CatalogError(
                f"Cannot migrate the catalog at {_display(url)} to schema revision "
                f"{head_revision()}: {error.__class__.__name__}: {error}. Check the URL "
                "and that the database server is running; `python -m "
                "clearsight.migrations current --url URL` shows the database's revision."
            ) from error
        finally:
            engine.dispose()
        _at_head.add(url)
        return head


def downgrade_database(url: str, revision: str) -> str | None:
    """Migrate the catalog at ``url`` down to ``revision`` (data of dropped columns is lost).

    Meant for rolling back a release and for tests; the next
    :func:`upgrade_database` (opening the catalog) migrates it up again.

    Args:
        url: A SQLAlchemy database URL.
        revision: The target revision id, or ``"base"`` for an empty schema.

    Returns:
        The database's revision afterwards (None at ``base``).

    Raises:
        CatalogError: When the database cannot be reached or the revision is unknown.
    """
    with _lock:
        _at_head.discard(url)
        engine = _engine(url)
        try:
            with engine.begin() as connection:
                _lock_schema(connection)
                _known(MigrationContext.configure(connection).get_current_revision())
                command.downgrade(alembic_config(connection), revision)
                return MigrationContext.configure(connection).get_current_revision()
        except (SQLAlchemyError, CommandError, RevisionError) as error:
            raise CatalogError(
                f"Cannot downgrade the catalog at {_display(url)} to {revision!r}: "
                f"{error.__class__.__name__}: {error}. `python -m clearsight.migrations "
                "history` lists the revisions."
            ) from error
        finally:
            engine.dispose()


def current_revision(url: str) -> str | None:
    """Return the catalog's schema revision without changing anything.

    Args:
        url: A SQLAlchemy database URL. A missing SQLite file is not created.

    Returns:
        The revision id, or None for a missing or empty database and for a
        catalog created before migrations (no ``alembic_version`` table).

    Raises:
        CatalogError: When the database cannot be reached.
    """
    database = _sqlite_file(url)
    if database is not None and not database.exists():
        return None
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except (SQLAlchemyError, CommandError) as error:
        raise CatalogError(
            f"Cannot read the schema revision of the catalog at {_display(url)}: "
            f"{error.__class__.__name__}: {error}. Check the URL and that the database "
            "server is running."
        ) from error
    finally:
        engine.dispose()


_EXAMPLES = """\
examples:
  python -m clearsight.migrations current
      the revision of the default catalog (CLEARSIGHT_CATALOG_URL, else
      .state/catalog.db in the repository)
  python -m clearsight.migrations upgrade --url postgresql+psycopg://user@host/clearsight
      migrate a shared catalog to head (opening the catalog does this too)
  python -m clearsight.migrations history
      every revision, oldest first, with the head marked
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clearsight.migrations",
        description="Show or migrate the schema revision of the clearsight catalog database. "
        "The catalog migrates itself when a pipeline or the review app opens it; use this "
        "to check a database or to migrate it ahead of a deployment.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    url_option = argparse.ArgumentParser(add_help=False)
    url_option.add_argument(
        "--url",
        help="SQLAlchemy URL of the catalog (default: CLEARSIGHT_CATALOG_URL, else "
        "sqlite:///<repository>/.state/catalog.db)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "upgrade", parents=[url_option], help="migrate the catalog to head; print the revision"
    )
    commands.add_parser(
        "current", parents=[url_option], help="print the catalog's revision (empty if none)"
    )
    commands.add_parser(
        "history",
        parents=[url_option],
        help="list the revisions, oldest first (with --url, mark the catalog's)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; see ``python -m clearsight.migrations --help``.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 when the catalog cannot be read or migrated.
    """
    args = _parser().parse_args(argv)
    from clearsight.catalog import resolve_catalog_url  # imports this module

    try:
        if args.command == "history":
            current = current_revision(resolve_catalog_url(args.url)) if args.url else None
            head = head_revision()
            for revision, description in revision_history():
                marks = [
                    mark
                    for mark, applies in (
                        ("head", revision == head),
                        ("current", revision == current),
                    )
                    if applies
                ]
                suffix = f" ({', '.join(marks)})" if marks else ""
                print(f"{revision}{suffix}: {description}")
            return 0
        url = resolve_catalog_url(args.url)
        if args.command == "upgrade":
            print(upgrade_database(url))
            return 0
        revision = current_revision(url)
        print(revision or "")
        head = head_revision()
        if revision is None:
            print(
                f"{_display(url)} has no schema revision (missing, empty, or created before "
                "migrations); `python -m clearsight.migrations upgrade` migrates it to "
                f"{head}.",
                file=sys.stderr,
            )
        elif revision != head:
            _known(revision)
            print(
                f"Behind head ({head}): `python -m clearsight.migrations upgrade` migrates it.",
                file=sys.stderr,
            )
        return 0
    except CatalogError as error:
        hint = "" if args.url else " (or pass --url URL)"
        print(f"error: {error}{hint}", file=sys.stderr)
        return 1
