"""Gallery face thumbnails travel with a published gallery, so result tiles show faces where the
gallery's photos are not on the machine (a Space).

Format (no pickle): `thumbs.bin`, the JPEG bytes of every gallery item's face (square, `SIZE`
px) one after another, and `thumbs.npy`, int64 offsets (N + 1) into it; item i is
bytes[offsets[i]:offsets[i + 1]] (empty when its photo was missing at export). Written by
`python -m rvs push` (rvs.hub.publish.export_artifacts), read by the app; offsets are checked at load and
each thumbnail is decoded through rvs.imageio (size-checked), so a hostile file cannot do more
than fail to show a face.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from rvs.errors import IndexError_, RvsError

log = logging.getLogger(__name__)

SIZE = 112
BIN, OFFSETS = "thumbs.bin", "thumbs.npy"


def write_thumbnails(out_dir: Path, source_folder: Path | None, paths: Sequence[str], boxes: Sequence[Sequence[float]], quality: int = 85) -> int:
    """Cut each item's face (box + margin) from its photo under `source_folder` and pack them.
    Returns how many thumbnails were written (photos missing locally are left empty)."""
    from rvs.imageio import crop_box, load_image

    out_dir.mkdir(parents=True, exist_ok=True)
    offsets = [0]
    n = 0
    with open(out_dir / BIN, "wb") as f:
        for rel, box in zip(paths, boxes):
            data = b""
            p = (source_folder / rel) if source_folder is not None else None
            if p is not None and p.is_file():
                try:
                    buf = io.BytesIO()
                    crop_box(load_image(p), box, size=SIZE).save(buf, format="JPEG", quality=quality)
                    data = buf.getvalue()
                    n += 1
                except RvsError as e:
                    log.warning("no thumbnail for %s: %s", rel, e)
            f.write(data)
            offsets.append(offsets[-1] + len(data))
    with open(out_dir / OFFSETS, "wb") as f:
        np.save(f, np.asarray(offsets, np.int64), allow_pickle=False)
    return n


class Thumbnails:
    """Read access to a packed thumbnail set; `get(i)` -> PIL image or None."""

    def __init__(self, folder: str | os.PathLike, n_items: int):
        folder = Path(folder)
        try:
            offsets = np.load(folder / OFFSETS, allow_pickle=False)
            size = (folder / BIN).stat().st_size
        except (OSError, ValueError) as e:
            raise IndexError_(f"gallery thumbnails unreadable ({e})") from None
        if offsets.dtype.kind != "i" or offsets.shape != (n_items + 1,) or offsets[0] != 0 or offsets[-1] != size or np.any(np.diff(offsets) < 0):
            raise IndexError_("gallery thumbnails do not match the gallery (offsets); not using them")
        self.offsets = offsets
        self.path = folder / BIN

    def get(self, i: int) -> Image.Image | None:
        from rvs.imageio import load_image

        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        if b <= a or b - a > 2_000_000:
            return None
        with open(self.path, "rb") as f:
            f.seek(a)
            data = f.read(b - a)
        try:
            return load_image(data, max_pixels=4 * SIZE * SIZE, name="thumbnail")
        except RvsError:
            return None
