"""Files that are data: checksums and atomic writes (a crash never leaves a half-written file
under its final name). Shared by the index, weights, evaluation caches, exports and downloads."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a temporary file in the same directory, then os.replace it onto `path`,
    so a crash or a second process never leaves a half-written file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600; give the file the permissions of an ordinary one (umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj, **dump_kw) -> None:
    """JSON to `path` atomically, flushed to disk before it replaces the old file. dump_kw go to
    json.dump (default indent=1)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, **{"indent": 1, **dump_kw})
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


@contextmanager
def folder_swap(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary sibling of `out` to fill; when the block ends, swap it in place of
    `out` (the old folder is removed); when it raises, remove it. `out` is therefore always either
    the old folder or the complete new one (index folders, artifact folders)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
