"""Face mode: find the segments of a video where the person in the query image appears.

Frames are sampled at `video_face_fps` (default 2 a second: people rarely appear for less than
half a second, and detection is the expensive part), faces are detected with MTCNN in batches of
`video_face_batch` frames and embedded with the InceptionResnetV1 embedder. The query's largest
face is embedded the same way; a video face matches when the Euclidean distance between the unit
embeddings is <= `Config.video_face_threshold` (1.0: on LFW pairs.txt 1 false match in 3,000
different-person pairs, 92% of same-person pairs kept; a video compares thousands of faces, so the
accuracy-optimal 1.15 would count other people, profiles especially, as the query). Scores are cosine
similarities, 1 - distance^2 / 2, in [-1, 1]; the curve is the best face's similarity per sample
(NaN where a frame has no face).

Video frames are detected at `video_face_max_side` pixels (the query at `detect_max_side`) with
`video_min_face_size`: MTCNN's cost grows with the pixels scanned and the pyramid depth, and faces
smaller than ~50 px in a 1080p frame give unreliable embeddings anyway. Torch runs with
`video_torch_threads` (1) threads meanwhile, leaving the other core to the decode thread.

The detected faces (frame, box, probability, embedding) are cached per video content hash, sampling
rate and embedding recipe (rvs.faces.recipe: weights, centre, precision, detector, crop geometry,
detection thresholds), so asking about another person in the same video
costs one query embedding: `meta.json` + `faces.npz` (frames int32[S], face_sample int32[F],
boxes float32[F, 4], probs float32[F], embeddings float32[F, model size]), no pickle.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from rvs.config import Config
from rvs.errors import NoQueryFaceError
from rvs.faces.detect import FaceDetector
from rvs.faces.embedders import FaceEmbedder, create_embedder, embed_faces, video_threshold
from rvs.faces.recipe import detection_settings, embedder_precision, embedder_settings, embedding_recipe, recipe_digest
from rvs.imageio import ImageLike, load_image
from rvs.progress import Progress, scaled_progress
from rvs.video import cache
from rvs.video.cache import CACHE_VERSION, StageTimer, cache_meta, info_from_meta, write_json
from rvs.video.info import VideoInfo
from rvs.video.reader import FrameStream, SharedSetting, check_video_path
from rvs.video.results import FaceBox, FrameHit, VideoResult, group_segments

log = logging.getLogger(__name__)

KIND = "faces"

# Models are loaded once per process (the app calls the search many times): detectors per
# device and detection settings of the embedding recipe (rvs.faces.recipe: detector, crop geometry,
# thresholds), embedders per device, weights cache and embedder settings (weights, centring,
# precision).
_DETECTORS: dict[tuple, FaceDetector] = {}
_EMBEDDERS: dict[tuple, FaceEmbedder] = {}
_MODELS_LOCK = threading.Lock()


def _detector_memo_key(c: Config) -> tuple:
    return (c.device, recipe_digest(detection_settings(c)), c.detect_batch_size)


def _embedder_memo_key(c: Config) -> tuple:
    return (c.device, str(c.cache_dir), recipe_digest(embedder_settings(c)), c.embed_batch_size)


def get_detector(config: Config) -> FaceDetector:
    key = _detector_memo_key(config)
    with _MODELS_LOCK:
        if key not in _DETECTORS:
            _DETECTORS[key] = FaceDetector(config)
        return _DETECTORS[key]


def get_embedder(config: Config) -> FaceEmbedder:
    key = _embedder_memo_key(config)
    with _MODELS_LOCK:
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = create_embedder(config)
        return _EMBEDDERS[key]


_TORCH_THREADS = SharedSetting(torch.get_num_threads, torch.set_num_threads)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with `n` torch intra-op threads (0: unchanged), restored when the last overlapping face
    search ends (the setting is process-wide). See `Config.video_torch_threads` for why."""
    if n <= 0:
        yield
        return
    with _TORCH_THREADS.hold(n):
        yield


