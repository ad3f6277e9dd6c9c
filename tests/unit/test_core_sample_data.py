from collections import Counter

from PIL import Image

from clearsight.sample_data import write_digits


def test_digits_are_written_once_in_the_standard_layout(tmp_path):
    assert write_digits(tmp_path) == 1797
    files = sorted(tmp_path.rglob("*.png"))
    assert len(files) == 1797
    splits = Counter(f.parts[-3] for f in files)
    assert splits == {"train": 1257, "val": 270, "test": 270}
    assert {f.parts[-2] for f in files} == {str(d) for d in range(10)}
    with Image.open(files[0]) as image:
        assert image.size == (32, 32) and image.mode == "L"
    assert write_digits(tmp_path) == 0  # idempotent
