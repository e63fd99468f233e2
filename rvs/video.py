"""Reverse video search: where in a video does this image (frame mode) or this person (face mode) appear?

Public API (what the app and the CLI call):

- `search_video_frames(query_image, video_path, config, progress)`: frame similarity, the method of
  the original report (pHash + HSV histogram + ORB, fused by its max/min rule), made fast: every
  frame is decoded once, its features cached, and a query compares against the cache.
- `search_video_faces(query_image, video_path, config, progress)`: person search; faces are detected
  and embedded in sampled frames and matched to the largest face of the query image.
- `read_frame(video_path, time_s)` / `read_frames(video_path, times)`: frames as PIL images, for
  result galleries.
- `probe_video(video_path)`: checks a file is a decodable video and returns its `VideoInfo`.

Both searches return a `VideoResult`: matching time segments (best first), a per-sample
(time, score) curve for a similarity-over-time plot, and timings. `progress` is an optional
`callable(fraction, description)`. Times are frame index / fps: exact for constant frame rate
video, approximate for variable frame rate (phone recordings).

This module holds what both modes share: opening and validating videos, streaming decode with
frame sampling, content-hash cache keys and atomic cache directories, and segment grouping. The
modes live in `rvs.video_frames` and `rvs.video_faces`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from rvs.config import Config
from rvs.errors import BadInputError, NoFaceError
from rvs.imageio import ImageLike
from rvs.video_decode import downscale

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

CACHE_VERSION = 1  # bump when a cached file's layout or meaning changes
FALLBACK_FPS = 25.0  # used when a container does not state a usable frame rate
# A decode that stops this many frames (or this share of them) short of the header's count is a
# truncated or corrupt file. Some containers (MKV, WebM) estimate the count from the duration, so a
# few frames of slack avoid false alarms.
TRUNCATION_SLACK_FRAMES = 2
TRUNCATION_SLACK_SHARE = 0.02
# read_frames decodes forward instead of seeking when the next frame is at most this far ahead.
SEEK_FORWARD_FRAMES = 50


class NoQueryFaceError(NoFaceError, BadInputError):
    """Face mode got a query image without a face. Both a NoFaceError and a BadInputError, so
    callers catching either (the app catches BadInputError for all bad input) handle it."""


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


def _r(x: float | None, nd: int = 4) -> float | None:
    """Round for JSON; NaN (a sample without a score, e.g. no face) becomes null."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


