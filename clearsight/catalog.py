"""The metadata catalog: one row per image, one row per ingestion.

The catalog is addressed by a SQLAlchemy database URL: a SQLite file in the
project's state folder by default, PostgreSQL for a team that shares one
(``postgresql+psycopg://user:pass@host/db``). Each ingestion is written in a
single transaction, so a failure leaves the catalog as it was.

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
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
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


class Catalog:
    """Read and write the metadata catalog."""

    def __init__(self, url: str) -> None:
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
            self.engine: Engine = create_engine(url, future=True)
            metadata.create_all(self.engine)
        except SQLAlchemyError as error:
            raise CatalogError(
                f"Cannot open the catalog at {parsed.render_as_string(hide_password=True)}: "
                f"{error.__class__.__name__}: {error}. Check the URL and that the "
                "database server is running."
            ) from error

    def record_ingestion(self, manifest: DatasetManifest, report: IngestionReport) -> int:
        """Upsert the manifest's images and add an ingestion row, atomically.

        Returns:
            The id of the new ingestion row.
        """
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as connection:
                known = set(connection.execute(select(IMAGES.c.sha256)).scalars())
                new_rows: list[dict[str, Any]] = []
                seen_rows: list[dict[str, Any]] = []
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
                    }
                    if manifest.stored:
                        row["uri"] = record.uri
                    if record.sha256 in known:
                        seen_rows.append(row)
                    else:
                        new_rows.append({**row, "first_seen": now})
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
                    connection.execute(update(IMAGES).where(IMAGES.c.sha256 == sha).values(**row))
        except SQLAlchemyError as error:
            raise CatalogError(
                f"Writing ingestion to the catalog failed and was rolled back: {error}"
            ) from error
        return int(ingestion_id)

    def image_count(self) -> int:
        """Return the number of distinct images ever catalogued."""
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(IMAGES)).scalar_one())

    def images(self) -> list[dict[str, Any]]:
        """Return every image row, ordered by hash."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(IMAGES).order_by(IMAGES.c.sha256))
            return [dict(r._mapping) for r in rows]

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
