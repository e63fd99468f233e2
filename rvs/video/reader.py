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
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from rvs.errors import BadInputError
from rvs.progress import Progress
from rvs.video import decode as video_decode
from rvs.video.decode import downscale
from rvs.video.info import VideoInfo

log = logging.getLogger(__name__)

FALLBACK_FPS = 25.0  # used when a container does not state a usable frame rate

# A decode that stops this many frames (or this share of them) short of the header's count is a
# truncated or corrupt file. Some containers (MKV, WebM) estimate the count from the duration, so a
# few frames of slack avoid false alarms.
TRUNCATION_SLACK_FRAMES = 2
TRUNCATION_SLACK_SHARE = 0.02

# read_frames decodes forward instead of seeking when the next frame is at most this far ahead.
SEEK_FORWARD_FRAMES = 50


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

    width: frames come shrunk to this width, decoded by `rvs.video.decode` (YUV planes shrunk
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
        """Frames shrunk to `width` via rvs.video.decode; False if that path does not apply to
        this video (nothing was queued then, and the OpenCV path takes over)."""
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
