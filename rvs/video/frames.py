"""Frame mode: find the moment of a video that a query image shows.

Per sampled frame, computed once and cached (the original report's three features, plus keypoint
positions and a thumbnail):

- pHash: `imagehash.phash` (64 bits) of a 128-px-wide grey copy.
  Similarity = 1 - hamming / 64, in [0, 1] (about 0.5 for unrelated images, 1 = same hash).
- HSV histogram: hue x saturation (`video_hist_bins_h` x `video_hist_bins_s`; value is left out so
  brightness changes matter less), on a `video_width`-wide copy, over the pixels whose hue means
  something (saturation and value >= `video_hist_min_sv`; all pixels when fewer than 5% qualify, e.g.
  black-and-white video). The hue of dark or grey pixels flips between bins at one level of
  noise: with them, a JPEG re-encode of a frame or a different YUV->BGR rounding moved the
  correlation of the exact frame from 0.99 to 0.97, across the report's 0.98 line.
  Similarity = Pearson correlation (OpenCV's HISTCMP_CORREL), in [-1, 1].
- ORB: up to `video_orb_features` keypoints and descriptors of the same grey `video_width` copy.
  Similarity = good matches (Lowe's ratio test, `video_orb_ratio`) / min(query keypoints, frame
  keypoints), in [0, 1].

A query computes pHash and histogram similarity against every frame (vectorised, microseconds a
frame), shortlists the `video_shortlist` best frames (half by pHash, half by histogram), matches ORB
descriptors on the shortlist only, and fuses the three with the report's rule: if the largest
exceeds `video_fuse_high` (0.85) take the largest, else the smallest; a frame matches when the
fused similarity >= `video_match_threshold` (0.98). Frames outside the shortlist are fused from
pHash and histogram alone. Hits and segments are ordered by the mean of the three similarities
(see `FrameHit.rank`). `video_fusion = "mean"` uses that mean as the score too, matching at
>= `video_mean_threshold` (0.75): on the sample video the exact frame of a re-encoded, brightened
copy scores 0.91-0.94, the frames next to it up to ~0.86, other frames < 0.78, unrelated photos ~0.2.

Those two rules are kept for comparison (`video_fusion`). The default, "moments", answers "when is
this frame": the query (its letterbox/pillarbox bars trimmed, `trim_borders`) is described as
the frames are, as given and mirrored. Candidate frames (the pHash + histogram shortlist, plus
evenly spread frames) are matched geometrically (`geo_match`): ratio-test ORB matches, then one
similarity transform by RANSAC, so a crop, a letterboxed or scaled copy matches by its keypoints'
layout, and an unrelated picture does not (unrelated videos gave <= 13 inliers on
bench/video_quality.py; `video_min_inliers` is 20). A frame's score is the share of keypoints the
transform explains times a placement prior (query centred on the frame; it breaks the ties of pans
and static backgrounds). Frames around the best candidates are compared too, so the exact frame is
reached from anywhere in its shot. The answer is moments: score peaks, best first
(`find_moments`), each with a segment only as wide as the score stays close to the peak (relative
to the video's median score), and a reading: "same frame" (a score above `video_same_frame_score`
and close to the best, and the query's pixels, aligned onto the frame, agree: `aligned_ncc` of
the cached thumbnail), "same shot" (the scene matches geometrically, the moment does not: no
segment), or, when nothing matches geometrically, "similar scene" (colours alone, no segment).

Cache entry (under `config.cache_dir / "video" / <content hash>`, no pickle anywhere):
`meta.json`; `features.npz` (frames int32[N], times float64[N] (player time of each sample), phash uint64[N], hist float16[N, bins],
orb_offsets int64[N+1]); `orb.u8`, raw uint8 rows of 32 bytes, frame j's descriptors being rows
orb_offsets[j]:orb_offsets[j+1]; `orb_xy.f16`, their keypoints' positions (float16 x, y in pixels of
the `video_width`-wide frame, same rows); `thumbs.u8`, a grey `THUMB_WIDTH`-wide thumbnail per
frame. They are memory-mapped, so a query on an hour of video reads only the frames it compares.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import imagehash
import numpy as np
from PIL import Image

from rvs.config import Config
from rvs.errors import BadInputError
from rvs.imageio import ImageLike, load_image
from rvs.progress import Progress, scaled_progress
from rvs.video import cache
from rvs.video.cache import CACHE_VERSION, StageTimer, cache_meta, info_from_meta, write_json
from rvs.video.decode import downscale
from rvs.video.info import VideoInfo
from rvs.video.reader import FrameStream, check_video_path, use_yuv
from rvs.video.results import FrameHit, Moment, Segment, VideoResult, group_segments

log = logging.getLogger(__name__)

KIND = "frames"
PHASH_WIDTH = 128  # pHash input width: imagehash shrinks to 32x32 anyway, this just makes it cheap
ORB_BYTES = 32
HIST_MIN_SHARE = 0.05  # below this share of coloured pixels the histogram uses every pixel
THUMB_WIDTH = 64  # grey thumbnail per frame: do the aligned pixels agree ("same frame" reading)?


def thumbnail(grey: np.ndarray) -> np.ndarray:
    h, w = grey.shape[:2]
    return cv2.resize(grey, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)


class Featurizer:
    """pHash, histogram and ORB of a downscaled BGR frame (or query). Not thread-safe (ORB state)."""

    def __init__(self, config: Config):
        self.config = config
        self.bins = [config.video_hist_bins_h, config.video_hist_bins_s]
        self.orb = cv2.ORB_create(nfeatures=config.video_orb_features)

    def __call__(self, small_bgr: np.ndarray) -> tuple[np.uint64, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pHash as uint64, normalised histogram float32 [bins], ORB descriptors uint8 [n, 32],
        their keypoints' positions float32 [n, 2] in pixels of `small_bgr`, grey thumbnail uint8
        `THUMB_WIDTH` wide)."""
        grey = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY)
        bits = imagehash.phash(Image.fromarray(downscale(grey, PHASH_WIDTH))).hash.ravel()
        phash = np.packbits(bits).view(">u8")[0].astype(np.uint64)
        hsv = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2HSV)
        lo = self.config.video_hist_min_sv
        mask = cv2.inRange(hsv, (0, lo, lo), (180, 255, 255)) if lo > 0 else None
        if mask is not None and cv2.countNonZero(mask) < HIST_MIN_SHARE * mask.size:
            mask = None
        hist = cv2.calcHist([hsv], [0, 1], mask, self.bins, [0, 180, 0, 256]).ravel()
        hist /= max(float(hist.sum()), 1.0)
        thumb = thumbnail(grey)
        kps, desc = self.orb.detectAndCompute(grey, None)
        if desc is None:  # a flat frame (fade to black) has no keypoints
            return phash, hist, np.zeros((0, ORB_BYTES), np.uint8), np.zeros((0, 2), np.float32), thumb
        return phash, hist, desc, cv2.KeyPoint_convert(kps).astype(np.float32).reshape(-1, 2), thumb

    def params(self) -> dict:
        """Everything that changes the cached numbers (part of the cache entry's name)."""
        c = self.config
        return {
            "sample_fps": c.video_frame_fps,
            "width": c.video_width,
            "orb_features": c.video_orb_features,
            "hist_bins": self.bins,
            "hist_min_sv": c.video_hist_min_sv,
            "phash": f"imagehash-phash-8-grey{PHASH_WIDTH}",
            "decoder": "yuv-planes" if use_yuv(c) else "opencv",  # pixels differ by ~1 level
            "keypoints": "xy-f16",  # orb_xy.f16 beside orb.u8 (geometric verification)
            "thumb": f"grey{THUMB_WIDTH}",
        }


