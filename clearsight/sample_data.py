"""Write scikit-learn's UCI handwritten digits as an image dataset.

1,797 real 8x8 scans of handwritten digits in 10 classes, upscaled to 32x32
and written as PNG files in the standard ``<split>/<label>/<name>.png``
layout with a fixed, stratified 70/15/15 split. It is the bundled demo
dataset: no download is needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_SIZE = 32
MARKER = ".clearsight-sample"


def write_digits(target: str | Path, *, size: int = DEFAULT_SIZE, seed: int = 0) -> int:
    """Write the digits dataset under ``target``; idempotent.

    Returns:
        The number of files written (0 when the dataset is already complete).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    root = Path(target)
    marker = root / MARKER
    if marker.exists() and marker.read_text().strip() == f"size={size} seed={seed}":
        return 0

    digits = load_digits()
    indices = np.arange(len(digits.target))
    train, rest = train_test_split(
        indices, test_size=0.30, stratify=digits.target, random_state=seed
    )
    val, test = train_test_split(
        rest, test_size=0.50, stratify=digits.target[rest], random_state=seed
    )
    written = 0
    for split, members in (("train", train), ("val", val), ("test", test)):
        for index in sorted(members):
            label = str(digits.target[index])
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            # 0..16 ink intensity -> dark ink on white paper, 8 bits.
            pixels = (255 - digits.images[index] * (255 / 16)).round().astype(np.uint8)
            image = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC)
            path = folder / f"digit_{index:04d}.png"
            image.save(path, format="PNG", optimize=False)
            written += 1
    marker.write_text(f"size={size} seed={seed}\n")
    return written


def main() -> None:
    """Command-line entry point: ``python -m clearsight.sample_data TARGET``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="folder to write, e.g. data/digits")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="side in pixels")
    args = parser.parse_args()
    count = write_digits(args.target, size=args.size)
    if count:
        print(f"Wrote {count} images to {args.target}")
    else:
        print(f"{args.target} already holds the sample dataset")


if __name__ == "__main__":
    main()
