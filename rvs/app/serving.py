"""Guards of the served app against hostile clients and long jobs (no UI framework code).

- `UploadGuard`: a request may read only files uploaded to this app (Gradio's upload folder) or
  the app's own examples. Any other path, in any payload shape, is refused with the same line
  whether or not it exists, so the API is neither a file reader nor an existence oracle.
- `CpuBudget`: one token per core; every CPU-heavy request holds one while it computes (torch runs
  one thread per request in the app), so concurrent requests never run more compute threads than
  there are cores, and a long video job holds one core, never both.
- `Job`: a cancel flag and a deadline for one request. Long work calls `job.progress(f, desc)`
  between frames/batches; once the client cancels, disconnects or the deadline passes, the next
  call raises `JobCancelled` and the work stops and frees its core.
- `sweep_leftovers`: what a killed process left behind (half-written cache entries, private
  per-request video caches, stale uploads).
- `safe_name`: a user's file name, fit to appear in a message (no folders, printable, short); the
  app HTML-escapes every message it shows.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from rvs.errors import BadInputError, RvsError

log = logging.getLogger(__name__)

NOT_UPLOADED = "that file was not uploaded to this app: upload it (or click an example) and try again"


class JobCancelled(RvsError):
    """The request was cancelled, its client went away, or it ran past the app's time limit."""


def safe_name(name: object, default: str = "file") -> str:
    """The last path component of a user-supplied file name, printable characters only, at most
    80 of them (not escaped: messages are escaped as a whole where they are shown)."""
    s = str(name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    s = "".join(c for c in s if c.isprintable()) or default
    return s[:80] + ("..." if len(s) > 80 else "")


class UploadGuard:
    """Which server files a request may read: those under `roots` (Gradio's upload folder) and
    the exact `files` the app offers as examples."""

    def __init__(self, roots: Iterable[str | os.PathLike], files: Iterable[str | os.PathLike] = ()):
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.files = {os.path.realpath(f) for f in files}

    def check(self, path: object) -> str:
        """The real path if it may be read; else BadInputError(NOT_UPLOADED). Nothing about the
        file (exists, is a folder, is an image) is looked at before it is allowed."""
        if not isinstance(path, (str, os.PathLike)) or not str(path) or "\x00" in str(path):
            raise BadInputError(NOT_UPLOADED)
        real = os.path.realpath(str(path))
        if real in self.files or any(Path(real).is_relative_to(r) and Path(real) != r for r in self.roots):
            return real
        raise BadInputError(NOT_UPLOADED)


class CpuBudget:
    """`cores` tokens; `with budget.slot():` holds one while a request computes."""

    def __init__(self, cores: int):
        self.cores = max(1, int(cores))
        self._sem = threading.BoundedSemaphore(self.cores)
        self._lock = threading.Lock()
        self.in_use = 0
        self.peak = 0

    @contextlib.contextmanager
    def slot(self, job: Job | None = None) -> Iterator[None]:
        while not self._sem.acquire(timeout=0.2):
            if job is not None:
                job.check()
        with self._lock:
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._lock:
                self.in_use -= 1
            self._sem.release()


class Job:
    """Cancel flag + deadline of one request. `progress` wraps a UI progress callback so that
    every progress report is also a cancellation point."""

    def __init__(self, time_limit_s: float | None = None, what: str = "this search", on_progress: Callable[[float, str], None] | None = None):
        self._cancel = threading.Event()
        self.deadline = time.monotonic() + time_limit_s if time_limit_s else None
        self.time_limit_s = time_limit_s
        self.what = what
        self._on_progress = on_progress
        self.reason: str | None = None

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline and not self._cancel.is_set():
            self.cancel(f"{self.what} ran past this app's limit of {self.time_limit_s:.0f} s; try a shorter video or the command line")
        if self._cancel.is_set():
            raise JobCancelled(self.reason or "cancelled")

    def progress(self, fraction: float, desc: str) -> None:
        self.check()
        if self._on_progress is not None:
            self._on_progress(fraction, desc)


def sweep_leftovers(cache_dir: str | os.PathLike, upload_dir: str | os.PathLike | None = None, older_than_s: float = 900) -> int:
    """Remove what killed processes left: `.tmp-*` entries in the video cache, private per-request
    video caches (`requests/`), and uploads older than `older_than_s`. Returns how many."""
    removed = 0
    now = time.time()
    cache = Path(cache_dir)

    def old(p: Path) -> bool:
        try:
            return now - p.lstat().st_mtime > older_than_s
        except OSError:
            return False

    candidates = [*cache.glob("video/*/.tmp-*"), *cache.glob("video/.tmp-*"), *cache.glob("requests/*")]
    if upload_dir is not None and Path(upload_dir).is_dir():
        candidates += list(Path(upload_dir).iterdir())
    for p in candidates:
        if not old(p):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed += 1
        except OSError as e:
            log.debug("cannot remove %s: %s", p, e)
    return removed


def trim_memory() -> None:
    """Give freed heap back to the OS (glibc keeps it otherwise, so RSS stays at its peak after
    a burst of video searches)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class ErrorLines:
    """The last error of each browser session, for its answer area: the toast of a failed event
    vanishes after a few seconds; the line a `.failure` listener writes from here stays."""

    MAX_SESSIONS = 10_000  # sessions that never came back for their line

    def __init__(self) -> None:
        self._lines: dict[str, str] = {}
        self._lock = threading.Lock()

    def put(self, request: object, e: BaseException) -> None:
        key = getattr(request, "session_hash", None)
        if not key:
            return
        text = str(e).splitlines()[0][:300] if isinstance(e, RvsError) and str(e) else f"unexpected error ({type(e).__name__}); please try another file"
        with self._lock:
            self._lines[key] = text
            while len(self._lines) > self.MAX_SESSIONS:
                self._lines.pop(next(iter(self._lines)))

    def pop(self, request: object) -> str:
        with self._lock:
            return self._lines.pop(getattr(request, "session_hash", None) or "", "")