@dataclass
class FrameFeatures:
    """The cached per-frame features of one video (see the module docstring for the layout)."""

    info: VideoInfo
    sample_fps: float
    frames: np.ndarray  # int32 [N] frame index of each sample
    times: np.ndarray  # float64 [N] its presentation time, seconds on the player's clock
    phash: np.ndarray  # uint64 [N]
    hist: np.ndarray  # float16 [N, bins]
    orb_offsets: np.ndarray  # int64 [N + 1]
    orb: np.ndarray  # uint8 [M, 32], memory-mapped
    xy: np.ndarray  # float16 [M, 2] keypoint positions (pixels of the small frame), memory-mapped
    size: tuple[int, int]  # width, height of the small frames the features were computed on
    thumbs: np.ndarray  # uint8 [N, h, THUMB_WIDTH] grey thumbnails, memory-mapped

    def descriptors(self, j: int) -> np.ndarray:
        return np.asarray(self.orb[self.orb_offsets[j] : self.orb_offsets[j + 1]])

    def keypoints(self, j: int) -> np.ndarray:
        return np.asarray(self.xy[self.orb_offsets[j] : self.orb_offsets[j + 1]], np.float32)


def _parse_entry(entry: Path, meta: dict) -> FrameFeatures:
    """A frames entry's features (memory-mapped); ValueError when its files disagree (see `rvs.video.cache.read_entry`)."""
    with np.load(entry / "features.npz", allow_pickle=False) as z:
        frames, times, phash, hist, offsets = z["frames"], z["times"], z["phash"], z["hist"], z["orb_offsets"]
    n_desc = int(offsets[-1]) if len(offsets) else -1
    orb_path = entry / "orb.u8"
    if orb_path.stat().st_size != n_desc * ORB_BYTES:
        raise ValueError(f"orb.u8 has {orb_path.stat().st_size} bytes, expected {n_desc * ORB_BYTES}")
    xy_path = entry / "orb_xy.f16"
    if xy_path.stat().st_size != n_desc * 4:
        raise ValueError(f"orb_xy.f16 has {xy_path.stat().st_size} bytes, expected {n_desc * 4}")
    if n_desc:
        orb = np.memmap(orb_path, dtype=np.uint8, mode="r").reshape(-1, ORB_BYTES)
        xy = np.memmap(xy_path, dtype=np.float16, mode="r").reshape(-1, 2)
    else:
        orb, xy = np.zeros((0, ORB_BYTES), np.uint8), np.zeros((0, 2), np.float16)
    n = meta["n_samples"]
    if not (len(frames) == len(times) == len(phash) == len(hist) == len(offsets) - 1 == n) or np.any(np.diff(offsets) < 0):
        raise ValueError("arrays of inconsistent length")
    size = (int(meta["small_width"]), int(meta["small_height"]))
    th = int(meta["thumb_height"])
    thumbs = np.memmap(entry / "thumbs.u8", dtype=np.uint8, mode="r")
    if thumbs.size != n * th * THUMB_WIDTH:
        raise ValueError(f"thumbs.u8 has {thumbs.size} bytes, expected {n * th * THUMB_WIDTH}")
    thumbs = thumbs.reshape(n, th, THUMB_WIDTH)
    return FrameFeatures(info_from_meta(meta), meta["sample_fps"], frames, times, phash, hist, offsets, orb, xy, size, thumbs)


