"""The ingestion report's dashboard page shows every hygiene finding, conflicts first."""

from __future__ import annotations

import re
from pathlib import Path

from clearsight.dataset import IngestionReport, build_manifest
from clearsight.leakage import KnownImage, cluster_outcomes
from materializers.hygiene import hygiene_html, near_duplicates_html
from tests.imagefiles import photo, save
from tests.unit.test_core_leakage import known_from, resized, with_exif_comment

THUMBNAIL = "data:image/png;base64,"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def messy_folder(root: Path) -> None:
    """One of each finding a first ingestion can have (the second adds the catalog's)."""
    write(root / "cats" / "a.png", save(photo(1), "PNG"))
    write(root / "cats" / "a_copy.png", save(photo(1), "PNG"))  # exact duplicate
    write(root / "cats" / "b.png", save(photo(2), "PNG"))
    write(root / "dogs" / "b_again.png", save(photo(2), "PNG"))  # exact label conflict
    write(root / "cats" / "c.png", save(photo(3), "PNG"))
    write(root / "dogs" / "c_half.png", resized(photo(3), 0.5))  # near-duplicate conflict
    write(root / "cats" / "d.png", save(photo(4), "PNG"))
    write(root / "cats" / "d_half.png", resized(photo(4), 0.5))  # near-duplicates kept
    write(root / "dogs" / "e.jpg", save(photo(5), "JPEG", quality=92))  # to be replaced
    write(root / "birds" / "f.png", save(photo(6), "PNG"))  # to be relabelled
    write(root / "dogs" / "g.png", save(photo(7), "PNG"))  # to be removed
    base = photo(21)
    for index in range(8):  # shifted crops: a chain, not copies of one picture
        crop = base.crop((index * 2, 0, 240 + index * 2, 180))
        write(root / "dogs" / f"p{index}.png", save(crop, "PNG"))


def reingested(root: Path) -> IngestionReport:
    options = {"max_cluster_size": 5}
    manifest, _ = build_manifest(root, near_duplicates=options)
    known: list[KnownImage] = known_from(manifest.records)
    (root / "birds").rename(root / "owls")
    (root / "dogs" / "g.png").unlink()
    edited = root / "dogs" / "e.jpg"
    edited.write_bytes(with_exif_comment(edited.read_bytes(), "edited"))
    _, report = build_manifest(root, near_duplicates=options, known=known)
    return report


def sections(page: str) -> list[str]:
    return re.findall(r"<h3>(.*?)</h3>", page)


def test_the_page_shows_each_finding_with_its_items_conflicts_first(tmp_path):
    root = tmp_path / "messy"
    messy_folder(root)
    report = reingested(root)
    # The findings are there to be shown (the ingestion's own tests check them).
    assert len([c for c in report.exact_copies if c.conflict]) == 1
    assert len([c for c in report.exact_copies if not c.conflict]) == 1
    outcomes = cluster_outcomes(report.near_duplicate_clusters)
    assert len(outcomes.conflicts) == 1 and len(outcomes.kept) == 1
    assert report.chains and report.relabelled and report.removed and report.replaced

    page = hygiene_html(report)
    titles = sections(page)
    starts = [
        "Dataset hygiene: 2 label conflicts",
        "Label conflicts",
        "2 near-duplicate clusters within 10 bits",
        "Chains of similar images ignored",
        "Exact duplicates",
        "Known images relabelled: 1",
        "Catalogued images no longer found: 1",
        "Catalogued images now in other bytes with the same pixels: 1",
    ]
    assert len(titles) == len(starts), titles
    for title, start in zip(titles, starts, strict=True):
        assert title.startswith(start), (title, start)

    def section(start: str) -> str:
        """The page from the heading that starts with ``start`` to the next heading."""
        return next(part for part in page.split("<h3>") if part.startswith(start))

    conflicts = section("Label conflicts")
    for name in ("b.png", "b_again.png", "c.png", "c_half.png"):
        assert f"/{name}</span>" in conflicts, name
    assert conflicts.count(THUMBNAIL) == 4  # every file is readable
    clusters = section(titles[2])
    assert "d_half.png" in clusters and "c_half.png" not in clusters  # shown with the conflicts
    assert "kept in one split" in clusters
    chains = section("Chains")
    assert all(f"<li>{size} images in one chain</li>" in chains for size in report.chains)
    duplicates = section("Exact duplicates")
    assert "a.png</span>" in duplicates and "a_copy.png</span>" in duplicates
    assert "kept" in duplicates and "skipped" in duplicates
    assert duplicates.count(THUMBNAIL) == 2
    relabels = section("Known images relabelled")
    assert "<td>birds</td><td>owls</td><td>1</td>" in relabels
    assert "birds -&gt; owls: " in relabels and "f.png" in relabels
    assert "g.png" in section("Catalogued images no longer found")
    assert "e.jpg" in section("Catalogued images now in other bytes")


def test_a_missing_file_gets_a_grey_square_and_a_clean_report_only_the_heading(tmp_path):
    root = tmp_path / "copies"
    write(root / "cats" / "a.png", save(photo(1), "PNG"))
    write(root / "cats" / "a_half.png", resized(photo(1), 0.5))
    write(root / "dogs" / "b.png", save(photo(2), "PNG"))
    _, report = build_manifest(root)
    (root / "cats" / "a_half.png").unlink()
    page = hygiene_html(report)
    assert page.count(THUMBNAIL) == 1 and page.count("background:#eee") == 1
    assert sections(page)[0].startswith("Dataset hygiene: 0 label conflicts, 1 near-duplicate")
    assert len(sections(page)) == 2  # the heading and the clusters

    _, report = build_manifest(root, near_duplicates={"max_distance": None})
    page = hygiene_html(report)
    assert len(sections(page)) == 1 and "search switched off" in page


def test_the_dataset_page_shows_spread_clusters_too(tmp_path):
    root = tmp_path / "pre"
    image = photo(9)
    write(root / "train" / "cats" / "x.png", save(image, "PNG"))
    write(root / "test" / "cats" / "x_half.png", resized(image, 0.5))
    write(root / "val" / "cats" / "y.png", save(photo(10), "PNG"))
    manifest, report = build_manifest(root, near_duplicates={"leakage": "report"})
    assert cluster_outcomes(manifest.near_duplicate_clusters).spread
    page = near_duplicates_html(manifest.near_duplicate_clusters, max_distance=10)
    assert "1 left in several split folders (leakage remains)" in page
    assert "x_half.png" in page and page.count(THUMBNAIL) == 2
