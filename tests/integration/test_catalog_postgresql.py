"""The catalog on a real PostgreSQL server gives the same results as on SQLite.

It also migrates a catalog created before migrations existed, and records the
image history there.

A throw-away server is started on a free loopback port from Debian's
``postgresql`` binaries (``make postgresql`` installs them): ``initdb`` into a
temporary folder, then ``pg_ctl start``. PostgreSQL refuses to run as root, so
under root the server runs as the ``postgres`` user (or ``nobody``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from clearsight import migrations
from clearsight.catalog import Catalog, sqlite_url
from clearsight.dataset import build_manifest
from clearsight.review import ReviewStore
from clearsight.storage import ContentStore, LocalFileSystem
from tests.unit.conftest import image_bytes
from tests.unit.test_core_catalog_migrations import (
    make_pre_migration_catalog,
    schema_differences,
    write_folder,
)

pytestmark = pytest.mark.integration


def _postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL ``bin`` folder, else the one ``initdb`` is on PATH in."""
    folders = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for folder in reversed(folders):
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> str | None:
    """The user the server runs as: None (this one) unless this one is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    pytest.skip("running as root and neither a 'postgres' nor a 'nobody' user exists")


def _run(command: list[str], user: str | None, timeout: float = 60) -> None:
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh database on a throw-away PostgreSQL server on loopback, as a psycopg URL."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: "
            "run `make postgresql` (Debian's postgresql package)"
        )
    user = _server_user()
    # Not under pytest's tmp_path: the server's user must be able to reach the folder.
    root = Path(tempfile.mkdtemp(prefix="clearsight-pg-"))
    data = root / "data"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    _run(
        [
            str(bin_dir / "initdb"),
            "--pgdata",
            str(data),
            "--username",
            "clearsight",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        ],
        user,
    )
    started = False
    try:
        for _attempt in range(3):  # another process may take the free port first
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} "
                f"-c unix_socket_directories={root} -c fsync=off"
            )
            try:
                _run(
                    [
                        str(bin_dir / "pg_ctl"),
                        "--pgdata",
                        str(data),
                        "--log",
                        str(root / "server.log"),
                        "--options",
                        options,
                        "--wait",
                        "--timeout",
                        "30",
                        "start",
                    ],
                    user,
                )
            except RuntimeError:
                continue
            started = True
            break
        if not started:
            log = root / "server.log"
            pytest.fail(
                "The throw-away PostgreSQL server did not start:\n"
                + (log.read_text() if log.exists() else "(no log)")
            )
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=port, user="clearsight", dbname="postgres", autocommit=True
        ) as connection:
            connection.execute("CREATE DATABASE clearsight")
        yield f"postgresql+psycopg://clearsight@127.0.0.1:{port}/clearsight"
    finally:
        if started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _run(
                    [str(bin_dir / "pg_ctl"), "--pgdata", str(data), "--mode", "immediate", "stop"],
                    user,
                )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def folder(tmp_path) -> Path:
    root = tmp_path / "data"
    for i in range(12):
        path = root / ("cat" if i % 2 else "dog") / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(i))
    return root


def _exercise(url: str, folder: Path) -> dict:
    """Run the catalog's real operations and return what they read back."""
    catalog = Catalog(url)
    try:
        manifest, report = build_manifest(folder)
        first_id = catalog.record_ingestion(manifest, report)
        first_rows = {r["sha256"]: r for r in catalog.images()}

        # Re-ingest a grown folder: existing images are updated, one is new.
        (folder / "cat" / "late.png").write_bytes(image_bytes(500))
        grown, grown_report = build_manifest(folder)
        stored = grown.model_copy(
            update={
                "stored": True,
                "records": [
                    r.model_copy(update={"uri": f"store://{r.sha256}"}) for r in grown.records
                ],
            }
        )
        second_id = catalog.record_ingestion(stored, grown_report)
        rows = catalog.images()
        for row in rows:
            sha = row["sha256"]
            if sha in first_rows:  # an upsert keeps first_seen and moves last_seen
                assert _utc(row["first_seen"]) == _utc(first_rows[sha]["first_seen"])
                assert _utc(row["last_seen"]) > _utc(first_rows[sha]["last_seen"])
            assert row["last_ingestion_id"] == second_id
        ingestions = catalog.ingestions()
        timeless = [
            {k: v for k, v in row.items() if k not in ("first_seen", "last_seen")} for row in rows
        ]
        return {
            "ids": [first_id, second_id],
            "images": timeless,
            "count": catalog.image_count(),
            "provenance": catalog.provenance_counts(),
            "ingestions": [
                {k: v for k, v in i.items() if k not in ("started_at", "finished_at")}
                for i in ingestions
            ],
        }
    finally:
        catalog.close()


