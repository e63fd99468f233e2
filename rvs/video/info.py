"""The facts of an input video: what its container says (frame rate, size, frame count) and what
decoding found. The reader fills it in, the cache stores it, results carry it.
"""

from __future__ import annotations

from dataclasses import dataclass


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
