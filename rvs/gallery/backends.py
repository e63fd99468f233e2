"""Gallery search backends behind one small interface: exact (numpy), Annoy, Milvus.

Every backend searches the same thing, the rows of a gallery's N x D unit embeddings, and
answers the same way: (ids, distances), each n_queries x k, ids being row numbers of the
embeddings (-1 / inf where fewer than k exist), distances Euclidean between unit vectors (0..2).

- `ExactBackend`: numpy matrix product over all rows. The default below `Config.exact_max`
  faces: at LFW's size it is faster than any approximate index (bench/results/scale.json).
- `AnnoyBackend`: Annoy forest built in memory from the embeddings (never loaded from a file:
  a tampered index.ann crashed Annoy's native loader). Static: adding or removing rows rebuilds
  it from the stored embeddings on the next search. The default above `Config.exact_max`.
- `MilvusBackend`: a Milvus collection through pymilvus. `uri` "" or a path ending in .db is
  embedded Milvus Lite (a local store this machine creates, by default `milvus.db` in the index
  folder); `http://host:19530` is a Milvus server or cluster: the same code, for galleries that
  outgrow one machine. Rows map to Milvus primary keys that only grow, so adding and removing
  faces is an insert and a delete, not a rebuild.

`make_backend(name, ...)` picks one by name; `resolve(name, n)` says what "auto" means at n faces.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

BACKENDS = ("auto", "exact", "annoy", "milvus")


def unit_distance(sims: np.ndarray) -> np.ndarray:
    """Euclidean distance between unit vectors from their dot product: d^2 = 2 - 2 cos."""
    return np.sqrt(np.clip(2.0 - 2.0 * np.asarray(sims, np.float32), 0.0, None)).astype(np.float32)


def resolve(name: str, n: int, exact_max: int) -> str:
    """The backend a setting means for a gallery of n faces ("auto": exact up to exact_max, else annoy)."""
    if name not in BACKENDS:
        raise ValueError(f"search backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    if name == "auto":
        return "exact" if n <= exact_max else "annoy"
    return name


class SearchBackend(Protocol):
    """k-nearest-neighbour search over the rows of a gallery's unit embeddings."""

    name: str

    def build(self, embeddings: np.ndarray) -> None:
        """(Re)index all rows from scratch."""

    def add(self, embeddings: np.ndarray) -> None:
        """Rows appended after the current last row (the caller has already appended them to its array)."""

    def remove(self, rows: np.ndarray) -> None:
        """Rows deleted; rows after them move up (as np.delete does to the caller's array)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, distances), n_queries x k; -1 / inf where fewer than k rows exist."""

    def settings(self) -> dict:
        """What the manifest records about this backend."""

    def close(self) -> None: ...


