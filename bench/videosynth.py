"""Test videos with known shots and times, for frame-search quality (bench/video_quality.py, tests).

A video is a list of shots, written with PyAV (H.264, yuv420p, constant frame rate):

- `clip(frames, name)`: frames of a real video (e.g. a range of `arcade_faces.mp4`), resized.
- `pan(photo, start, end, n, name)`: a Ken Burns shot over a still photo: the 16:9 window moves
  and zooms linearly from `start` to `end` (centre x, centre y, width, as fractions of the photo's
  width/height/width), so every frame differs from its neighbours, as in real footage. A still
  shot (every frame identical) would make "the right moment" ambiguous.

`write_video` returns each shot's first and last frame index, so a frame's true time and shot are
known: frame i is at i / fps seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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

    def contains(self, frame: int) -> bool:
        return self.first <= frame <= self.last


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


def write_video(path: Path, shots: Sequence[Shot], size: Size = (640, 360), fps: int = 25, crf: int = 23) -> list[PlacedShot]:
    """Encode the shots one after another (H.264, yuv420p) into `path`; returns where each landed."""
    import av

    placed: list[PlacedShot] = []
    i = 0
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for shot in shots:
            placed.append(PlacedShot(shot, i, i + shot.n - 1))
            for k in range(shot.n):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(shot.render(k, size)), format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
                i += 1
        for packet in stream.encode():
            out.mux(packet)
    return placed


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
