"""Shared results: "Share this result" keeps one search's answer for others to open, on request only.

What is kept, when the user presses Share and not otherwise: the searched face cropped from their
photo (a small JPEG, not the photo), the answer's words and the result tiles' gallery rows with
their captions. Where: `Config.cache_dir/shared/<id>.json` and `<id>.jpg` on this server, written
atomically. How long: `Config.app_share_days` (7 days), then a link says it has expired and the
files are swept. Ids are random (96 bits), so links cannot be guessed; an id is checked against
its pattern before it is used as a file name.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

from PIL import Image

from rvs.fileio import atomic_write

ID_RE = re.compile(r"[A-Za-z0-9_-]{16}")


class SharedResults:
    def __init__(self, folder: Path, days: float):
        self.folder = Path(folder)
        self.seconds = float(days) * 86400.0

    def save(self, payload: dict, face: Image.Image) -> str:
        rid = secrets.token_urlsafe(12)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / f"{rid}.jpg", lambda t: face.convert("RGB").save(t, format="JPEG", quality=88))
        atomic_write(self.folder / f"{rid}.json", lambda t: Path(t).write_text(json.dumps({"created": time.time(), **payload})))
        self.sweep()
        return rid

    def load(self, rid: str) -> tuple[dict, Image.Image] | None:
        """The shared result, or None when the id is malformed, unknown or expired."""
        if not isinstance(rid, str) or not ID_RE.fullmatch(rid):
            return None
        j, p = self.folder / f"{rid}.json", self.folder / f"{rid}.jpg"
        try:
            payload = json.loads(j.read_text())
            if time.time() - float(payload["created"]) > self.seconds:
                return None
            with Image.open(p) as im:
                face = im.convert("RGB")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return payload, face

    def sweep(self) -> None:
        """Remove what is past its time (checked on each save)."""
        now = time.time()
        for f in self.folder.glob("*.json"):
            try:
                if now - float(json.loads(f.read_text())["created"]) > self.seconds:
                    f.unlink(missing_ok=True)
                    f.with_suffix(".jpg").unlink(missing_ok=True)
            except (OSError, ValueError, KeyError, TypeError):
                continue
