"""The video library on disk, and loading it back (checked).

    DIR/library.json            manifest: version, model id and recipe, settings, one entry per video
    DIR/vectors.npy             float32 V x dim: every video's track vectors, in manifest order
    DIR/vector_refs.npy         int32 V x 2: (video number in the manifest, row in its tracks' vectors)
    DIR/videos/<id>/tracks.npz  the video's face tracks (rvs.video.tracks.FaceTracks)
    DIR/videos/<id>/features.npz, orb.u8, orb_xy.f16, thumbs.u8, meta.json
                                its frame-mode features per sample (rvs.video.frames.FeatureWriter),
                                plus `shots` (int32 per sample) in shots.npy

A video's folder is written whole before it is named in the manifest (rvs.fileio.folder_swap);
the vector matrix and the manifest are rewritten atomically after every change, vectors first,
so a crash leaves the old library or the new one. Loading checks every array against the
manifest: a damaged library gives one line, not a wrong answer.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rvs.config import Config
from rvs.errors import IndexError_
from rvs.fileio import atomic_write, write_json_atomic
from rvs.video.tracks import FaceTracks

log = logging.getLogger(__name__)

VERSION = 1
MANIFEST = "library.json"


@dataclass
class VideoEntry:
    """One indexed video: where it was, what it is, what was found."""

    id: str  # content hash (rvs.video.cache.video_key): the same file renamed is the same video
    name: str  # its path relative to the indexed folder
    path: str  # where it was indexed (frames and refinement read it when it is still there)
    size: int
    mtime: float
    duration: float
    fps: float
    width: int
    height: int
    sample_fps: float
    n_samples: int
    n_faces: int
    n_tracks: int
    n_vectors: int
    n_shots: int
    index_seconds: float


@dataclass
class Library:
    """A loaded library (see the module docstring)."""

    folder: Path
    model_id: str
    recipe: dict
    settings: dict
    videos: list[VideoEntry]
    vectors: np.ndarray
    refs: np.ndarray
    _tracks: dict[int, FaceTracks] = field(default_factory=dict, repr=False)
    _frames: dict[int, object] = field(default_factory=dict, repr=False)
    _backend: object | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def hours(self) -> float:
        return sum(v.duration for v in self.videos) / 3600.0

    def video_dir(self, i: int) -> Path:
        return self.folder / "videos" / self.videos[i].id

    def tracks(self, i: int) -> FaceTracks:
        with self._lock:
            if i not in self._tracks:
                self._tracks[i] = read_tracks(self.video_dir(i))
            return self._tracks[i]

    def frames(self, i: int):
        """(FrameFeatures, shots int32 [N]) of video i, memory-mapped."""
        from rvs.video.frames import read_features

        with self._lock:
            if i not in self._frames:
                d = self.video_dir(i)
                feats = read_features(d)
                shots = np.load(d / "shots.npy", allow_pickle=False)
                if len(shots) != len(feats.times):
                    raise IndexError_(f"{d}: shots.npy has {len(shots)} rows for {len(feats.times)} samples (damaged library)")
                self._frames[i] = (feats, shots)
            return self._frames[i]

    def backend(self, config: Config):
        """The search backend over the track vectors (built once; see rvs.gallery.backends)."""
        from rvs.gallery import backends as B

        with self._lock:
            if self._backend is None:
                be = B.make_backend(
                    config.search_backend, len(self.vectors), exact_max=config.exact_max, n_trees=config.n_trees,
                    search_k=config.search_k, milvus_uri=config.milvus_uri, milvus_token=os.environ.get("RVS_MILVUS_TOKEN", ""),
                    milvus_index=config.milvus_index, milvus_index_params=config.milvus_index_params,
                    milvus_search_params=config.milvus_search_params, index_dir=self.folder,
                    annoy_dims=config.annoy_dims, annoy_candidates=config.annoy_candidates,
                )
                be.build(self.vectors)
                self._backend = be
            return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def save_npy(path: Path, arr: np.ndarray) -> None:
    """A .npy file (no pickle), written atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)

    atomic_write(path, write)


