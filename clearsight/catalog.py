"""The metadata catalog: one row per image, one row per ingestion, the image history.

The catalog is addressed by a SQLAlchemy database URL: a SQLite file in the
project's state folder by default, PostgreSQL for a team that shares one
(``postgresql+psycopg://user:pass@host/db``). Each ingestion is written in a
single transaction, so a failure leaves the catalog as it was.

The schema is managed by Alembic migrations (:mod:`clearsight.migrations`);
opening a :class:`Catalog` migrates the database to the newest revision, whose
schema the ``Table`` objects below describe. An image that an ingestion of its
source folder no longer finds is marked removed, never deleted, and every
change (``added``, ``relabelled``, ``resplit``, ``removed``, ``restored``) is a
row of ``image_events``.

:func:`resolve_catalog_url` is the one place that decides which URL applies:
the configured one, else ``CLEARSIGHT_CATALOG_URL``, else
``sqlite:///<repository>/.state/catalog.db``, an absolute path derived from
where this package lives, never from the current directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from clearsight.dataset import DatasetManifest, IngestionReport
from clearsight.errors import CatalogError
from clearsight.migrations import upgrade_database

if TYPE_CHECKING:
    from clearsight.dataset import KnownImage

CATALOG_URL_ENV = "CLEARSIGHT_CATALOG_URL"
# The repository this package is installed from (``pip install -e .``).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_ROOT / ".state"

metadata = MetaData()

IMAGES = Table(
    "images",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("label", String(255), nullable=False, index=True),
    Column("split", String(16), nullable=False, index=True),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("format", String(16), nullable=False),
    Column("num_bytes", Integer, nullable=False),
    Column("source_path", String(4096), nullable=False),
    Column("uri", String(4096), nullable=True),
    Column("provenance", String(32), nullable=False, default="ingest"),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("last_ingestion_id", Integer, nullable=True),
    # Revision 0002_identity_and_history:
    Column("pixel_sha256", String(64), nullable=True, index=True),
    Column("split_key", String(64), nullable=True),
    Column("removed_at", DateTime(timezone=True), nullable=True),
    Column("removed_ingestion_id", Integer, nullable=True),
)

INGESTIONS = Table(
    "ingestions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("source", String(4096), nullable=False),
    Column("layout", String(32), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("scanned", Integer, nullable=False),
    Column("kept", Integer, nullable=False),
    Column("new_images", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
    Column("conflicts", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),
    Column("uploaded", Integer, nullable=False),
    Column("report", JSON, nullable=False),
)

ADDED = "added"
RELABELLED = "relabelled"
RESPLIT = "resplit"
REMOVED = "removed"
RESTORED = "restored"
REPLACED = "replaced"
#: The kinds of ``image_events`` rows.
IMAGE_EVENT_KINDS = (ADDED, RELABELLED, RESPLIT, REMOVED, RESTORED, REPLACED)

IMAGE_EVENTS = Table(
    "image_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ingestion_id", Integer, ForeignKey("ingestions.id"), nullable=False, index=True),
    Column("sha256", String(64), nullable=False, index=True),
    Column("event", String(16), nullable=False),
    Column("label", String(255), nullable=False),
    Column("previous_label", String(255), nullable=True),
    Column("split", String(16), nullable=False),
    Column("previous_split", String(16), nullable=True),
    Column("source_path", String(4096), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)


def sqlite_url(path: str | Path) -> str:
    """Return the SQLAlchemy URL of a SQLite file at an absolute path."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def default_catalog_url() -> str:
    """The SQLite catalog in the project's state folder, as an absolute URL.

    Raises:
        CatalogError: When this package does not run from the repository (a
            non-editable install), where no state folder can be derived.
    """
    if not (STATE_DIR.parent / "pyproject.toml").is_file():
        raise CatalogError(
            f"No catalog URL is configured and clearsight is not running from its "
            f"repository ({STATE_DIR.parent} has no pyproject.toml), so there is no "
            f"project state folder to default to. Set {CATALOG_URL_ENV} or the "
            "catalog_url parameter (sqlite:////absolute/path/catalog.db or a "
            "postgresql+psycopg:// URL)."
        )
    return sqlite_url(STATE_DIR / "catalog.db")