def video_detect_config(config: Config) -> Config:
    """The detection settings used on video frames (see the module docstring)."""
    return dataclasses.replace(config, detect_max_side=config.video_face_max_side, min_face_size=config.video_min_face_size)


@dataclasses.dataclass
class FaceTrack:
    """The cached faces of one video's sampled frames."""

    info: VideoInfo
    sample_fps: float
    frames: np.ndarray  # int32 [S] frame index of each sample
    face_sample: np.ndarray  # int32 [F] which sample each face is in
    boxes: np.ndarray  # float32 [F, 4]
    probs: np.ndarray  # float32 [F]
    embeddings: np.ndarray  # float32 [F, dim], unit rows (the model's size)


def _params(config: Config, embedder: FaceEmbedder) -> dict:
    """The cache entry's key: sampling, and the embedding recipe of the video's faces (detected
    with the video detection settings, embedded by `embedder`)."""
    return {
        "sample_fps": config.video_face_fps,
        "recipe": embedding_recipe(video_detect_config(config), embedder.model_id, embedder_precision(embedder)),
    }


def _parse_entry(entry: Path, meta: dict) -> FaceTrack:
    """A faces entry's faces; ValueError when its arrays disagree (see `rvs.video.cache.read_entry`)."""
    with np.load(entry / "faces.npz", allow_pickle=False) as z:
        frames, fs, boxes, probs, emb = (z[k] for k in ("frames", "face_sample", "boxes", "probs", "embeddings"))
    n_faces = len(fs)
    if len(frames) != meta["n_samples"] or not (len(boxes) == len(probs) == len(emb) == n_faces == meta["n_faces"]):
        raise ValueError("arrays of inconsistent length")
    if n_faces and (emb.ndim != 2 or emb.shape[1] < 2 or fs.min() < 0 or fs.max() >= len(frames)):
        raise ValueError("bad embedding shape or face index")
    return FaceTrack(info_from_meta(meta), meta["sample_fps"], frames, fs, boxes.reshape(-1, 4), probs, emb.reshape(n_faces, -1) if n_faces else np.zeros((0, 2), np.float32))


def _extract(path: Path, config: Config, embedder: FaceEmbedder, out_dir: Path, progress: Progress | None) -> None:
    """Decode sampled frames, detect and embed their faces, write them into `out_dir`."""
    detector = get_detector(video_detect_config(config))
    bs = max(1, config.video_face_batch)
    stream = FrameStream(
        path, config.video_face_fps, lambda bgr: cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), progress, "finding faces", queue_size=bs
    )
    frames: list[int] = []
    face_sample: list[int] = []
    boxes: list[np.ndarray] = []
    probs: list[float] = []
    embs: list[np.ndarray] = []
    batch: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        found = detector.detect([Image.fromarray(rgb) for _, rgb in batch])
        kept = []
        for (i, _), faces in zip(batch, found):
            frames.append(i)
            for f in faces:
                face_sample.append(len(frames) - 1)
                boxes.append(np.asarray(f.box, np.float32))
                probs.append(float(f.prob))
                kept.append(f)
        if kept:
            embs.append(embed_faces(embedder, kept))
        batch.clear()

    for i, rgb in stream:
        batch.append((i, rgb))
        if len(batch) >= bs:
            flush()
    if batch:
        flush()
    info = stream.info
    np.savez(
        out_dir / "faces.npz",
        frames=np.asarray(frames, np.int32),
        face_sample=np.asarray(face_sample, np.int32),
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        probs=np.asarray(probs, np.float32),
        embeddings=np.concatenate(embs).astype(np.float32) if embs else np.zeros((0, embedder.spec.dim), np.float32),
    )
    write_json(
        out_dir / "meta.json",
        cache_meta(KIND, CACHE_VERSION, _params(config, embedder), stream.sample_fps, info, path, n_samples=len(frames), n_faces=len(face_sample)),
    )