@dataclass
class FaceBox:
    """A face in a video frame that matched the query person (face mode)."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the full-size frame
    prob: float  # MTCNN face probability
    distance: float  # Euclidean distance to the query embedding (0..2); match when <= match_threshold
    similarity: float  # cosine similarity to the query embedding (-1..1) = 1 - distance^2 / 2

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "prob": _r(self.prob),
            "distance": _r(self.distance),
            "similarity": _r(self.similarity),
        }


@dataclass
class FrameHit:
    """One sampled frame that matched.

    score: the similarity that decides the match. Frame mode: the fused similarity (`video_fusion`);
    face mode: the cosine similarity of the best-matching face.
    rank: what orders hits and segments. Frame mode: the mean of the three similarities (the max
    rule saturates: many neighbouring frames of one shot reach 0.98 histogram correlation, while
    ORB drops sharply away from the exact frame), face mode: same as score.
    phash / hist / orb: frame mode's three similarities (orb is None outside the ORB shortlist;
    with "moments" fusion it is the share of keypoints the geometric match explains).
    inliers / flipped: "moments" fusion: keypoint matches explained by one similarity transform,
    and whether the mirrored query matched better.
    faces: face mode's matching faces in this frame.
    """

    frame: int
    time: float
    score: float
    rank: float
    phash: float | None = None
    hist: float | None = None
    orb: float | None = None
    faces: list[FaceBox] = field(default_factory=list)
    inliers: int | None = None
    flipped: bool | None = None

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"frame": self.frame, "time": _r(self.time, 3), "score": _r(self.score), "rank": _r(self.rank)}
        if self.phash is not None or self.hist is not None:
            d.update(phash=_r(self.phash), hist=_r(self.hist), orb=_r(self.orb))
        if self.inliers is not None:
            d.update(inliers=self.inliers, flipped=self.flipped)
        if self.faces:
            d["faces"] = [f.to_dict() for f in self.faces]
        return d


@dataclass
class Segment:
    """A run of matching samples (gaps up to `Config.video_segment_gap` seconds joined).

    start / end: times (s) of the first and last matching sample; best_*: the hit with the
    highest rank; score / rank: that hit's.
    """

    start: float
    end: float
    best_frame: int
    best_time: float
    score: float
    rank: float
    hits: list[FrameHit]

    @property
    def n_frames(self) -> int:
        return len(self.hits)

    def to_dict(self, hits: bool = True) -> dict:
        d: dict[str, Any] = {
            "start": _r(self.start, 3),
            "end": _r(self.end, 3),
            "best_frame": self.best_frame,
            "best_time": _r(self.best_time, 3),
            "score": _r(self.score),
            "rank": _r(self.rank),
            "n_frames": self.n_frames,
        }
        if hits:
            d["hits"] = [h.to_dict() for h in self.hits]
        return d


READINGS = {
    "same frame": "this frame (a copy: re-encoded, scaled, cropped, mirrored or recoloured)",
    "same shot": "the same scene at another moment (the camera view matches, the moment does not)",
    "similar scene": "looks alike (colours), but no part of the picture matches",
}


@dataclass
class Moment:
    """A peak of frame similarity: where the query is ("moments" fusion, frame mode).

    time / frame: the best frame. score: its score (`rvs.video_frames.GeoScores`). reading: one
    of `READINGS`. start / end: the frames around the peak that score close to it (the moment's
    segment; start == end == time for a single frame). ncc: how well the query's pixels, aligned
    onto the frame, agree with it (1 = identical; None when not measured)."""

    time: float
    frame: int
    score: float
    reading: str
    start: float
    end: float
    ncc: float | None
    hit: FrameHit | None = None

    def caption(self) -> str:
        """One line for a gallery or a table: "0:02.00 · same frame · 0.93"."""
        m, s = divmod(max(0.0, self.time), 60)
        return f"{int(m)}:{s:05.2f} · {self.reading} · {self.score:.2f}"

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "time": _r(self.time, 3),
            "frame": self.frame,
            "score": _r(self.score),
            "reading": self.reading,
            "start": _r(self.start, 3),
            "end": _r(self.end, 3),
            "ncc": _r(self.ncc),
        }
        if self.hit is not None and self.hit.inliers is not None:
            d.update(inliers=self.hit.inliers, flipped=self.hit.flipped)
        return d


@dataclass
class VideoInfo:
    """What the container says (frame_count, fps) and what decoding found (decoded_frames)."""

    path: str
    fps: float
    width: int
    height: int
    frame_count: int  # from the header; 0 when unknown
    decoded_frames: int = 0

    @property
    def duration(self) -> float:
        n = self.decoded_frames or self.frame_count
        return n / self.fps if self.fps > 0 else 0.0


@dataclass
class VideoResult:
    """Result of a video search.

    segments: best first. curve: one (time, score) per sampled frame (score NaN where there is
    none, e.g. a frame without faces, or a frame "moments" fusion did not need to compare).
    closest: the best-ranked sample even when nothing matched (so a UI can say how close it got).
    timings: seconds per stage. cached: the per-frame features came from the cache (frames_decoded
    is then 0). moments (frame mode, "moments" fusion): the peaks, best first, each with a
    reading; only "same frame" moments have a segment in `segments`. threshold, for "moments":
    the score a moment needed to read "same frame" (NaN when nothing matched).
    """

    mode: str  # "frame" | "face"
    video: str
    fps: float
    duration: float
    frame_count: int  # frames decoded (the whole video, sampled or not)
    width: int
    height: int
    sample_fps: float  # samples per second actually compared (= fps when every frame is used)
    n_samples: int
    threshold: float  # frame mode: fused similarity >= threshold; face mode: distance <= threshold
    segments: list[Segment]
    curve: list[tuple[float, float]]
    closest: FrameHit | None
    timings: dict[str, float]
    cached: bool
    frames_decoded: int
    query_box: tuple[float, float, float, float] | None = None  # face mode: the query face used
    moments: list[Moment] = field(default_factory=list)
    fusion: str | None = None  # frame mode: "moments" | "report" | "mean"

    @property
    def matched(self) -> bool:
        return bool(self.segments)

    def describe(self) -> str:
        """One line saying what was found, for a UI's summary: frame mode with "moments" fusion
        names the best moment and its reading ("Best moment 0:02.00 · same frame · 0.94; 1 more
        moment"), else the segment count."""
        if self.mode == "frame" and self.fusion == "moments":
            if not self.moments:
                return "No match: no frame shares the query's keypoints in a consistent layout"
            rest = len(self.moments) - 1
            return f"Best moment {self.moments[0].caption()}" + (f"; {rest} more moment{'s' if rest != 1 else ''}" if rest else "")
        n = len(self.segments)
        return f"{n} matching segment{'s' if n != 1 else ''}" if n else "No match"

    def to_dict(self, curve: bool = True, hits: bool = True) -> dict:
        d: dict[str, Any] = {
            "mode": self.mode,
            "video": self.video,
            "fps": _r(self.fps, 3),
            "duration": _r(self.duration, 3),
            "frame_count": self.frame_count,
            "width": self.width,
            "height": self.height,
            "sample_fps": _r(self.sample_fps, 3),
            "n_samples": self.n_samples,
            "threshold": _r(self.threshold),
            "matched": self.matched,
            "segments": [s.to_dict(hits=hits) for s in self.segments],
            "closest": self.closest.to_dict() if self.closest else None,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "cached": self.cached,
            "frames_decoded": self.frames_decoded,
        }
        if self.query_box is not None:
            d["query_box"] = [round(float(v), 1) for v in self.query_box]
        if self.mode == "frame":
            d["fusion"] = self.fusion
            d["moments"] = [m.to_dict() for m in self.moments]
        if curve:
            d["curve"] = [[_r(t, 3), _r(s)] for t, s in self.curve]
        return d


def group_segments(hits: Sequence[FrameHit], gap: float) -> list[Segment]:
    """Join time-sorted hits less than `gap` seconds apart into segments, best (rank) first."""
    segments: list[Segment] = []
    run: list[FrameHit] = []

    def close() -> None:
        best = max(run, key=lambda h: (h.rank, h.score, -h.time))
        segments.append(Segment(run[0].time, run[-1].time, best.frame, best.time, best.score, best.rank, list(run)))

    for h in sorted(hits, key=lambda h: h.time):
        if run and h.time - run[-1].time > gap + 1e-6:
            close()
            run = []
        run.append(h)
    if run:
        close()
    segments.sort(key=lambda s: (-s.rank, -s.score, s.start))
    return segments


# ---------------------------------------------------------------------------------------------
# Opening, probing and decoding videos
# ---------------------------------------------------------------------------------------------


class SharedSetting:
    """A process-wide setting (OpenCV's log level, torch's thread count) held at a value while any
    caller is inside `hold(value)`, and restored when the last one leaves: overlapping searches
    (the app serves two at a time, a decode thread beside its caller) must not restore it under
    each other. The first caller's value wins while others join."""

    def __init__(self, get: Callable[[], Any], set_: Callable[[Any], None]):
        self._get, self._set = get, set_
        self._lock = threading.Lock()
        self._users = 0
        self._saved: Any = None

    @contextmanager
    def hold(self, value: Any) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._saved = self._get()
                self._set(value)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._set(self._saved)


_OPENCV_LOG_LEVEL = SharedSetting(cv2.getLogLevel, cv2.setLogLevel)


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own warnings ("can't open ... by name") while we open, decode or seek: the
    caller turns failures into one clear error, and the CLI should print one line, not three.
    OpenCV's log level is process-wide: the decode thread and the caller may overlap, and the
    level is restored when the last one leaves (`SharedSetting`)."""
    # FFmpeg (inside OpenCV) prints its own errors ("moov atom not found", "overread 8") straight
    # to stderr. OpenCV reads this when it first opens a file with FFmpeg; a user's setting wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    with _OPENCV_LOG_LEVEL.hold(2):  # errors only
        yield


def check_video_path(video_path: str | os.PathLike) -> Path:
    """The path, or a BadInputError for a missing file, a directory, an empty file or a still image."""
    path = Path(video_path)
    label = str(path)
    if not path.exists():
        raise BadInputError(f"{label}: file not found")
    if path.is_dir():
        raise BadInputError(f"{label}: is a directory, not a video")
    if path.stat().st_size == 0:
        raise BadInputError(f"{label}: empty file, not a video")
    # FFmpeg happily opens a JPEG as a one-frame "video"; a still image here is almost always the
    # query and the video swapped, so say so. Animated images (GIF, WebP) are real videos.
    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) <= 1:
                raise BadInputError(f"{label}: is a still image ({im.format}), not a video (query image and video swapped?)")
    except BadInputError:
        raise
    except Exception:
        pass  # not an image: good
    return path


def _open(path: Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    with _quiet_opencv():
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise BadInputError(
            f"{path}: cannot be opened as a video (not a video, an unsupported format, or a truncated file "
            "whose index is missing)"
        )
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        log.warning("%s: no usable frame rate in the header (%s); assuming %.0f fps", path, fps, FALLBACK_FPS)
        fps = FALLBACK_FPS
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    count = int(count) if math.isfinite(count) and count > 0 else 0
    info = VideoInfo(
        path=str(path),
        fps=fps,
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        frame_count=count,
    )
    return cap, info


def probe_video(video_path: str | os.PathLike) -> VideoInfo:
    """Header info of a video, after checking that it opens and its first frame decodes."""
    path = check_video_path(video_path)
    cap, info = _open(path)
    try:
        with _quiet_opencv():
            ok = cap.grab()
    finally:
        cap.release()
    if not ok:
        raise BadInputError(f"{path}: opens as a video but no frame can be decoded (corrupt or truncated file)")
    return info


def check_decoded(info: VideoInfo, n: int) -> None:
    """Raise if decoding yielded nothing, or clearly fewer frames than the header announces."""
    if n == 0:
        raise BadInputError(f"{info.path}: opens as a video but no frame can be decoded (corrupt or truncated file)")
    if info.frame_count:
        missing = info.frame_count - n
        if missing > max(TRUNCATION_SLACK_FRAMES, TRUNCATION_SLACK_SHARE * info.frame_count):
            raise BadInputError(
                f"{info.path}: truncated or corrupt video: decoded {n} of the {info.frame_count} frames its header "
                f"announces (decoding stopped at {n / info.fps:.2f} s)"
            )


def _sampler(fps: float, sample_fps: float) -> Callable[[int], bool]:
    """`take(i)`: whether frame i is sampled, for `sample_fps` samples per second (<= 0: all)."""
    if sample_fps <= 0 or sample_fps >= fps:
        return lambda i: True
    step = fps / sample_fps  # frames per sample, fractional: 25 fps at 2/s takes 0, 12.5 -> 13, 25, ...
    nxt = [0.0]

    def take(i: int) -> bool:
        if i + 1e-6 < nxt[0]:
            return False
        while nxt[0] <= i + 1e-6:
            nxt[0] += step
        return True

    return take


def effective_sample_fps(fps: float, sample_fps: float) -> float:
    return fps if sample_fps <= 0 or sample_fps >= fps else sample_fps


class _End:
    def __init__(self, n: int):
        self.n = n


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class FrameStream:
    """Iterate over (frame_index, transform(bgr_frame)) for each sampled frame, in order.

    width: frames come shrunk to this width, decoded by `rvs.video_decode` (YUV planes shrunk
    before the colour conversion) where it applies and yuv_decode is on, else by OpenCV and
    shrunk after.

    `info` (header values) is there from the start; `info.decoded_frames` is set when the stream
    ends. Decoding runs in a background thread that also applies `transform` (e.g. the downscale),
    so decode and the caller's per-frame work overlap on two cores: OpenCV releases the GIL in
    both. Frames not sampled are only `grab()`bed (decoded, never converted to BGR). The bounded
    queue keeps memory flat whatever the video length. After the last frame the count is checked
    against the header: a truncated or corrupt file raises BadInputError (see `check_decoded`).
    """

    def __init__(
        self,
        path: Path,
        sample_fps: float,
        transform: Callable[[np.ndarray], Any],
        progress: Progress | None = None,
        desc: str = "decoding",
        queue_size: int = 16,
        width: int | None = None,
        yuv_decode: bool = True,
    ):
        self.path = path
        self.cap, self.info = _open(path)
        self._width = width
        self._yuv = yuv_decode
        self.sample_fps = effective_sample_fps(self.info.fps, sample_fps)
        self._take = _sampler(self.info.fps, sample_fps)
        self._transform = transform
        self._progress = progress
        self._desc = desc
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce_small(self) -> bool:
        """Frames shrunk to `width` via rvs.video_decode; False if that path does not apply to
        this video (nothing was queued then, and the OpenCV path takes over)."""
        from rvs import video_decode

        frames = video_decode.iter_small_bgr(self.path, self._width, self._take)
        try:
            while not self._stop.is_set():
                i, small = next(frames)
                if not self._put((i, self._transform(small))):
                    return True
        except video_decode.Unsupported as e:
            log.debug("%s: decoding with OpenCV (%s)", self.path, e)
            return False
        except StopIteration as end:
            self._put(_End(end.value))
        finally:
            frames.close()
        return True

    def _produce(self) -> None:
        cap, i = self.cap, 0
        try:
            if self._width and self._yuv and self._produce_small():
                return
            with _quiet_opencv():
                while not self._stop.is_set():
                    if self._take(i):
                        ok, frame = cap.read()
                        if not ok:
                            break
                        if i == 0:  # the decoded size, after any rotation OpenCV applied from the metadata
                            self.info.height, self.info.width = frame.shape[:2]
                        if self._width:
                            frame = downscale(frame, self._width)
                        if not self._put((i, self._transform(frame))):
                            return
                    elif not cap.grab():
                        break
                    i += 1
            self._put(_End(i))
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._put(_Failed(e))
        finally:
            cap.release()

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        worker = threading.Thread(target=self._produce, name="rvs-video-decode", daemon=True)
        worker.start()
        total, progress, last = self.info.frame_count, self._progress, 0.0
        try:
            while True:
                item = self._queue.get()
                if isinstance(item, _Failed):
                    raise item.exc
                if isinstance(item, _End):
                    self.info.decoded_frames = item.n
                    check_decoded(self.info, item.n)
                    if progress:
                        progress(1.0, self._desc)
                    return
                i, data = item
                if progress and total and (i + 1) / total - last >= 0.01:
                    last = min(1.0, (i + 1) / total)
                    progress(last, self._desc)
                yield i, data
        finally:
            self._stop.set()
            worker.join(timeout=10)


def read_frames(video_path: str | os.PathLike, times: Sequence[float]) -> list[Image.Image]:
    """Full-size RGB frames at the given times (seconds), e.g. the best frame of each segment.

    Each time is rounded to the nearest frame index (times are index / fps throughout rvs); times
    past the end give the last frame. Times are visited in order: a frame a little ahead of the
    last one read is reached by decoding forward, a far one by seeking (which decodes from the
    previous keyframe), so a gallery of nearby frames costs about one pass.
    """
    path = check_video_path(video_path)
    cap, info = _open(path)
    wanted = []
    for t in times:
        idx = max(0, int(round(float(t) * info.fps)))
        wanted.append(min(idx, info.frame_count - 1) if info.frame_count else idx)
    frames: dict[int, Image.Image] = {}
    pos = 0  # index of the frame the next read() returns
    try:
        with _quiet_opencv():
            for idx in sorted(set(wanted)):
                if not 0 <= idx - pos <= SEEK_FORWARD_FRAMES:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
                    pos = idx
                ok = True
                while ok and pos < idx:
                    ok, pos = cap.grab(), pos + 1
                ok, frame = cap.read() if ok else (False, None)
                pos += 1
                if not ok:
                    raise BadInputError(f"{path}: cannot decode the frame at {idx / info.fps:.2f} s (frame {idx})")
                frames[idx] = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    return [frames[i] for i in wanted]


def read_frame(video_path: str | os.PathLike, time_s: float) -> Image.Image:
    """The full-size RGB frame at `time_s` seconds (nearest frame)."""
    return read_frames(video_path, [time_s])[0]


# ---------------------------------------------------------------------------------------------
# Cache: per video content hash, per settings, one directory written atomically
# ---------------------------------------------------------------------------------------------

_KEY_MEMO: dict[tuple, str] = {}
_KEY_LOCK = threading.Lock()


def video_key(path: Path, full_hash_max_bytes: int = 256 * 1024 * 1024) -> str:
    """A content hash of the file, so a renamed or copied video hits the cache and an edited one
    does not. sha256 of the whole file up to `full_hash_max_bytes` (about 0.5 s per GB); above that,
    of its size, first and last MiB and 16 blocks of 64 KiB spread over it, so a cached query on a
    multi-GB file still answers in well under a second. Memoised per (path, size, mtime, inode)."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, full_hash_max_bytes)
    with _KEY_LOCK:
        if memo in _KEY_MEMO:
            return _KEY_MEMO[memo]
    h = hashlib.sha256()
    size = st.st_size
    with open(path, "rb") as f:
        if size <= full_hash_max_bytes:
            h.update(b"full\0")
            while chunk := f.read(1 << 20):
                h.update(chunk)
        else:
            h.update(f"sampled\0{size}\0".encode())
            mib = 1 << 20
            offsets = [0, max(0, size - mib)] + [int(size * k / 17) for k in range(1, 17)]
            lengths = [mib, mib] + [64 * 1024] * 16
            for off, n in zip(offsets, lengths):
                f.seek(off)
                h.update(f.read(n))
    key = h.hexdigest()[:32]
    with _KEY_LOCK:
        _KEY_MEMO[memo] = key
    return key


def cache_entry_dir(config: Config, key: str, kind: str, params: dict) -> Path:
    """`cache_dir/video/<content key>/<kind>-<settings digest>`: one entry per settings that change
    the cached numbers, so changing e.g. the sampling rate never reads stale features."""
    digest = hashlib.sha256(json.dumps({"v": CACHE_VERSION, **params}, sort_keys=True).encode()).hexdigest()[:12]
    base = Path(config.video_cache_dir) if config.video_cache_dir else Path(config.cache_dir) / "video"
    return base / key / f"{kind}-{digest}"


def write_entry_atomically(final: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_dir)`, then rename the directory into place in one step, so a reader never
    sees a half-written entry (a crash leaves only a `.tmp-*` directory, ignored and replaced)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        if final.exists():  # a stale or corrupt entry (a valid one would have been read instead)
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
            # Another process wrote the same entry meanwhile; theirs is as good as ours.
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        try:
            final.parent.rmdir()  # only succeeds if empty, i.e. nothing was cached for this video
        except OSError:
            pass


def cache_meta(kind: str, version: int, params: dict, sample_fps: float, info: VideoInfo, path: Path, **counts: int) -> dict:
    """The meta.json of a cache entry: what was extracted, with which settings, from which video."""
    import datetime

    from rvs import __version__

    return {
        "version": version,
        "kind": kind,
        "params": params,
        "sample_fps": sample_fps,
        **counts,
        "video": {
            "path": info.path,
            "size": os.path.getsize(path),
            "fps": info.fps,
            "width": info.width,
            "height": info.height,
            "frame_count": info.frame_count,
            "decoded_frames": info.decoded_frames,
        },
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "rvs_version": __version__,
    }


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))


def read_meta(entry: Path, kind: str) -> dict | None:
    """The entry's meta.json if present and of this version/kind, else None (= recompute)."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != CACHE_VERSION or meta.get("kind") != kind:
        return None
    return meta


class StageTimer:
    """Collects named stage durations for `VideoResult.timings`."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t

    def done(self) -> dict[str, float]:
        self.timings["total_s"] = time.perf_counter() - self.t0
        return self.timings


def scaled_progress(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    """Map a stage's 0..1 progress into [lo, hi] of the whole search."""
    if progress is None:
        return None
    return lambda f, desc: progress(lo + (hi - lo) * max(0.0, min(1.0, f)), desc)


# ---------------------------------------------------------------------------------------------
# The two searches
# ---------------------------------------------------------------------------------------------


def search_video_frames(
    query_image: ImageLike, video_path: str | os.PathLike, config: Config | None = None, progress: Progress | None = None
) -> VideoResult:
    """Frame mode: where in the video `query_image` (a screenshot; re-encoded, resized, cropped,
    letterboxed, mirrored or recoloured frame) is. By default (`Config.video_fusion = "moments"`)
    the answer is `moments` (peaks with a reading, best first) and a short segment around each
    "same frame" moment. See `rvs.video_frames` for the similarities and their ranges."""
    from rvs.video_frames import search_frames

    return search_frames(query_image, video_path, config or Config(), progress)


def search_video_faces(
    query_image: ImageLike, video_path: str | os.PathLike, config: Config | None = None, progress: Progress | None = None
) -> VideoResult:
    """Face mode: the segments of the video where the person of `query_image` (its largest face)
    appears, with their face boxes. See `rvs.video_faces`."""
    from rvs.video_faces import search_faces

    return search_faces(query_image, video_path, config or Config(), progress)
