"""Face tracks: the faces of a video's sampled frames linked into appearances of one person, with
a few embeddings per track instead of one per face.

In: per sample (player time, detected `Face`s with boxes in full-frame pixels). Out:
`FaceTracks`, arrays of the faces (sample, box, score, track, chunk) and of the embedded vectors
(which face, which track chunk, its time span).

Linking, sample by sample: a face joins the track whose predicted box (last box moved by the
track's velocity) it overlaps by IoU >= `video_track_iou`, best overlaps first; a face that only
half-fits a track (some overlap, or its centre within 1.5 face widths) is embedded and joins when
its distance to the track's last vector is within the model's match threshold; anything else
starts a track. A track ends when unseen for `video_track_gap_s`.

Embedding, the expensive step (SFace ~25 ms a face on one core, a frame holds several): a track
is cut into chunks of `video_track_chunk_s` seconds and each chunk's best face (detector score x
size x frontal pose) is embedded once, plus the faces embedded to check a link. A chunk's
vectors stand for its time span only, so a wrong link costs at most one chunk. On the 1080p
sample video this embeds 14 faces instead of 46.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rvs.config import Config
from rvs.faces.detect import Face

THUMB = 64  # px, a track's face thumbnail
WEAK_IOU = 0.05  # below the link IoU but overlapping: check by embedding
NEAR_WIDTHS = 1.5  # or the centre this many face widths from the predicted box's: check too


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def face_quality(face: Face) -> float:
    """Which face of a chunk to embed: confident, large, frontal (nose between the eyes)."""
    w = float(min(face.box[2] - face.box[0], face.box[3] - face.box[1]))
    le, re, nose = face.landmarks[0], face.landmarks[1], face.landmarks[2]
    iod = float(np.linalg.norm(re - le))
    yaw = abs(float(nose[0] - (le[0] + re[0]) / 2)) / iod if iod > 1e-6 else 1.0
    return float(face.prob) * np.sqrt(max(w, 1.0)) * max(0.1, 1.0 - 2.0 * yaw)


def _thumbnail(face: Face) -> np.ndarray:
    import cv2

    img = face.aligned if face.aligned is not None else face.crop
    if img is None:
        return np.zeros((THUMB, THUMB, 3), np.uint8)
    return cv2.resize(np.asarray(img, np.uint8), (THUMB, THUMB), interpolation=cv2.INTER_AREA)


@dataclass
class FaceTracks:
    """A video's faces, linked into tracks and embedded per chunk.

    sample_times: float64 [S] player time of each sample; sample_frames: int32 [S] its frame index.
    face_sample / boxes / probs / face_track / face_chunk: per face (F): its sample, box (x1, y1,
    x2, y2, full-frame pixels), detector score, track and chunk (global chunk number).
    vec_face / vectors: per embedded face (V): which face, and its unit vector.
    track_face / track_thumbs: per track (T): its best face, and that face as a THUMB x THUMB RGB
    thumbnail (the aligned or cropped face: what a result shows without the video file).
    """

    sample_times: np.ndarray
    sample_frames: np.ndarray
    face_sample: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    face_track: np.ndarray
    face_chunk: np.ndarray
    vec_face: np.ndarray
    vectors: np.ndarray
    track_face: np.ndarray
    track_thumbs: np.ndarray

    @property
    def n_tracks(self) -> int:
        return int(self.face_track.max()) + 1 if len(self.face_track) else 0

    @property
    def vec_chunk(self) -> np.ndarray:
        return self.face_chunk[self.vec_face]

    @property
    def vec_track(self) -> np.ndarray:
        return self.face_track[self.vec_face]

    def chunk_span(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) player times of each chunk: its first and last face's samples."""
        n = int(self.face_chunk.max()) + 1 if len(self.face_chunk) else 0
        t = self.sample_times[self.face_sample]
        start, end = np.full(n, np.inf), np.full(n, -np.inf)
        np.minimum.at(start, self.face_chunk, t)
        np.maximum.at(end, self.face_chunk, t)
        return start, end

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_arrays(cls, z) -> FaceTracks:
        """From saved arrays (an npz); ValueError when they disagree."""
        t = cls(**{k: np.asarray(z[k]) for k in cls.__dataclass_fields__})
        f, v = len(t.face_sample), len(t.vec_face)
        if not (len(t.sample_times) == len(t.sample_frames)) or not (len(t.boxes) == len(t.probs) == len(t.face_track) == len(t.face_chunk) == f):
            raise ValueError("face arrays of inconsistent length")
        if len(t.vectors) != v or (v and t.vectors.ndim != 2):
            raise ValueError("vector arrays of inconsistent length")
        if f and (t.face_sample.min() < 0 or t.face_sample.max() >= len(t.sample_times)):
            raise ValueError("a face refers to a missing sample")
        if v and (t.vec_face.min() < 0 or t.vec_face.max() >= f):
            raise ValueError("a vector refers to a missing face")
        if len(t.track_face) != t.n_tracks or len(t.track_thumbs) != t.n_tracks or (f and t.track_face.max() >= f):
            raise ValueError("track arrays of inconsistent length")
        return t


