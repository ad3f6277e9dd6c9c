"""Real-world image files, generated: every variant of a few pictures that users' files take.

Each picture is a real handwritten digit of scikit-learn's UCI digits set,
enlarged to a non-square 48x64 (width x height, so a wrong orientation shows)
and tinted. From it the tests write what phones, cameras, X-ray exports and web
tools write: EXIF-rotated JPEGs and PNGs, transparent PNGs, palette + tRNS,
16-bit and 12-bit-in-16 greyscale with and without ``sBIT``, MPO, CMYK,
progressive JPEG, WebP, TIFF, BMP and HEIC. Every variant comes with the picture
its decoding must give (the reference) and a tolerance.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, PngImagePlugin
from sklearn.datasets import load_digits

WIDTH, HEIGHT = 48, 64
EXIF_ORIENTATION = 0x0112
# The transform that, applied to an upright picture, gives the pixels a camera
# stores with each EXIF orientation (EXIF 2.32, tag 0x0112): the viewer undoes it.
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
LOSSLESS = 1e-6  # max absolute difference, [0, 1] units
LOSSY = 4 / 255  # mean absolute difference, [0, 1] units (JPEG quality 95, HEIC)


@dataclass(frozen=True)
class Variant:
    """One file and the picture its decoding must give.

    Attributes:
        name: What the file is, e.g. ``"png exif orientation 6"``.
        data: The file's bytes.
        reference: ``float32`` ``(64, 48, 3)`` in [0, 1]: the upright picture
            as it must decode (composited, scaled).
        lossy: Compare by mean absolute difference ``LOSSY`` (lossy codecs)
            rather than by maximum difference ``LOSSLESS``.
        background: The decoding background rule the reference assumes.
    """

    name: str
    data: bytes
    reference: np.ndarray
    lossy: bool = False
    background: tuple[int, int, int] = (255, 255, 255)


def save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@cache
def ink(index: int) -> np.ndarray:
    """A digit's ink coverage, ``float`` ``(64, 48)`` in [0, 1] (1: ink)."""
    digits = load_digits()
    small = Image.fromarray((digits.images[index] / 16 * 255).astype(np.uint8), "L")
    return np.asarray(small.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)) / 255.0


def picture(index: int) -> np.ndarray:
    """The upright 8-bit RGB picture: dark-blue ink on a pale background, ``(64, 48, 3)``."""
    coverage = ink(index)[:, :, None]
    paper, pen = np.array([240, 236, 220]), np.array([20, 40, 120])
    return np.round(paper * (1 - coverage) + pen * coverage).astype(np.uint8)