def resolve_catalog_url(
    configured: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """Decide the catalog URL: configured, else the environment, else the default.

    Args:
        configured: A URL from a config file or a step parameter (may be empty).
        environ: Where to read ``CLEARSIGHT_CATALOG_URL`` (default: ``os.environ``).
            URLs holding a password belong there, not in a config file.

    Returns:
        An absolute URL (checked by :func:`check_url`).
    """
    env = os.environ if environ is None else environ
    return check_url(configured or env.get(CATALOG_URL_ENV) or default_catalog_url())


def display_url(url: str) -> str:
    """The URL with its password masked, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def check_url(url: str) -> str:
    """Reject catalog URLs that would depend on the current directory."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or not Path(database).is_absolute():
            raise CatalogError(
                f"The catalog URL {url!r} is not an absolute SQLite path. Steps may "
                "run in another process and folder (Airflow), so use "
                "sqlite:////absolute/path/catalog.db or a PostgreSQL URL."
            )
    return url


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; every time in the catalog is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def read_known_images(url: str) -> list[KnownImage]:
    """What the catalog at ``url`` knows of every image, without creating a catalog.

    Ingestion asks this before it reads the folder; a run that then fails
    (a missing folder) must leave no new catalog behind.

    Args:
        url: An absolute catalog URL (see :func:`check_url`).

    Returns:
        :meth:`Catalog.known_images`, or ``[]`` when the SQLite file does not exist yet.

    Raises:
        CatalogError: When an existing catalog cannot be opened or migrated.
    """
    parsed = make_url(check_url(url))
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        return []
    catalog = Catalog(url)
    try:
        return catalog.known_images()
    finally:
        catalog.close()


class Catalog:
    """Read and write the metadata catalog."""

    def __init__(self, url: str) -> None:
        """Open the catalog at ``url`` and migrate its schema to the newest revision.

        Args:
            url: An absolute SQLAlchemy URL (see :func:`check_url`). A SQLite
                file and its folder are created when missing.

        Raises:
            CatalogError: When the URL depends on the working folder, the
                folder cannot be created, or the database cannot be reached or
                migrated (:func:`clearsight.migrations.upgrade_database`).
        """
        self.url = check_url(url)
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise CatalogError(
                    f"Cannot create the catalog's folder for {parsed.database}: {error}"
                ) from error
        try:
            upgrade_database(url)
            self.engine: Engine = create_engine(url, future=True)
        except SQLAlchemyError as error:
            raise CatalogError(
                f"Cannot open the catalog at {parsed.render_as_string(hide_password=True)}: "
                f"{error.__class__.__name__}: {error}. Check the URL and that the "
                "database server is running."
            ) from error

    def record_ingestion(self, manifest: DatasetManifest, report: IngestionReport) -> int:
        """Upsert the manifest's images, add an ingestion row and the image events, atomically.

        For each record: a new hash is inserted (event ``added``); a known one
        is updated, with event ``relabelled`` when its label changed,
        ``resplit`` when its split changed and ``restored`` when it had been
        removed (which is cleared). Then, unless ``report.dry_run``, the
        images the scan found gone (``report.removed``: event ``removed``;
        ``report.replaced``, the same pixels now in other bytes: event
        ``replaced``) are marked removed (``removed_at``,
        ``removed_ingestion_id``). A dry run inserts new images only and
        changes no known one. Rows are never deleted. ``pixel_sha256`` and
        ``split_key`` are read from the records when they have them;
        ``split_key`` defaults to the byte hash, which is what unsplit
        folders derive the split from.

        Args:
            manifest: The dataset to record (stored, or a dry run's candidate).
            report: Its ingestion report; ``source`` is the folder scanned.

        Returns:
            The id of the new ingestion row.

        Raises:
            CatalogError: When the write fails; nothing of it is kept.
        """
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as connection:
                known = {
                    row.sha256: row
                    for row in connection.execute(
                        select(
                            IMAGES.c.sha256,
                            IMAGES.c.label,
                            IMAGES.c.split,
                            IMAGES.c.source_path,
                            IMAGES.c.provenance,
                            IMAGES.c.removed_at,
                        )
                    )
                }
                new_rows: list[dict[str, Any]] = []
                seen_rows: list[dict[str, Any]] = []
                events: list[dict[str, Any]] = []
                for record in manifest.records:
                    row = {
                        "sha256": record.sha256,
                        "label": record.label,
                        "split": record.split,
                        "width": record.width,
                        "height": record.height,
                        "mode": record.mode,
                        "format": record.format,
                        "num_bytes": record.num_bytes,
                        "source_path": record.source_path,
                        "provenance": record.provenance,
                        "last_seen": now,
                        # getattr: records of an ImageRecord without these fields.
                        "pixel_sha256": getattr(record, "pixel_sha256", None),
                        "split_key": getattr(record, "split_key", None) or record.sha256,
                    }
                    if manifest.stored:
                        row["uri"] = record.uri
                    event = {
                        "sha256": record.sha256,
                        "label": record.label,
                        "previous_label": None,
                        "split": record.split,
                        "previous_split": None,
                        "source_path": record.source_path,
                        "at": now,
                    }
                    old = known.get(record.sha256)
                    if old is None:
                        new_rows.append({**row, "first_seen": now})
                        events.append({**event, "event": ADDED})
                        continue
                    if report.dry_run:  # a dry run changes no known image
                        continue
                    if old.removed_at is not None:
                        row.update(removed_at=None, removed_ingestion_id=None)
                        events.append({**event, "event": RESTORED})
                    if old.label != record.label:
                        events.append({**event, "event": RELABELLED, "previous_label": old.label})
                    if old.split != record.split:
                        events.append({**event, "event": RESPLIT, "previous_split": old.split})
                    seen_rows.append(row)
                removed: list[tuple[Any, str]] = []
                if not report.dry_run:
                    # The scan decided what vanished: it saw every file, kept or not.
                    for gone, kind in [(v, REMOVED) for v in report.removed] + [
                        (v, REPLACED) for v in report.replaced
                    ]:
                        old = known.get(gone.sha256)
                        if old is not None and old.removed_at is None:
                            removed.append((old, kind))
                ingestion_id = connection.execute(
                    insert(INGESTIONS).values(
                        started_at=report.started_at,
                        finished_at=now,
                        source=report.source,
                        layout=report.layout,
                        fingerprint=report.fingerprint,
                        dry_run=report.dry_run,
                        scanned=report.scanned,
                        kept=report.kept,
                        new_images=len(new_rows),
                        duplicates=report.duplicates,
                        conflicts=report.conflicts,
                        skipped=len(report.skipped),
                        uploaded=report.uploaded,
                        report=json.loads(report.model_dump_json()),
                    )
                ).inserted_primary_key[0]
                for row in new_rows:
                    row["last_ingestion_id"] = ingestion_id
                for row in seen_rows:
                    row["last_ingestion_id"] = ingestion_id
                if new_rows:
                    connection.execute(insert(IMAGES), new_rows)
                for row in seen_rows:
                    sha = row.pop("sha256")
                    if row["pixel_sha256"] is None:  # an older manifest: keep what is known
                        del row["pixel_sha256"]
                    connection.execute(update(IMAGES).where(IMAGES.c.sha256 == sha).values(**row))
                if removed:
                    connection.execute(
                        update(IMAGES)
                        .where(IMAGES.c.sha256 == bindparam("old_sha256"))
                        .values(removed_at=now, removed_ingestion_id=ingestion_id),
                        [{"old_sha256": old.sha256} for old, _ in removed],
                    )
                events.extend(
                    {
                        "sha256": old.sha256,
                        "event": kind,
                        "label": old.label,
                        "previous_label": None,
                        "split": old.split,
                        "previous_split": None,
                        "source_path": old.source_path,
                        "at": now,
                    }
                    for old, kind in removed
                )
                if events:
                    connection.execute(
                        insert(IMAGE_EVENTS),
                        [{**event, "ingestion_id": ingestion_id} for event in events],
                    )
        except SQLAlchemyError as error:
            raise CatalogError(
                f"Writing ingestion to the catalog failed and was rolled back: {error}"
            ) from error
        return int(ingestion_id)

    def image_count(self, include_removed: bool = False) -> int:
        """Return the number of catalogued images.

        Args:
            include_removed: Also count images marked removed (every image ever
                catalogued).

        Returns:
            The number of ``images`` rows (without removed ones by default).
        """
        query = select(func.count()).select_from(IMAGES)
        if not include_removed:
            query = query.where(IMAGES.c.removed_at.is_(None))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def images(self, include_removed: bool = True) -> list[dict[str, Any]]:
        """Return the image rows, ordered by hash.

        Args:
            include_removed: Also return rows marked removed (``removed_at`` set).

        Returns:
            One dict per row, keyed by column name.
        """
        query = select(IMAGES).order_by(IMAGES.c.sha256)
        if not include_removed:
            query = query.where(IMAGES.c.removed_at.is_(None))
        with self.engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(query)]

    def known_images(self) -> list[KnownImage]:
        """Return what the catalog knows of every image, removed ones included, by hash.

        Returns:
            One :class:`clearsight.dataset.KnownImage` per row; ``split_key``
            falls back to the byte hash for rows written without one.
        """
        from clearsight.dataset import KnownImage

        query = select(
            IMAGES.c.sha256,
            IMAGES.c.pixel_sha256,
            IMAGES.c.label,
            IMAGES.c.split,
            IMAGES.c.split_key,
            IMAGES.c.source_path,
            IMAGES.c.provenance,
            IMAGES.c.removed_at,
        ).order_by(IMAGES.c.sha256)
        with self.engine.connect() as connection:
            return [
                KnownImage(
                    sha256=row.sha256,
                    pixel_sha256=row.pixel_sha256,
                    label=row.label,
                    split=row.split,
                    split_key=row.split_key or row.sha256,
                    source_path=row.source_path,
                    provenance=row.provenance,
                    removed=row.removed_at is not None,
                )
                for row in connection.execute(query)
            ]

    def history(self, sha256: str | None = None) -> list[dict[str, Any]]:
        """Return the image events, oldest first.

        Args:
            sha256: Only the events of this image (default: every image).

        Returns:
            One dict per ``image_events`` row (``id``, ``ingestion_id``,
            ``sha256``, ``event``, ``label``, ``previous_label``, ``split``,
            ``previous_split``, ``source_path``, ``at`` as an aware UTC datetime).
        """
        query = select(IMAGE_EVENTS).order_by(IMAGE_EVENTS.c.id)
        if sha256 is not None:
            query = query.where(IMAGE_EVENTS.c.sha256 == sha256)
        with self.engine.connect() as connection:
            rows = [dict(r._mapping) for r in connection.execute(query)]
        for row in rows:
            row["at"] = _utc(row["at"])
        return rows

    def provenance_counts(self) -> dict[str, int]:
        """Return the number of catalogued images per provenance (``ingest``, ``review``)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(IMAGES.c.provenance, func.count()).group_by(IMAGES.c.provenance)
            )
            return {str(provenance): int(count) for provenance, count in rows}

    def ingestions(self) -> list[dict[str, Any]]:
        """Return every ingestion row, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(INGESTIONS).order_by(INGESTIONS.c.id))
            return [dict(r._mapping) for r in rows]

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()