def _in_memory(feats: FrameFeatures) -> FrameFeatures:
    """Off the memory maps (an uncached search's files are deleted right after reading)."""
    feats.orb, feats.xy, feats.thumbs = np.array(feats.orb), np.array(feats.xy), np.array(feats.thumbs)
    return feats


OnFrame = Callable[[int, np.ndarray, np.ndarray, tuple[int, int]], None]


class FeatureWriter:
    """Writes frame features into a folder (a cache entry, or a video of a library), frame by frame:
    `add(index, time, small_bgr)` then `finish(info, path, sample_fps, params)`. Descriptors go
    straight to disk, so memory stays flat however long the video is."""

    def __init__(self, config: Config, out_dir: Path):
        self.fz = Featurizer(config)
        self.out_dir = out_dir
        self.frames: list[int] = []
        self.times: list[float] = []
        self.phashes: list[np.uint64] = []
        self.hists: list[np.ndarray] = []
        self.offsets = [0]
        self.small_size = (0, 0)
        self.thumb_h = 0
        self._files = [open(out_dir / name, "wb") for name in ("orb.u8", "orb_xy.f16", "thumbs.u8")]

    def add(self, i: int, t: float, small: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int], np.ndarray]:
        """Describe one frame; returns (ORB descriptors, their positions as a cached query reads
        them, the frame's size, its histogram)."""
        orb_f, xy_f, th_f = self._files
        ph, hist, desc, xy, thumb = self.fz(small)
        if not self.frames:
            self.thumb_h = thumb.shape[0]
        elif thumb.shape[0] != self.thumb_h:  # a resolution change mid-stream (rare): keep one shape
            thumb = cv2.resize(thumb, (THUMB_WIDTH, self.thumb_h), interpolation=cv2.INTER_AREA)
        th_f.write(np.ascontiguousarray(thumb).tobytes())
        self.small_size = (small.shape[1], small.shape[0])
        self.frames.append(i)
        self.times.append(t)
        self.phashes.append(ph)
        self.hists.append(hist.astype(np.float16))
        orb_f.write(np.ascontiguousarray(desc, np.uint8).tobytes())
        xy16 = np.ascontiguousarray(xy, np.float16)
        xy_f.write(xy16.tobytes())
        self.offsets.append(self.offsets[-1] + len(desc))
        return desc, xy16.astype(np.float32), self.small_size, hist

    def finish(self, info: VideoInfo, path: Path, sample_fps: float, **extra: int) -> None:
        for f in self._files:
            f.close()
        np.savez(
            self.out_dir / "features.npz",
            frames=np.asarray(self.frames, np.int32),
            times=np.asarray(self.times, np.float64),
            phash=np.asarray(self.phashes, np.uint64),
            hist=np.stack(self.hists).astype(np.float16) if self.hists else np.zeros((0, int(np.prod(self.fz.bins))), np.float16),
            orb_offsets=np.asarray(self.offsets, np.int64),
        )
        write_json(
            self.out_dir / "meta.json",
            cache_meta(
                KIND, CACHE_VERSION, self.fz.params(), sample_fps, info, path,
                n_samples=len(self.frames), n_descriptors=self.offsets[-1], small_width=self.small_size[0],
                small_height=self.small_size[1], thumb_height=self.thumb_h, **extra,
            ),
        )

    def close(self) -> None:
        for f in self._files:
            f.close()


def _extract(path: Path, config: Config, out_dir: Path, progress: Progress | None, on_frame: OnFrame | None = None) -> None:
    """Decode the video once and write its features into `out_dir` (a cache entry).

    on_frame(sample_index, orb_descriptors, keypoint_xy, small_size) is called as each frame is done: the first query
    matches its ORB descriptors there, while the decode thread works on the next frames."""
    stream = FrameStream(
        path, config.video_frame_fps, lambda small: small, progress, "reading video frames", width=config.video_width, yuv_decode=use_yuv(config)
    )
    writer = FeatureWriter(config, out_dir)
    try:
        for i, t, small in stream:
            desc, xy, size, _ = writer.add(i, t, small)
            if on_frame is not None:
                on_frame(len(writer.frames) - 1, desc, xy, size)
    finally:
        writer.close()
    writer.finish(stream.info, path, stream.sample_fps)


def read_features(entry: Path, meta: dict | None = None) -> FrameFeatures:
    """The frame features in a folder `FeatureWriter` wrote (memory-mapped); ValueError when its
    files disagree."""
    if meta is None:
        import json

        meta = json.loads((entry / "meta.json").read_text())
    return _parse_entry(entry, meta)


