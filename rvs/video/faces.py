"""Face mode: find the segments of a video where the person in the query image appears.

Frames are sampled at `video_face_fps` on the player's clock (default 2 a second: people rarely
appear for less than half a second), decoded shrunk to `video_face_max_side` pixels, and their
faces detected (YuNet for models reading aligned faces, else MTCNN: `Config.video_detector`),
linked into face tracks and embedded once per track chunk with the gallery's embedder
(rvs.video.tracks). The query's largest face is embedded the same way; a video face matches when
the Euclidean distance between its chunk's nearest vector and the query is <= the video
threshold (`Config.video_face_threshold`, by default the model's `EmbedderSpec.video_threshold`:
a video compares thousands of faces, so the 1:1 accuracy-optimal distance would count other
people as the query). Scores are cosine similarities, 1 - distance^2 / 2; the curve is the best
face's similarity per sample (NaN where a frame has no face).

Torch runs with `video_torch_threads` (1) threads meanwhile, leaving the other core to the
decode thread.

The tracks (rvs.video.tracks.FaceTracks: faces, their tracks and chunks, the embedded vectors)
are cached per video content hash, sampling rate, detector, tracker settings and embedding
recipe, so asking about another person in the same video costs one query embedding:
`meta.json` + `tracks.npz`, no pickle. The video library (rvs.library) stores the same.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from rvs.config import Config
from rvs.errors import BadInputError, NoQueryFaceError, WeightsError
from rvs.faces.detect import Face, FaceDetector, select_main_face
from rvs.faces.embedders import FaceEmbedder, create_embedder, embed_faces, get_spec, video_threshold
from rvs.faces.recipe import detection_settings, embedder_precision, embedder_settings, embedding_recipe, recipe_digest
from rvs.imageio import ImageLike, load_image
from rvs.progress import Progress, scaled_progress
from rvs.video import cache
from rvs.video.cache import CACHE_VERSION, StageTimer, cache_meta, info_from_meta, write_json
from rvs.video.info import VideoInfo
from rvs.video.reader import FrameStream, SharedSetting, check_video_path, use_yuv
from rvs.video.results import FaceBox, FrameHit, VideoResult, group_segments
from rvs.video.tracks import FaceTracks, Tracker

log = logging.getLogger(__name__)

KIND = "faces"
DETECTORS = ("auto", "yunet", "mtcnn")


def video_detect_config(config: Config) -> Config:
    """The detection settings used on video frames (see the module docstring)."""
    return dataclasses.replace(config, detect_max_side=config.video_face_max_side, min_face_size=config.video_min_face_size)


class FrameDetector:
    """Faces in video frames (RGB arrays, any size): YuNet or MTCNN behind one call."""

    def __init__(self, config: Config):
        if config.video_detector not in DETECTORS:
            raise BadInputError(f"unknown video face detector {config.video_detector!r} (expected one of {', '.join(DETECTORS)})")
        self.config = vc = video_detect_config(config)
        self.yunet = None
        wants_yunet = config.video_detector == "yunet" or (config.video_detector == "auto" and get_spec(config.model).inputs == ("aligned",))
        if wants_yunet:
            from rvs.faces.yunet import YuNetDetector

            try:
                self.yunet = YuNetDetector(config, min_face_size=config.video_min_face_size)
            except WeightsError as e:
                if config.video_detector == "yunet":
                    raise
                log.warning("%s; video faces are detected with MTCNN (slower)", e)
        self.mtcnn = FaceDetector(vc) if self.yunet is None else None
        self.name = "yunet-2023mar" if self.yunet is not None else "mtcnn"
        self.side = config.video_yunet_side

    def settings(self) -> dict:
        """What decides the faces found (part of the cache key and a library's recipe)."""
        if self.yunet is not None:
            from rvs.faces import yunet

            return {"detector": self.name, "score": yunet.SCORE_THRESHOLD, "nms": yunet.NMS_THRESHOLD, "min_face_size": self.config.min_face_size, "side": self.side}
        return detection_settings(self.config)

    def detect_query(self, rgb: np.ndarray, max_side: int) -> list[Face]:
        """The faces of a query photo as this detector sees them (YuNet: at up to `max_side`
        pixels, faces down to 20 px); [] for MTCNN (the query detector does that)."""
        if self.yunet is None:
            return []
        return self.yunet.detect_array(rgb, max_side, min_face_size=20)

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        if self.yunet is not None:
            return [self.yunet.detect_array(f, self.side) for f in frames]
        return self.mtcnn.detect([Image.fromarray(f) for f in frames])


@dataclasses.dataclass
class VideoFaceModels:
    """What face mode runs: the query's detector (the photo settings), the frames' detector and
    the embedder. The app passes its search engine's detector and embedder, so a process loads
    each model once."""

    query_detector: FaceDetector
    frame_detector: FrameDetector
    embedder: FaceEmbedder


# Models are loaded once per process for callers that do not pass their own (the CLI, benches).
_MODELS: dict[tuple, object] = {}
_MODELS_LOCK = threading.Lock()


def _memo(key: tuple, make):
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = make()
        return _MODELS[key]


def model_keys(c: Config) -> dict[str, tuple]:
    """The settings each of face mode's models depends on (its per-process memo key)."""
    return {
        "query": (c.device, recipe_digest(detection_settings(c)), c.detect_batch_size, c.model),
        "embedder": (c.device, str(c.cache_dir), recipe_digest(embedder_settings(c)), c.embed_batch_size),
        "frames": (c.device, c.video_detector, c.model, str(c.yunet_weights), c.video_yunet_side, recipe_digest(detection_settings(video_detect_config(c)))),
    }


def face_models(config: Config, detector: FaceDetector | None = None, embedder: FaceEmbedder | None = None) -> VideoFaceModels:
    """Face mode's models: `detector` / `embedder` when given (the app's engine), else loaded once
    per process and settings."""
    c, keys = config, model_keys(config)
    det = detector or _memo(("query", *keys["query"]), lambda: FaceDetector(c))
    emb = embedder or _memo(("embedder", *keys["embedder"]), lambda: create_embedder(c))
    return VideoFaceModels(det, _memo(("frames", *keys["frames"]), lambda: FrameDetector(c)), emb)


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


@dataclasses.dataclass
class VideoFaces:
    """The cached face tracks of one video."""

    info: VideoInfo
    sample_fps: float
    tracks: FaceTracks


def _params(config: Config, models: VideoFaceModels) -> dict:
    """The cache entry's key: sampling, frame detector, tracker and embedding recipe."""
    c = config
    return {
        "sample_fps": c.video_face_fps,
        "max_side": c.video_face_max_side,
        "detector": models.frame_detector.settings(),
        "tracks": {"iou": c.video_track_iou, "gap_s": c.video_track_gap_s, "chunk_s": c.video_track_chunk_s},
        "recipe": embedding_recipe(video_detect_config(c), models.embedder.model_id, embedder_precision(models.embedder)),
    }


def _parse_entry(entry: Path, meta: dict) -> VideoFaces:
    """A faces entry's tracks; ValueError when its arrays disagree (see `rvs.video.cache.read_entry`)."""
    with np.load(entry / "tracks.npz", allow_pickle=False) as z:
        tracks = FaceTracks.from_arrays(z)
    if len(tracks.sample_times) != meta["n_samples"] or len(tracks.face_sample) != meta["n_faces"]:
        raise ValueError("arrays disagree with meta.json")
    return VideoFaces(info_from_meta(meta), meta["sample_fps"], tracks)


def scaled_face(face: Face, s: float) -> Face:
    if s == 1.0:
        return face
    return dataclasses.replace(face, box=np.asarray(face.box, np.float32) * s, landmarks=np.asarray(face.landmarks, np.float32) * s)


def find_tracks(path: Path, config: Config, models: VideoFaceModels, progress: Progress | None = None) -> tuple[FaceTracks, VideoInfo, float]:
    """Decode sampled frames, detect, track and embed their faces: (tracks, video facts, samples
    per second). Boxes are in full-frame pixels."""
    # MTCNN runs batches of frames; YuNet one frame at a time, as each arrives from the decode thread.
    bs = max(1, config.video_face_batch) if models.frame_detector.yunet is None else 1
    stream = FrameStream(
        path, config.video_face_fps, lambda bgr: cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), progress, "finding faces",
        queue_size=max(bs, 4), max_side=config.video_face_max_side, yuv_decode=use_yuv(config), sparse=True,
    )
    embedder = models.embedder
    tracker = Tracker(config, lambda faces: embed_faces(embedder, faces), get_spec(config.model).match_threshold)
    batch: list[tuple[int, float, np.ndarray]] = []

    def flush() -> None:
        found = models.frame_detector.detect([rgb for _, _, rgb in batch])
        for (i, t, _), faces in zip(batch, found):
            tracker.add(t, i, [scaled_face(f, stream.scale) for f in faces])
        batch.clear()

    for item in stream:
        batch.append(item)
        if len(batch) >= bs:
            flush()
    if batch:
        flush()
    return tracker.finish(embedder.spec.dim), stream.info, stream.sample_fps


