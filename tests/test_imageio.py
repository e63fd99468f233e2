"""Images of any mode, orientation and size are read upright as RGB, or refused clearly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import lfw_image, requires_data
from PIL import Image

from rvs.errors import BadInputError
from rvs.imageio import load_image

pytestmark = requires_data


def _face() -> Image.Image:
    return Image.open(lfw_image("Colin_Powell", 1)).convert("RGB")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _as_16bit_png() -> bytes:
    grey = np.asarray(_face().convert("L"), np.uint16) * 257
    return _save(Image.fromarray(grey), "PNG")


def _exif_rotated() -> bytes:
    # Stored rotated 90 degrees with EXIF orientation 6 ("rotate 90 CW to display").
    img = _face().rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(img, "JPEG", exif=exif.tobytes(), quality=95)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _save(_face().convert("RGBA"), "PNG"),
        lambda: _save(_face().convert("L"), "PNG"),
        lambda: _save(_face().convert("CMYK"), "JPEG"),
        lambda: _save(_face().convert("P"), "GIF"),
        _as_16bit_png,
        _exif_rotated,
    ],
    ids=["rgba", "grey", "cmyk", "palette", "16bit", "exif-rotated"],
)
def test_every_mode_finds_the_face(make, detector):
    img = load_image(make())
    assert img.mode == "RGB" and img.size == (250, 250)
    faces = detector.detect_one(img)
    assert faces, "face lost after mode conversion"
    # upright: eyes above the mouth
    lm = faces[0].landmarks
    assert lm[0][1] < lm[3][1] and lm[1][1] < lm[4][1]


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        load_image(tmp_path / "nope.jpg")


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello, I am not a picture")
    with pytest.raises(BadInputError, match="not an image"):
        load_image(p)


def test_empty_file_says_it_is_empty(tmp_path):
    p = tmp_path / "photo.jpg"
    p.write_bytes(b"")
    for src in (p, b""):
        with pytest.raises(BadInputError, match=r"the file is empty \(0 bytes\)"):
            load_image(src, name="photo.jpg")


def test_truncated_jpeg(tmp_path):
    data = lfw_image("Colin_Powell", 1).read_bytes()
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(BadInputError, match="corrupt or truncated"):
        load_image(p)


def test_huge_image_refused_before_decoding(tmp_path):
    p = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(p)
    with pytest.raises(BadInputError, match="too large"):
        load_image(p)
