"""Searching a video library: which videos show this person, or this picture, and when.

Person mode: the query's largest face is embedded; its nearest track vectors come from the
library's search backend (exact / Annoy / Milvus, `Config.search_backend`: the same code that
searches photo galleries), the ones within the video threshold (`EmbedderSpec.video_threshold`
unless `Config.video_face_threshold` is set) are matches. A vector stands for its track chunk
(rvs.video.tracks), so each match is a span of the video on the player's clock: from the chunk's
first face to one sample interval after its last (a sample shows the person until the next one
is taken). Spans of one video less than `video_segment_gap` apart join. Videos are ranked by
their nearest distance; each answer carries its segments, the best frame's time, the track's face
thumbnail, the distance and the 1:1 decision ("same person" within the threshold).

Frame mode: the query's pHash and histogram are compared with every sample of every video
(vectorised), the best `LIBRARY_SHORTLIST` samples overall and the best few of each video are
matched geometrically (ORB + one similarity transform, rvs.video.frames.geo_match), and the
videos with a geometric match are searched as one video is (`find_moments` over their samples).
When the video file is still where it was indexed, the best moment is refined at full frame rate
(every frame within `REFINE_SAMPLES` sample intervals), so the answer is the exact frame, not
the nearest sample.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rvs.config import Config
from rvs.faces.embedders import video_threshold
from rvs.imageio import ImageLike
from rvs.library.store import Library
from rvs.video.faces import VideoFaceModels, face_models, query_embedding, torch_threads
from rvs.video.results import json_number

log = logging.getLogger(__name__)

LIBRARY_K = 1000  # nearest track vectors fetched per person query (matches are far fewer)
LIBRARY_SHORTLIST = 200  # frame mode: samples of the whole library matched geometrically
PER_VIDEO_SHORTLIST = 6  # plus the best few of each video
REFINE_INLIER_SHARE = 0.5  # refinement: frames matched with this share of the best inlier count compete on placement
REFINE_SAMPLES = 2.5  # the best moment is refined over every frame within this many sample intervals


@dataclass
class LibrarySegment:
    """A stretch of one video: start / end on the player's clock, the best moment in it and its score."""

    start: float
    end: float
    best_time: float
    score: float  # person: distance (lower is closer); frame: similarity

    def to_dict(self) -> dict:
        return {"start": json_number(self.start, 3), "end": json_number(self.end, 3), "best_time": json_number(self.best_time, 3), "score": json_number(self.score)}


@dataclass
class LibraryHit:
    """One video of the answer."""

    video: str  # its name in the library (path relative to the indexed folder)
    path: str  # where it was indexed
    duration: float
    best_time: float
    score: float  # person: the nearest distance; frame: the best moment's score
    decision: str  # person: "same person" | "not the same person"; frame: a moment reading
    segments: list[LibrarySegment] = field(default_factory=list)
    thumb: np.ndarray | None = None  # person: the best track's face (64 x 64 RGB)
    box: tuple[float, float, float, float] | None = None  # person: that face in the best frame

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "video": self.video,
            "duration": json_number(self.duration, 3),
            "best_time": json_number(self.best_time, 3),
            "score": json_number(self.score),
            "decision": self.decision,
            "segments": [s.to_dict() for s in self.segments],
        }
        if self.box is not None:
            d["box"] = [round(float(v), 1) for v in self.box]
        return d


@dataclass
class LibraryResult:
    mode: str  # "person" | "frame"
    library: str
    videos_searched: int
    hours_searched: float
    threshold: float | None
    hits: list[LibraryHit]
    closest: LibraryHit | None  # person mode: the nearest face when nothing matched
    timings: dict[str, float]
    query_box: tuple[float, float, float, float] | None = None

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "mode": self.mode,
            "videos_searched": self.videos_searched,
            "hours_searched": json_number(self.hours_searched, 4),
            "threshold": json_number(self.threshold),
            "hits": [h.to_dict() for h in self.hits],
            "closest": self.closest.to_dict() if self.closest else None,
            "timings_ms": {k: round(v * 1000, 1) for k, v in self.timings.items()},
        }
        if self.query_box is not None:
            d["query_box"] = [round(float(v), 1) for v in self.query_box]
        return d


def _join(spans: list[tuple[float, float, float, float]], gap: float) -> list[LibrarySegment]:
    """(start, end, best_time, distance) spans -> segments, spans less than `gap` apart joined."""
    out: list[LibrarySegment] = []
    for s, e, bt, d in sorted(spans):
        if out and s - out[-1].end <= gap + 1e-6:
            last = out[-1]
            last.end = max(last.end, e)
            if d < last.score:
                last.best_time, last.score = bt, d
        else:
            out.append(LibrarySegment(s, e, bt, d))
    return out


