"""Helpers that make real image files for the core's unit tests."""

from __future__ import annotations

import io

import pytest
from PIL import Image


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def image_bytes(seed: int, size: int = 24, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A real image whose pixels (and so hash) depend on ``seed``."""
    colour = (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256)
    image = Image.new("RGB", (size, size), colour)
    image.putpixel((seed % size, (seed // size) % size), (255, 255, 255))
    return encode(image.convert(mode), fmt)


@pytest.fixture()
def make_image():
    return image_bytes
