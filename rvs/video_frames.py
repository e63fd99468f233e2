"""Frame mode: find the frames of a video that look like a query image.

The original report's method, made fast. Per sampled frame, computed once and cached:

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

Cache entry (under `config.cache_dir / "video" / <content hash>`, no pickle anywhere):
`meta.json`; `features.npz` (frames int32[N], phash uint64[N], hist float16[N, bins],
orb_offsets int64[N+1]); `orb.u8`, raw uint8 rows of 32 bytes, frame j's descriptors being rows
orb_offsets[j]:orb_offsets[j+1]. It is memory-mapped, so a query on an hour of video reads only
the shortlisted frames' descriptors.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import imagehash
import numpy as np
from PIL import Image

from rvs import video_decode
from rvs.config import Config
from rvs.errors import BadInputError
from rvs.imageio import ImageLike, load_image
from rvs.video import (
    CACHE_VERSION,
    FrameHit,
    FrameStream,
    Progress,
    StageTimer,
    VideoInfo,
    VideoResult,
    cache_entry_dir,
    cache_meta,
    check_video_path,
    group_segments,
    read_meta,
    scaled_progress,
    video_key,
    write_entry_atomically,
    write_json,
)
from rvs.video_decode import downscale

log = logging.getLogger(__name__)

KIND = "frames"
PHASH_WIDTH = 128  # pHash input width: imagehash shrinks to 32x32 anyway, this just makes it cheap
ORB_BYTES = 32
HIST_MIN_SHARE = 0.05  # below this share of coloured pixels the histogram uses every pixel


def _yuv(config: Config) -> bool:
    if config.video_decoder not in ("auto", "opencv"):
        raise BadInputError(f"unknown video decoder {config.video_decoder!r} (expected 'auto' or 'opencv')")
    return config.video_decoder == "auto" and video_decode.available()


class Featurizer:
    """pHash, histogram and ORB of a downscaled BGR frame (or query). Not thread-safe (ORB state)."""

    def __init__(self, config: Config):
        self.config = config
        self.bins = [config.video_hist_bins_h, config.video_hist_bins_s]
        self.orb = cv2.ORB_create(nfeatures=config.video_orb_features)

    def __call__(self, small_bgr: np.ndarray) -> tuple[np.uint64, np.ndarray, np.ndarray]:
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
        _, desc = self.orb.detectAndCompute(grey, None)
        if desc is None:  # a flat frame (fade to black) has no keypoints
            desc = np.zeros((0, ORB_BYTES), np.uint8)
        return phash, hist, desc

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
            "decoder": "yuv-planes" if _yuv(c) else "opencv",  # pixels differ by ~1 level
        }


@dataclass
class FrameFeatures:
    """The cached per-frame features of one video (see the module docstring for the layout)."""

    info: VideoInfo
    sample_fps: float
    frames: np.ndarray  # int32 [N] frame index of each sample
    phash: np.ndarray  # uint64 [N]
    hist: np.ndarray  # float16 [N, bins]
    orb_offsets: np.ndarray  # int64 [N + 1]
    orb: np.ndarray  # uint8 [M, 32], memory-mapped

    def descriptors(self, j: int) -> np.ndarray:
        return np.asarray(self.orb[self.orb_offsets[j] : self.orb_offsets[j + 1]])

    @property
    def times(self) -> np.ndarray:
        return self.frames / self.info.fps


def _load_entry(entry: Path) -> FrameFeatures | None:
    """The entry's features, or None if absent or inconsistent (then it is recomputed)."""
    meta = read_meta(entry, KIND)
    if meta is None:
        return None
    try:
        with np.load(entry / "features.npz", allow_pickle=False) as z:
            frames, phash, hist, offsets = z["frames"], z["phash"], z["hist"], z["orb_offsets"]
        n_desc = int(offsets[-1]) if len(offsets) else -1
        orb_path = entry / "orb.u8"
        if orb_path.stat().st_size != n_desc * ORB_BYTES:
            raise ValueError(f"orb.u8 has {orb_path.stat().st_size} bytes, expected {n_desc * ORB_BYTES}")
        if n_desc:
            orb = np.memmap(orb_path, dtype=np.uint8, mode="r").reshape(-1, ORB_BYTES)
        else:
            orb = np.zeros((0, ORB_BYTES), np.uint8)
        n = meta["n_samples"]
        if not (len(frames) == len(phash) == len(hist) == len(offsets) - 1 == n) or np.any(np.diff(offsets) < 0):
            raise ValueError("arrays of inconsistent length")
        v = meta["video"]
        info = VideoInfo(v["path"], v["fps"], v["width"], v["height"], v["frame_count"], v["decoded_frames"])
        return FrameFeatures(info, meta["sample_fps"], frames, phash, hist, offsets, orb)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        log.warning("video cache entry %s is unreadable (%s); recomputing", entry, e)
        return None


OnFrame = Callable[[int, np.ndarray], None]


