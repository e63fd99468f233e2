"""What a video search answers: matching frames and their faces, segments, moments, and the
`VideoResult` that holds them with the video's facts (JSON-ready with `to_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rvs.video.info import VideoInfo


def clock(t: float) -> str:
    """Seconds as a player's clock shows them, the one time format of the page: mm:ss.cc
    (00:02.04); h:mm:ss.cc past an hour; --:-- when unknown."""
    if not math.isfinite(t):
        return "--:--"
    cs = round(t * 100)
    h, rem = divmod(cs, 360000)
    m, rem = divmod(rem, 6000)
    s, c = divmod(rem, 100)
    return f"{h}:{m:02d}:{s:02d}.{c:02d}" if h else f"{m:02d}:{s:02d}.{c:02d}"


def json_number(x: float | None, nd: int = 4) -> float | None:
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
            "prob": json_number(self.prob),
            "distance": json_number(self.distance),
            "similarity": json_number(self.similarity),
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
        d: dict[str, Any] = {"frame": self.frame, "time": json_number(self.time, 3), "score": json_number(self.score), "rank": json_number(self.rank)}
        if self.phash is not None or self.hist is not None:
            d.update(phash=json_number(self.phash), hist=json_number(self.hist), orb=json_number(self.orb))
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
            "start": json_number(self.start, 3),
            "end": json_number(self.end, 3),
            "best_frame": self.best_frame,
            "best_time": json_number(self.best_time, 3),
            "score": json_number(self.score),
            "rank": json_number(self.rank),
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

    time / frame: the best frame. score: its score (`rvs.video.frames.GeoScores`). reading: one
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
        """One line for a gallery or a table: "00:02.00 · same frame · 0.93"."""
        return f"{clock(max(0.0, self.time))} · {self.reading} · {self.score:.2f}"

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "time": json_number(self.time, 3),
            "frame": self.frame,
            "score": json_number(self.score),
            "reading": self.reading,
            "start": json_number(self.start, 3),
            "end": json_number(self.end, 3),
            "ncc": json_number(self.ncc),
        }
        if self.hit is not None and self.hit.inliers is not None:
            d.update(inliers=self.hit.inliers, flipped=self.hit.flipped)
        return d


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

    @classmethod
    def of(cls, mode: str, path: Path | str, info: VideoInfo, sample_fps: float, cached: bool, **fields: Any) -> VideoResult:
        """A result whose video facts come from `info` (what a mode's cache entry recorded);
        `fields` are the mode's answer (n_samples, threshold, segments, curve, closest, timings...)."""
        return cls(
            mode=mode,
            video=str(path),
            fps=info.fps,
            duration=info.duration,
            frame_count=info.decoded_frames,
            width=info.width,
            height=info.height,
            sample_fps=sample_fps,
            cached=cached,
            frames_decoded=0 if cached else info.decoded_frames,
            **fields,
        )

    @property
    def matched(self) -> bool:
        return bool(self.segments)

    def describe(self) -> str:
        """One line saying what was found, for a UI's summary: frame mode with "moments" fusion
        names the best moment and its reading ("Best moment 00:02.00 · same frame · 0.94; 1 more
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
            "fps": json_number(self.fps, 3),
            "duration": json_number(self.duration, 3),
            "frame_count": self.frame_count,
            "width": self.width,
            "height": self.height,
            "sample_fps": json_number(self.sample_fps, 3),
            "n_samples": self.n_samples,
            "threshold": json_number(self.threshold),
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
            d["curve"] = [[json_number(t, 3), json_number(s)] for t, s in self.curve]
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
