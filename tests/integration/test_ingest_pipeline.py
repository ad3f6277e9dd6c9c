"""The ingest pipeline on real images, with an isolated ZenML store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from zenml.client import Client
from zenml.enums import ExecutionStatus

from clearsight.catalog import Catalog
from clearsight.names import ArtifactName
from tests.integration.conftest import png_bytes

pytestmark = pytest.mark.integration


def _ingest(data_dir: Path, catalog_url: str, dry_run: bool = False):
    from pipelines import ingest_pipeline

    return ingest_pipeline.with_options(enable_cache=False)(
        data_dir=str(data_dir), catalog_url=catalog_url, dry_run=dry_run
    )


def _output(run, step: str, name: str):
    run = Client().get_pipeline_run(run.id)
    return run.steps[step].outputs[name][0]


def test_messy_folder_is_ingested_and_every_bad_file_reported(
    embedded_stack, messy_dir, catalog_url
):
    run = _ingest(messy_dir, catalog_url)
    assert Client().get_pipeline_run(run.id).status == ExecutionStatus.COMPLETED

    dataset = _output(run, "store_images", ArtifactName.DATASET).load()
    report = _output(run, "store_images", ArtifactName.INGESTION_REPORT).load()

    assert dataset.classes == ["0", "1", "2"]
    assert len(dataset.records) == 90  # 3 classes x 30 digits; bad files excluded
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert reasons["zz_copy_of_first.png"].startswith("duplicate of")
    assert "label conflict" in reasons["conflict.png"]
    assert report.conflicts == 2 and report.duplicates == 1
    assert "empty" in reasons["empty.png"]
    assert "truncated" in reasons["truncated.png"]
    assert "not an image" in reasons["notes.jpg"]
    assert "too small" in reasons["tiny.png"]
    assert "unsupported extension" in reasons["readme.txt"]
    assert report.kept == 90 and report.uploaded == 90 and report.already_stored == 0

    # Bytes are in the artifact store under content-addressed paths.
    store_root = Client().active_stack.artifact_store.path
    for record in dataset.records:
        assert record.uri.startswith(store_root)
        assert record.sha256 in record.uri
        assert Path(record.uri).read_bytes() == Path(record.source_path).read_bytes()

    # Every split has images, the split is the hash-derived one.
    assert all(size > 0 for size in dataset.split_sizes().values())

    # The catalog holds exactly the kept images and one ingestion.
    catalog = Catalog(catalog_url)
    rows = catalog.images()
    assert sorted(r["sha256"] for r in rows) == sorted(r.sha256 for r in dataset.records)
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    (ingestion,) = catalog.ingestions()
    assert ingestion["kept"] == 90 and ingestion["skipped"] == len(report.skipped)
    assert ingestion["fingerprint"] == dataset.fingerprint

    # The dataset artifact carries a fingerprint and dashboard visualizations.
    artifact = _output(run, "store_images", ArtifactName.DATASET)
    assert artifact.run_metadata["fingerprint"] == dataset.fingerprint
    assert artifact.run_metadata["num_images"] == 90
    kinds = sorted(v.type.value for v in artifact.visualizations)
    assert kinds == ["html", "image"]


def test_reingest_uploads_nothing_and_keeps_splits(embedded_stack, messy_dir, catalog_url):
    first = _output(_ingest(messy_dir, catalog_url), "store_images", ArtifactName.DATASET).load()
    again_run = _ingest(messy_dir, catalog_url)
    again = _output(again_run, "store_images", ArtifactName.DATASET).load()
    report = _output(again_run, "store_images", ArtifactName.INGESTION_REPORT).load()
    assert report.uploaded == 0 and report.already_stored == 90
    assert again.fingerprint == first.fingerprint

    # A new image arrives: only it is uploaded, nobody else changes split.
    (messy_dir / "2" / "new.png").write_bytes(png_bytes(99, size=32))
    grown_run = _ingest(messy_dir, catalog_url)
    grown = _output(grown_run, "store_images", ArtifactName.DATASET).load()
    grown_report = _output(grown_run, "store_images", ArtifactName.INGESTION_REPORT).load()
    assert grown_report.uploaded == 1
    before = {r.sha256: r.split for r in first.records}
    after = {r.sha256: r.split for r in grown.records}
    assert all(after[sha] == split for sha, split in before.items())
    assert len(after) == 91

    ingestions = Catalog(catalog_url).ingestions()
    assert [i["new_images"] for i in ingestions] == [90, 0, 1]


def test_dry_run_catalogues_but_uploads_nothing(embedded_stack, tmp_path, catalog_url):
    folder = tmp_path / "fresh"
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i in range(5):
            seed = 1000 + i + (0 if label == "cat" else 50)
            (folder / label / f"{i}.png").write_bytes(png_bytes(seed, size=32))
    run = _ingest(folder, catalog_url, dry_run=True)
    steps = Client().get_pipeline_run(run.id).steps
    assert "store_images" not in steps  # no `dataset` artifact from a dry run
    report = steps["scan_images"].outputs[ArtifactName.SCAN_REPORT][0].load()
    assert report.dry_run and report.kept == 10
    candidate = steps["scan_images"].outputs[ArtifactName.CANDIDATE_DATASET][0].load()
    store_root = Client().active_stack.artifact_store.path
    for record in candidate.records:
        stored = Path(store_root) / "images" / "sha256" / record.sha256[:2]
        assert not list(stored.glob(f"{record.sha256}.*"))
    catalog = Catalog(catalog_url)
    assert len(catalog.images()) == 10
    assert catalog.ingestions()[0]["dry_run"] is True


def test_missing_folder_fails_the_run_with_a_clear_message(embedded_stack, tmp_path, catalog_url):
    with pytest.raises(RuntimeError, match="scan_images"):
        _ingest(tmp_path / "nope", catalog_url)
    run = Client().get_pipeline("ingest").last_run
    assert run.status == ExecutionStatus.FAILED
    assert run.steps["scan_images"].status == ExecutionStatus.FAILED
    assert "catalog_ingestion" not in run.steps
    assert not Path(catalog_url.removeprefix("sqlite:///")).exists()


def test_pre_split_layout_keeps_given_splits(embedded_stack, digits_dir, tmp_path, catalog_url):
    folder = tmp_path / "presplit"
    for split in ("train", "valid", "test"):
        source = digits_dir / ("val" if split == "valid" else split)
        for label in ("3", "4"):
            shutil.copytree(source / label, folder / split / label)
    run = _ingest(folder, catalog_url)
    dataset = _output(run, "store_images", ArtifactName.DATASET).load()
    expected = {
        s: sum(len(list((digits_dir / s / lab).glob("*.png"))) for lab in ("3", "4"))
        for s in ("train", "val", "test")
    }
    assert dataset.split_sizes() == expected
    assert dataset.layout == "pre-split"


def test_reviewed_image_on_another_stacks_store_is_skipped_with_the_fix(
    embedded_stack, messy_dir, catalog_url, tmp_path
):
    """A review kept on the production stack's S3 store, ingested on the embedded stack."""
    import sqlalchemy as sa
    from zenml.io import fileio

    from clearsight.review import PREDICTIONS, ReviewStore
    from clearsight.storage import ContentStore

    reviews = ReviewStore(catalog_url)
    store = ContentStore(str(tmp_path / "review-store"), fileio)
    answer = {"label": "1", "confidence": 0.4, "probabilities": {"0": 0.3, "1": 0.4, "2": 0.3}}
    kept = {}
    for seed in (501, 502):
        kept[seed] = reviews.keep_prediction(
            png_bytes(seed), answer, store=store, requested_by="ann", threshold=0.7
        )
        reviews.review(kept[seed], reviewer="rita", label="2")
    # As if 502 had been kept while the production stack (S3 store) was active.
    engine = sa.create_engine(catalog_url)
    with engine.begin() as connection:
        connection.execute(
            PREDICTIONS.update()
            .where(PREDICTIONS.c.id == kept[502])
            .values(uri="s3://clearsight-artifacts/images/sha256/elsewhere.png")
        )
    engine.dispose()
    reviews.close()

    run = _ingest(messy_dir, catalog_url)
    assert Client().get_pipeline_run(run.id).status == ExecutionStatus.COMPLETED
    dataset = _output(run, "store_images", ArtifactName.DATASET).load()
    report = _output(run, "store_images", ArtifactName.INGESTION_REPORT).load()
    assert dataset.provenance_counts() == {"ingest": 90, "review": 1}
    (skipped,) = [s for s in report.skipped if f"#{kept[502]}" in s.path]
    assert "s3://" in skipped.reason and "zenml stack set" in skipped.reason


