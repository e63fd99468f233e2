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
recomputed checksum (a broken or hostile publisher) crashed the process there. Search goes
through one of the backends of `rvs.gallery.backends` (exact numpy, Annoy, Milvus), the setting recorded
in the manifest (`search_backend`): "auto" is exact up to `exact_max` items, faster than Annoy at
such sizes, and above it an Annoy forest rebuilt in memory from the verified embeddings (finite
unit vectors, right shape, no pickle). A Milvus store is one this machine created: its local
record (`milvus.json`, not in the manifest, never published) must name these very embeddings,
else the collection is rebuilt from them.

Galleries grow and shrink in place: `add` appends faces, `remove` drops rows; each backend
updates itself (Milvus: insert/delete; Annoy: rebuilt from the embeddings on next search).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rvs.errors import IndexError_
from rvs.fileio import folder_swap, sha256_file, write_json_atomic
from rvs.gallery import backends as B

FORMAT = "rvs-face-index"
VERSION = 1
# Exact search up to this many gallery faces by default ("auto"; Config.exact_max says why).
EXACT_MAX = 60_000
# Search settings an index records in its manifest ("search_backend"), with their defaults.
SEARCH_DEFAULTS = {
    "backend": "auto",
    "exact_max": EXACT_MAX,
    "annoy_dims": 64,
    "annoy_candidates": 100,
    "milvus_uri": "",
    "milvus_index": "FLAT",
    "milvus_index_params": {},
    "milvus_search_params": {},
}
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
    # rvs.gallery.backends setting: backend ("auto" | "exact" | "annoy" | "milvus"), exact_max, milvus_*
    search_settings: dict = field(default_factory=lambda: dict(SEARCH_DEFAULTS))
    folder: Path | None = None  # where it was loaded from / saved to (Milvus Lite's store lives there)
    # Source photo -> sha256 of its bytes, for every photo indexed (with or without a face):
    # what `build_index(update=True)` compares to embed only new or changed photos. sources.json.
    sources: dict[str, str] = field(default_factory=dict)
    _backend: object = None
    _annoy_side: object = None

    def __post_init__(self):
        self.embeddings = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        n = len(self.embeddings)
        for k in META_FIELDS:
            if len(self.meta.get(k, [])) != n:
                raise IndexError_(f"metadata field {k!r} has {len(self.meta.get(k, []))} rows for {n} embeddings")
        self.search_settings = {**SEARCH_DEFAULTS, **(self.search_settings or {})}
        B.resolve(self.search_settings["backend"], 0, 0)  # a bad name fails here, not at the first search

    def configure(self, config) -> FaceIndex:
        """Take the search settings of a `Config` (backend, exact_max, Annoy and Milvus settings)."""
        self.close_backend()
        self.n_trees, self.search_k = config.n_trees, config.search_k
        self.search_settings = {
            "backend": config.search_backend,
            "exact_max": config.exact_max,
            "annoy_dims": config.annoy_dims,
            "annoy_candidates": config.annoy_candidates,
            "milvus_uri": config.milvus_uri,
            "milvus_index": config.milvus_index,
            "milvus_index_params": dict(config.milvus_index_params),
            "milvus_search_params": dict(config.milvus_search_params),
        }
        B.resolve(config.search_backend, 0, 0)
        return self

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1]) if self.embeddings.ndim == 2 else 0

    @property
    def n_identities(self) -> int:
        return len(set(self.meta["identity"]))

    # ---- the search backend ----
    @property
    def backend_name(self) -> str:
        """The backend this index searches with now ("exact", "annoy" or "milvus")."""
        return B.resolve(self.search_settings["backend"], len(self), int(self.search_settings["exact_max"]))

    def backend(self):
        """The search backend, built (from the verified embeddings) on first use."""
        with _ANNOY_LOCK:
            if self._backend is not None and self._backend.name != self.backend_name:
                self.close_backend()  # the gallery grew past (or shrank below) exact_max
            if self._backend is None:
                self._backend = self._make_backend()
            return self._backend

    def _make_backend(self, folder: Path | None = None):
        st = self.search_settings
        kind = self.backend_name
        folder = folder or self.folder
        if kind == "milvus" and folder is None and not st["milvus_uri"]:
            folder = Path(tempfile.mkdtemp(prefix="rvs-milvus-"))  # an index not saved yet: a throwaway local store
        be = B.make_backend(
            kind,
            len(self),
            exact_max=int(st["exact_max"]),
            n_trees=self.n_trees,
            search_k=self.search_k,
            milvus_uri=st["milvus_uri"],
            milvus_token=os.environ.get("RVS_MILVUS_TOKEN", ""),
            milvus_index=st["milvus_index"],
            milvus_index_params=st["milvus_index_params"],
            milvus_search_params=st["milvus_search_params"],
            index_dir=folder,
            annoy_dims=int(st["annoy_dims"]),
            annoy_candidates=int(st["annoy_candidates"]),
        )
        if kind == "milvus" and folder is not None and self.manifest.get("files", {}).get("embeddings.npy"):
            if be.adopt_state(folder, self.manifest["files"]["embeddings.npy"]["sha256"], len(self)):
                return be
        be.build(self.embeddings)
        return be

    def close_backend(self) -> None:
        if self._backend is not None:
            self._backend.close()
        self._backend = None

    def _annoy_be(self, seed: int = 0) -> B.AnnoyBackend:
        """An Annoy backend over the embeddings, whatever the backend setting (exact=False, benchmarks)."""
        if isinstance(self._backend, B.AnnoyBackend):
            return self._backend
        if self._annoy_side is None:
            st = self.search_settings
            self._annoy_side = B.AnnoyBackend(
                self.n_trees, self.search_k, seed, embeddings=self.embeddings, dims=int(st["annoy_dims"]), candidates=int(st["annoy_candidates"])
            )
        return self._annoy_side

    def annoy(self):
        """The Annoy forest, built in memory from the embeddings on first use."""
        return self._annoy_be().forest()

    def build_annoy(self, seed: int = 0):
        """Build the Annoy forest now (it is otherwise built on first search)."""
        self._annoy_side = None
        if isinstance(self._backend, B.AnnoyBackend):
            self._backend.build(self.embeddings)
        return self._annoy_be(seed).forest()

    # ---- growing and shrinking ----
    def add(self, embeddings: np.ndarray, meta: dict[str, list]) -> None:
        """Append faces (unit embeddings + their META_FIELDS rows); the backend follows."""
        emb = np.ascontiguousarray(np.atleast_2d(np.asarray(embeddings, np.float32)))
        if not len(emb):
            return
        if any(len(meta[k]) != len(emb) for k in META_FIELDS):
            raise IndexError_("add: metadata rows do not match the embeddings")
        check_embeddings(emb, "new faces")
        self.embeddings = np.concatenate([self.embeddings, emb]) if len(self.embeddings) else emb
        for k in META_FIELDS:
            self.meta[k] = list(self.meta[k]) + list(meta[k])
        self._changed(lambda be: be.add(emb))

    def remove(self, rows) -> int:
        """Drop these rows (indices or a boolean mask); returns how many went."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = np.unique(rows.astype(np.int64))
        if not len(rows):
            return 0
        self.embeddings = np.ascontiguousarray(np.delete(self.embeddings, rows, axis=0))
        gone = set(rows.tolist())
        for k in META_FIELDS:
            self.meta[k] = [v for i, v in enumerate(self.meta[k]) if i not in gone]
        self._changed(lambda be: be.remove(rows))
        return len(rows)

    def _changed(self, update: Callable[[B.SearchBackend], None]) -> None:
        """After rows were added or removed: drop the derived Annoy side structure, and bring an
        open backend along (`update`), or close it when the configured backend changed."""
        self._annoy_side = None
        if self._backend is not None:
            if self._backend.name != self.backend_name:
                self.close_backend()
            else:
                update(self._backend)

    # ---- save / load ----
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write the index folder atomically (temporary sibling, then swap)."""
        out = Path(out_dir)
        with folder_swap(out) as tmp:
            # No index.ann: rvs never loads an Annoy file (its forest is built from the verified
            # embeddings), so none is written or shipped.
            np.save(tmp / "embeddings.npy", self.embeddings, allow_pickle=False)
            meta = {k: list(self.meta[k]) for k in META_FIELDS}
            with open(tmp / "meta.json", "w") as f:
                json.dump(meta, f)
            names = ["embeddings.npy", "meta.json"]
            if self.sources:
                with open(tmp / "sources.json", "w") as f:
                    json.dump(self.sources, f)
                names.append("sources.json")
            files = {}
            for name in names:
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
                # The Milvus URI is recorded without credentials, and never read back (see load).
                "search_backend": {**self.search_settings, "milvus_uri": B.redact(self.search_settings["milvus_uri"]), "now": self.backend_name},
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": files,
                **self.extra,
            }
            write_json_atomic(tmp / "manifest.json", self.manifest)
            self._save_milvus(out, tmp, files["embeddings.npy"]["sha256"])
        self.folder = out
        return out

    def _save_milvus(self, out: Path, tmp: Path, emb_sha: str) -> None:
        """A Milvus backend keeps its collection: a Milvus Lite store moves into the new folder
        (closed first; reopened on next search) and the local record names the new embeddings."""
        if self.backend_name != "milvus":
            self.close_backend()
            return
        be = self._backend
        if be is not None and be.is_lite and self.folder is not None and Path(be.uri).parent.resolve() == self.folder.resolve() and out.resolve() == self.folder.resolve():
            be.close()
            os.replace(Path(be.uri), tmp / Path(be.uri).name)
        elif be is None or (be.is_lite and Path(be.uri).parent.resolve() != out.resolve()):
            # Not built, or built elsewhere (memory, another folder): build it for this folder
            # (a Milvus Lite store inside the new folder; a server collection named after it).
            self.close_backend()
            lite = not self.search_settings["milvus_uri"]
            be = self._make_backend(tmp if lite else out)
            be.close()
            if lite:
                be.uri = str(out / "milvus.db")
        else:
            be.close()
        be.write_state(tmp, emb_sha)
        self._backend = be

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
        known = {"format", "version", "model_id", "metric", "dim", "n_items", "n_identities", "n_trees", "search_k", "search_backend", "created", "files"}
        extra = {k: v for k, v in manifest.items() if k not in known}
        st = manifest.get("search_backend") or {}
        if not isinstance(st, dict) or st.get("backend", "auto") not in B.BACKENDS:
            raise IndexError_(f"{d}: manifest search_backend is malformed")
        settings = {k: st[k] for k in SEARCH_DEFAULTS if k in st}
        # Where a Milvus server is, is this machine's setting (RVS_MILVUS_URI), not the index's: a
        # downloaded manifest must not point the app at a server of its choosing.
        settings["milvus_uri"] = os.environ.get("RVS_MILVUS_URI", "")
        sources = {}
        if "sources.json" in manifest.get("files", {}):
            try:
                sources = json.loads((d / "sources.json").read_text())
            except (OSError, ValueError) as e:
                raise IndexError_(f"{d}: cannot read sources.json ({e})") from None
            if not isinstance(sources, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sources.items()):
                raise IndexError_(f"{d}: sources.json must map photo paths to sha256 strings")
        return cls(emb, meta, manifest["model_id"], int(manifest["n_trees"]), int(manifest["search_k"]), manifest, extra, settings, d, sources)

    # ---- search ----
    def search(self, queries: np.ndarray, k: int = 20, exact: bool | None = None, search_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest gallery items for each query row. exact: True numpy, False Annoy, None (default)
        the index's backend (`search_settings`; "auto": numpy up to exact_max items, else Annoy).

        Returns (ids, distances), each n_queries x k (ids -1 / distance inf where fewer than k exist).
        """
        q = np.atleast_2d(np.asarray(queries, np.float32))
        k = max(1, min(k, len(self)))
        if exact or len(self) == 0:
            return self.search_exact(q, k)
        if exact is False or search_k is not None:
            return self._annoy_be().search(q, k, search_k)
        return self.backend().search(q, k)

    def search_exact(self, queries: np.ndarray, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(k, len(self)))
        return B.exact_search(self.embeddings, queries, k)

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
