"""Schema migrations of the catalog database and the image history (SQLite).

A catalog created before migrations existed is built here with the five tables
written out as ``create_all`` made them, then opened with today's code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    inspect,
    text,
)

from clearsight import api_keys as api_keys_module
from clearsight import catalog as catalog_module
from clearsight import migrations
from clearsight import prediction_log as prediction_log_module
from clearsight import review as review_module
from clearsight.catalog import Catalog, sqlite_url
from clearsight.dataset import build_manifest
from clearsight.errors import CatalogError
from clearsight.review import ReviewStore
from tests.conftest import ROOT
from tests.unit.conftest import image_bytes

HEAD = "0006_audit_log_target"
API_KEYS = "0005_api_keys"
MONITORING = "0004_monitoring_features"
IDENTITY = "0002_identity_and_history"
PREDICTION_LOG = "0003_prediction_log"
BASELINE = "0001_baseline"
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

# The schema before migrations, as clearsight/catalog.py and review.py made it.
OLD = MetaData()
OLD_IMAGES = Table(
    "images",
    OLD,
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
OLD_INGESTIONS = Table(
    "ingestions",
    OLD,
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
OLD_PREDICTIONS = Table(
    "review_predictions",
    OLD,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False, index=True),
    Column("uri", String(4096), nullable=False),
    Column("filename", String(1024), nullable=False, default=""),
    Column("format", String(16), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("num_bytes", Integer, nullable=False),
    Column("label", String(255), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("uncertain", Boolean, nullable=False),
    Column("flagged", Boolean, nullable=False, default=False),
    Column("probabilities", JSON, nullable=False),
    Column("model_name", String(255), nullable=False, default=""),
    Column("model_version", String(64), nullable=False, default=""),
    Column("registered_version", String(64), nullable=False, default=""),
    Column("mlflow_run_id", String(64), nullable=False, default=""),
    Column("requested_by", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False, default="pending", index=True),
)
Table(
    "reviews",
    OLD,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prediction_id", Integer, ForeignKey("review_predictions.id"), nullable=False),
    Column("sha256", String(64), nullable=False, index=True),
    Column("verdict", String(16), nullable=False),
    Column("label", String(255), nullable=True),
    Column("predicted_label", String(255), nullable=False),
    Column("reviewer", String(255), nullable=False),
    Column("reviewed_at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=False, default=""),
)
Table(
    "audit_log",
    OLD,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("role", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=False, default=""),
    Column("outcome", String(16), nullable=False),
    Column("details", JSON, nullable=False),
)
CATALOG_TABLES = ("images", "ingestions")
ALL_TABLES = {
    "images",
    "ingestions",
    "image_events",
    "review_predictions",
    "reviews",
    "audit_log",
    "prediction_log",
    "ground_truths",
    "api_keys",
    "alembic_version",
}


def make_pre_migration_catalog(url: str, tables=None) -> list[dict]:
    """Create the old tables (all, or the named ones) and fill them; return the image rows."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    try:
        OLD.create_all(engine, tables=[OLD.tables[n] for n in tables] if tables else None)
        images = [
            {
                "sha256": f"{i:064x}",
                "label": "cat" if i % 2 else "dog",
                "split": ("train", "val", "test")[i % 3],
                "width": 24,
                "height": 24,
                "mode": "RGB",
                "format": "PNG",
                "num_bytes": 100 + i,
                "source_path": f"/data/old/{i}.png",
                "uri": f"/store/{i}.png",
                "provenance": "ingest",
                "first_seen": T0,
                "last_seen": T0,
                "last_ingestion_id": 1,
            }
            for i in range(1, 4)
        ]
        with engine.begin() as connection:
            connection.execute(
                OLD_INGESTIONS.insert(),
                {
                    "started_at": T0,
                    "finished_at": T0,
                    "source": "/data/old",
                    "layout": "unsplit",
                    "fingerprint": "f" * 64,
                    "dry_run": False,
                    "scanned": 3,
                    "kept": 3,
                    "new_images": 3,
                    "duplicates": 0,
                    "conflicts": 0,
                    "skipped": 0,
                    "uploaded": 3,
                    "report": {"source": "/data/old"},
                },
            )
            connection.execute(OLD_IMAGES.insert(), images)
            if not tables or "review_predictions" in tables:
                connection.execute(
                    OLD_PREDICTIONS.insert(),
                    {
                        "sha256": "a" * 64,
                        "uri": "/store/a.png",
                        "filename": "a.png",
                        "format": "PNG",
                        "width": 24,
                        "height": 24,
                        "mode": "RGB",
                        "num_bytes": 99,
                        "label": "cat",
                        "confidence": 0.4,
                        "threshold": 0.7,
                        "uncertain": True,
                        "flagged": False,
                        "probabilities": {"cat": 0.4, "dog": 0.6},
                        "model_name": "m",
                        "model_version": "1",
                        "registered_version": "1",
                        "mlflow_run_id": "r",
                        "requested_by": "ann",
                        "created_at": T0,
                        "status": "pending",
                    },
                )
        return images
    finally:
        engine.dispose()


