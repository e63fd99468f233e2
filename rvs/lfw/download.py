"""Fetch LFW (deep-funneled images + the protocol lists) onto a fresh machine.

    python -m rvs lfw download [--dest DIR] [--url BASE]

Lays out `DIR/images_deepfunneled/<Name>/<Name>_NNNN.jpg` plus `pairs.txt`, the View 1 lists and
`people.txt`: what `rvs.lfw`, evaluation and training read (`DIR` defaults to `<RVS_DATA>/lfw`).
The protocol lists are checked against pinned sha256 digests; the image archive (no published
digest) by its byte count and by the number of people and images it unpacks to. An interrupted
archive download is resumed with an HTTP Range request; unpacking goes to a temporary folder
that is renamed into place only when complete, so a folder that exists is a complete one.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

from tqdm import tqdm

from rvs.errors import RvsError
from rvs.fileio import sha256_file

LFW_BASE_URL = "https://vis-www.cs.umass.edu/lfw"
ARCHIVE = "lfw-deepfunneled.tgz"
IMAGES_DIR = "images_deepfunneled"
LFW_PEOPLE, LFW_IMAGES = 5749, 13233
# sha256 of the protocol lists as published (identical to ../shared/data/lfw).
PROTOCOL_FILES: dict[str, str] = {
    "pairs.txt": "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592",
    "pairsDevTrain.txt": "1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa",
    "pairsDevTest.txt": "7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c",
    "peopleDevTrain.txt": "2e58df13ba4cc143189336e001cc2c195f1dfa5b29a6475c02857be353c2a2fa",
    "peopleDevTest.txt": "c3ed1f90499473401542101a56c14c1d82396bb8218c67a356d7460601047555",
    "people.txt": "bc8fa2b7f25c895cf7efb6de4f4fc27ca8b8d1cfa63350ad8b96eae2b198d365",
    "lfw-names.txt": "403cd39411ee297f99f69241959bd8f0496b44377711913a76ccdd8562874164",
}
TIMEOUT_S = 30
CHUNK = 1 << 16  # bytes written at a time: what a dropped connection can lose at most


def _fetch(url: str, part: Path, progress: bool) -> None:
    """Download `url` into `part`, continuing an earlier partial download of it (Range request)."""
    import requests

    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT_S, headers=headers) as r:
            if r.status_code == 416:  # nothing left to send: the part is already whole
                return
            r.raise_for_status()
            if have and r.status_code != 206:  # the server ignored the range: start over
                have = 0
            total = int(r.headers.get("Content-Length", 0)) + have if "Content-Length" in r.headers else None
            with open(part, "ab" if have else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=not progress
            ) as bar:
                for chunk in r.iter_content(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as e:
        kept = f"; {part.stat().st_size:,} bytes kept in {part}, rerun to resume" if part.exists() and part.stat().st_size else ""
        raise RvsError(f"cannot download {url}: {e}{kept}") from None
    if total is not None and part.stat().st_size != total:
        raise RvsError(f"{url}: got {part.stat().st_size:,} of {total:,} bytes; rerun to resume")


def _protocol_file(base: str, name: str, digest: str, dest: Path, progress: bool) -> bool:
    """Fetch one protocol list unless a verified copy is there. Returns True if downloaded."""
    out = dest / name
    if out.is_file() and sha256_file(out) == digest:
        return False
    part = dest / f".{name}.part"
    part.unlink(missing_ok=True)  # small: always fetched whole
    _fetch(f"{base}/{name}", part, progress)
    got = sha256_file(part)
    if got != digest:
        part.unlink(missing_ok=True)
        raise RvsError(f"{base}/{name}: sha256 {got[:12]}... is not the published {digest[:12]}...; nothing was written")
    os.replace(part, out)
    return True


def count_images(folder: Path) -> tuple[int, int]:
    """(people, images) of a folder-per-person tree of .jpg files."""
    people = [d for d in folder.iterdir() if d.is_dir()]
    return len(people), sum(1 for d in people for p in d.iterdir() if p.suffix.lower() == ".jpg")


def _images(base: str, dest: Path, expect: tuple[int, int], progress: bool) -> bool:
    """Fetch and unpack the image archive unless a complete images folder is there."""
    out = dest / IMAGES_DIR
    if out.is_dir():
        return False
    part = dest / f".{ARCHIVE}.part"
    _fetch(f"{base}/{ARCHIVE}", part, progress)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest))
    try:
        try:
            with tarfile.open(part) as t:
                members = t.getmembers()
                for m in tqdm(members, desc="unpack", unit="file", disable=not progress):
                    t.extract(m, tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError) as e:
            part.unlink(missing_ok=True)  # a damaged archive cannot be resumed: fetch it again next time
            raise RvsError(f"{base}/{ARCHIVE}: damaged archive ({e}); removed, rerun to download it again") from None
        tops = [d for d in tmp.iterdir() if d.is_dir()]
        if len(tops) != 1:
            raise RvsError(f"{base}/{ARCHIVE}: expected one top folder, found {sorted(d.name for d in tops)}")
        got = count_images(tops[0])
        if got != expect:
            raise RvsError(f"{base}/{ARCHIVE}: unpacked {got[0]} people / {got[1]} images, expected {expect[0]} / {expect[1]}")
        os.replace(tops[0], out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    part.unlink(missing_ok=True)
    return True


def download_lfw(
    dest: str | Path,
    base_url: str | None = None,
    progress: bool = True,
    expect: tuple[int, int] | None = None,
    protocol_files: Mapping[str, str] = PROTOCOL_FILES,
) -> dict[str, bool]:
    """Put LFW into `dest` (see the module docstring); what is already there and verified is kept.

    base_url: where the files are (default `RVS_LFW_URL`, else the LFW site). expect: (people,
    images) the archive must unpack to (default: LFW's 5,749 / 13,233). Returns {file: downloaded now?}.
    """
    expect = expect or (LFW_PEOPLE, LFW_IMAGES)
    base = (base_url or os.environ.get("RVS_LFW_URL") or LFW_BASE_URL).rstrip("/")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    done = {name: _protocol_file(base, name, digest, dest, progress) for name, digest in protocol_files.items()}
    done[IMAGES_DIR] = _images(base, dest, expect, progress)
    return done