def _extract(path: Path, config: Config, models: VideoFaceModels, out_dir: Path, progress: Progress | None) -> None:
    tracks, info, sample_fps = find_tracks(path, config, models, progress)
    np.savez(out_dir / "tracks.npz", **tracks.arrays())
    write_json(
        out_dir / "meta.json",
        cache_meta(
            KIND, CACHE_VERSION, _params(config, models), sample_fps, info, path,
            n_samples=len(tracks.sample_times), n_faces=len(tracks.face_sample), n_tracks=tracks.n_tracks, n_vectors=len(tracks.vec_face),
        ),
    )


def load_or_extract(
    path: Path, config: Config, models: VideoFaceModels, progress: Progress | None = None, timer: StageTimer | None = None
) -> tuple[VideoFaces, bool]:
    """The video's face tracks from the cache, else found now (and cached). Returns (faces, from_cache)."""
    return cache.load_or_extract(
        path, config, KIND, _params(config, models), _parse_entry, lambda d: _extract(path, config, models, d, progress), timer
    )


def query_embedding(query_image: ImageLike, config: Config, models: VideoFaceModels) -> tuple[np.ndarray, np.ndarray]:
    """(embedding, box) of the query's main face (large and central, as image search picks it);
    NoQueryFaceError if there is none. The face is found and aligned by the detector the video's
    faces went through (YuNet's and MTCNN's landmarks align the same photo up to 0.5 apart in
    SFace distance, more than many same-person pairs), MTCNN when that one finds none."""
    img = load_image(query_image, config.max_pixels)
    faces = models.frame_detector.detect_query(np.asarray(img), config.detect_max_side)
    if not faces:
        faces = models.query_detector.detect_one(img)
    if not faces:
        label = str(query_image) if isinstance(query_image, (str, os.PathLike)) else "query image"
        raise NoQueryFaceError(
            f"{label}: no face found in the query image (face mode looks for a person; use frame mode to find the image itself)"
        )
    face = faces[select_main_face(faces, img.size)]
    return embed_faces(models.embedder, [face])[0], face.box


