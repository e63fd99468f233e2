"""The gallery index: Annoy for fast search, exact numpy search as the reference.

An index is a folder:
    manifest.json    format, model id, metric, counts, Annoy settings, sha256 + size of every file
    index.ann        Annoy forest over the unit embeddings (angular metric)
    embeddings.npy   float32 N x D unit embeddings (exact search, rebuilds); loaded without pickle
    meta.json        per item: identity, image path, face box, detection probability

Distances everywhere are Euclidean distances between unit vectors (0..2); Annoy's "angular"
metric is exactly that. The folder is written to a temporary sibling and swapped in, and the
manifest is checked at load, so a crash or a partial copy never yields a silently wrong index.

A loaded `index.ann` is never handed to Annoy's native loader: a file with flipped bytes and a
recomputed checksum (a broken or hostile publisher) crashed the process there. Search is exact
(numpy) below `EXACT_MAX` items, faster than Annoy at such sizes; above it the Annoy forest is
rebuilt in memory from the verified embeddings (finite unit vectors, right shape, no pickle).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rvs.errors import IndexError_
from rvs.fileio import sha256_file, write_json_atomic

FORMAT = "rvs-face-index"
VERSION = 1
# Exact search up to this many gallery faces (0.2 ms/query on LFW's 13k; bench/results/retrieval.json).
EXACT_MAX = 200_000
META_FIELDS = ("identity", "path", "box", "prob")
_ANNOY_LOCK = threading.Lock()


@dataclass
class FaceIndex:
    """Unit embeddings + metadata, searchable with Annoy (approximate) or numpy (exact).

    embeddings: float32 N x D, rows L2-normalised.
    meta: dict of equal-length lists, keys META_FIELDS (identity str, path str, box [x1,y1,x2,y2], prob float).
    """

    embeddings: np.ndarray
    meta: dict[str, list]
    model_id: str
    n_trees: int = 50
    search_k: int = 150_000
    manifest: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # saved into the manifest (e.g. source_folder)
    _annoy: object = None

    def __post_init__(self):
        self.embeddings = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        n = len(self.embeddings)
        for k in META_FIELDS:
            if len(self.meta.get(k, [])) != n:
                raise IndexError_(f"metadata field {k!r} has {len(self.meta.get(k, []))} rows for {n} embeddings")

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1]) if len(self.embeddings) else 512

    @property
    def n_identities(self) -> int:
        return len(set(self.meta["identity"]))

    # ---- build / save / load ----
    def annoy(self):
        """The Annoy forest, built in memory from the embeddings on first use."""
        with _ANNOY_LOCK:
            if self._annoy is None:
                self.build_annoy()
            return self._annoy

    def build_annoy(self, seed: int = 0):
        from annoy import AnnoyIndex

        ann = AnnoyIndex(self.dim, "angular")
        ann.set_seed(seed)
        for i, v in enumerate(self.embeddings):
            ann.add_item(i, v)
        ann.build(self.n_trees, n_jobs=-1)
        self._annoy = ann
        return ann

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write the index folder atomically (temporary sibling, then swap)."""
        out = Path(out_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        if self._annoy is None:
            self.build_annoy()
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        self._annoy.save(str(tmp / "index.ann"), prefault=False)
        # Annoy's save() mmaps the file it wrote; reload from the final path later.
        self._annoy.unload()
        self._annoy = None
        np.save(tmp / "embeddings.npy", self.embeddings, allow_pickle=False)
        meta = {k: list(self.meta[k]) for k in META_FIELDS}
        with open(tmp / "meta.json", "w") as f:
            json.dump(meta, f)
        files = {}
        for name in ("index.ann", "embeddings.npy", "meta.json"):
            p = tmp / name
            files[name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        self.manifest = {
            "format": FORMAT,
            "version": VERSION,
            "model_id": self.model_id,
            "metric": "euclidean-unit (annoy angular)",
            "dim": self.dim,
            "n_items": len(self),
            "n_identities": self.n_identities,
            "n_trees": self.n_trees,
            "search_k": self.search_k,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files,
            **self.extra,
        }
        write_json_atomic(tmp / "manifest.json", self.manifest)
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return out

    @classmethod
    def load(cls, index_dir: str | os.PathLike, verify: bool = True, expect_model_id: str | None = None) -> FaceIndex:
        """Load and check an index folder; raise IndexError_ with a clear message if anything is off."""
        d = Path(index_dir)
        manifest = read_manifest(d)
        if verify:
            verify_files(d, manifest)
        if expect_model_id is not None and manifest["model_id"] != expect_model_id:
            raise IndexError_(
                f"{d}: index was built with model {manifest['model_id']!r}, but the embedder is "
                f"{expect_model_id!r}; rebuild it with `python -m rvs index`"
            )
        try:
            emb = np.load(d / "embeddings.npy", allow_pickle=False)
            with open(d / "meta.json") as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise IndexError_(f"{d}: cannot read index data ({e})") from None
        if emb.ndim != 2 or emb.shape != (manifest["n_items"], manifest["dim"]):
            raise IndexError_(f"{d}: embeddings are {emb.shape}, manifest says ({manifest['n_items']}, {manifest['dim']})")
        check_embeddings(emb, str(d))
        check_meta(meta, len(emb), str(d))
        known = {"format", "version", "model_id", "metric", "dim", "n_items", "n_identities", "n_trees", "search_k", "created", "files"}
        extra = {k: v for k, v in manifest.items() if k not in known}
        return cls(emb, meta, manifest["model_id"], int(manifest["n_trees"]), int(manifest["search_k"]), manifest, extra)

    # ---- search ----
    def search(self, queries: np.ndarray, k: int = 20, exact: bool | None = None, search_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest gallery items for each query row. exact: True numpy, False Annoy, None (default)
        numpy up to EXACT_MAX items, else Annoy.

        Returns (ids, distances), each n_queries x k (ids -1 / distance inf where fewer than k exist).
        """
        q = np.atleast_2d(np.asarray(queries, np.float32))
        k = max(1, min(k, len(self)))
        if exact is None:
            exact = len(self) <= EXACT_MAX
        if exact or len(self) == 0:
            return self.search_exact(q, k)
        ann = self.annoy()
        sk = self.search_k if search_k is None else search_k
        ids = np.full((len(q), k), -1, np.int64)
        dists = np.full((len(q), k), np.inf, np.float32)
        for r, v in enumerate(q):
            i, dd = ann.get_nns_by_vector(v, k, search_k=sk, include_distances=True)
            ids[r, : len(i)] = i
            dists[r, : len(dd)] = dd
        return ids, dists

    def search_exact(self, queries: np.ndarray, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
        q = np.atleast_2d(np.asarray(queries, np.float32))
        k = max(1, min(k, len(self)))
        sims = q @ self.embeddings.T
        ids = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(-sims, ids, axis=1).argsort(axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
        s = np.take_along_axis(sims, ids, axis=1)
        return ids.astype(np.int64), np.sqrt(np.clip(2.0 - 2.0 * s, 0.0, None)).astype(np.float32)

    def item(self, i: int) -> dict:
        return {k: self.meta[k][i] for k in META_FIELDS}


def check_embeddings(emb: np.ndarray, label: str) -> None:
    """Finite float unit vectors, or IndexError_: NaN rows would give NaN distances, and a
    tampered file must not reach the search."""
    if emb.dtype.kind != "f":
        raise IndexError_(f"{label}: embeddings are {emb.dtype}, not floats; not using it")
    if len(emb) and (not np.all(np.isfinite(emb)) or np.max(np.abs(np.linalg.norm(emb, axis=1) - 1.0)) > 1e-2):
        raise IndexError_(f"{label}: embeddings are not finite unit vectors (corrupt or tampered); not using it")


def check_meta(meta: object, n: int, label: str) -> None:
    """Per-item metadata of the right shape and types, or IndexError_."""
    if not isinstance(meta, dict):
        raise IndexError_(f"{label}: meta.json is not an object")
    for k in META_FIELDS:
        v = meta.get(k)
        if not isinstance(v, list) or len(v) != n:
            raise IndexError_(f"{label}: meta.json field {k!r} is missing or has the wrong length")
    if not all(isinstance(x, str) and x for x in meta["identity"]) or not all(isinstance(x, str) for x in meta["path"]):
        raise IndexError_(f"{label}: meta.json identities and paths must be strings")
    if not all(isinstance(b, list) and len(b) == 4 and all(isinstance(c, (int, float)) for c in b) for b in meta["box"]):
        raise IndexError_(f"{label}: meta.json boxes must be 4 numbers each")


def read_manifest(d: Path) -> dict:
    if not d.exists():
        raise IndexError_(f"no index at {d}: build one with `python -m rvs index FOLDER --out {d}`")
    mp = d / "manifest.json"
    if not mp.exists():
        raise IndexError_(f"{d}: not an rvs index (no manifest.json)")
    try:
        manifest = json.loads(mp.read_text())
    except ValueError as e:
        raise IndexError_(f"{d}: manifest.json is corrupt ({e})") from None
    if manifest.get("format") != FORMAT:
        raise IndexError_(f"{d}: manifest format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("version", 0) > VERSION:
        raise IndexError_(f"{d}: index format version {manifest['version']} is newer than this rvs ({VERSION})")
    return manifest


def verify_files(
    d: Path,
    manifest: dict,
    label: str | None = None,
    source: str = "manifest",
    error_for: Callable[[str], type[Exception]] = lambda name: IndexError_,
) -> None:
    """Check every file listed in `manifest["files"]` under `d`: present, right size, right sha256.

    label names the folder in messages, source the listing ("manifest", "rvs.json"), and
    error_for(name) the exception class for a bad file (weights and index files fail differently)."""
    label = label or str(d)
    for name, info in manifest.get("files", {}).items():
        err, p = error_for(name), d / name
        if not p.is_file():
            raise err(f"{label}: {name} is missing")
        size = p.stat().st_size
        if size != info["bytes"]:
            raise err(f"{label}: {name} is {size} bytes, {source} says {info['bytes']} (truncated or replaced); not using it")
        digest = sha256_file(p)
        if digest != info["sha256"]:
            raise err(
                f"{label}: {name} fails its sha256 check (got {digest[:12]}..., {source} says {str(info['sha256'])[:12]}...): "
                "the file is corrupt or was tampered with; not using it"
            )
