"""Getting frames out of a video file: checking and probing it, streaming sampled frames in a
decode thread (PyAV's shrunk-YUV path from `rvs.video.decode` where it applies, OpenCV otherwise),
and reading single frames for result pictures. Truncated or corrupt files give one clear error.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from rvs.errors import BadInputError
from rvs.progress import Progress
from rvs.video import decode as video_decode
from rvs.video.decode import downscale, player_time
from rvs.video.info import VideoInfo

log = logging.getLogger(__name__)

FALLBACK_FPS = 25.0  # used when a container does not state a usable frame rate

# A decode that stops this many frames (or this share of them) short of the header's count is a
# truncated or corrupt file. Some containers (MKV, WebM) estimate the count from the duration, so a
# few frames of slack avoid false alarms.
TRUNCATION_SLACK_FRAMES = 2
TRUNCATION_SLACK_SHARE = 0.02

# read_frames decodes forward instead of seeking when the next time is at most this far ahead.
SEEK_FORWARD_S = 2.0
SPARSE_RATIO = 4  # sampling at most 1 / SPARSE_RATIO of the frame rate decodes sparsely (rvs.video.decode)
TIME_EPS = 1e-4  # timestamps are rational; seconds as floats agree to far better than this


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


def use_yuv(config) -> bool:
    """Whether frames are decoded shrunk in YUV (rvs.video.decode): `Config.video_decoder` "auto"
    (when PyAV is there) or "opencv" (never)."""
    if config.video_decoder not in ("auto", "opencv"):
        raise BadInputError(f"unknown video decoder {config.video_decoder!r} (expected 'auto' or 'opencv')")
    return config.video_decoder == "auto" and video_decode.available()


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
                f"announces (decoding stopped at {info.end:.2f} s)"
            )


def _sampler(sample_fps: float) -> Callable[[float], bool]:
    """`take(t)`: whether the frame shown at `t` seconds is sampled, for `sample_fps` samples per
    second of the player's clock (<= 0: every frame). Decided on times, not frame counts, so a
    variable-frame-rate video is sampled evenly: the first frame at or after each 1 / sample_fps
    step (25 fps at 2/s takes the frames at 0, 0.52, 1.0, 1.52 s ...)."""
    if sample_fps <= 0:
        return lambda t: True
    step = 1.0 / sample_fps
    nxt: list[float | None] = [None]

    def take(t: float) -> bool:
        if nxt[0] is None:
            nxt[0] = t
        if t + TIME_EPS < nxt[0]:
            return False
        while nxt[0] <= t + TIME_EPS:
            nxt[0] += step
        return True

    return take


def effective_sample_fps(fps: float, sample_fps: float) -> float:
    return fps if sample_fps <= 0 or sample_fps >= fps else sample_fps


class _End:
    def __init__(self, n: int, end: float):
        self.n, self.end = n, end


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class FrameStream:
    """Iterate over (frame_index, time, transform(bgr_frame)) for each sampled frame, in order.
    `time` is the frame's presentation time in seconds (see `rvs.video.info`).

    width: frames come shrunk to this width; max_side: shrunk so neither side exceeds it (face
    mode's detection size). sparse: see `rvs.video.decode.iter_small_bgr`. Shrunk frames are decoded by `rvs.video.decode` (YUV planes shrunk
    before the colour conversion) where it applies and yuv_decode is on, else by OpenCV and
    shrunk after; `scale` is full-size pixels per pixel of the frames handed out.

    `info` (header values) is there from the start; `info.decoded_frames`, `start` and `end` are
    set when the stream ends. Decoding runs in a background thread that also applies `transform`,
    so decode and the caller's per-frame work overlap on two cores: OpenCV and PyAV release the
    GIL. Frames not sampled are decoded, never converted. The bounded queue keeps memory flat
    whatever the video length. After the last frame the count is checked against the header: a
    truncated or corrupt file raises BadInputError (see `check_decoded`).
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
        max_side: int | None = None,
        sparse: bool = False,
    ):
        self.path = path
        self.cap, self.info = _open(path)
        if max_side and not width and max(self.info.width, self.info.height) > max_side:
            width = max(1, round(self.info.width * max_side / max(self.info.width, self.info.height)))
        self._width = width
        self.scale = self.info.width / width if width and self.info.width > width else 1.0
        self._yuv = yuv_decode
        self.sample_fps = effective_sample_fps(self.info.fps, sample_fps)
        self._take = _sampler(sample_fps)
        # sparse (face mode) and sampling well below the frame rate: the decoder may skip frames
        # nothing refers to; samples then land on the next decoded frame (a frame or two later).
        self._sparse = sparse and 0 < sample_fps * SPARSE_RATIO <= self.info.fps
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
        """Frames shrunk to `width` via rvs.video.decode; False if that path does not apply to
        this video (nothing was queued then, and the OpenCV path takes over)."""
        frames = video_decode.iter_small_bgr(self.path, self._width, self._take, self._sparse)
        try:
            while not self._stop.is_set():
                i, t, small = next(frames)
                if not self._put((i, t, self._transform(small))):
                    return True
        except video_decode.Unsupported as e:
            log.debug("%s: decoding with OpenCV (%s)", self.path, e)
            return False
        except StopIteration as end:
            self._put(_End(*end.value))
        finally:
            frames.close()
        return True

    def _produce(self) -> None:
        cap, i, t, step = self.cap, 0, 0.0, 1.0 / self.info.fps
        try:
            if self._width and self._yuv and self._produce_small():
                return
            # OpenCV's clock starts at the video stream's first frame; the player's at the container's.
            offset = video_decode.stream_offset(self.path)
            with _quiet_opencv():
                while not self._stop.is_set():
                    if not cap.grab():
                        break
                    nt = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 + offset
                    if i and nt > t:
                        step = nt - t
                    t = nt
                    if self._take(t):
                        ok, frame = cap.retrieve()
                        if not ok:
                            break
                        if i == 0:  # the decoded size, after any rotation OpenCV applied from the metadata
                            self.info.height, self.info.width = frame.shape[:2]
                        if self._width:
                            frame = downscale(frame, self._width)
                        if not self._put((i, t, self._transform(frame))):
                            return
                    i += 1
            self._put(_End(i, t + step if i else 0.0))
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._put(_Failed(e))
        finally:
            cap.release()

    def __iter__(self) -> Iterator[tuple[int, float, Any]]:
        worker = threading.Thread(target=self._produce, name="rvs-video-decode", daemon=True)
        worker.start()
        total, progress, last, first = self.info.frame_count, self._progress, 0.0, True
        try:
            while True:
                item = self._queue.get()
                if isinstance(item, _Failed):
                    raise item.exc
                if isinstance(item, _End):
                    self.info.decoded_frames, self.info.end = item.n, item.end
                    check_decoded(self.info, item.n)
                    if progress:
                        progress(1.0, self._desc)
                    return
                i, t, data = item
                if first:
                    self.info.start, first = t, False
                if progress and total and (i + 1) / total - last >= 0.01:
                    last = min(1.0, (i + 1) / total)
                    progress(last, self._desc)
                yield i, t, data
        finally:
            self._stop.set()
            worker.join(timeout=10)