def person_hits(lib: Library, q: np.ndarray, config: Config, threshold: float, k: int = LIBRARY_K) -> tuple[list[LibraryHit], LibraryHit | None]:
    """The videos whose track vectors lie within `threshold` of the unit vector `q` (nearest
    first), and the nearest face when none does."""
    if len(lib.vectors) == 0:
        return [], None
    ids, dists = lib.backend(config).search(q[None].astype(np.float32), min(k, len(lib.vectors)))
    ids, dists = ids[0], dists[0]
    by_video: dict[int, list[tuple[float, float, float, float]]] = {}
    best: dict[int, tuple[float, int, int]] = {}  # video -> (distance, vector row, track)
    closest = None
    for row, d in zip(ids, dists):
        if row < 0 or not np.isfinite(d):
            continue
        vi, vr = (int(x) for x in lib.refs[row])
        if closest is None:
            closest = (float(d), vi, vr)
        if d > threshold:
            continue
        tracks = lib.tracks(vi)
        entry = lib.videos[vi]
        chunk = int(tracks.vec_chunk[vr])
        faces = np.flatnonzero(tracks.face_chunk == chunk)
        t = tracks.sample_times[tracks.face_sample[faces]]
        step = 1.0 / entry.sample_fps if entry.sample_fps > 0 else 0.0
        face_t = float(tracks.sample_times[tracks.face_sample[tracks.vec_face[vr]]])
        by_video.setdefault(vi, []).append((float(t.min()), min(float(t.max()) + step, entry.duration), face_t, float(d)))
        if vi not in best or d < best[vi][0]:
            best[vi] = (float(d), vr, int(tracks.vec_track[vr]))

    def hit(vi: int, d: float, vr: int, segments: list[LibrarySegment]) -> LibraryHit:
        tracks, entry = lib.tracks(vi), lib.videos[vi]
        face = int(tracks.vec_face[vr])
        tr = int(tracks.face_track[face])
        return LibraryHit(
            video=entry.name, path=entry.path, duration=entry.duration,
            best_time=float(tracks.sample_times[tracks.face_sample[face]]), score=d,
            decision="same person" if d <= threshold else "not the same person", segments=segments,
            thumb=np.asarray(tracks.track_thumbs[tr]), box=tuple(float(v) for v in tracks.boxes[face]),
        )

    gap = config.video_segment_gap
    hits = [hit(vi, d, vr, _join(by_video[vi], gap)) for vi, (d, vr, _) in sorted(best.items(), key=lambda kv: kv[1][0])]
    near = None if hits or closest is None else hit(closest[1], closest[0], closest[2], [])
    return hits, near