@dataclass
class _Track:
    id: int
    box: np.ndarray
    time: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    last_vector: np.ndarray | None = None
    chunk: int = -1
    chunk_start: float = 0.0
    best: tuple[float, int, Face] | None = None  # (quality, face row, face) of the chunk, not yet embedded
    best_embedded: float = -1.0  # the best quality embedded in this chunk

    def predicted(self, t: float) -> np.ndarray:
        return self.box + self.velocity * (t - self.time)


class Tracker:
    """Feed `add(sample_time, frame_index, faces)` sample by sample, then `finish()` (see the
    module docstring). `embed(faces) -> unit vectors` is the gallery's embedder."""

    def __init__(self, config: Config, embed: Callable[[Sequence[Face]], np.ndarray], link_threshold: float):
        self.config = config
        self._embed = embed
        self.link_threshold = link_threshold
        self.sample_times: list[float] = []
        self.sample_frames: list[int] = []
        self.face_sample: list[int] = []
        self.boxes: list[np.ndarray] = []
        self.probs: list[float] = []
        self.face_track: list[int] = []
        self.face_chunk: list[int] = []
        self.vec_face: list[int] = []
        self.vectors: list[np.ndarray] = []
        self._active: list[_Track] = []
        self._n_tracks = 0
        self._n_chunks = 0
        self._embedded: dict[int, np.ndarray] = {}  # face row -> vector, for faces embedded to check a link
        self._track_best: list[tuple[float, int, np.ndarray]] = []  # per track: (quality, face row, thumbnail)

    def _vector(self, row: int, face: Face) -> np.ndarray:
        if row not in self._embedded:
            v = self._embed([face])[0]
            self._embedded[row] = v
            self.vec_face.append(row)
            self.vectors.append(v)
        return self._embedded[row]

    def _close_chunk(self, tr: _Track) -> None:
        """Embed the chunk's best face unless one about as good is embedded already."""
        if tr.best is not None and tr.best[0] > 1.25 * tr.best_embedded:
            tr.last_vector = self._vector(tr.best[1], tr.best[2])
        tr.best, tr.best_embedded = None, -1.0

    def _new_chunk(self, tr: _Track, t: float) -> None:
        tr.chunk, tr.chunk_start = self._n_chunks, t
        self._n_chunks += 1

    def _join(self, tr: _Track, row: int, face: Face, t: float) -> None:
        if t - tr.chunk_start >= self.config.video_track_chunk_s - 1e-6:
            self._close_chunk(tr)
            self._new_chunk(tr, t)
        box = np.asarray(face.box, np.float32)
        dt = t - tr.time
        if dt > 0:
            tr.velocity = 0.5 * tr.velocity + 0.5 * (box - tr.box) / dt
        tr.box, tr.time = box, t
        self.face_track.append(tr.id)
        self.face_chunk.append(tr.chunk)
        q = face_quality(face)
        if tr.id == len(self._track_best):
            self._track_best.append((-1.0, row, np.zeros((THUMB, THUMB, 3), np.uint8)))
        if q > self._track_best[tr.id][0]:
            self._track_best[tr.id] = (q, row, _thumbnail(face))
        if row in self._embedded:
            tr.last_vector = self._embedded[row]
            tr.best_embedded = max(tr.best_embedded, q)
        elif tr.best is None or q > tr.best[0]:
            tr.best = (q, row, face)

    def add(self, t: float, frame: int, faces: Sequence[Face]) -> None:
        c = self.config
        s = len(self.sample_times)
        self.sample_times.append(float(t))
        self.sample_frames.append(int(frame))
        for tr in [tr for tr in self._active if t - tr.time > c.video_track_gap_s + 1e-6]:
            self._close_chunk(tr)
            self._active.remove(tr)
        rows = []
        for f in faces:
            rows.append(len(self.face_sample))
            self.face_sample.append(s)
            self.boxes.append(np.asarray(f.box, np.float32))
            self.probs.append(float(f.prob))
        # Rows are appended to face_track / face_chunk in face order below, so decide first.
        assigned: dict[int, _Track] = {}
        taken: set[int] = set()
        pred = [tr.predicted(t) for tr in self._active]
        overlaps = sorted(
            ((iou(np.asarray(f.box, np.float32), p), i, k) for i, f in enumerate(faces) for k, p in enumerate(pred)), reverse=True
        )
        for o, i, k in overlaps:
            if o < c.video_track_iou:
                break
            if i not in assigned and k not in taken:
                assigned[i], _ = self._active[k], taken.add(k)
        for o, i, k in overlaps:  # half-fits: the embedding decides
            if i in assigned or k in taken:
                continue
            f, tr = faces[i], self._active[k]
            box, p = np.asarray(f.box, np.float32), pred[k]
            width = float(max(box[2] - box[0], 1.0))
            near = np.hypot((box[0] + box[2] - p[0] - p[2]) / 2, (box[1] + box[3] - p[1] - p[3]) / 2) <= NEAR_WIDTHS * width
            if o < WEAK_IOU and not near:
                continue
            ref = tr.last_vector
            if ref is None and tr.best is not None:
                ref = self._vector(tr.best[1], tr.best[2])
                tr.best_embedded, tr.best = tr.best[0], None
                tr.last_vector = ref
            if ref is None:
                continue
            v = self._vector(rows[i], f)
            if float(np.linalg.norm(v - ref)) <= self.link_threshold:
                assigned[i], _ = tr, taken.add(k)
        for i, f in enumerate(faces):
            tr = assigned.get(i)
            if tr is None:
                tr = _Track(self._n_tracks, np.asarray(f.box, np.float32), t)
                self._n_tracks += 1
                self._new_chunk(tr, t)
                self._active.append(tr)
            self._join(tr, rows[i], f, t)

    def finish(self, dim: int) -> FaceTracks:
        for tr in self._active:
            self._close_chunk(tr)
        self._active = []
        order = np.argsort(np.asarray(self.vec_face, np.int64), kind="stable")
        return FaceTracks(
            sample_times=np.asarray(self.sample_times, np.float64),
            sample_frames=np.asarray(self.sample_frames, np.int32),
            face_sample=np.asarray(self.face_sample, np.int32),
            boxes=np.asarray(self.boxes, np.float32).reshape(-1, 4),
            probs=np.asarray(self.probs, np.float32),
            face_track=np.asarray(self.face_track, np.int32),
            face_chunk=np.asarray(self.face_chunk, np.int32),
            vec_face=np.asarray(self.vec_face, np.int32)[order],
            vectors=(np.stack(self.vectors).astype(np.float32)[order] if self.vectors else np.zeros((0, dim), np.float32)),
            track_face=np.asarray([b[1] for b in self._track_best], np.int32),
            track_thumbs=np.stack([b[2] for b in self._track_best]) if self._track_best else np.zeros((0, THUMB, THUMB, 3), np.uint8),
        )