def read(url: str, sql: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql)))
    finally:
        engine.dispose()


def tables_of(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def schema_differences(url: str) -> list:
    """What autogenerate would change to make the database match the live tables."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(
                context,
                [
                    catalog_module.metadata,
                    review_module.metadata,
                    prediction_log_module.metadata,
                    api_keys_module.metadata,
                ],
            )
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def fresh_migration_cache(monkeypatch):
    """Each test sees upgrade_database as a new process would."""
    monkeypatch.setattr(migrations, "_at_head", set())


@pytest.fixture()
def url(tmp_path) -> str:
    return sqlite_url(tmp_path / "state" / "catalog.db")


def test_a_pre_migration_catalog_is_upgraded_when_opened(url):
    old_rows = make_pre_migration_catalog(url)
    catalog = Catalog(url)
    try:
        rows = catalog.images()
        assert len(rows) == 3 and catalog.image_count() == 3
        for old, row in zip(old_rows, rows, strict=True):
            assert {k: row[k] for k in old if k not in ("first_seen", "last_seen")} == {
                k: v for k, v in old.items() if k not in ("first_seen", "last_seen")
            }
            assert row["split_key"] == row["sha256"]
            assert (row["pixel_sha256"], row["removed_at"], row["removed_ingestion_id"]) == (
                None,
                None,
                None,
            )
        (ingestion,) = catalog.ingestions()
        assert ingestion["source"] == "/data/old" and ingestion["report"] == {"source": "/data/old"}
        assert catalog.history() == []
        known = {k.sha256: k for k in catalog.known_images()}
        assert known[old_rows[0]["sha256"]].split_key == old_rows[0]["sha256"]
    finally:
        catalog.close()
    assert read(url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert read(url, "SELECT sha256, status FROM review_predictions") == [("a" * 64, "pending")]
    assert tables_of(url) == ALL_TABLES
    assert schema_differences(url) == []

    reviews = ReviewStore(url)
    try:
        assert reviews.pending_count() == 1
    finally:
        reviews.close()

    cli = subprocess.run(
        [sys.executable, "-m", "clearsight.migrations", "current", "--url", url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == HEAD


def test_opening_twice_is_a_no_op(url, monkeypatch):
    make_pre_migration_catalog(url)
    Catalog(url).close()
    before = read(url, "SELECT * FROM images ORDER BY sha256")
    assert migrations.upgrade_database(url) == HEAD  # cached: no connection at all
    monkeypatch.setattr(migrations, "_at_head", set())  # a new process
    Catalog(url).close()
    ReviewStore(url).close()
    assert read(url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert read(url, "SELECT * FROM images ORDER BY sha256") == before


def test_downgrade_to_the_baseline_and_upgrade_again(url, tmp_path):
    folder = write_folder(tmp_path / "data", {"a": 3, "b": 3})
    catalog = Catalog(url)
    catalog.record_ingestion(*build_manifest(folder, known=catalog.known_images()))
    catalog.close()
    assert migrations.downgrade_database(url, BASELINE) == BASELINE
    assert not {"image_events", "prediction_log", "ground_truths", "api_keys"} & tables_of(url)
    assert len(read(url, "SELECT * FROM images")) == 6
    assert migrations.current_revision(url) == BASELINE

    catalog = Catalog(url)
    try:
        assert migrations.current_revision(url) == HEAD
        assert all(row["split_key"] == row["sha256"] for row in catalog.images())
        assert catalog.image_count() == 6 and catalog.history() == []
    finally:
        catalog.close()
    assert schema_differences(url) == []


def test_a_fresh_database_gets_every_table(url):
    assert migrations.current_revision(url) is None  # a missing file is not created
    assert not Path(url.removeprefix("sqlite:///")).exists()
    catalog = Catalog(url)
    catalog.close()
    assert tables_of(url) == ALL_TABLES
    assert migrations.current_revision(url) == HEAD
    assert schema_differences(url) == []


def test_the_review_store_may_open_the_catalog_first(url):
    reviews = ReviewStore(url)
    reviews.close()
    assert tables_of(url) == ALL_TABLES
    catalog = Catalog(url)
    try:
        assert catalog.image_count() == 0
    finally:
        catalog.close()


def test_a_pre_migration_catalog_without_review_tables_gets_them(url):
    make_pre_migration_catalog(url, tables=CATALOG_TABLES)
    reviews = ReviewStore(url)
    try:
        assert reviews.pending_count() == 0
    finally:
        reviews.close()
    assert tables_of(url) == ALL_TABLES
    assert len(read(url, "SELECT * FROM images")) == 3
    assert schema_differences(url) == []


def test_a_catalog_from_a_newer_clearsight_is_refused(url):
    Catalog(url).close()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    engine.dispose()
    migrations._at_head.clear()
    with pytest.raises(CatalogError, match="does not know"):
        Catalog(url)


def test_a_failed_migration_leaves_the_database_as_it_was(url):
    make_pre_migration_catalog(url, tables=CATALOG_TABLES)
    engine = create_engine(url)
    with engine.begin() as connection:  # in the way of revision 0002
        connection.execute(text("CREATE TABLE image_events (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    before = {name: read(url, f"SELECT * FROM {name}") for name in tables_of(url)}
    with pytest.raises(CatalogError, match="Cannot migrate the catalog"):
        Catalog(url)
    assert tables_of(url) == set(before)  # no review tables, no alembic_version
    assert {name: read(url, f"SELECT * FROM {name}") for name in before} == before
    engine = create_engine(url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("images")}
    finally:
        engine.dispose()
    assert "split_key" not in columns


def test_cli_history_and_upgrade(url, capsys):
    assert migrations.main(["upgrade", "--url", url]) == 0
    assert capsys.readouterr().out.strip() == HEAD
    assert migrations.main(["history", "--url", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        BASELINE,
        IDENTITY,
        PREDICTION_LOG,
        MONITORING,
        API_KEYS,
        f"{HEAD} (head, current)",
    ]


def test_revision_0005_adds_the_api_keys_and_leaves_the_rest(url):
    from clearsight.api_keys import ApiKeyStore

    store = ApiKeyStore(url)  # opening the key store migrates the catalog too
    store.create("client")
    store.close()
    assert migrations.downgrade_database(url, MONITORING) == MONITORING
    assert tables_of(url) == ALL_TABLES - {"api_keys"}
    Catalog(url).close()
    assert migrations.current_revision(url) == HEAD
    assert read(url, "SELECT count(*) FROM api_keys") == [(0,)]  # dropped keys stay dropped
    assert schema_differences(url) == []


def audit_indexes(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {i["name"] for i in inspect(engine).get_indexes("audit_log")}
    finally:
        engine.dispose()


def test_revision_0006_indexes_the_audit_log_by_target_and_keeps_its_rows(url):
    reviews = ReviewStore(url)
    reviews.record_action(actor="ada", role="", action="sign-in", target="ada", outcome="failed")
    reviews.close()
    assert audit_indexes(url) == {"ix_audit_log_target_at"}
    assert migrations.downgrade_database(url, API_KEYS) == API_KEYS
    assert audit_indexes(url) == set()
    assert tables_of(url) == ALL_TABLES
    reviews = ReviewStore(url)  # migrates to head again
    try:
        assert [(e["actor"], e["outcome"]) for e in reviews.audit_log()] == [("ada", "failed")]
        assert len(reviews.sign_in_history("ada", T0, 10)) == 1
    finally:
        reviews.close()
    assert migrations.current_revision(url) == HEAD
    assert audit_indexes(url) == {"ix_audit_log_target_at"}
    assert schema_differences(url) == []


# The image history ------------------------------------------------------


def write_folder(root: Path, counts: dict[str, int], start: int = 0) -> Path:
    """``<label>/<n>.png`` files with distinct pixels; seeds continue across labels."""
    seed = start
    for label, count in counts.items():
        for _ in range(count):
            path = root / label / f"{seed}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image_bytes(seed))
            seed += 1
    return root


def events_of(catalog: Catalog, kind: str) -> list[dict]:
    return [e for e in catalog.history() if e["event"] == kind]


def test_a_renamed_label_folder_and_deleted_files(url, tmp_path):
    folder = write_folder(tmp_path / "data", {"grass": 15, "clover": 10})
    catalog = Catalog(url)
    try:
        manifest, report = build_manifest(folder)
        first = catalog.record_ingestion(manifest, report)
        assert len(events_of(catalog, "added")) == 25
        rows = {r["sha256"]: r for r in catalog.images()}
        for record in manifest.records:
            row = rows[record.sha256]
            assert row["split_key"] == (getattr(record, "split_key", None) or record.sha256)
            assert row["pixel_sha256"] == getattr(record, "pixel_sha256", None)

        (folder / "grass").rename(folder / "lawn_grass")
        deleted = sorted((folder / "clover").iterdir())[:2]
        for path in deleted:
            path.unlink()
        deleted_paths = {str(p) for p in deleted}
        renamed, renamed_report = build_manifest(folder, known=catalog.known_images())

        # A dry run records what it saw but marks nothing removed.
        dry = catalog.record_ingestion(renamed, renamed_report.model_copy(update={"dry_run": True}))
        assert catalog.image_count() == 25 and events_of(catalog, "removed") == []
        assert all(row["removed_at"] is None for row in catalog.images())

        second = catalog.record_ingestion(renamed, renamed_report)
        relabelled = events_of(catalog, "relabelled")
        assert len(relabelled) == 15
        assert {(e["previous_label"], e["label"]) for e in relabelled} == {("grass", "lawn_grass")}
        assert {e["ingestion_id"] for e in relabelled} == {second}  # a dry run changes nothing
        assert dry < second
        assert all(e["source_path"].startswith(str(folder / "lawn_grass")) for e in relabelled)

        removed = [r for r in catalog.images() if r["removed_at"] is not None]
        assert {r["source_path"] for r in removed} == deleted_paths
        assert {r["removed_ingestion_id"] for r in removed} == {second}
        removed_events = events_of(catalog, "removed")
        assert {(e["sha256"], e["ingestion_id"]) for e in removed_events} == {
            (r["sha256"], second) for r in removed
        }
        assert catalog.image_count() == 23
        assert catalog.image_count(include_removed=True) == 25
        assert len(catalog.images()) == 25 and len(catalog.images(include_removed=False)) == 23
        known = {k.sha256: k for k in catalog.known_images()}
        assert sum(k.removed for k in known.values()) == 2
        assert {k.label for k in known.values() if not k.removed} == {"clover", "lawn_grass"}
        history = catalog.history(removed[0]["sha256"])
        assert [e["event"] for e in history] == ["added", "removed"]
        assert [e["ingestion_id"] for e in history] == [first, second]
        assert history[0]["at"] <= history[1]["at"] and history[1]["at"].tzinfo is not None

        # Ingesting again changes nothing; putting a file back restores it.
        catalog.record_ingestion(*build_manifest(folder, known=catalog.known_images()))
        assert len(events_of(catalog, "removed")) == 2 and catalog.image_count() == 23
        deleted[0].write_bytes(image_bytes(15))  # clover's first seed
        fourth = catalog.record_ingestion(*build_manifest(folder, known=catalog.known_images()))
        (restored,) = events_of(catalog, "restored")
        assert (restored["ingestion_id"], restored["label"]) == (fourth, "clover")
        row = next(r for r in catalog.images() if r["sha256"] == restored["sha256"])
        assert (row["removed_at"], row["removed_ingestion_id"]) == (None, None)
        assert catalog.image_count() == 24
    finally:
        catalog.close()


def test_only_images_of_the_ingested_folder_are_removed(url, tmp_path):
    drift = write_folder(tmp_path / "reference-drift", {"a": 2, "b": 2}, start=100)
    reference = write_folder(tmp_path / "reference", {"a": 3, "b": 3})
    catalog = Catalog(url)
    try:
        catalog.record_ingestion(*build_manifest(drift, known=catalog.known_images()))
        # A sibling folder whose name starts like this one is not inside it.
        catalog.record_ingestion(*build_manifest(reference, known=catalog.known_images()))
        assert catalog.image_count() == 10 and events_of(catalog, "removed") == []
        (drift / "a" / "100.png").unlink()
        catalog.record_ingestion(*build_manifest(drift, known=catalog.known_images()))
        (removed,) = events_of(catalog, "removed")
        assert removed["source_path"] == str(drift / "a" / "100.png")
        assert catalog.image_count() == 9
    finally:
        catalog.close()


def test_a_file_moved_to_another_split_is_resplit(url, tmp_path):
    folder = tmp_path / "data"
    for split in ("train", "val", "test"):
        write_folder(
            folder / split, {"a": 2, "b": 2}, start={"train": 0, "val": 10, "test": 20}[split]
        )
    catalog = Catalog(url)
    try:
        catalog.record_ingestion(*build_manifest(folder, known=catalog.known_images()))
        moved = folder / "train" / "a" / "0.png"
        moved.rename(folder / "val" / "a" / "0.png")
        catalog.record_ingestion(*build_manifest(folder, known=catalog.known_images()))
        (event,) = events_of(catalog, "resplit")
        assert (event["previous_split"], event["split"], event["label"]) == ("train", "val", "a")
        assert events_of(catalog, "removed") == [] and catalog.image_count() == 12
    finally:
        catalog.close()
