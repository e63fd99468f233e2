"""Where a gallery's photos come from: a folder (folder-per-person like LFW, or flat: one identity
per file) or a list of URIs (local paths, file://, or anything pyarrow.fs reads), each photo
keyed by its path or URI and read as bytes (`read_uri`), hashed by content (`content_hash`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from rvs.errors import BadInputError, RvsError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(folder: str | Path) -> list[tuple[str, Path]]:
    """(identity, path) for every image under `folder`, sorted.

    Folder-per-person (LFW style): identity is the sub-folder name. A flat folder: identity is
    the file name without extension (one identity per image).
    """
    folder = Path(folder)
    out = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTS and p.is_file():
            rel = p.relative_to(folder)
            ident = rel.parts[0] if len(rel.parts) > 1 else p.stem
            out.append((ident, p))
    return out


@dataclass
class Photo:
    """One photo to index: `key` (its path relative to the gallery folder, or its URI), the
    identity it shows, and `src` (a local path, or a URI read with `read_uri`)."""

    key: str
    identity: str
    src: str | Path


def folder_photos(folder: Path) -> list[Photo]:
    """Every image under `folder`: folder-per-person (identity = sub-folder) or flat (= file name)."""
    return [Photo(str(p.relative_to(folder)), ident, p) for ident, p in list_images(folder)]


def uri_photos(list_file: str | Path) -> list[Photo]:
    """Photos from a list file: one URI per line (a path, file://, or anything pyarrow.fs reads:
    s3://, gs://, hdfs://...), or "IDENTITY<TAB>URI"; identity defaults to the URI's parent folder."""
    out = []
    for line in Path(list_file).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        ident, _, uri = line.rpartition("\t")
        parts = uri.rstrip("/").split("/")
        ident = ident or (parts[-2] if len(parts) > 1 else Path(uri).stem)
        out.append(Photo(uri, ident, uri))
    if not out:
        raise RvsError(f"{list_file}: no URIs listed")
    return out


def read_uri(src: str | Path) -> bytes:
    """The bytes of a photo: a local path, file://..., or a URI pyarrow.fs can open."""
    s = str(src)
    if "://" not in s or s.startswith("file://"):
        p = Path(s.removeprefix("file://"))
        try:
            return p.read_bytes()
        except OSError as e:
            raise BadInputError(f"{s}: cannot read ({e.strerror or e})") from None
    try:
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(s)
        with filesystem.open_input_stream(path) as f:
            return f.read()
    except Exception as e:  # noqa: BLE001 - any failure to fetch is one skipped photo
        raise BadInputError(f"{s}: cannot read ({e})") from None


def read_uri_or_none(src) -> bytes | None:
    try:
        return read_uri(src)
    except BadInputError:
        return None


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
