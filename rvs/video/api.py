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
`callable(fraction, description)`. Times are presentation times, seconds on a player's clock
(rvs.video.info): right for late-starting video streams and variable frame rate.

The package, stage by stage: `info` (a video's facts), `reader` (check, probe, stream and read
frames; `decode` is its PyAV path), `cache` (one feature cache for both modes), `frames` and
`faces` (the two modes; `tracks` links faces into tracks), `results` (what they answer);
rvs.library indexes many videos once and searches them like a gallery. This module is the entry point.
"""

from __future__ import annotations

import os

from rvs.config import Config
from rvs.imageio import ImageLike
from rvs.progress import Progress
from rvs.video.reader import probe_video, read_frame, read_frames
from rvs.video.results import VideoResult

__all__ = ["probe_video", "read_frame", "read_frames", "search_video_faces", "search_video_frames", "VideoResult"]


def search_video_frames(
    query_image: ImageLike, video_path: str | os.PathLike, config: Config | None = None, progress: Progress | None = None
) -> VideoResult:
    """Frame mode: where in the video `query_image` (a screenshot; re-encoded, resized, cropped,
    letterboxed, mirrored or recoloured frame) is. By default (`Config.video_fusion = "moments"`)
    the answer is `moments` (peaks with a reading, best first) and a short segment around each
    "same frame" moment. See `rvs.video.frames` for the similarities and their ranges."""
    from rvs.video.frames import search_frames

    return search_frames(query_image, video_path, config or Config(), progress)


def search_video_faces(
    query_image: ImageLike, video_path: str | os.PathLike, config: Config | None = None, progress: Progress | None = None, models=None
) -> VideoResult:
    """Face mode: the segments of the video where the person of `query_image` (its largest face)
    appears, with their face boxes. `models`: a `rvs.video.faces.VideoFaceModels` to use (e.g.
    the app's search engine's detector and embedder), else loaded once per process. See
    `rvs.video.faces`."""
    from rvs.video.faces import search_faces

    return search_faces(query_image, video_path, config or Config(), progress, models)