def load_or_extract(
    path: Path, config: Config, progress: Progress | None = None, timer: StageTimer | None = None, on_frame: OnFrame | None = None
) -> tuple[FrameFeatures, bool]:
    """The video's frame features from the cache, else decoded now (and cached), calling
    `on_frame` per frame then (see `_extract`). Returns (features, came_from_cache)."""
    return cache.load_or_extract(
        path, config, KIND, Featurizer(config).params(), _parse_entry,
        lambda d: _extract(path, config, d, progress, on_frame), timer, detach=_in_memory,
    )


def orb_similarity(q_desc: np.ndarray, f_desc: np.ndarray, ratio: float) -> float:
    """Good matches / min(keypoints of either side), in [0, 1]; 0 when either side has < 2.

    A match is good when the nearest frame descriptor (Hamming distance) is closer than `ratio`
    times the second nearest (Lowe's ratio test). `cv2.batchDistance` with K=2 is what
    BFMatcher.knnMatch computes, without building Python DMatch objects; it releases the GIL, so
    frames can be matched from several threads."""
    n = min(len(q_desc), len(f_desc))
    if n < 2:
        return 0.0
    dist, _ = cv2.batchDistance(q_desc, f_desc, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)
    good = int(np.count_nonzero(dist[:, 0] < ratio * dist[:, 1]))
    return min(1.0, good / n)


@dataclass
class GeoMatch:
    """ORB matches between a query and a frame, verified by one similarity transform (RANSAC).

    good: matches passing the ratio test; inliers: those the transform explains (within
    `GEO_REPROJ_PX`); share: inliers / min(keypoints of either side), in [0, 1]; overlap: IoU of
    the query's rectangle, mapped into the frame, with the frame (1: the query is this frame at
    any scale; 0.64: an 80% centre crop; lower for a moved window of the same scene)."""

    good: int = 0
    inliers: int = 0
    share: float = 0.0
    overlap: float = 0.0
    offset: float = 1.0  # distance of the query's centre, mapped into the frame, from the frame's centre / frame width
    m: np.ndarray | None = None  # the 2x3 transform, query pixels -> frame pixels


GEO_REPROJ_PX = 3.0  # RANSAC inlier distance, in pixels of the video_width-wide frame
GEO_MIN_GOOD = 6  # fewer ratio-test matches than this: no transform is estimated


def _placement(m: np.ndarray, q_size: tuple[int, int], f_size: tuple[int, int]) -> tuple[float, float]:
    """(IoU of the query's rectangle mapped by `m` with the frame's, offset of its centre / frame width)."""
    qw, qh = q_size
    fw, fh = f_size
    corners = np.array([[0, 0], [qw, 0], [qw, qh], [0, qh]], np.float32)
    poly = (corners @ m[:, :2].T + m[:, 2]).astype(np.float32)
    frame = np.array([[0, 0], [fw, 0], [fw, fh], [0, fh]], np.float32)
    a_q = abs(cv2.contourArea(poly))
    inter, _ = cv2.intersectConvexConvex(poly, frame)
    union = a_q + fw * fh - inter
    centre = poly.mean(axis=0)
    offset = float(np.hypot(centre[0] - fw / 2, centre[1] - fh / 2) / fw)
    return (float(inter / union) if union > 0 else 0.0), offset


def geo_match(
    q_desc: np.ndarray,
    q_xy: np.ndarray,
    q_size: tuple[int, int],
    f_desc: np.ndarray,
    f_xy: np.ndarray,
    f_size: tuple[int, int],
    ratio: float,
    min_good: int = GEO_MIN_GOOD,
) -> GeoMatch:
    """Ratio-test ORB matches from query to frame, then a RANSAC similarity transform (rotation,
    uniform scale, translation: what cropping, scaling and letterboxing do) from query to frame
    positions; see `GeoMatch`. No transform is estimated from fewer than `min_good` matches (it
    could not reach the inliers a match needs). Releases the GIL in OpenCV calls, so frames can be
    matched from threads."""
    n = min(len(q_desc), len(f_desc))
    if n < 2:
        return GeoMatch()
    dist, idx = cv2.batchDistance(q_desc, f_desc, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)
    good = dist[:, 0] < ratio * dist[:, 1]
    n_good = int(np.count_nonzero(good))
    if n_good < max(GEO_MIN_GOOD, min_good):
        return GeoMatch(good=n_good)
    src = q_xy[good]
    dst = f_xy[idx[good, 0]]
    m, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=GEO_REPROJ_PX, maxIters=300, confidence=0.995, refineIters=10
    )
    if m is None or mask is None:
        return GeoMatch(good=n_good)
    inliers = int(mask.sum())
    return GeoMatch(n_good, inliers, min(1.0, inliers / n), *_placement(m, q_size, f_size), m=m)


