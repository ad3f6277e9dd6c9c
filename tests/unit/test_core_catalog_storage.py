from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from clearsight import catalog as catalog_module
from clearsight.catalog import Catalog, resolve_catalog_url, sqlite_url
from clearsight.dataset import build_manifest
from clearsight.errors import CatalogError
from clearsight.storage import ContentStore, LocalFileSystem
from tests.conftest import ROOT
from tests.unit.conftest import image_bytes


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "data"
    for i in range(8):
        path = root / ("u" if i < 4 else "v") / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(i))
    return root


def test_ingestion_writes_one_row_per_image_and_one_per_ingestion(tmp_path, folder):
    manifest, report = build_manifest(folder)
    catalog = Catalog(sqlite_url(tmp_path / "state" / "catalog.db"))
    first_id = catalog.record_ingestion(manifest, report)
    rows = {r["sha256"]: r for r in catalog.images()}
    assert set(rows) == {r.sha256 for r in manifest.records}
    record = manifest.records[0]
    row = rows[record.sha256]
    assert (row["label"], row["split"], row["width"], row["height"]) == (
        record.label,
        record.split,
        24,
        24,
    )
    assert (row["mode"], row["format"], row["num_bytes"]) == ("RGB", "PNG", record.num_bytes)
    assert row["source_path"] == record.source_path
    assert row["uri"] is None  # not stored: a candidate manifest
    assert row["first_seen"] == row["last_seen"]
    (ingestion,) = catalog.ingestions()
    assert ingestion["id"] == first_id
    assert (ingestion["kept"], ingestion["new_images"], ingestion["fingerprint"]) == (
        8,
        8,
        manifest.fingerprint,
    )

    second_id = catalog.record_ingestion(manifest, report)
    assert second_id == first_id + 1
    again = {r["sha256"]: r for r in catalog.images()}
    assert len(again) == 8
    assert again[record.sha256]["first_seen"] == row["first_seen"]
    assert again[record.sha256]["last_seen"] > row["last_seen"]
    assert [i["new_images"] for i in catalog.ingestions()] == [8, 0]


@pytest.mark.parametrize(
    "url", ["sqlite:///relative/catalog.db", "sqlite://", "sqlite:///:memory:"]
)
def test_catalog_urls_that_depend_on_the_working_folder_are_refused(url):
    with pytest.raises(CatalogError, match="absolute"):
        Catalog(url)


def test_catalog_url_is_configured_else_environment_else_the_project_state(tmp_path, monkeypatch):
    configured = sqlite_url(tmp_path / "configured.db")
    from_env = sqlite_url(tmp_path / "env.db")
    env = {"CLEARSIGHT_CATALOG_URL": from_env}
    assert resolve_catalog_url(configured, env) == configured
    assert resolve_catalog_url(None, env) == from_env
    assert resolve_catalog_url("", env) == from_env

    monkeypatch.delenv("CLEARSIGHT_CATALOG_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # the default never depends on the current folder
    expected = f"sqlite:///{ROOT.resolve() / '.state' / 'catalog.db'}"
    assert resolve_catalog_url() == expected
    assert resolve_catalog_url(None, {}) == expected
    with pytest.raises(CatalogError, match="absolute"):
        resolve_catalog_url(None, {"CLEARSIGHT_CATALOG_URL": "sqlite:///relative.db"})


def test_no_default_catalog_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog_module, "STATE_DIR", tmp_path / "site-packages" / ".state")
    with pytest.raises(CatalogError, match="CLEARSIGHT_CATALOG_URL"):
        resolve_catalog_url(None, {})


def test_a_failed_write_leaves_the_catalog_unchanged(tmp_path, folder, monkeypatch):
    manifest, report = build_manifest(folder)
    catalog = Catalog(sqlite_url(tmp_path / "c.db"))
    catalog.record_ingestion(manifest, report)
    before_images, before_ingestions = catalog.images(), catalog.ingestions()

    (folder / "u" / "late.png").write_bytes(image_bytes(500))
    grown, grown_report = build_manifest(folder)
    real_update = catalog_module.update

    def failing_update(*args, **kwargs):  # fails after the new rows were inserted
        raise OperationalError("UPDATE images", {}, Exception("disk I/O error"))

    monkeypatch.setattr(catalog_module, "update", failing_update)
    with pytest.raises(CatalogError, match="rolled back"):
        catalog.record_ingestion(grown, grown_report)
    monkeypatch.setattr(catalog_module, "update", real_update)
    assert catalog.images() == before_images
    assert catalog.ingestions() == before_ingestions


def test_unreachable_database_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(CatalogError, match="Cannot create the catalog's folder"):
        Catalog(sqlite_url(blocker / "sub" / "c.db"))


def test_content_store_uploads_once_and_atomically(tmp_path, folder):
    manifest, _ = build_manifest(folder)
    store = ContentStore(str(tmp_path / "store"), LocalFileSystem())
    stored, uploaded, already = store.store_manifest(manifest)
    assert (uploaded, already) == (8, 0)
    assert stored.stored and not manifest.stored
    for before, after in zip(manifest.records, stored.records, strict=True):
        expected = tmp_path / "store" / "images" / "sha256" / before.sha256[:2]
        assert after.uri == str(expected / f"{before.sha256}.png")
        assert Path(after.uri).read_bytes() == Path(before.source_path).read_bytes()
        assert after.model_dump(exclude={"uri"}) == before.model_dump(exclude={"uri"})
    assert not list((tmp_path / "store").rglob("*.partial"))
    assert store.existing() == {f"{r.sha256}.png" for r in manifest.records}

    _, uploaded, already = store.store_manifest(manifest)
    assert (uploaded, already) == (0, 8)
