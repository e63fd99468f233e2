"""The facts of an input video: what its container says (frame rate, size, frame count) and what
decoding found (frames, where the video starts and ends on a player's clock). The reader fills it
in, the cache stores it, results carry it.

Times in rvs are presentation times: a frame's timestamp relative to the container's start, what
mpv, VLC or a browser's video element shows. They are not frame index / fps: a video stream can
start after its audio (priming, an edit list, a cut), and phone recordings have a variable frame
rate. `fps` is the container's average rate, used only to decide how densely to sample.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class VideoInfo:
    """What the container says (frame_count, fps) and what decoding found (decoded_frames, and the
    player times `start` of the first frame and `end` of the last one, 0 until decoded)."""

    path: str
    fps: float
    width: int
    height: int
    frame_count: int  # from the header; 0 when unknown
    decoded_frames: int = 0
    start: float = 0.0
    end: float = 0.0

    @property
    def duration(self) -> float:
        """Seconds on the player's clock until the last frame ends (header estimate before decoding)."""
        if self.end > 0:
            return self.end
        n = self.decoded_frames or self.frame_count
        return self.start + n / self.fps if self.fps > 0 else 0.0