def hist_correlation(hists: np.ndarray, q: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Pearson correlation of each row with `q` (= cv2.compareHist HISTCMP_CORREL), in chunks so
    memory stays small on long videos."""
    qc = q.astype(np.float32) - q.mean()
    qn = float(np.linalg.norm(qc))
    out = np.zeros(len(hists), np.float32)
    for s in range(0, len(hists), chunk):
        h = hists[s : s + chunk].astype(np.float32)
        h -= h.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(h, axis=1) * qn
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s : s + chunk] = np.where(norms > 0, (h @ qc) / norms, 0.0)
    return out


def fuse(ph: np.ndarray, hist: np.ndarray, orb: np.ndarray, high: float) -> np.ndarray:
    """The report's rule: the largest similarity if it exceeds `high`, else the smallest.
    NaN (ORB not computed) is ignored."""
    mx = np.fmax(np.fmax(ph, hist), orb)
    mn = np.fmin(np.fmin(ph, hist), orb)
    return np.where(mx > high, mx, mn)


def shortlist(ph: np.ndarray, hist: np.ndarray, k: int) -> np.ndarray:
    """Indices of the best k/2 frames by pHash plus the best k/2 by histogram (union, sorted)."""
    n = len(ph)
    if n <= k:
        return np.arange(n)
    half = max(1, k // 2)
    a = np.argpartition(-ph, half - 1)[:half]
    b = np.argpartition(-hist, half - 1)[:half]
    return np.union1d(a, b)


def fusion_rule(config: Config) -> tuple[str, float]:
    """("moments" | "report" | "mean", its match threshold); BadInputError for an unknown name.
    "moments" has no fixed threshold (NaN): see `find_moments`."""
    if config.video_fusion == "moments":
        return "moments", float("nan")
    if config.video_fusion == "report":
        return "report", config.video_match_threshold
    if config.video_fusion == "mean":
        return "mean", config.video_mean_threshold
    raise BadInputError(f"unknown video fusion {config.video_fusion!r} (expected 'moments', 'report' or 'mean')")


def trim_borders(bgr: np.ndarray, max_share: float = 0.4, min_share: float = 0.02, tol: float = 6.0) -> np.ndarray:
    """The picture without letterbox or pillarbox bars: runs of rows (columns) whose grey level
    varies by less than `tol` (std) on both opposite edges, each between `min_share` and
    `max_share` of the size. Trimmed, a letterboxed screenshot's pHash compares with the frame's
    (shortlist) and its ORB keypoints are the picture's, not the bars' edges. A one-sided border
    is kept: it is more likely part of the video (resizing the query away from the frame's pixel
    grid costs ORB matches)."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    h, w = grey.shape
    rows, cols = grey.std(axis=1) < tol, grey.std(axis=0) < tol

    def run(flags: np.ndarray) -> int:
        n = int(np.argmin(flags)) if not flags.all() else len(flags)
        return n if min_share * len(flags) <= n <= max_share * len(flags) else 0

    top, bottom, left, right = run(rows), run(rows[::-1]), run(cols), run(cols[::-1])
    if not (top and bottom):
        top = bottom = 0
    if not (left and right):
        left = right = 0
    if top + bottom >= h - 8 or left + right >= w - 8:
        return bgr  # a flat picture: nothing to trim to
    return bgr[top : h - bottom, left : w - right]


@dataclass
class QueryView:
    """The query in one orientation, described as the frames are (see `Featurizer`)."""

    flipped: bool
    phash: np.uint64
    desc: np.ndarray
    xy: np.ndarray
    size: tuple[int, int]  # width, height
    grey: np.ndarray  # the downscaled grey query, for the pixel check of a moment


def query_features(query_image: ImageLike, config: Config) -> tuple[np.uint64, np.ndarray, np.ndarray]:
    """(pHash, histogram, ORB descriptors) of the query as given: the report's rules."""
    img = load_image(query_image, config.max_pixels)
    bgr = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)
    return Featurizer(config)(downscale(bgr, config.video_width))[:3]


def query_views(query_image: ImageLike, config: Config) -> tuple[np.ndarray, list[QueryView]]:
    """(histogram, [as given, mirrored]) of the query with its uniform borders trimmed. The HSV
    histogram does not change with a mirror; pHash and ORB do, so a mirrored copy of a frame is
    found by matching the mirrored query."""
    img = load_image(query_image, config.max_pixels)
    bgr = trim_borders(cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR))
    small = downscale(bgr, config.video_width)
    fz = Featurizer(config)
    views: list[QueryView] = []
    hist = None
    for flipped in (False, True):
        b = np.ascontiguousarray(small[:, ::-1]) if flipped else small
        ph, h, desc, xy, _ = fz(b)
        hist = h if hist is None else hist
        views.append(QueryView(flipped, ph, desc, xy, (b.shape[1], b.shape[0]), cv2.cvtColor(b, cv2.COLOR_BGR2GRAY)))
    return hist, views


