"""Gallery pictures travel with a published gallery, so result tiles show faces, and a tile
opened face to face shows the gallery photo, where the gallery's photos are not on the machine
(a Space).

Two packs of the same format: face thumbnails (`thumbs.*`, square, `SIZE` px) and the photos
themselves (`photos.*`, at their own size: the original JPEG, or a JPEG copy). Format (no pickle): `<stem>.bin`, the JPEG bytes of every gallery item one
after another, and `<stem>.npy`, int64 offsets (N + 1) into it; item i is
bytes[offsets[i]:offsets[i + 1]] (empty when its photo was missing at export). Written by
`python -m rvs push` (rvs.hub.publish.export_artifacts), read by the app. Every file is in the
artifact's size + sha256 list (checked at pull), offsets are checked at load and each picture is
decoded through rvs.imageio (size-checked), so a hostile file cannot do more than fail to show.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from rvs.errors import IndexError_, RvsError

log = logging.getLogger(__name__)

SIZE = 112
THUMBS, PHOTOS = "thumbs", "photos"
BIN, OFFSETS = f"{THUMBS}.bin", f"{THUMBS}.npy"


def _write_pack(out_dir: Path, stem: str, paths: Sequence[str], source_folder: Path | None, encode: Callable[[Path, int], bytes]) -> int:
    """Pack `encode(photo path, item)` of every item whose photo is under `source_folder`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    offsets = [0]
    n = 0
    with open(out_dir / f"{stem}.bin", "wb") as f:
        for i, rel in enumerate(paths):
            data = b""
            p = (source_folder / rel) if source_folder is not None else None
            if p is not None and p.is_file():
                try:
                    data = encode(p, i)
                    n += 1
                except RvsError as e:
                    log.warning("no %s entry for %s: %s", stem, rel, e)
            f.write(data)
            offsets.append(offsets[-1] + len(data))
    with open(out_dir / f"{stem}.npy", "wb") as f:
        np.save(f, np.asarray(offsets, np.int64), allow_pickle=False)
    return n


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_thumbnails(out_dir: Path, source_folder: Path | None, paths: Sequence[str], boxes: Sequence[Sequence[float]], quality: int = 85) -> int:
    """Cut each item's face (box + margin) from its photo under `source_folder` and pack them.
    Returns how many thumbnails were written (photos missing locally are left empty)."""
    from rvs.imageio import crop_box, load_image

    return _write_pack(out_dir, THUMBS, paths, source_folder, lambda p, i: _jpeg(crop_box(load_image(p), boxes[i], size=SIZE), quality))


def write_photos(out_dir: Path, source_folder: Path | None, paths: Sequence[str], quality: int = 90) -> int:
    """Pack each item's whole photo (what a tile opened face to face shows) at its own size, so
    the index's face boxes stay valid on it: the file's own bytes when it is a JPEG, else a JPEG
    copy."""
    from rvs.imageio import load_image

    def encode(p: Path, i: int) -> bytes:
        img = load_image(p)  # checks it is a readable image of a sane size
        raw = p.read_bytes()
        return raw if raw[:3] == b"\xff\xd8\xff" else _jpeg(img, quality)

    return _write_pack(out_dir, PHOTOS, paths, source_folder, encode)


class Thumbnails:
    """Read access to a packed picture set (`stem` "thumbs" or "photos"); `get(i)` -> PIL image or None."""

    def __init__(self, folder: str | os.PathLike, n_items: int, stem: str = THUMBS):
        folder = Path(folder)
        try:
            offsets = np.load(folder / f"{stem}.npy", allow_pickle=False)
            size = (folder / f"{stem}.bin").stat().st_size
        except (OSError, ValueError) as e:
            raise IndexError_(f"gallery {stem} unreadable ({e})") from None
        if offsets.dtype.kind != "i" or offsets.shape != (n_items + 1,) or offsets[0] != 0 or offsets[-1] != size or np.any(np.diff(offsets) < 0):
            raise IndexError_(f"gallery {stem} do not match the gallery (offsets); not using them")
        self.offsets = offsets
        self.path = folder / f"{stem}.bin"
        self.max_pixels = 4 * SIZE * SIZE if stem == THUMBS else 16_000_000

    def get(self, i: int) -> Image.Image | None:
        from rvs.imageio import load_image

        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        if b <= a or b - a > 20_000_000:
            return None
        with open(self.path, "rb") as f:
            f.seek(a)
            data = f.read(b - a)
        try:
            return load_image(data, max_pixels=self.max_pixels, name="gallery picture")
        except RvsError:
            return None