def test_near_duplicates_relabels_and_removals_reach_the_dashboard_and_catalog(
    embedded_stack, tmp_path, catalog_url
):
    from tests.imagefiles import photo, save

    folder = tmp_path / "field"
    for scene in range(6):
        label = folder / ("grass", "clover")[scene % 2]
        label.mkdir(parents=True, exist_ok=True)
        image = photo(600 + scene, size=(200, 150))
        (label / f"s{scene}.jpg").write_bytes(save(image, "JPEG", quality=95))
        (label / f"s{scene}_half.png").write_bytes(save(image.resize((100, 75)), "PNG"))
    run = _ingest(folder, catalog_url)
    report = _output(run, "store_images", ArtifactName.INGESTION_REPORT).load()
    dataset = _output(run, "store_images", ArtifactName.DATASET).load()
    assert len(report.near_duplicate_clusters) == 6 and report.kept == 12
    assert all(len({m.split for m in c.members}) == 1 for c in report.near_duplicate_clusters)
    for name in (ArtifactName.INGESTION_REPORT, ArtifactName.DATASET):
        artifact = _output(run, "store_images", name)
        pages = [Path(v.uri).read_text() for v in artifact.visualizations if v.type.value == "html"]
        page = next(p for p in pages if "near-duplicate clusters" in p)
        assert page.count("data:image/png;base64,") == 12  # a thumbnail per image
        assert "s0_half.png" in page

    (folder / "grass").rename(folder / "lawn_grass")
    (folder / "clover" / "s1_half.png").unlink()
    again = _ingest(folder, catalog_url)
    report = _output(again, "store_images", ArtifactName.INGESTION_REPORT).load()
    assert {(r.previous_label, r.label) for r in report.relabelled} == {("grass", "lawn_grass")}
    assert len(report.relabelled) == 6
    assert [Path(v.path).name for v in report.removed] == ["s1_half.png"]
    catalog = Catalog(catalog_url)
    assert catalog.image_count() == 11 and catalog.image_count(include_removed=True) == 12
    events = [e["event"] for e in catalog.history()]
    assert events.count("added") == 12
    assert events.count("relabelled") == 6 and events.count("removed") == 1
    split = {r.sha256: r.split for r in dataset.records}
    regrown = _output(again, "store_images", ArtifactName.DATASET).load()
    assert all(split[r.sha256] == r.split for r in regrown.records)