def chunk_distances(tracks: FaceTracks, q: np.ndarray) -> np.ndarray:
    """Per track chunk, the distance from `q` to its nearest vector (inf for a chunk without one)."""
    n = int(tracks.face_chunk.max()) + 1 if len(tracks.face_chunk) else 0
    best = np.full(n, np.inf, np.float32)
    if len(tracks.vectors):
        np.minimum.at(best, tracks.vec_chunk, np.linalg.norm(tracks.vectors - q[None], axis=1).astype(np.float32))
    return best


def search_faces(
    query_image: ImageLike, video_path: str | os.PathLike, config: Config, progress: Progress | None = None, models: VideoFaceModels | None = None
) -> VideoResult:
    """See `rvs.video.api.search_video_faces`."""
    with torch_threads(config.video_torch_threads):
        return _search_faces(query_image, video_path, config, progress, models)


def _search_faces(
    query_image: ImageLike, video_path: str | os.PathLike, config: Config, progress: Progress | None, models: VideoFaceModels | None
) -> VideoResult:
    timer = StageTimer()
    with timer.stage("models_s"):
        models = models or face_models(config)
    with timer.stage("query_features_s"):
        q, q_box = query_embedding(query_image, config, models)  # bad query fails before decoding
    path = check_video_path(video_path)
    found, cached = load_or_extract(path, config, models, scaled_progress(progress, 0.0, 0.97), timer)
    if progress:
        progress(0.97, "matching faces")
    tracks = found.tracks
    threshold = video_threshold(config)
    with timer.stage("match_s"):
        dist = chunk_distances(tracks, q)[tracks.face_chunk] if len(tracks.face_chunk) else np.zeros(0, np.float32)
        sim = 1.0 - dist**2 / 2.0
        n = len(tracks.sample_times)
        best = np.full(n, np.nan, np.float32)  # best similarity per sample (NaN: no face)
        best_face = np.full(n, -1, np.int64)
        for k in np.argsort(-sim, kind="stable"):  # best first, so the first seen per sample wins
            s = tracks.face_sample[k]
            if best_face[s] < 0 and np.isfinite(sim[k]):
                best_face[s], best[s] = k, sim[k]
        times = tracks.sample_times

        def face_box(k: int) -> FaceBox:
            return FaceBox(tuple(float(v) for v in tracks.boxes[k]), float(tracks.probs[k]), float(dist[k]), float(sim[k]))

        hits = []
        matching = dist <= threshold
        for s in np.unique(tracks.face_sample[matching]):
            ks = np.flatnonzero(matching & (tracks.face_sample == s))
            ks = ks[np.argsort(dist[ks])]
            hits.append(
                FrameHit(frame=int(tracks.sample_frames[s]), time=float(times[s]), score=float(best[s]), rank=float(best[s]), faces=[face_box(k) for k in ks])
            )
        segments = group_segments(hits, config.video_segment_gap)
        closest = None
        if np.isfinite(best).any():
            s = int(np.nanargmax(best))
            k = int(best_face[s])
            closest = FrameHit(int(tracks.sample_frames[s]), float(times[s]), float(best[s]), float(best[s]), faces=[face_box(k)])
    if progress:
        progress(1.0, "done")
    return VideoResult.of(
        "face",
        path,
        found.info,
        found.sample_fps,
        cached,
        n_samples=n,
        threshold=threshold,
        segments=segments,
        curve=[(float(t), float(b)) for t, b in zip(times, best)],
        closest=closest,
        timings=timer.done(),
        query_box=tuple(float(v) for v in q_box),
    )