def with_exif(image: Image.Image, orientation: int, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    stored = image.transpose(STORED_AS[orientation]) if orientation in STORED_AS else image
    options = {"quality": 95} if fmt == "JPEG" else {}
    return save(stored, fmt, exif=exif, **options)


def png_with_sbit(grey16: np.ndarray, significant_bits: int) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add(b"sBIT", bytes([significant_bits]))
    return save(Image.fromarray(grey16.astype(np.uint16)), "PNG", pnginfo=info)


def variants(index: int) -> list[Variant]:
    """Every kind of file of one picture, with the picture each must decode to."""
    rgb = picture(index)
    upright = Image.fromarray(rgb, "RGB")
    reference = rgb.astype(np.float32) / 255
    found = [Variant("png", save(upright, "PNG"), reference)]

    for orientation in range(1, 9):
        found.append(
            Variant(
                f"png exif orientation {orientation}",
                with_exif(upright, orientation, "PNG"),
                reference,
            )
        )
    for orientation in (3, 6, 8):
        found.append(
            Variant(
                f"jpeg exif orientation {orientation}",
                with_exif(upright, orientation, "JPEG"),
                reference,
                lossy=True,
            )
        )

    # Ink on a transparent background whose stored colour is black (what the
    # platform showed as an all-black image), on each background rule.
    coverage = ink(index)
    pen = np.array([20, 40, 120], dtype=np.float64)
    alpha = np.round(coverage * 255).astype(np.uint8)
    rgba = np.dstack([np.broadcast_to(pen, rgb.shape).astype(np.uint8), alpha])
    for name, background in (("white", (255, 255, 255)), ("black", (0, 0, 0))):
        a = alpha[:, :, None] / 255.0
        composite = pen * a + np.array(background) * (1 - a)
        found.append(
            Variant(
                f"rgba on {name}",
                save(Image.fromarray(rgba, "RGBA"), "PNG"),
                (composite / 255).astype(np.float32),
                background=background,
            )
        )
    # Palette + tRNS: the background palette entry is transparent.
    binary = coverage > 0.5
    palette_pixels = binary.astype(np.uint8)  # 0: background (transparent), 1: ink
    palette_image = Image.fromarray(palette_pixels, "P")
    palette_image.putpalette([0, 0, 0, 20, 40, 120] + [0, 0, 0] * 254)
    expected = np.where(binary[:, :, None], pen, np.array([255, 255, 255])) / 255
    found.append(
        Variant(
            "palette + tRNS",
            save(palette_image, "PNG", transparency=0),
            expected.astype(np.float32),
        )
    )
    # Greyscale + alpha (LA).
    grey_ink = np.round(255 * (1 - coverage)).astype(np.uint8)
    la = Image.fromarray(np.dstack([np.zeros_like(grey_ink), alpha]), "LA")
    la_expected = np.repeat((1 - alpha / 255.0)[:, :, None], 3, axis=2)
    found.append(Variant("greyscale + alpha", save(la, "PNG"), la_expected.astype(np.float32)))

    # High bit depths: the same grey picture as 8-bit, 16-bit, and 12-bit in 16.
    grey8 = grey_ink
    grey_reference = np.repeat((grey8 / 255.0)[:, :, None], 3, axis=2).astype(np.float32)
    found.append(
        Variant("greyscale 8-bit", save(Image.fromarray(grey8, "L"), "PNG"), grey_reference)
    )
    grey16 = grey8.astype(np.uint16) * 257
    found.append(Variant("greyscale 16-bit", save(Image.fromarray(grey16), "PNG"), grey_reference))
    grey12 = np.round(grey8 / 255.0 * 4095).astype(np.uint16)
    reference12 = np.repeat((grey12 / 4095.0)[:, :, None], 3, axis=2).astype(np.float32)
    found.append(
        Variant("12-bit in 16, no sBIT", save(Image.fromarray(grey12), "PNG"), reference12)
    )
    found.append(Variant("12-bit in 16, sBIT 12", png_with_sbit(grey12, 12), reference12))
    shifted = grey12 << 4  # what the PNG spec asks: samples scaled up to 16 bits, sBIT 12
    reference_shifted = np.repeat((shifted / 65535.0)[:, :, None], 3, axis=2).astype(np.float32)
    found.append(
        Variant("12-bit scaled to 16, sBIT 12", png_with_sbit(shifted, 12), reference_shifted)
    )
    found.append(
        Variant("greyscale 16-bit tiff", save(Image.fromarray(grey16), "TIFF"), grey_reference)
    )

    # Other containers and codecs.
    jpeg = {"quality": 95}
    found += [
        Variant("jpeg", save(upright, "JPEG", **jpeg), reference, lossy=True),
        Variant(
            "progressive jpeg",
            save(upright, "JPEG", progressive=True, **jpeg),
            reference,
            lossy=True,
        ),
        Variant("cmyk jpeg", save(upright.convert("CMYK"), "JPEG", **jpeg), reference, lossy=True),
        Variant(
            "mpo",
            save(upright, "MPO", save_all=True, append_images=[upright.resize((24, 32))], **jpeg),
            reference,
            lossy=True,
        ),
        Variant("webp lossless", save(upright, "WEBP", lossless=True), reference),
        Variant("webp", save(upright, "WEBP", quality=95), reference, lossy=True),
        Variant("tiff", save(upright, "TIFF"), reference),
        Variant(
            "tiff, 2 pages",
            save(upright, "TIFF", save_all=True, append_images=[upright.rotate(90)]),
            reference,
        ),
        Variant("bmp", save(upright, "BMP"), reference),
        Variant("heic", save(upright, "HEIF", quality=95), reference, lossy=True),
    ]
    return found


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A photo-like RGB picture, distinct per seed: smooth light, shapes, sensor noise.

    Large enough (both sides >= 64 px) for a perceptual hash, unlike :func:`picture`.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    light = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8), "RGB")
    image = light.resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.integers(0, width - 40), rng.integers(0, height - 40)
        x1, y1 = x0 + rng.integers(30, width // 2), y0 + rng.integers(30, height // 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((int(x0), int(y0), int(x1), int(y1)), fill=colour)
    noisy = np.asarray(image, np.float64) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