def _rgb(frame, width: int | None) -> np.ndarray:
    """A PyAV frame as RGB; shrunk to `width` by FFmpeg while converting (cheaper than full size)."""
    if width and frame.width > width:
        return frame.reformat(width=width, height=max(2, round(frame.height * width / frame.width)), format="rgb24").to_ndarray()
    return frame.to_ndarray(format="rgb24")


class _TimedFrames:
    """Frames of a video in presentation order with their player times, able to jump: PyAV where
    it applies (exact timestamps), else OpenCV (its clock plus the stream's start offset)."""

    def __init__(self, path: Path, width: int | None = None):
        self.path, self.width = path, width
        self._av = None
        try:
            import av

            self._av = av.open(str(path), metadata_errors="ignore")
            self._stream = self._av.streams.video[0]
            self._c0 = self._av.start_time / 1e6 if self._av.start_time is not None else 0.0
            frame = next(self._av.decode(self._stream))
            if frame.rotation % 360:
                raise ValueError("rotated")  # OpenCV applies the rotation; PyAV would not
            self._av.seek(0, stream=self._stream)
        except Exception:
            if self._av is not None:
                self._av.close()
            self._av = None
        if self._av is None:
            self.cap, _ = _open(path)
            self._offset = video_decode.stream_offset(path)
        self._iter: Iterator | None = None

    def seek(self, t: float) -> None:
        """Continue from a keyframe at or before `t` (from the start when that is not possible)."""
        if self._av is not None:
            tb = self._stream.time_base
            target = int(max(0.0, t + self._c0) / tb) if tb else 0
            self._av.seek(target, stream=self._stream, backward=True, any_frame=False)
            self._iter = None
        else:
            self.cap.set(cv2.CAP_PROP_POS_MSEC, max(0.0, (t - self._offset) * 1000.0))
            self._iter = None

    def rewind(self) -> None:
        if self._av is not None:
            self._av.seek(0, stream=self._stream)
        else:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._iter = None

    def _frames(self) -> Iterator[tuple[float, Callable[[], np.ndarray]]]:
        if self._av is not None:
            for frame in self._av.decode(self._stream):
                yield player_time(frame, self._c0, 0.0), partial(_rgb, frame, self.width)
        else:
            with _quiet_opencv():
                while self.cap.grab():
                    t = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 + self._offset
                    ok, bgr = self.cap.retrieve()  # now: the capture holds one frame at a time
                    if not ok:
                        return
                    if self.width:
                        bgr = downscale(bgr, self.width)
                    yield t, (lambda b=bgr: cv2.cvtColor(b, cv2.COLOR_BGR2RGB))

    def next(self) -> tuple[float, Callable[[], np.ndarray]] | None:
        if self._iter is None:
            self._iter = self._frames()
        return next(self._iter, None)

    def close(self) -> None:
        if self._av is not None:
            self._av.close()
        else:
            self.cap.release()