def load_or_extract(
    path: Path, config: Config, embedder: FaceEmbedder, progress: Progress | None = None, timer: StageTimer | None = None
) -> tuple[FaceTrack, bool]:
    """The video's faces from the cache, else found now (and cached). Returns (faces, from_cache)."""
    return cache.load_or_extract(
        path, config, KIND, _params(config, embedder), _parse_entry, lambda d: _extract(path, config, embedder, d, progress), timer
    )


def query_embedding(query_image: ImageLike, config: Config, embedder: FaceEmbedder) -> tuple[np.ndarray, np.ndarray]:
    """(embedding, box) of the largest face in the query image; NoQueryFaceError if there is none."""
    img = load_image(query_image, config.max_pixels)
    faces = get_detector(config).detect_one(img)
    if not faces:
        label = str(query_image) if isinstance(query_image, (str, os.PathLike)) else "query image"
        raise NoQueryFaceError(
            f"{label}: no face found in the query image (face mode looks for a person; use frame mode to find the image itself)"
        )
    face = faces[0]  # detect() sorts largest first
    return embed_faces(embedder, [face])[0], face.box


def search_faces(query_image: ImageLike, video_path: str | os.PathLike, config: Config, progress: Progress | None = None) -> VideoResult:
    """See `rvs.video.api.search_video_faces`."""
    with torch_threads(config.video_torch_threads):
        return _search_faces(query_image, video_path, config, progress)


def _search_faces(query_image: ImageLike, video_path: str | os.PathLike, config: Config, progress: Progress | None) -> VideoResult:
    timer = StageTimer()
    with timer.stage("models_s"):
        embedder = get_embedder(config)
    with timer.stage("query_features_s"):
        q, q_box = query_embedding(query_image, config, embedder)  # bad query fails before decoding
    path = check_video_path(video_path)
    track, cached = load_or_extract(path, config, embedder, scaled_progress(progress, 0.0, 0.97), timer)
    if progress:
        progress(0.97, "matching faces")
    with timer.stage("match_s"):
        dist = np.linalg.norm(track.embeddings - q[None], axis=1) if len(track.embeddings) else np.zeros(0, np.float32)
        sim = 1.0 - dist**2 / 2.0
        n = len(track.frames)
        best = np.full(n, np.nan, np.float32)  # best similarity per sample (NaN: no face)
        best_face = np.full(n, -1, np.int64)
        for k in np.argsort(-sim, kind="stable"):  # best first, so the first seen per sample wins
            s = track.face_sample[k]
            if best_face[s] < 0:
                best_face[s], best[s] = k, sim[k]
        times = track.frames / track.info.fps

        def face_box(k: int) -> FaceBox:
            return FaceBox(tuple(float(v) for v in track.boxes[k]), float(track.probs[k]), float(dist[k]), float(sim[k]))

        hits = []
        matching = dist <= video_threshold(config)
        for s in np.unique(track.face_sample[matching]):
            ks = np.flatnonzero(matching & (track.face_sample == s))
            ks = ks[np.argsort(dist[ks])]
            hits.append(
                FrameHit(frame=int(track.frames[s]), time=float(times[s]), score=float(best[s]), rank=float(best[s]), faces=[face_box(k) for k in ks])
            )
        segments = group_segments(hits, config.video_segment_gap)
        closest = None
        if np.isfinite(best).any():
            s = int(np.nanargmax(best))
            k = int(best_face[s])
            closest = FrameHit(int(track.frames[s]), float(times[s]), float(best[s]), float(best[s]), faces=[face_box(k)])
    if progress:
        progress(1.0, "done")
    return VideoResult.of(
        "face",
        path,
        track.info,
        track.sample_fps,
        cached,
        n_samples=n,
        threshold=video_threshold(config),
        segments=segments,
        curve=[(float(t), float(b)) for t, b in zip(times, best)],
        closest=closest,
        timings=timer.done(),
        query_box=tuple(float(v) for v in q_box),
    )
