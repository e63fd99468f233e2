"""Fast decode of shrunk BGR frames (frame mode's input), with PyAV.

OpenCV hands out every frame as full-size BGR: FFmpeg converts the 1080p YUV picture to BGR and
rvs then shrinks it to `Config.video_width` (480 px), about a third of frame mode's decode cost.
Here the YUV 4:2:0 planes are shrunk first, box filter as `downscale` below, and only
the small picture is converted to BGR (BT.601, as OpenCV's FFmpeg backend converts). On the 1080p
sample that cuts decode + shrink from 0.86 to 0.68 CPU seconds. Pixels differ from OpenCV's path
by about one level (rounding, and averaging before the conversion clips saturated colours a little
differently); frame mode's histogram leaves out the hue-less dark and grey pixels that would
amplify that (see rvs.video.frames).

`iter_small_bgr(path, width, take)` yields (frame index, presentation time, small BGR frame) for
the frames whose time `take` accepts, and returns (frames decoded, end time). Times are the
frames' timestamps relative to the container's start: what a player's clock shows. It raises `Unsupported` before yielding anything
when this path does not apply (PyAV missing, a rotated video, a pixel format other than 8-bit
4:2:0): the caller then decodes with OpenCV instead. A decode error mid-stream ends the iteration,
like end-of-file, so that the caller's frame count check reports a truncated file.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Generator
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

# BT.601 YCbCr -> BGR as 3x4 matrices for cv2.transform (input channels Y, U, V; last column
# the offsets): "limited" for yuv420p (Y 16..235), "full" for yuvj420p (JPEG range).
_K = 255.0 / 219.0
_LIMITED = np.array([[_K, 2.017232, 0.0], [_K, -0.391762, -0.812968], [_K, 0.0, 1.596027]], np.float32)
_FULL = np.array([[1.0, 1.772, 0.0], [1.0, -0.344136, -0.714136], [1.0, 0.0, 1.402]], np.float32)
_OFFSETS = {"limited": np.array([16, 128, 128], np.float32), "full": np.array([0, 128, 128], np.float32)}
MATRICES = {
    name: np.hstack([m, (-m @ _OFFSETS[name])[:, None]]).astype(np.float32)
    for name, m in (("limited", _LIMITED), ("full", _FULL))
}
FORMATS = {"yuv420p": "limited", "yuvj420p": "full"}


def downscale(img: np.ndarray, width: int) -> np.ndarray:
    """Shrink to `width` pixels wide (never enlarges).

    Halves with INTER_LINEAR while the image is at least twice the target (at exactly half size
    that is a 2x2 box filter, so no aliasing, and ~3x cheaper than INTER_AREA on a 1080p frame),
    then INTER_AREA for the rest.
    """
    h, w = img.shape[:2]
    if w <= width:
        return img
    while w >= 2 * width:
        w, h = w // 2, max(1, h // 2)
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    if w != width:
        img = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return img


class Unsupported(Exception):
    """This video needs the OpenCV path (reason in the message)."""


def available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _plane(p) -> np.ndarray:
    a = np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)
    return a[:, : p.width]


def _shrink(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    small = downscale(img, size[0])
    if (small.shape[1], small.shape[0]) != size:  # chroma of odd-sized frames: off by a pixel
        small = cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)
    return small


def small_bgr(frame, width: int) -> np.ndarray:
    """One PyAV 4:2:0 frame -> BGR at `width` pixels wide (never enlarged): the three planes are
    shrunk to the target size, then converted (averaging before the conversion clips saturated
    colours a little differently than OpenCV's convert-then-shrink; see the module docstring)."""
    y, u, v = (_plane(p) for p in frame.planes[:3])
    h, w = y.shape
    size = (w, h) if w <= width else (width, max(1, round(h * width / w)))
    yuv = cv2.merge([_shrink(y, size), _shrink(u, size), _shrink(v, size)])
    return cv2.transform(yuv, MATRICES[FORMATS[frame.format.name]])


def _offset_s(container, stream) -> float:
    """Where the video stream starts on the player's clock: its first timestamp minus the
    container's start (audio priming, an edit list or a cut make a video stream start late)."""
    c0 = container.start_time / 1e6 if container.start_time is not None else 0.0
    s0 = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else c0
    return s0 - c0


def stream_offset(path: Path) -> float:
    """`_offset_s` of the file's first video stream; 0.0 when PyAV cannot tell (the OpenCV path's
    times then start at 0, as OpenCV's own do)."""
    try:
        import av

        with av.open(str(path), metadata_errors="ignore") as container:
            return _offset_s(container, container.streams.video[0]) if container.streams.video else 0.0
    except Exception:  # any failure here only costs the offset; decoding reports real errors
        return 0.0


def player_time(frame, container_start: float, fallback: float) -> float:
    """A decoded frame's presentation time in seconds from the container's start (what mpv, VLC
    or a browser's video element shows); `fallback` when the frame carries no timestamp."""
    if frame.pts is None or frame.time_base is None:
        return fallback
    return float(frame.pts * frame.time_base) - container_start


def iter_small_bgr(
    path: Path, width: int, take: Callable[[float], bool], sparse: bool = False
) -> Generator[tuple[int, float, np.ndarray], None, tuple[int, float]]:
    """(frame index, presentation time, BGR frame shrunk to `width`) for each frame whose time
    `take` accepts; returns (frames in the stream, time the last one ends). Times are the frames'
    own timestamps, so variable frame rate and a late-starting video stream come out as a player
    shows them.

    sparse: for sampling well below the frame rate (face mode's 2 a second). Frames no other
    frame refers to are not decoded at all (FFmpeg's skip_frame "nonref", about half the decode
    time of a typical H.264 file), and the decoder runs in one thread (frame threads cost ~35%
    more CPU, which the detector on the other core needs). Frames are then counted by packet, and
    the frame index of a sample is its decode position among all frames, skipped ones included."""
    try:
        import av
    except ImportError:
        raise Unsupported("PyAV is not installed") from None
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as e:
        raise Unsupported(f"PyAV cannot open it ({e})") from None
    try:
        if not container.streams.video:
            raise Unsupported("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "SLICE" if sparse else "AUTO"
        if sparse:
            stream.codec_context.skip_frame = "NONREF"
        c0 = container.start_time / 1e6 if container.start_time is not None else 0.0
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        n_packets, n_frames = 0, 0
        t, step = _offset_s(container, stream), 1.0 / max(rate, 1e-3)
        first = True

        seen: list[int] = []  # packet timestamps so far, sorted: a frame's index is its rank

        def frames():
            nonlocal n_packets
            for packet in container.demux(stream):
                if packet.size:
                    n_packets += 1
                    if sparse and packet.pts is not None:
                        bisect.insort(seen, packet.pts)
                yield from packet.decode()

        decoded = frames()
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except av.FFmpegError as e:  # corrupt data: stop here; the caller checks the count
                log.info("%s: decoding stopped after %d frames (%s)", path, n_frames, e)
                break
            if first and (frame.format.name not in FORMATS or frame.rotation % 360):
                raise Unsupported(f"pixel format {frame.format.name}, rotation {frame.rotation}")
            nt = player_time(frame, c0, t if first else t + step)
            if not first and nt > t:
                step = nt - t if not sparse else step
            t, first = nt, False
            i = bisect.bisect_left(seen, frame.pts) if sparse and frame.pts is not None and seen else n_frames
            n_frames += 1
            if take(t):
                if frame.format.name in FORMATS:
                    yield i, t, small_bgr(frame, width)
                else:  # the format changed mid-stream (rare): FFmpeg converts, then shrink
                    yield i, t, downscale(frame.to_ndarray(format="bgr24"), width)
        if n_frames == 0:  # nothing decodable here: let OpenCV try (and report) instead
            raise Unsupported("PyAV decoded no frame")
        if sparse:  # skipped frames at the end still show: the stream lasts as long as its packets say
            end = float(stream.duration * stream.time_base) + _offset_s(container, stream) if stream.duration and stream.time_base else t + step
            return n_packets, max(t + step, end)
        return n_frames, t + step
    finally:
        container.close()
