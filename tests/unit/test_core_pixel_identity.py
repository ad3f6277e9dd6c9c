"""Issue 12, table rows 1-2: a picture re-exported with other metadata is the same image."""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

from clearsight.dataset import build_manifest
from clearsight.images import inspect_image
from tests.imagefiles import picture, save, with_exif


def reexported(data: bytes) -> bytes:
    """The same pixels written again with a text chunk, as anonymisation tools do."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "anonymised by export tool")
    return save(Image.open(io.BytesIO(data)), "PNG", pnginfo=info)


def test_copies_that_differ_only_in_metadata_share_their_pixel_identity():
    png = save(Image.fromarray(picture(3)), "PNG")
    copy = reexported(png)
    assert copy != png
    assert inspect_image(copy).pixel_sha256 == inspect_image(png).pixel_sha256
    jpeg = save(Image.fromarray(picture(3)), "JPEG", quality=90)
    edited = with_exif(Image.open(io.BytesIO(jpeg)), 1, "JPEG")  # re-encoded: other pixels
    assert inspect_image(edited).pixel_sha256 != inspect_image(jpeg).pixel_sha256
    exif_only = bytearray(jpeg)
    exif_only[2:2] = b"\xff\xfe\x00\x07hello"  # a COM segment: metadata, same scan data
    assert inspect_image(bytes(exif_only)).pixel_sha256 == inspect_image(jpeg).pixel_sha256
    other = save(Image.fromarray(picture(4)), "PNG")
    assert inspect_image(other).pixel_sha256 != inspect_image(png).pixel_sha256


def test_a_reexported_copy_is_a_duplicate_and_never_in_two_splits(tmp_path):
    root = tmp_path / "data"
    for index in range(21):
        label = root / str(index % 3)
        label.mkdir(parents=True, exist_ok=True)
        png = save(Image.fromarray(picture(index)), "PNG")
        (label / f"{index}.png").write_bytes(png)
        (label / f"{index}_export.png").write_bytes(reexported(png))
    manifest, report = build_manifest(root, min_side=8)
    assert report.kept == 21 and report.duplicates == 21  # was: 42 kept, 0 duplicates
    assert all("(same pixels, other bytes)" in s.reason for s in report.skipped)
    sources = {r.source_path.rsplit("/", 1)[1] for r in manifest.records}
    assert sources == {f"{i}.png" for i in range(21)}


def test_the_same_picture_under_two_labels_is_a_conflict(tmp_path):
    png = save(Image.fromarray(picture(5)), "PNG")
    for label, data in (("NORMAL", png), ("PNEUMONIA", reexported(png))):
        (tmp_path / "x" / label).mkdir(parents=True)
        (tmp_path / "x" / label / "img.png").write_bytes(data)
    other = save(Image.fromarray(picture(6)), "PNG")
    (tmp_path / "x" / "NORMAL" / "other.png").write_bytes(other)
    (tmp_path / "x" / "PNEUMONIA" / "other2.png").write_bytes(
        save(Image.fromarray(picture(7)), "PNG")
    )
    manifest, report = build_manifest(tmp_path / "x", min_side=8)
    assert report.conflicts == 2  # was: kept twice with contradicting labels
    assert {r.source_path.rsplit("/", 1)[1] for r in manifest.records} == {
        "other.png",
        "other2.png",
    }
    assert all("label conflict" in s.reason for s in report.skipped)
