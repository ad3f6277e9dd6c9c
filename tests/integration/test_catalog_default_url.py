"""The ingest pipeline without run.py: with no catalog URL the steps use the default."""

from __future__ import annotations

import pytest
from zenml.client import Client
from zenml.enums import ExecutionStatus

from clearsight import catalog as catalog_module
from clearsight.catalog import Catalog, sqlite_url
from tests.integration.conftest import png_bytes

pytestmark = pytest.mark.integration


def test_ingest_without_a_catalog_url_uses_the_project_state_catalog(
    embedded_stack, tmp_path, monkeypatch
):
    # A stand-in for the repository (the real .state belongs to the user).
    repository = tmp_path / "repository"
    repository.mkdir()
    (repository / "pyproject.toml").write_text("[project]\nname = 'clearsight'\n")
    monkeypatch.setattr(catalog_module, "STATE_DIR", repository / ".state")
    monkeypatch.delenv("CLEARSIGHT_CATALOG_URL", raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the repository: the URL must not depend on it

    folder = tmp_path / "images"
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i in range(4):
            seed = 2000 + i + (0 if label == "cat" else 50)
            (folder / label / f"{i}.png").write_bytes(png_bytes(seed, size=32))

    from pipelines import ingest_pipeline

    run = ingest_pipeline.with_options(enable_cache=False)(data_dir=str(folder), dry_run=True)
    assert Client().get_pipeline_run(run.id).status == ExecutionStatus.COMPLETED

    database = repository / ".state" / "catalog.db"
    assert database.is_file()
    assert not (elsewhere / ".state").exists()
    catalog = Catalog(sqlite_url(database))
    try:
        assert catalog.image_count() == 8
        (ingestion,) = catalog.ingestions()
        assert ingestion["dry_run"] is True
    finally:
        catalog.close()
