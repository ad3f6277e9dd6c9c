"""Fixtures for integration tests: a registered embedded stack and real images."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT, TEST_STATE


@pytest.fixture(scope="session")
def embedded_stack():
    """Register and activate the embedded stack in the throw-away ZenML config."""
    from zenml.client import Client
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(ROOT))
    from stack.register import register_embedded

    register_embedded(activate=True)
    client = Client()
    assert client.active_stack_model.name == "embedded"
    return client


@pytest.fixture(scope="session")
def digits_dir() -> Path:
    """The bundled UCI digits dataset, written as PNG files."""
    from clearsight.sample_data import write_digits

    target = TEST_STATE / "digits"
    write_digits(target)
    return target


@pytest.fixture()
def catalog_url(tmp_path) -> str:
    """A fresh SQLite catalog for one test."""
    from clearsight.catalog import sqlite_url

    return sqlite_url(tmp_path / "catalog.db")


def png_bytes(seed: int, size: int = 24) -> bytes:
    """A small, real PNG whose content depends on ``seed``."""
    image = Image.new("RGB", (size, size), (seed * 37 % 256, seed * 91 % 256, 128))
    image.putpixel((seed % size, (seed // size) % size), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture()
def messy_dir(tmp_path, digits_dir) -> Path:
    """An unsplit <label>/* folder holding good images and every kind of bad input.

    Per class 0-2: the class's digits from the bundled set. Plus: a duplicate,
    a label conflict, a zero-byte file, a truncated PNG, a text file named
    .jpg, a too-small image, an unsupported extension.
    """
    root = tmp_path / "messy"
    for label in ("0", "1", "2"):
        (root / label).mkdir(parents=True)
        for split in ("train", "val", "test"):
            for image in sorted((digits_dir / split / label).glob("*.png"))[:10]:
                shutil.copy(image, root / label / f"{split}_{image.name}")
    first = sorted((root / "0").glob("*.png"))[0]
    shutil.copy(first, root / "0" / "zz_copy_of_first.png")  # duplicate, same label
    conflict = png_bytes(7)
    (root / "1" / "conflict.png").write_bytes(conflict)
    (root / "2" / "conflict.png").write_bytes(conflict)
    (root / "0" / "empty.png").write_bytes(b"")
    whole = (root / "1" / sorted(p.name for p in (root / "1").glob("*.png"))[0]).read_bytes()
    (root / "1" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "2" / "notes.jpg").write_text("this is not an image\n")
    tiny = io.BytesIO()
    Image.new("RGB", (4, 4)).save(tiny, format="PNG")
    (root / "2" / "tiny.png").write_bytes(tiny.getvalue())
    (root / "2" / "readme.txt").write_text("labels are folder names\n")
    return root
