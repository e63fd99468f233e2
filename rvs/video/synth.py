"""Videos with known shots and times: the benchmarks' and tests' test videos (bench/video_quality.py,
bench/video_library.py) and the small library a published artifact carries (rvs.hub.library).

A video is a list of shots, written with PyAV (H.264, yuv420p; constant frame rate unless
`durations` says otherwise):

- `clip(frames, name)`: frames of a real video (e.g. a range of `arcade_faces.mp4`), resized.
- `pan(photo, start, end, n, name)`: a Ken Burns shot over a still photo: the 16:9 window moves
  and zooms linearly from `start` to `end` (centre x, centre y, width, as fractions of the photo's
  width/height/width), so every frame differs from its neighbours, as in real footage. A still
  shot (every frame identical) would make "the right moment" ambiguous.

`write_video` returns each shot's first and last frame index and its frames' presentation times
(what a player shows), so a frame's true time and shot are known. Two real-world timings:

- `start_s`: the video stream starts after the audio stream (AAC from 0 s; the MP4 muxer writes
  an edit list), as audio priming or an edit does to news clips and phone videos: frame i shows
  at start_s + its offset, not at i / fps.
- `durations`: per-frame display times (seconds), e.g. `vfr_durations`: a variable frame rate,
  as phones record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

Size = tuple[int, int]  # width, height


@dataclass
class Shot:
    name: str  # what it shows ("arcade 0.0-1.4 s", "multiface pan"): same name = same content
    n: int  # frames
    render: Callable[[int, Size], np.ndarray]  # (k, size) -> RGB uint8 frame k of the shot


@dataclass
class PlacedShot:
    shot: Shot
    first: int  # frame index in the written video
    last: int
    times: list[float] | None = None  # presentation time of each of its frames (player's clock)

    def contains(self, frame: int) -> bool:
        return self.first <= frame <= self.last

    def time_of(self, frame: int, fps: float) -> float:
        """Player time of a frame of the video (by index)."""
        return self.times[frame - self.first] if self.times is not None else frame / fps


def clip(frames: Sequence[np.ndarray], name: str) -> Shot:
    """A shot made of these RGB frames (any size; resized to the video's)."""
    frames = list(frames)

    def render(k: int, size: Size) -> np.ndarray:
        return cv2.resize(frames[k], size, interpolation=cv2.INTER_AREA)

    return Shot(name, len(frames), render)


def pan(photo: np.ndarray, start: tuple[float, float, float], end: tuple[float, float, float], n: int, name: str) -> Shot:
    """A moving 16:9 window over an RGB photo (see the module docstring)."""
    ph, pw = photo.shape[:2]

    def render(k: int, size: Size) -> np.ndarray:
        a = k / max(1, n - 1)
        cx, cy, w = (s + (e - s) * a for s, e in zip(start, end))
        bw = w * pw  # window in photo pixels
        bh = bw * size[1] / size[0]
        x0, y0 = cx * pw - bw / 2, cy * ph - bh / 2
        # Shrink the photo first (area filter) so the sub-pixel warp below never minifies by more
        # than ~1.5x: no aliasing shimmer between frames.
        f = min(1.0, 1.5 * size[0] / bw)
        src = cv2.resize(photo, (max(1, round(pw * f)), max(1, round(ph * f))), interpolation=cv2.INTER_AREA) if f < 1 else photo
        s = size[0] / (bw * f)
        m = np.array([[s, 0, -x0 * f * s], [0, s, -y0 * f * s]], np.float32)
        return cv2.warpAffine(src, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    return Shot(name, n, render)


def vfr_durations(n: int, fps: float, seed: int = 0) -> list[float]:
    """Display times of n frames at a variable rate: runs of 3-12 frames at 1x or 2x the nominal
    frame duration (frame durations varying 2x, as a phone slows down in low light)."""
    rng = np.random.default_rng(seed)
    out: list[float] = []
    while len(out) < n:
        out += [(1.0 if rng.random() < 0.5 else 2.0) / fps] * int(rng.integers(3, 13))
    return out[:n]


TIME_BASE = 1000  # ms timestamps: exact for 25 fps and the durations above


AUDIO_RATE = 48000


def _write_audio(out, a, seconds: float) -> None:
    """A quiet 440 Hz AAC track from 0 s (what makes a late video stream late) into stream `a`."""
    import av

    rate = AUDIO_RATE
    n = int(seconds * rate)
    for s0 in range(0, n, 1024):
        k = min(1024, n - s0)
        tone = (0.05 * np.sin(2 * np.pi * 440 * np.arange(s0, s0 + k) / rate)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, s0, Fraction(1, rate)
        for packet in a.encode(frame):
            out.mux(packet)
    for packet in a.encode():
        out.mux(packet)


def write_video(
    path: Path,
    shots: Sequence[Shot],
    size: Size = (640, 360),
    fps: int = 25,
    crf: int = 23,
    start_s: float = 0.0,
    durations: Sequence[float] | None = None,
) -> list[PlacedShot]:
    """Encode the shots one after another (H.264, yuv420p) into `path`; returns where each landed,
    with its frames' player times. start_s > 0 adds an audio track from 0 s and starts the video
    at start_s; durations: per-frame display times (default 1 / fps each)."""
    import av

    total = sum(s.n for s in shots)
    durations = list(durations) if durations is not None else [1.0 / fps] * total
    if len(durations) < total:
        raise ValueError(f"{len(durations)} durations for {total} frames")
    placed: list[PlacedShot] = []
    i, t = 0, start_s
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, TIME_BASE)
        if start_s > 0:  # every stream is added before the first packet is muxed
            audio = out.add_stream("aac", rate=AUDIO_RATE)
            audio.layout = "mono"
            _write_audio(out, audio, start_s + sum(durations[:total]))
        for shot in shots:
            times: list[float] = []
            for k in range(shot.n):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(shot.render(k, size)), format="rgb24")
                frame.pts, frame.time_base = round(t * TIME_BASE), Fraction(1, TIME_BASE)
                times.append(round(t * TIME_BASE) / TIME_BASE)
                for packet in stream.encode(frame):
                    out.mux(packet)
                t += durations[i]
                i += 1
            placed.append(PlacedShot(shot, i - shot.n, i - 1, times))
        for packet in stream.encode():
            out.mux(packet)
    return placed


def shapes(seed: int, size: Size = (700, 400), n: int = 60) -> np.ndarray:
    """An RGB picture without faces: `n` coloured circles and rectangles on a grey gradient
    (something for ORB to hold on to, nothing for a face detector)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = np.linspace(40, 200, w, dtype=np.uint8)[None, :, None]
    for _ in range(n):
        c = tuple(int(x) for x in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), int(rng.integers(8, 40)), c, -1)
        else:
            cv2.rectangle(img, (x, y), (x + 50, y + 30), c, -1)
    return img


def read_rgb(path: Path, limit: int | None = None) -> list[np.ndarray]:
    """Every frame of a video as RGB arrays (for small videos)."""
    cap, out = cv2.VideoCapture(str(path)), []
    while limit is None or len(out) < limit:
        ok, f = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return out


def load_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
