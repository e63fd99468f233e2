"""The embedding stage on Ray Data: photos (a folder or a list of URIs) -> faces -> embeddings,
spread over a Ray cluster, or a local Ray when no address is given.

`python -m rvs index FOLDER --ray [ADDRESS]` (or `--uris LIST --ray ...`) runs detection and
embedding here instead of in-process, and hands back the same per-photo records
(`rvs.gallery.embedding.PhotoFaces`) as the single-process path, so everything after it (the index, the
update logic, the calibration) is shared. Each Ray actor loads its own detector and embedder
(once) from `Config`, reads its photos itself (a worker of a cluster reads the URIs; local paths
must exist on every node), and returns embeddings as bytes. The weights must be where `Config`
says on every node (the default weights are converted once per machine into its rvs cache).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from rvs.config import PROJECT_ROOT, Config

log = logging.getLogger(__name__)


class _EmbedStage:
    """A Ray Data actor: detector + embedder loaded once, then batches of photos."""

    def __init__(self, config: Config, all_faces: bool, threads: int):
        import torch

        from rvs.faces.detect import FaceDetector
        from rvs.faces.embedders import create_embedder

        torch.set_num_threads(max(1, threads))
        self.config, self.all_faces = config, all_faces
        self.detector = FaceDetector(config)
        self.embedder = create_embedder(config)

    def __call__(self, batch: dict) -> dict:
        from rvs.errors import BadInputError
        from rvs.gallery.embedding import detect_embed
        from rvs.gallery.photos import Photo, read_uri

        photos = [Photo(str(k), "", str(s)) for k, s in zip(batch["key"], batch["src"])]
        datas = []
        for p in photos:
            try:
                datas.append(read_uri(p.src))
            except BadInputError:
                datas.append(p.src)  # unreadable: the stage reports it with load_image's message
        res, _, _ = detect_embed(photos, self.config, self.detector, self.embedder, self.all_faces, progress=False, datas=datas)
        return {
            "key": np.array([r.key for r in res], dtype=object),
            "n": np.array([len(r.embeddings) for r in res], np.int64),
            "emb": np.array([r.embeddings.astype(np.float32).tobytes() for r in res], dtype=object),
            "boxes": np.array([r.boxes.astype(np.float32).tobytes() for r in res], dtype=object),
            "probs": np.array([r.probs.astype(np.float32).tobytes() for r in res], dtype=object),
            "error": np.array([r.error or "" for r in res], dtype=object),
        }


@contextmanager
def ray_session(address: str | None = "") -> Iterator[None]:
    """A Ray to run on: "" or None = a local Ray started here and stopped afterwards; "auto" or
    "ray://host:10001" = an existing cluster (left running)."""
    try:
        import ray
    except ImportError as e:  # pragma: no cover - ray is pinned in requirements
        from rvs.errors import RvsError

        raise RvsError("--ray needs Ray: pip install 'ray[data]' (pinned in requirements.txt)") from e
    started_here = False
    if not ray.is_initialized():
        kw = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if address:
            ray.init(address=address, **kw)
        else:
            # A local Ray: a small object store (the records are small) instead of 30% of RAM, and
            # workers that import this very rvs (on a cluster, rvs must be installed on the nodes).
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local only, no port outside this machine
            root = str(PROJECT_ROOT)
            pp = os.pathsep.join(x for x in (root, os.environ.get("PYTHONPATH", "")) if x)
            ray.init(object_store_memory=256 * 2**20, runtime_env={"env_vars": {"PYTHONPATH": pp}}, **kw)
            started_here = True
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


def ray_detect_embed(
    photos: Sequence,
    config: Config,
    address: str | None = "",
    all_faces: bool = False,
    progress: bool = True,
    batch_size: int = 32,
    actors: int | None = None,
):
    """Run the embedding stage over `photos` (rvs.gallery.photos.Photo) on Ray Data.

    address: "" or None = a local Ray (started here, stopped afterwards); "auto" or
    "ray://host:10001" = an existing cluster. actors: embedding actors (default: one per CPU
    of the cluster, one torch thread each). Returns (PhotoFaces in the order of `photos`,
    seconds, 0.0): detection and embedding run interleaved on the workers, so their time is one
    figure (reported as detect seconds)."""
    from rvs.faces.embedders import get_spec
    from rvs.gallery.embedding import PhotoFaces

    if not photos:
        return [], 0.0, 0.0
    t0 = time.perf_counter()
    with ray_session(address):
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.print_on_execution_start = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n_actors = actors or max(1, cpus)
        ds = ray.data.from_items([{"key": p.key, "src": str(p.src)} for p in photos], override_num_blocks=max(1, min(len(photos) // batch_size, 4 * n_actors)))
        ds = ds.map_batches(
            _EmbedStage,
            fn_constructor_kwargs={"config": config, "all_faces": all_faces, "threads": max(1, cpus // n_actors)},
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=max(1, cpus // n_actors),
            concurrency=n_actors,
        )
        rows = ds.take_all()
    by_key = {}
    for r in rows:
        n = int(r["n"])
        by_key[str(r["key"])] = PhotoFaces(
            str(r["key"]),
            np.frombuffer(r["boxes"], np.float32).reshape(n, 4),
            np.frombuffer(r["probs"], np.float32).reshape(n),
            np.frombuffer(r["emb"], np.float32).reshape(n, -1) if n else np.zeros((0, get_spec(config.model).dim), np.float32),
            str(r["error"]) or None,
        )
    missing = [p.key for p in photos if p.key not in by_key]
    if missing:
        raise RuntimeError(f"Ray returned no record for {len(missing)} photos (e.g. {missing[0]})")
    return [by_key[p.key] for p in photos], time.perf_counter() - t0, 0.0