def aligned_ncc(view: QueryView, m: np.ndarray, f_size: tuple[int, int], thumb: np.ndarray, min_cover: float = 0.25) -> float:
    """Normalised correlation between the frame's thumbnail and the query warped onto it by `m`
    (query -> frame pixels), over the part the query covers; NaN when it covers < `min_cover`.
    About 1 for the same frame whatever its crop, scale or brightness; lower when the scene
    moved (another moment of the shot)."""
    th, tw = thumb.shape
    s = np.array([[tw / f_size[0]], [th / f_size[1]]], np.float64)
    mt = (m * s).astype(np.float32)  # query -> thumbnail pixels
    # Shrink the query first so the warp is about 1:1 (warpAffine has no area filter).
    k = float(np.sqrt(abs(np.linalg.det(mt[:, :2]))))
    if not k > 1e-3:  # a degenerate transform (the query squashed to a point): nothing to compare
        return float("nan")
    q = view.grey
    if k < 0.5:
        q = cv2.resize(q, (max(2, round(q.shape[1] * k)), max(2, round(q.shape[0] * k))), interpolation=cv2.INTER_AREA)
        mt = mt.copy()
        mt[:, :2] /= k
    warped = cv2.warpAffine(q.astype(np.float32), mt, (tw, th), flags=cv2.INTER_LINEAR, borderValue=-1.0)
    cover = cv2.warpAffine(np.ones(q.shape, np.float32), mt, (tw, th), flags=cv2.INTER_LINEAR, borderValue=0.0) > 0.99
    if cover.mean() < min_cover:
        return float("nan")
    a, b = warped[cover], thumb[cover].astype(np.float32)
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def placement_prior(g: GeoMatch, config: Config) -> float:
    """1 when the query's centre lands on the frame's centre, down to 1 - `video_centre_weight`
    at `video_centre_scale` of the frame width or more off (see `GeoScores`)."""
    return 1.0 - config.video_centre_weight * min(1.0, g.offset / max(config.video_centre_scale, 1e-6))


class GeoScores:
    """Per-frame geometric match of the query, computed on demand and kept: score[j] is NaN until
    frame j is compared, 0 below `video_min_inliers`.

    score = share x placement prior: 1 when the query's centre lands on the frame's centre, down
    to 1 - `video_centre_weight` when it is `video_centre_scale` of the frame width or more off
    (the prior only reorders frames that match about as well: pans, static backgrounds).

    Orientations: the query as given is compared first; the mirrored one is added
    (`add_mirror`, which also compares it on every frame compared so far) only when the query as
    given found no "same frame" score. Matching descriptors (~0.5 ms a frame and orientation) is
    most of a query's matching time, and a video holding a frame both ways round is rare."""

    def __init__(self, feats: FrameFeatures, views: list[QueryView], config: Config, known: dict[int, GeoMatch] | None = None):
        self.feats, self.views, self.config = feats, views, config
        self.known = known or {}  # the as-given view's matches, computed while the video was decoded
        self.score = np.full(len(feats.frames), np.nan, np.float32)
        self.match: dict[int, GeoMatch] = {}
        self.orient: dict[int, int] = {}
        self.active = [0]
        self.per_view: list[dict[int, GeoMatch]] = [{} for _ in views]

    def prior(self, g: GeoMatch) -> float:
        return placement_prior(g, self.config)

    def _compute(self, jk: tuple[int, int]) -> GeoMatch:
        j, k = jk
        if k == 0 and j in self.known:
            return self.known[j]
        v, c = self.views[k], self.config
        return geo_match(v.desc, v.xy, v.size, self.feats.descriptors(j), self.feats.keypoints(j), self.feats.size, c.video_orb_ratio, c.video_min_inliers)

    def _run(self, todo: list[tuple[int, int]]) -> None:
        if len(todo) > 8:
            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
                results = list(pool.map(self._compute, todo))
        else:
            results = [self._compute(jk) for jk in todo]
        for (j, k), g in zip(todo, results):
            self.per_view[k][j] = g
        for j in {j for j, _ in todo}:
            o = max((k for k in self.active if j in self.per_view[k]), key=lambda k: self.per_view[k][j].share * self.prior(self.per_view[k][j]))
            g = self.per_view[o][j]
            self.match[j], self.orient[j] = g, o
            self.score[j] = g.share * self.prior(g) if g.inliers >= self.config.video_min_inliers else 0.0

    def evaluate(self, js) -> None:
        frames = sorted({int(j) for j in js if 0 <= j < len(self.score) and np.isnan(self.score[j])})
        self._run([(j, k) for j in frames for k in self.active])

    def add_mirror(self) -> None:
        if len(self.views) < 2 or 1 in self.active:
            return
        self.active.append(1)
        self._run([(int(j), 1) for j in np.flatnonzero(~np.isnan(self.score))])

    def climb(self, j: int, radius: int) -> int:
        """From frame j, move to the best frame within `radius` until none is better."""
        while True:
            lo, hi = max(0, j - radius), min(len(self.score), j + radius + 1)
            self.evaluate(range(lo, hi))
            k = lo + int(np.nanargmax(self.score[lo:hi]))
            if not self.score[k] > self.score[j]:
                return j
            j = k


def _within(times: np.ndarray, t0: float, t1: float) -> tuple[int, int]:
    """[lo, hi) of the samples with t0 <= time <= t1."""
    return int(np.searchsorted(times, t0 - 1e-6)), int(np.searchsorted(times, t1 + 1e-6, side="right"))


@dataclass
class Peak:
    frame: int  # sample index of the peak
    first: int  # sample indices of its segment
    last: int
    reading: str  # "same frame" | "same shot"
    ncc: float  # aligned pixel agreement (`aligned_ncc`)


