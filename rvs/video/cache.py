"""The video feature cache both search modes share: one directory per video content hash and
settings (`cache_dir/video/<key>/<kind>-<digest>`), written atomically, checked when read, and
one `load_or_extract` that answers from it or extracts once (uncached when the disk is read-only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from rvs.config import Config
from rvs.fileio import folder_swap
from rvs.video.info import VideoInfo

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when a cached file's layout or meaning changes (2: player times stored per sample)

_KEY_MEMO: dict[tuple, str] = {}

_KEY_LOCK = threading.Lock()


def video_key(path: Path, full_hash_max_bytes: int = 256 * 1024 * 1024) -> str:
    """A content hash of the file, so a renamed or copied video hits the cache and an edited one
    does not. sha256 of the whole file up to `full_hash_max_bytes` (about 0.5 s per GB); above that,
    of its size, first and last MiB and 16 blocks of 64 KiB spread over it, so a cached query on a
    multi-GB file still answers in well under a second. Memoised per (path, size, mtime, inode)."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, full_hash_max_bytes)
    with _KEY_LOCK:
        if memo in _KEY_MEMO:
            return _KEY_MEMO[memo]
    h = hashlib.sha256()
    size = st.st_size
    with open(path, "rb") as f:
        if size <= full_hash_max_bytes:
            h.update(b"full\0")
            while chunk := f.read(1 << 20):
                h.update(chunk)
        else:
            h.update(f"sampled\0{size}\0".encode())
            mib = 1 << 20
            offsets = [0, max(0, size - mib)] + [int(size * k / 17) for k in range(1, 17)]
            lengths = [mib, mib] + [64 * 1024] * 16
            for off, n in zip(offsets, lengths):
                f.seek(off)
                h.update(f.read(n))
    key = h.hexdigest()[:32]
    with _KEY_LOCK:
        _KEY_MEMO[memo] = key
    return key


def cache_entry_dir(config: Config, key: str, kind: str, params: dict) -> Path:
    """`cache_dir/video/<content key>/<kind>-<settings digest>`: one entry per settings that change
    the cached numbers, so changing e.g. the sampling rate never reads stale features."""
    digest = hashlib.sha256(json.dumps({"v": CACHE_VERSION, **params}, sort_keys=True).encode()).hexdigest()[:12]
    base = Path(config.video_cache_dir) if config.video_cache_dir else Path(config.cache_dir) / "video"
    return base / key / f"{kind}-{digest}"


def write_entry_atomically(final: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_dir)`, then swap the directory into place (rvs.fileio.folder_swap), so a
    reader never sees a half-written entry (a crash leaves only a hidden temporary directory); a
    stale or corrupt entry is replaced, and one another process wrote meanwhile is as good as ours."""
    try:
        with folder_swap(final) as tmp:
            write(tmp)
    finally:
        try:
            final.parent.rmdir()  # only succeeds if empty, i.e. nothing was cached for this video
        except OSError:
            pass


def cache_meta(kind: str, version: int, params: dict, sample_fps: float, info: VideoInfo, path: Path, **counts: int) -> dict:
    """The meta.json of a cache entry: what was extracted, with which settings, from which video."""
    import datetime

    from rvs import __version__

    return {
        "version": version,
        "kind": kind,
        "params": params,
        "sample_fps": sample_fps,
        **counts,
        "video": {
            "path": info.path,
            "size": os.path.getsize(path),
            "fps": info.fps,
            "width": info.width,
            "height": info.height,
            "frame_count": info.frame_count,
            "decoded_frames": info.decoded_frames,
            "start": info.start,
            "end": info.end,
        },
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "rvs_version": __version__,
    }


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))


def read_meta(entry: Path, kind: str) -> dict | None:
    """The entry's meta.json if present and of this version/kind, else None (= recompute)."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != CACHE_VERSION or meta.get("kind") != kind:
        return None
    return meta


class StageTimer:
    """Collects named stage durations for `VideoResult.timings`."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t

    def done(self) -> dict[str, float]:
        self.timings["total_s"] = time.perf_counter() - self.t0
        return self.timings


def info_from_meta(meta: dict) -> VideoInfo:
    """The video's facts as a cache entry's meta.json recorded them (see `cache_meta`)."""
    v = meta["video"]
    return VideoInfo(v["path"], v["fps"], v["width"], v["height"], v["frame_count"], v["decoded_frames"], float(v["start"]), float(v["end"]))


class Cached(Protocol):
    """What a mode caches: anything that carries the video's `VideoInfo`."""

    info: VideoInfo


T = TypeVar("T", bound=Cached)


def read_entry(entry: Path, kind: str, parse: Callable[[Path, dict], T]) -> T | None:
    """`parse(entry, meta)` of a cache entry, or None when it is absent, of another version or kind,
    or unreadable (then it is recomputed): a damaged cache costs time, never a wrong answer."""
    meta = read_meta(entry, kind)
    if meta is None:
        return None
    try:
        return parse(entry, meta)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        log.warning("video cache entry %s is unreadable (%s); recomputing", entry, e)
        return None


def load_or_extract(
    path: Path,
    config: Config,
    kind: str,
    params: dict,
    parse: Callable[[Path, dict], T],
    extract: Callable[[Path], None],
    timer: StageTimer | None = None,
    detach: Callable[[T], T] | None = None,
) -> tuple[T, bool]:
    """One cache loader for both modes: the `kind` entry of this video and `params` from the cache,
    else `extract(dir)` writes it (atomically) and it is read back with `parse`.

    Returns (what `parse` read, came_from_cache). An unwritable cache directory (read-only or full
    disk) only costs the caching: the entry is extracted into a temporary folder, read, and
    `detach`ed from its files (e.g. memory maps copied) before the folder goes."""
    timer = timer or StageTimer()
    with timer.stage("hash_s"):
        key = video_key(path, config.video_full_hash_max_bytes)
    entry = cache_entry_dir(config, key, kind, params)
    with timer.stage("features_s"):
        found = read_entry(entry, kind, parse)
        if found is not None:
            found.info.path = str(path)  # same content, maybe another name
            return found, True
        try:
            write_entry_atomically(entry, extract)
            found = read_entry(entry, kind, parse)
        except OSError as e:
            log.warning("cannot write the video cache under %s (%s); %s are not cached", entry.parent.parent, e, kind)
            with tempfile.TemporaryDirectory(prefix="rvs-video-") as tmp:
                extract(Path(tmp))
                found = read_entry(Path(tmp), kind, parse)
                if found is not None and detach is not None:
                    found = detach(found)
    if found is None:
        raise RuntimeError(f"video cache entry {entry} unreadable right after writing it")
    return found, False
