import hashlib

import pytest
from PIL import Image

from clearsight.images import InvalidImageError, inspect_image
from tests.unit.conftest import encode, image_bytes


@pytest.mark.parametrize(("fmt", "expected"), [("PNG", "PNG"), ("JPEG", "JPEG")])
def test_valid_images_are_described(fmt, expected):
    data = image_bytes(3, size=40, fmt=fmt)
    info = inspect_image(data)
    assert info.format == expected
    assert (info.width, info.height) == (40, 40)
    assert info.mode == "RGB"
    assert info.num_bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.extension == ("png" if fmt == "PNG" else "jpg")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"just some text, not an image\n" * 10, "not an image"),
        (image_bytes(5, size=64)[:60], "truncated"),
        (image_bytes(5, size=64, fmt="JPEG")[:200], "truncated"),
        (encode(Image.new("RGB", (20, 20)), "GIF"), "unsupported image format GIF"),
        (encode(Image.new("RGB", (20, 20)), "PPM"), "unsupported image format PPM"),
        (image_bytes(1, size=4), "too small"),
    ],
)
def test_bad_inputs_are_rejected_with_a_reason(data, reason):
    with pytest.raises(InvalidImageError, match=reason):
        inspect_image(data)


def test_decompression_bomb_guard_reads_only_the_header():
    bomb = encode(Image.new("1", (6000, 6000)), "PNG")  # tiny file, 36 M pixels
    assert len(bomb) < 100_000
    with pytest.raises(InvalidImageError, match="decompression-bomb guard"):
        inspect_image(bomb, max_pixels=10_000_000)


def test_pillow_own_bomb_limit_is_reported_not_raised(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    data = image_bytes(2, size=64)  # 4096 px > 2 x 1000: Pillow raises its own error
    with pytest.raises(InvalidImageError, match="too large"):
        inspect_image(data, max_pixels=10**9)