def _extract(path: Path, config: Config, out_dir: Path, progress: Progress | None, on_frame: OnFrame | None = None) -> None:
    """Decode the video once and write its features into `out_dir` (a cache entry).

    on_frame(sample_index, orb_descriptors) is called as each frame is done: the first query
    matches its ORB descriptors there, while the decode thread works on the next frames."""
    fz = Featurizer(config)
    width = config.video_width
    frames: list[int] = []
    phashes: list[np.uint64] = []
    hists: list[np.ndarray] = []
    offsets = [0]
    stream = FrameStream(
        path, config.video_frame_fps, lambda small: small, progress, "reading video frames", width=width, yuv_decode=_yuv(config)
    )
    info = stream.info
    # Descriptors go straight to disk: memory stays flat however long the video is.
    with open(out_dir / "orb.u8", "wb") as orb_f:
        for i, small in stream:
            ph, hist, desc = fz(small)
            frames.append(i)
            phashes.append(ph)
            hists.append(hist.astype(np.float16))
            orb_f.write(np.ascontiguousarray(desc, np.uint8).tobytes())
            offsets.append(offsets[-1] + len(desc))
            if on_frame is not None:
                on_frame(len(frames) - 1, desc)
    np.savez(
        out_dir / "features.npz",
        frames=np.asarray(frames, np.int32),
        phash=np.asarray(phashes, np.uint64),
        hist=np.stack(hists).astype(np.float16),
        orb_offsets=np.asarray(offsets, np.int64),
    )
    write_json(
        out_dir / "meta.json",
        cache_meta(KIND, CACHE_VERSION, fz.params(), stream.sample_fps, info, path, n_samples=len(frames), n_descriptors=offsets[-1]),
    )


def load_or_extract(
    path: Path, config: Config, progress: Progress | None = None, timer: StageTimer | None = None, on_frame: OnFrame | None = None
) -> tuple[FrameFeatures, bool]:
    """The video's frame features from the cache, else decoded now (and cached), calling
    `on_frame` per frame then (see `_extract`). Returns (features, came_from_cache). An unwritable
    cache directory only costs the caching."""
    timer = timer or StageTimer()
    with timer.stage("hash_s"):
        key = video_key(path, config.video_full_hash_max_bytes)
    entry = cache_entry_dir(config, key, KIND, Featurizer(config).params())
    with timer.stage("features_s"):
        feats = _load_entry(entry)
        if feats is not None:
            feats.info.path = str(path)  # same content, maybe another name
            return feats, True
        try:
            write_entry_atomically(entry, lambda d: _extract(path, config, d, progress, on_frame))
            feats = _load_entry(entry)
        except OSError as e:  # read-only or full cache disk: search anyway, uncached
            log.warning("cannot write the video cache under %s (%s); features are not cached", config.cache_dir, e)
            with tempfile.TemporaryDirectory(prefix="rvs-video-") as tmp:
                _extract(path, config, Path(tmp), progress, on_frame)
                feats = _load_entry(Path(tmp))
                if feats is not None:
                    feats.orb = np.array(feats.orb)  # off the memory map before the files go
    if feats is None:
        raise RuntimeError(f"video cache entry {entry} unreadable right after writing it")
    return feats, False


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
    """("report" | "mean", its match threshold); BadInputError for an unknown name."""
    if config.video_fusion == "report":
        return "report", config.video_match_threshold
    if config.video_fusion == "mean":
        return "mean", config.video_mean_threshold
    raise BadInputError(f"unknown video fusion {config.video_fusion!r} (expected 'report' or 'mean')")


def query_features(query_image: ImageLike, config: Config) -> tuple[np.uint64, np.ndarray, np.ndarray]:
    img = load_image(query_image, config.max_pixels)
    bgr = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)
    return Featurizer(config)(downscale(bgr, config.video_width))


def search_frames(query_image: ImageLike, video_path: str | os.PathLike, config: Config, progress: Progress | None = None) -> VideoResult:
    """See `rvs.video.search_video_frames`."""
    timer = StageTimer()
    fusion, threshold = fusion_rule(config)  # bad settings and a bad query fail before decoding
    with timer.stage("query_features_s"):
        q_phash, q_hist, q_desc = query_features(query_image, config)
    path = check_video_path(video_path)
    ratio = config.video_orb_ratio
    # When the video is decoded now, match ORB per frame as it streams by: the consumer thread has
    # time to spare while the decode thread works, so the first query's ORB costs ~nothing.
    streamed: dict[int, float] = {}

    def on_frame(j: int, desc: np.ndarray) -> None:
        streamed[j] = orb_similarity(q_desc, desc, ratio)

    feats, cached = load_or_extract(path, config, scaled_progress(progress, 0.0, 0.9), timer, on_frame)
    if progress:
        progress(0.9, "comparing frames")
    with timer.stage("match_s"):
        ph = 1.0 - np.bitwise_count(feats.phash ^ q_phash).astype(np.float32) / 64.0
        hist = hist_correlation(feats.hist, q_hist)
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
        times = feats.times

        def hit(j: int) -> FrameHit:
            return FrameHit(
                frame=int(feats.frames[j]),
                time=float(times[j]),
                score=float(fused[j]),
                rank=float(rank[j]),
                phash=float(ph[j]),
                hist=float(hist[j]),
                orb=None if np.isnan(orb[j]) else float(orb[j]),
            )

        matched = np.flatnonzero(fused >= threshold)
        segments = group_segments([hit(j) for j in matched], config.video_segment_gap)
        closest = hit(int(np.lexsort((fused, rank))[-1])) if len(rank) else None
    if progress:
        progress(1.0, "done")
    info = feats.info
    return VideoResult(
        mode="frame",
        video=str(path),
        fps=info.fps,
        duration=info.duration,
        frame_count=info.decoded_frames,
        width=info.width,
        height=info.height,
        sample_fps=feats.sample_fps,
        n_samples=len(feats.frames),
        threshold=threshold,
        segments=segments,
        curve=[(float(t), float(s)) for t, s in zip(times, fused)],
        closest=closest,
        timings=timer.done(),
        cached=cached,
        frames_decoded=0 if cached else info.decoded_frames,
    )
