"""Progress for long CLI jobs: a tqdm bar on a terminal, plain log lines otherwise.

Piped or logged stderr (CI, nohup, a Space's log) gets one line per 10% or per 30 s, whichever
comes first, instead of carriage-return bars or nothing at all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

# A long job's progress callback: (fraction done in [0, 1], what it is doing).
Progress = Callable[[float, str], None]


def scaled_progress(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    """Map a stage's 0..1 progress into [lo, hi] of the whole job."""
    if progress is None:
        return None
    return lambda f, desc: progress(lo + (hi - lo) * max(0.0, min(1.0, f)), desc)


class LineProgress:
    """tqdm's small API used by rvs (update, n, set_description_str, close, context manager)."""

    def __init__(self, total: float, desc: str, file: TextIO, unit: str = "%", every_s: float = 30.0, step: float = 0.1):
        self.total, self.desc, self.file, self.unit = float(total), desc, file, unit
        self.n = 0.0
        self.every_s, self.step = every_s, step
        self.t0 = self._last_t = time.monotonic()
        self._last_frac = 0.0

    def set_description_str(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def update(self, k: float = 1) -> None:
        self.n += k
        frac = self.n / self.total if self.total else 0.0
        now = time.monotonic()
        if frac - self._last_frac >= self.step or now - self._last_t >= self.every_s or frac >= 1.0 > self._last_frac:
            self._last_frac, self._last_t = frac, now
            print(f"[rvs] {self.desc}: {frac:.0%} ({now - self.t0:.0f} s)", file=self.file, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(total: float, desc: str, file: TextIO | None = None, **tqdm_kw: Any) -> Any:
    """tqdm on a terminal, LineProgress otherwise."""
    file = file or sys.stderr
    if getattr(file, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, file=file, **tqdm_kw)
    return LineProgress(total, desc, file)


def say(msg: str) -> None:
    """A one-line status message on stderr (start-up, gallery building): visible in a terminal and
    in a Space's log."""
    print(f"[rvs] {msg}", file=sys.stderr, flush=True)