def _empty(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((nq, k), -1, np.int64), np.full((nq, k), np.inf, np.float32)


class ExactBackend:
    """Brute force: one matrix product per batch of queries, exact by construction."""

    name = "exact"

    def __init__(self, embeddings: np.ndarray | None = None):
        self.embeddings = np.zeros((0, 0), np.float32) if embeddings is None else embeddings

    def build(self, embeddings: np.ndarray) -> None:
        self.embeddings = embeddings

    def add(self, embeddings: np.ndarray) -> None:
        self.embeddings = np.concatenate([self.embeddings, embeddings]) if len(self.embeddings) else embeddings

    def remove(self, rows: np.ndarray) -> None:
        self.embeddings = np.delete(self.embeddings, rows, axis=0)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return exact_search(self.embeddings, queries, k)

    def settings(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def exact_search(embeddings: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = np.atleast_2d(np.asarray(queries, np.float32))
    n = len(embeddings)
    ids_out, d_out = _empty(len(q), k)
    kk = min(k, n)
    if kk == 0:
        return ids_out, d_out
    sims = q @ embeddings.T
    ids = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(q), 1))
    order = np.take_along_axis(-sims, ids, axis=1).argsort(axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)
    ids_out[:, :kk] = ids
    d_out[:, :kk] = unit_distance(np.take_along_axis(sims, ids, axis=1))
    return ids_out, d_out


class AnnoyBackend:
    """Annoy forest (angular metric = Euclidean on unit vectors), built in memory from the
    embeddings on first search after any change.

    dims > 0: the forest is built over the embeddings projected on their top `dims` principal
    axes (fitted on up to 50k rows), which makes each candidate D/dims times cheaper to score (D: the model's size);
    the best `candidates` it finds are re-ranked with the full embeddings, so the distances
    returned are exact ones and only recall is approximate."""

    name = "annoy"
    _lock = threading.Lock()

    def __init__(self, n_trees: int, search_k: int, seed: int = 0, embeddings: np.ndarray | None = None, dims: int = 0, candidates: int = 100):
        self.n_trees, self.search_k, self.seed = int(n_trees), int(search_k), seed
        self.dims, self.candidates = int(dims), int(candidates)
        self.embeddings = np.zeros((0, 0), np.float32) if embeddings is None else embeddings
        self._ann = None
        self._proj = None  # (mean, D x dims) when projecting

    def build(self, embeddings: np.ndarray) -> None:
        self.embeddings = embeddings
        self._ann = None
        self.forest()

    def _fit_projection(self):
        x, n = self.embeddings, len(self.embeddings)
        # Projecting pays when it cuts each candidate's cost several-fold (FaceNet's 512-d onto 64
        # axes). SFace's 128-d onto 64 lost neighbours no search_k brought back (LFW recall@10
        # 0.936 at any search_k, bench/retrieval.py): small vectors are searched as they are.
        if not self.dims or x.ndim != 2 or 4 * self.dims > x.shape[1] or n < 4 * self.dims:
            return None
        rng = np.random.default_rng(self.seed)
        sample = x[np.sort(rng.choice(n, min(n, 50_000), replace=False))].astype(np.float64)
        mu = sample.mean(0)
        _, _, vt = np.linalg.svd(sample - mu, full_matrices=False)
        return mu.astype(np.float32), np.ascontiguousarray(vt[: self.dims].T, dtype=np.float32)

    def forest(self):
        with self._lock:
            if self._ann is None:
                from annoy import AnnoyIndex

                self._proj = self._fit_projection()
                dim = self.dims if self._proj is not None else (int(self.embeddings.shape[1]) if self.embeddings.ndim == 2 else 0)
                ann = AnnoyIndex(dim, "angular")
                ann.set_seed(self.seed)
                for s in range(0, len(self.embeddings), 100_000):
                    chunk = self._project(self.embeddings[s : s + 100_000])
                    for i, v in enumerate(chunk, start=s):
                        ann.add_item(i, v)
                ann.build(self.n_trees, n_jobs=-1)
                self._ann = ann
            return self._ann

    def _project(self, x: np.ndarray) -> np.ndarray:
        if self._proj is None:
            return x
        mu, p = self._proj
        return (x - mu) @ p

    def add(self, embeddings: np.ndarray) -> None:
        self.embeddings = np.concatenate([self.embeddings, embeddings]) if len(self.embeddings) else embeddings
        self._ann = None  # Annoy cannot grow a built forest: rebuilt from the embeddings when next searched

    def remove(self, rows: np.ndarray) -> None:
        self.embeddings = np.delete(self.embeddings, rows, axis=0)
        self._ann = None

    def search(self, queries: np.ndarray, k: int, search_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = np.atleast_2d(np.asarray(queries, np.float32))
        ids, dists = _empty(len(q), k)
        if not len(self.embeddings):
            return ids, dists
        ann = self.forest()
        sk = self.search_k if search_k is None else int(search_k)
        if self._proj is None:
            for r, v in enumerate(q):
                i, dd = ann.get_nns_by_vector(v, k, search_k=sk, include_distances=True)
                ids[r, : len(i)] = i
                dists[r, : len(dd)] = dd
            return ids, dists
        low = self._project(q)
        for r, v in enumerate(q):
            cand = np.asarray(ann.get_nns_by_vector(low[r], max(k, self.candidates), search_k=sk), np.int64)
            sims = self.embeddings[cand] @ v
            top = np.argsort(-sims, kind="stable")[:k]
            ids[r, : len(top)] = cand[top]
            dists[r, : len(top)] = unit_distance(sims[top])
        return ids, dists

    def settings(self) -> dict:
        return {"n_trees": self.n_trees, "search_k": self.search_k, "dims": self.dims, "candidates": self.candidates}

    def close(self) -> None:
        if self._ann is not None:
            self._ann.unload()
        self._ann = None


class MilvusBackend:
    """A Milvus collection of the gallery's embeddings (inner product on unit vectors).

    uri: a path ending in .db = embedded Milvus Lite (created here); http(s)://... or tcp://...
    = a Milvus server or cluster (token for authentication). Row i of the gallery is primary key
    keys[i]; keys only grow, so a removal keeps the order and rows are found by searchsorted.
    """

    name = "milvus"

    def __init__(
        self,
        uri: str,
        collection: str = "rvs_faces",
        index_type: str = "FLAT",
        index_params: dict | None = None,
        search_params: dict | None = None,
        token: str = "",
        batch: int = 1_000,  # Milvus Lite slows ~300x on inserts of >~2,000 rows of 512-d at once
    ):
        self.uri, self.collection, self.token, self.batch = str(uri), collection, token, batch
        self.index_type = index_type
        self.index_params = dict(index_params or {})
        self.search_params = dict(search_params or {})
        self.keys = np.zeros(0, np.int64)
        self._client = None
        self._loaded = False
        self._dim = None

    # ---- connection ----
    @property
    def is_lite(self) -> bool:
        return self.uri.endswith(".db")

    def client(self):
        if self._client is None:
            try:
                from pymilvus import MilvusClient
            except ImportError as e:  # pragma: no cover - pymilvus is pinned in requirements.txt
                raise RuntimeError("the milvus backend needs pymilvus (and milvus-lite for a local store): pip install -r requirements.txt") from e
            if self.is_lite:
                Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
            self._client = MilvusClient(self.uri, token=self.token) if self.token else MilvusClient(self.uri)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing a dead connection is not an error
                pass
        self._client = None
        self._loaded = False
        if self.is_lite:  # the embedded server holds the store's lock until it is stopped
            try:
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.uri)
            except ImportError:
                pass

    # ---- writes ----
    def build(self, embeddings: np.ndarray) -> None:
        from pymilvus import DataType, MilvusClient

        c = self.client()
        if c.has_collection(self.collection):
            c.drop_collection(self.collection)
        dim = int(embeddings.shape[1]) if embeddings.ndim == 2 and embeddings.shape[1] else 512
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
        ip = c.prepare_index_params()
        ip.add_index("vec", index_type=self.index_type, metric_type="IP", params=self.index_params)
        c.create_collection(self.collection, schema=schema, index_params=ip)
        self._dim = dim
        self.keys = np.zeros(0, np.int64)
        self.add(embeddings)
        c.load_collection(self.collection)
        self._loaded = True

    def add(self, embeddings: np.ndarray) -> None:
        if not len(embeddings):
            return
        start = int(self.keys[-1]) + 1 if len(self.keys) else 0
        new = np.arange(start, start + len(embeddings), dtype=np.int64)
        c = self.client()
        for s in range(0, len(embeddings), self.batch):
            rows = [{"id": int(i), "vec": v} for i, v in zip(new[s : s + self.batch], np.asarray(embeddings[s : s + self.batch], np.float32))]
            c.insert(self.collection, rows)
        c.flush(self.collection)  # sealed, indexed segments: Milvus Lite searches unflushed rows row by row in Python
        self.keys = np.concatenate([self.keys, new])

    def remove(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return
        gone = self.keys[rows]
        c = self.client()
        for s in range(0, len(gone), self.batch):
            c.delete(self.collection, ids=[int(i) for i in gone[s : s + self.batch]])
        c.flush(self.collection)
        self.keys = np.delete(self.keys, rows)

    # ---- reads ----
    def count(self) -> int | None:
        """Rows the collection holds, or None when it does not exist."""
        c = self.client()
        if not c.has_collection(self.collection):
            return None
        return int(c.get_collection_stats(self.collection).get("row_count", -1))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.atleast_2d(np.asarray(queries, np.float32))
        ids, dists = _empty(len(q), k)
        if not len(self.keys):
            return ids, dists
        if not self._loaded:
            self.client().load_collection(self.collection)  # a reopened store starts released
            self._loaded = True
        res = self.client().search(
            self.collection, data=[v for v in q], limit=k, output_fields=[], search_params={"metric_type": "IP", "params": self.search_params}
        )
        for r, hits in enumerate(res):
            got = np.array([h["id"] for h in hits], np.int64)
            sims = np.array([h["distance"] for h in hits], np.float32)
            rows = np.searchsorted(self.keys, got)
            ok = (rows < len(self.keys)) & (self.keys[np.minimum(rows, len(self.keys) - 1)] == got)
            rows, sims = rows[ok][:k], sims[ok][:k]
            ids[r, : len(rows)] = rows
            dists[r, : len(rows)] = unit_distance(sims)
        return ids, dists

    def settings(self) -> dict:
        return {
            "uri": "milvus-lite (local store in the index folder)" if self.is_lite else redact(self.uri),
            "collection": self.collection,
            "index_type": self.index_type,
            "index_params": self.index_params,
            "search_params": self.search_params,
        }

    # ---- a local record of what the collection holds (derived state, never trusted blindly) ----
    def write_state(self, folder: Path, embeddings_sha256: str) -> None:
        np.save(folder / "milvus_keys.npy", self.keys, allow_pickle=False)
        (folder / "milvus.json").write_text(json.dumps({"collection": self.collection, "n": int(len(self.keys)), "embeddings_sha256": embeddings_sha256}))

    def adopt_state(self, folder: Path, embeddings_sha256: str, n: int) -> bool:
        """Reuse the collection when its record says it holds these embeddings and it has n rows."""
        try:
            st = json.loads((folder / "milvus.json").read_text())
            keys = np.load(folder / "milvus_keys.npy", allow_pickle=False)
        except (OSError, ValueError):
            return False
        if st.get("embeddings_sha256") != embeddings_sha256 or st.get("collection") != self.collection or len(keys) != n or keys.dtype != np.int64:
            return False
        if n and (np.any(np.diff(keys) <= 0)):
            return False
        try:
            if self.count() != n:
                return False
            self.client().load_collection(self.collection)
            self._loaded = True
        except Exception:  # noqa: BLE001 - any doubt about the store: rebuild it
            return False
        self.keys = keys
        return True


def redact(uri: str) -> str:
    """A server URI without credentials (user:password@host)."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return uri


def collection_name(index_dir: str | Path | None) -> str:
    """A Milvus collection name for a gallery folder (one server can hold many galleries)."""
    tag = hashlib.sha256(str(Path(index_dir).resolve() if index_dir else "memory").encode()).hexdigest()[:12]
    return f"rvs_{tag}"


def make_backend(
    name: str,
    n: int,
    *,
    exact_max: int,
    n_trees: int,
    search_k: int,
    milvus_uri: str = "",
    milvus_token: str = "",
    milvus_index: str = "FLAT",
    milvus_index_params: dict | None = None,
    milvus_search_params: dict | None = None,
    index_dir: str | Path | None = None,
    annoy_dims: int = 0,
    annoy_candidates: int = 100,
) -> SearchBackend:
    """The backend `name` means for a gallery of n faces (see module doc); not yet built."""
    kind = resolve(name, n, exact_max)
    if kind == "exact":
        return ExactBackend()
    if kind == "annoy":
        return AnnoyBackend(n_trees, search_k, dims=annoy_dims, candidates=annoy_candidates)
    if milvus_uri:
        uri = milvus_uri
    elif index_dir is not None:
        uri = str(Path(index_dir) / "milvus.db")
    else:
        raise ValueError("the milvus backend needs Config.milvus_uri or an index folder for its local store")
    return MilvusBackend(
        uri,
        collection=collection_name(index_dir) if not str(uri).endswith(".db") else "rvs_faces",
        index_type=milvus_index,
        index_params=milvus_index_params,
        search_params=milvus_search_params,
        token=milvus_token,
    )