def search_person(
    lib: Library, query_image: ImageLike, config: Config, models: VideoFaceModels | None = None
) -> LibraryResult:
    """Which videos of the library show the person of `query_image` (its largest face), and when."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    models = models or face_models(config)
    if lib.model_id != models.embedder.model_id:
        from rvs.errors import IndexError_
        from rvs.gallery.search import model_mismatch

        raise IndexError_(model_mismatch(lib.model_id, models.embedder.model_id))
    with torch_threads(config.video_torch_threads):
        q, box = query_embedding(query_image, config, models)
    timings["query"] = time.perf_counter() - t
    t = time.perf_counter()
    thr = video_threshold(config)
    hits, closest = person_hits(lib, q, config, thr)
    timings["search"] = time.perf_counter() - t
    return LibraryResult("person", str(lib.folder), len(lib.videos), lib.hours, thr, hits, closest, timings, tuple(float(v) for v in box))


def _refine(path: str, around: float, half: float, views, config: Config) -> tuple[float, float] | None:
    """(time, score) of the best-matching frame within `half` seconds of `around`, every frame
    decoded; None when the file is gone or unreadable (the sample's time stands then)."""
    from rvs.video.decode import downscale
    from rvs.video.frames import Featurizer, geo_match, placement_prior
    from rvs.video.reader import frames_between

    if not Path(path).is_file():
        return None
    try:
        frames = frames_between(Path(path), around - half, around + half, config.video_width)
    except Exception as e:  # the sample's answer stands; say why once
        log.info("%s: not refined (%s)", path, e)
        return None
    fz = Featurizer(config)
    found = []  # (time, GeoMatch) of every frame the query matches
    for t, rgb in frames:
        small = downscale(np.ascontiguousarray(rgb[:, :, ::-1]), config.video_width)
        _, _, desc, xy, _ = fz(small)
        size = (small.shape[1], small.shape[0])
        for v in views:
            g = geo_match(v.desc, v.xy, v.size, desc, xy.astype(np.float32), size, config.video_orb_ratio, config.video_min_inliers)
            if g.inliers >= config.video_min_inliers:
                found.append((t, g))
    if not found:
        return None
    # Every frame of a slow pan matches about as well; the query's own frame is the one it lands
    # on where it was taken: centred (a screenshot, or a centred crop). Among the frames matched
    # with at least half the best inlier count, the one where its centre lands closest to the
    # frame's centre.
    most = max(g.inliers for _, g in found)
    t, g = min(((t, g) for t, g in found if g.inliers >= REFINE_INLIER_SHARE * most), key=lambda tg: (tg[1].offset, -tg[1].share))
    return t, g.share * placement_prior(g, config)


def search_frame(lib: Library, query_image: ImageLike, config: Config) -> LibraryResult:
    """Which videos of the library show the picture `query_image`, and at which moment (best first)."""
    from rvs.video.frames import GeoScores, find_moments, hist_correlation, query_views

    timings: dict[str, float] = {}
    t = time.perf_counter()
    q_hist, views = query_views(query_image, config)
    timings["query"] = time.perf_counter() - t
    t = time.perf_counter()
    cands: list[tuple[float, int, int]] = []
    per_video: dict[int, tuple[Any, np.ndarray, np.ndarray]] = {}
    for vi in range(len(lib.videos)):
        feats, _ = lib.frames(vi)
        if not len(feats.times):
            continue
        ph = np.max([1.0 - np.bitwise_count(feats.phash ^ v.phash).astype(np.float32) / 64.0 for v in views], axis=0)
        hist = hist_correlation(feats.hist, q_hist)
        per_video[vi] = (feats, ph, hist)
        rough = ph + np.clip(hist, 0, 1)
        for j in np.argsort(-rough)[:PER_VIDEO_SHORTLIST]:
            cands.append((float(rough[j]), vi, int(j)))
        cands += [(float(rough[j]), vi, int(j)) for j in np.argpartition(-rough, min(len(rough) - 1, LIBRARY_SHORTLIST))[:LIBRARY_SHORTLIST]]
    cands = sorted(set(cands), reverse=True)[: LIBRARY_SHORTLIST + PER_VIDEO_SHORTLIST * len(per_video)]
    geos: dict[int, GeoScores] = {}
    for _, vi, j in cands:
        feats = per_video[vi][0]
        if vi not in geos:
            geos[vi] = GeoScores(feats, views, config)
            geos[vi].add_mirror()
        geos[vi].evaluate([j])
    found = [vi for vi, g in geos.items() if np.nanmax(g.score) > 0]
    timings["shortlist"] = time.perf_counter() - t
    t = time.perf_counter()
    hits: list[LibraryHit] = []
    for vi in found:
        feats, ph, hist = per_video[vi]
        peaks = find_moments(feats, ph, hist, geos[vi], config)
        if not peaks:
            continue
        entry = lib.videos[vi]
        step = 1.0 / entry.sample_fps if entry.sample_fps > 0 else 0.0
        segs = [LibrarySegment(float(feats.times[p.first]), min(float(feats.times[p.last]) + step, entry.duration), float(feats.times[p.frame]), float(geos[vi].score[p.frame])) for p in peaks]
        p0 = peaks[0]
        hits.append(LibraryHit(entry.name, entry.path, entry.duration, segs[0].best_time, segs[0].score, p0.reading, segs))
    hits.sort(key=lambda h: (h.decision != "same frame", -h.score))
    timings["moments"] = time.perf_counter() - t
    t = time.perf_counter()
    if hits and hits[0].decision in ("same frame", "same shot"):
        # Samples are 1 / sample_fps apart and a slow pan scores alike over several of them: the
        # exact frame (its pixels, not a neighbour's) stands out once every frame is compared.
        h = hits[0]
        step = 1.0 / lib.videos[[v.name for v in lib.videos].index(h.video)].sample_fps
        refined = _refine(h.path, h.best_time, REFINE_SAMPLES * step, views, config)
        if refined is not None:
            h.best_time = h.segments[0].best_time = refined[0]
    timings["refine"] = time.perf_counter() - t
    return LibraryResult("frame", str(lib.folder), len(lib.videos), lib.hours, None, hits, None, timings)