def find_moments(feats: FrameFeatures, ph: np.ndarray, hist: np.ndarray, geo: GeoScores, config: Config) -> list[Peak]:
    """The best moments, best first.

    Candidates: the `video_shortlist` best frames by pHash and histogram plus evenly spread
    frames (so no shot is left out), compared geometrically; then every frame within
    `video_refine_s` of the best candidates (repeated while that finds better ones), so the exact
    frame is reached from any frame of its shot. Peaks are taken greedily, best first; a peak's
    segment extends while the score stays within `video_segment_drop` of the peak's height above
    the video's median score, and nothing within `video_moment_gap` of it is another moment."""
    c = config
    n = len(ph)
    if n == 0:
        return []
    times = feats.times
    geo.evaluate(shortlist(ph, hist, c.video_shortlist))
    geo.evaluate(np.linspace(0, n - 1, min(n, max(1, c.video_shortlist // 2))).round().astype(int))
    if not np.nanmax(geo.score) >= c.video_same_frame_score:
        geo.add_mirror()
    radius = max(1, int(round(c.video_refine_s * feats.sample_fps)))
    for _ in range(6):
        done = np.flatnonzero(~np.isnan(geo.score))
        top = done[np.argsort(-geo.score[done], kind="stable")[:8]]
        todo = [k for j in top[geo.score[top] > 0] for k in range(max(0, j - radius), min(n, j + radius + 1)) if np.isnan(geo.score[k])]
        if not todo:
            break
        geo.evaluate(todo)
    score = geo.score
    if not np.any(score > 0):
        return []
    base = float(np.nanmedian(score))
    best = float(np.nanmax(score))
    free = np.ones(n, bool)
    peaks: list[Peak] = []
    for j in np.argsort(-np.nan_to_num(score, nan=-1.0), kind="stable"):
        if len(peaks) >= c.video_max_moments or not score[j] > 0 or score[j] < c.video_moment_ratio * best:
            break
        if not free[j]:
            continue
        j = geo.climb(int(j), 2)
        if not free[j]:
            continue
        line = score[j] - c.video_segment_drop * (score[j] - base)
        lo = hi = j
        while lo > 0 and free[lo - 1]:
            geo.evaluate([lo - 1])
            if not score[lo - 1] >= line:
                break
            lo -= 1
        while hi < n - 1 and free[hi + 1]:
            geo.evaluate([hi + 1])
            if not score[hi + 1] >= line:
                break
            hi += 1
        g = geo.match[j]
        ncc = aligned_ncc(geo.views[geo.orient[j]], g.m, feats.size, np.asarray(feats.thumbs[j])) if g.m is not None else float("nan")
        same = score[j] >= max(c.video_same_frame_score, c.video_same_frame_ratio * best) and not ncc < c.video_same_frame_ncc
        peaks.append(Peak(j, lo, hi, "same frame" if same else "same shot", ncc))
        a, b = _within(times, times[lo] - c.video_moment_gap, times[hi] + c.video_moment_gap)
        free[a:b] = False
    return peaks


SIMILAR_SCENE_HIST = 0.9  # no geometric match, but colours this close (histogram correlation): "similar scene"


def _hit(feats: FrameFeatures, j: int, fused: np.ndarray, rank: np.ndarray, ph: np.ndarray, hist: np.ndarray, orb: np.ndarray, geo: GeoScores | None = None) -> FrameHit:
    """Sample j as a FrameHit: its time, scores, and (moments) its geometric match."""
    g = geo.match.get(j) if geo is not None else None
    return FrameHit(
        frame=int(feats.frames[j]),
        time=float(feats.times[j]),
        score=float(fused[j]),
        rank=float(rank[j]),
        phash=float(ph[j]),
        hist=float(hist[j]),
        orb=None if np.isnan(orb[j]) else float(orb[j]),
        inliers=None if g is None else g.inliers,
        flipped=None if g is None else bool(geo.orient[j]),
    )


@dataclass
class FrameAnswer:
    """What one method answers on a video's features (see `search_frames`)."""

    threshold: float
    segments: list[Segment]
    curve_scores: np.ndarray
    closest: FrameHit | None
    moments: list[Moment]


def moments_method(feats: FrameFeatures, q_hist: np.ndarray, views: list[QueryView], streamed: dict, config: Config) -> FrameAnswer:
    """The default method: geometric matching, moments with a reading (see the module docstring)."""
    times = feats.times
    hist = hist_correlation(feats.hist, q_hist)
    ph = np.max([1.0 - np.bitwise_count(feats.phash ^ v.phash).astype(np.float32) / 64.0 for v in views], axis=0)
    geo = GeoScores(feats, views, config, streamed)
    peaks = find_moments(feats, ph, hist, geo, config)
    score = geo.score
    orb = np.full(len(ph), np.nan, np.float32)
    for j, g in geo.match.items():
        orb[j] = g.share

    def hit(j: int) -> FrameHit:
        return _hit(feats, j, score, score, ph, hist, orb, geo)

    moments = []
    for p in peaks:
        hits = [hit(k) for k in range(p.first, p.last + 1) if not np.isnan(score[k])]
        ncc = None if np.isnan(p.ncc) else p.ncc
        moments.append(Moment(float(times[p.frame]), int(feats.frames[p.frame]), float(score[p.frame]), p.reading, hits[0].time, hits[-1].time, ncc, hit(p.frame)))
    best = max((m.score for m in moments), default=0.0)
    threshold = config.video_same_frame_ratio * best if moments else float("nan")
    segments = [
        Segment(m.start, m.end, m.frame, m.time, m.score, m.score, [h for h in (hit(k) for k in range(p.first, p.last + 1)) if not np.isnan(h.score)])
        for m, p in zip(moments, peaks)
        if m.reading == "same frame"
    ]
    has_score = np.nan_to_num(score, nan=-1.0)
    closest = None
    if moments:
        closest = moments[0].hit
    elif len(ph) and np.max(has_score) > 0:
        closest = hit(int(np.argmax(has_score)))
    elif len(ph):  # no geometric match anywhere: the frame that looks most alike
        j = int(np.argmax(hist + ph))
        closest = hit(j)
        if hist[j] >= SIMILAR_SCENE_HIST:
            moments.append(Moment(float(times[j]), int(feats.frames[j]), float(np.nan_to_num(score[j])), "similar scene", float(times[j]), float(times[j]), None, closest))
    return FrameAnswer(threshold, segments, score, closest, moments)


def report_method(feats: FrameFeatures, query: tuple[np.uint64, np.ndarray, np.ndarray], streamed: dict, fusion: str, threshold: float, config: Config) -> FrameAnswer:
    """The original report's rules ("report": max/min fusion; "mean"): pHash + histogram over
    every frame, ORB on the shortlist, a fixed threshold, segments of matching frames."""
    q_phash, q_hist, q_desc = query
    ratio = config.video_orb_ratio
    hist = hist_correlation(feats.hist, q_hist)
    ph = 1.0 - np.bitwise_count(feats.phash ^ q_phash).astype(np.float32) / 64.0
    orb = np.full(len(ph), np.nan, np.float32)
    # Only the shortlist gets ORB, streamed or not, so a cached query answers the same.
    sl = shortlist(ph, hist, config.video_shortlist)
    todo = [int(j) for j in sl if int(j) not in streamed]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for j, sim in zip(todo, pool.map(lambda j: orb_similarity(q_desc, feats.descriptors(j), ratio), todo)):
            orb[j] = sim
    for j in sl:
        if int(j) in streamed:
            orb[j] = streamed[int(j)]
    # Rank: mean of the three (ORB counted as 0 where not computed, i.e. off the shortlist).
    rank = (ph + hist + np.nan_to_num(orb, nan=0.0)) / 3.0
    fused = rank if fusion == "mean" else fuse(ph, hist, orb, config.video_fuse_high)
    matched = np.flatnonzero(fused >= threshold)
    segments = group_segments([_hit(feats, j, fused, rank, ph, hist, orb) for j in matched], config.video_segment_gap)
    closest = _hit(feats, int(np.lexsort((fused, rank))[-1]), fused, rank, ph, hist, orb) if len(rank) else None
    return FrameAnswer(threshold, segments, fused, closest, [])


def search_frames(query_image: ImageLike, video_path: str | os.PathLike, config: Config, progress: Progress | None = None) -> VideoResult:
    """See `rvs.video.api.search_video_frames`: the query's features, the video's (cached or
    decoded now), then one method (`moments_method` or `report_method`)."""
    timer = StageTimer()
    fusion, threshold = fusion_rule(config)  # bad settings and a bad query fail before decoding
    with timer.stage("query_features_s"):
        if fusion == "moments":
            q_hist, views = query_views(query_image, config)
        else:
            query = query_features(query_image, config)
    path = check_video_path(video_path)
    ratio = config.video_orb_ratio
    # When the video is decoded now, match ORB per frame as it streams by: the consumer thread has
    # time to spare while the decode thread works, so the first query's ORB costs ~nothing. Only
    # frames the query would compare anyway are used, so a cached query answers the same.
    streamed: dict[int, Any] = {}

    def on_frame(j: int, desc: np.ndarray, xy: np.ndarray, size: tuple[int, int]) -> None:
        if fusion == "moments":
            v = views[0]  # as given: the mirror image is compared only if this finds nothing (GeoScores)
            streamed[j] = geo_match(v.desc, v.xy, v.size, desc, xy, size, ratio, config.video_min_inliers)
        else:
            streamed[j] = orb_similarity(query[2], desc, ratio)

    feats, cached = load_or_extract(path, config, scaled_progress(progress, 0.0, 0.9), timer, on_frame)
    if progress:
        progress(0.9, "comparing frames")
    with timer.stage("match_s"):
        if fusion == "moments":
            ans = moments_method(feats, q_hist, views, streamed, config)
        else:
            ans = report_method(feats, query, streamed, fusion, threshold, config)
    if progress:
        progress(1.0, "done")
    return VideoResult.of(
        "frame",
        path,
        feats.info,
        feats.sample_fps,
        cached,
        n_samples=len(feats.frames),
        threshold=ans.threshold,
        segments=ans.segments,
        curve=[(float(t), float(s)) for t, s in zip(feats.times, ans.curve_scores)],
        closest=ans.closest,
        timings=timer.done(),
        moments=ans.moments,
        fusion=fusion,
    )