def read_tracks(video_dir: Path) -> FaceTracks:
    try:
        with np.load(video_dir / "tracks.npz", allow_pickle=False) as z:
            return FaceTracks.from_arrays(z)
    except (OSError, ValueError, KeyError) as e:
        raise IndexError_(f"{video_dir}: unreadable face tracks ({e}); re-index the video (damaged library)") from None


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise IndexError_(f"no video library at {folder} (build one with `python -m rvs videos index FOLDER --out {folder}`)")
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise IndexError_(f"{path}: unreadable library manifest ({e})") from None
    if not isinstance(m, dict) or m.get("version") != VERSION or not isinstance(m.get("videos"), list):
        raise IndexError_(f"{path}: not a version-{VERSION} video library manifest (re-index it)")
    return m


def load(folder: str | os.PathLike, expect_model_id: str | None = None) -> Library:
    """Load and check a library folder; IndexError_ (one line) when anything is off."""
    folder = Path(folder)
    m = read_manifest(folder)
    try:
        videos = [VideoEntry(**v) for v in m["videos"]]
    except TypeError as e:
        raise IndexError_(f"{folder / MANIFEST}: malformed video entry ({e})") from None
    try:
        vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        refs = np.load(folder / "vector_refs.npy", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise IndexError_(f"{folder}: unreadable library vectors ({e}); re-index") from None
    n = sum(v.n_vectors for v in videos)
    if vectors.ndim != 2 or len(vectors) != n or refs.shape != (n, 2) or vectors.shape[1] != int(m.get("dim", -1)):
        raise IndexError_(f"{folder}: the library's vectors ({vectors.shape}) disagree with its manifest ({n} vectors of {m.get('dim')} dims); re-index")
    if n and (refs[:, 0].min() < 0 or refs[:, 0].max() >= len(videos)):
        raise IndexError_(f"{folder}: vector_refs.npy points at missing videos; re-index")
    if not np.all(np.isfinite(vectors)):
        raise IndexError_(f"{folder}: the library's vectors hold NaN or inf; re-index")
    if expect_model_id is not None and m["model_id"] != expect_model_id:
        raise IndexError_(
            f"the video library at {folder} was built with {m['model_id']}, not {expect_model_id}: "
            f"search it with --model {m.get('model', '?')} or re-index it"
        )
    for v in videos:  # a library shipped with its videos names them relative to its folder
        if not Path(v.path).is_absolute():
            rel = Path(v.path)
            if ".." in rel.parts:
                raise IndexError_(f"{folder / MANIFEST}: a video path leaves the library folder ({v.path!r})")
            v.path = str(folder / rel)
    return Library(folder, m["model_id"], m.get("recipe", {}), m.get("settings", {}), videos, vectors.astype(np.float32), refs.astype(np.int64))


def save(folder: Path, model_id: str, model: str, dim: int, recipe: dict, settings: dict, videos: list[VideoEntry]) -> Library:
    """Rebuild the vector matrix from the videos' tracks and write it and the manifest (atomically)."""
    vecs, refs = [], []
    for k, v in enumerate(videos):
        tracks = read_tracks(folder / "videos" / v.id)
        if len(tracks.vectors) != v.n_vectors:
            raise IndexError_(f"{folder / 'videos' / v.id}: {len(tracks.vectors)} vectors, the manifest says {v.n_vectors}")
        vecs.append(tracks.vectors.astype(np.float32).reshape(-1, dim))
        refs.append(np.stack([np.full(len(tracks.vectors), k, np.int32), np.arange(len(tracks.vectors), dtype=np.int32)], 1))
    vectors = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
    ref_arr = np.concatenate(refs) if refs else np.zeros((0, 2), np.int32)
    save_npy(folder / "vectors.npy", vectors)
    save_npy(folder / "vector_refs.npy", ref_arr)
    from rvs import __version__

    write_json_atomic(
        folder / MANIFEST,
        {
            "version": VERSION,
            "model": model,
            "model_id": model_id,
            "dim": dim,
            "recipe": recipe,
            "settings": settings,
            "n_videos": len(videos),
            "hours": round(sum(v.duration for v in videos) / 3600.0, 4),
            "n_vectors": len(vectors),
            "rvs_version": __version__,
            "videos": [asdict(v) for v in videos],
        },
    )
    return Library(folder, model_id, recipe, settings, videos, vectors, ref_arr.astype(np.int64))