def _utc(value):
    """SQLite returns naive datetimes (stored as UTC), PostgreSQL aware ones."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_catalog_on_postgresql_matches_sqlite(postgres_url, tmp_path, folder):
    sqlite_folder = tmp_path / "copy"
    shutil.copytree(folder, sqlite_folder)
    on_postgres = _exercise(postgres_url, folder)
    on_sqlite = _exercise(sqlite_url(tmp_path / "catalog.db"), sqlite_folder)

    # Source paths differ (two folders); everything else is identical.
    for result, root in ((on_postgres, folder), (on_sqlite, sqlite_folder)):
        for row in result["images"]:
            row["source_path"] = str(Path(row["source_path"]).relative_to(root))
        for ingestion in result["ingestions"]:
            ingestion.pop("source")
            ingestion["report"].pop("source")
            ingestion["report"].pop("started_at")
            for skipped in ingestion["report"]["skipped"]:
                skipped["path"] = str(Path(skipped["path"]).relative_to(root))
    assert on_postgres == on_sqlite
    assert on_postgres["count"] == 13
    assert [i["new_images"] for i in on_postgres["ingestions"]] == [12, 1]
    assert all(row["uri"].startswith("store://") for row in on_postgres["images"])


def test_review_tables_on_postgresql(postgres_url, tmp_path):
    reviews = ReviewStore(postgres_url)
    try:
        content = ContentStore(str(tmp_path / "store"), LocalFileSystem())
        answer = {"label": "cat", "confidence": 0.4, "probabilities": {"cat": 0.4, "dog": 0.6}}
        first = reviews.keep_prediction(
            image_bytes(900), answer, store=content, requested_by="ann", threshold=0.7
        )
        again = reviews.keep_prediction(
            image_bytes(900), answer, store=content, requested_by="ann", threshold=0.7
        )
        assert again == first and reviews.pending_count() == 1
        reviews.review(first, reviewer="rita", label="dog")
        (image,) = reviews.reviewed_images()
        assert (image.label, image.verdict, image.reviewer) == ("dog", "corrected", "rita")
        assert image.reviewed_at.tzinfo is not None
        assert reviews.audit_log()[0]["action"] == "review:corrected"
    finally:
        reviews.close()


def _new_database(postgres_url: str, name: str) -> str:
    """Another empty database on the throw-away server, as a psycopg URL."""
    import psycopg

    parsed = make_url(postgres_url)
    with psycopg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, dbname="postgres", autocommit=True
    ) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return parsed.set(database=name).render_as_string(hide_password=False)


def test_a_pre_migration_catalog_on_postgresql_is_migrated(postgres_url, tmp_path):
    url = _new_database(postgres_url, "premigration")
    old_rows = make_pre_migration_catalog(url)
    catalog = Catalog(url)
    try:
        rows = catalog.images()
        assert [r["sha256"] for r in rows] == [r["sha256"] for r in old_rows]
        assert all(r["split_key"] == r["sha256"] and r["removed_at"] is None for r in rows)
        assert rows[0]["first_seen"] == old_rows[0]["first_seen"]
        assert len(catalog.ingestions()) == 1
        assert migrations.current_revision(url) == migrations.head_revision()
        assert schema_differences(url) == []

        # A renamed label folder and a deleted file, on the migrated schema.
        folder = write_folder(tmp_path / "data", {"grass": 3, "clover": 3})
        catalog.record_ingestion(*build_manifest(folder, known=catalog.known_images()))
        (folder / "grass").rename(folder / "lawn")
        (folder / "clover" / "3.png").unlink()
        second = catalog.record_ingestion(*build_manifest(folder, known=catalog.known_images()))
        events = catalog.history()
        relabelled = [e for e in events if e["event"] == "relabelled"]
        assert [(e["previous_label"], e["label"]) for e in relabelled] == [("grass", "lawn")] * 3
        (removed,) = [e for e in events if e["event"] == "removed"]
        assert removed["ingestion_id"] == second
        assert removed["source_path"] == str(folder / "clover" / "3.png")
        assert catalog.image_count() == 3 + 5
        assert catalog.image_count(include_removed=True) == 3 + 6
    finally:
        catalog.close()
    reviews = ReviewStore(url)
    try:
        assert reviews.pending_count() == 1  # the pre-migration queue entry
    finally:
        reviews.close()