def read_frames(video_path: str | os.PathLike, times: Sequence[float]) -> list[Image.Image]:
    """Full-size RGB frames shown at the given player times (seconds), e.g. the best frame of
    each segment: for each time, the frame on screen then (the last one starting at or before
    it, within half a millisecond of rounding); times before the first frame give the first,
    times past the end the last. Times are visited in order: a time a little ahead of the last
    one read is reached by decoding forward, a far one by seeking to the keyframe before it, so
    a gallery of nearby frames costs about one pass."""
    path = check_video_path(video_path)
    src = _TimedFrames(path)
    out: dict[float, Image.Image] = {}
    try:
        cur: tuple[float, Callable[[], np.ndarray]] | None = None  # the frame at or before the last target
        nxt = None  # the frame after it, already decoded
        for want in sorted({float(t) for t in times}):
            if cur is not None and not (cur[0] - TIME_EPS <= want <= cur[0] + SEEK_FORWARD_S):
                cur = nxt = None
                src.seek(want)
            if cur is None:
                cur = src.next()
                if cur is not None and cur[0] > want + 5e-4:  # the seek landed past it (or a bad index)
                    src.rewind()
                    cur = src.next()
                nxt = None
            if cur is None:
                raise BadInputError(f"{path}: cannot decode the frame at {want:.2f} s")
            while True:
                if nxt is None:
                    nxt = src.next()
                if nxt is None or nxt[0] > want + 5e-4:
                    break
                cur, nxt = nxt, None
            out[want] = Image.fromarray(np.ascontiguousarray(cur[1]()))
    finally:
        src.close()
    return [out[float(t)] for t in times]


def frames_between(video_path: str | os.PathLike, t0: float, t1: float, width: int | None = None) -> list[tuple[float, np.ndarray]]:
    """Every frame shown from `t0` to `t1` seconds of the player's clock, as (time, RGB), shrunk
    to `width` when given (else full size)."""
    path = check_video_path(video_path)
    src = _TimedFrames(path, width)
    out = []
    try:
        src.seek(t0)
        first = src.next()
        if first is not None and first[0] > t0 + 5e-4:
            src.rewind()
            first = src.next()
        cur = first
        while cur is not None and cur[0] <= t1 + 5e-4:
            if cur[0] >= t0 - 5e-4:
                out.append((cur[0], np.ascontiguousarray(cur[1]())))
            cur = src.next()
    finally:
        src.close()
    return out


def read_frame(video_path: str | os.PathLike, time_s: float) -> Image.Image:
    """The full-size RGB frame shown at `time_s` seconds of the player's clock."""
    return read_frames(video_path, [time_s])[0]
