"""Video library benchmark: index speed, "which video and when" for people, pictures across the
library, and search time on a library scaled to 1,000+ hours.

The library (built here with PyAV from ../shared/data, 640x360 H.264 at 25 fps, crf 23):
- 10 clips of 10-120 s (`CLIP_SECONDS`, 7.6 min in all), each a sequence of shots of 3-12 s with
  hard cuts: a slow pan/zoom over a 16:9 canvas holding one LFW photo of a "cast" person (45%),
  two or three cast people side by side (30%), or coloured shapes without a face (25%). The
  canvas keeps every face in view for the whole shot, so a person's appearance is exactly the
  shot's time span on the player's clock (what the writer set). 24 cast people (LFW people with
  >= 2 photos), each in one to three clips; the video shows their first LFW photo.
- the real sample video `arcade_faces.mp4` (1080p, 4.2 s, people walking; no LFW person).

Measured:
- index: `python -m rvs videos index` on the folder in one process (default sampling: faces 2 per
  second); realtime_factor = seconds of video / seconds of indexing (models loaded beforehand).
- person: each cast person is searched with their second LFW photo (never in a video). A returned
  segment is true when it overlaps (in time) an appearance of that person in that video; an
  appearance is found when a returned segment overlaps it. segment_precision / segment_recall over
  all queries. strangers: 24 LFW people in no video (with >= 2 photos, like the cast); every
  segment returned for them is false (strangers_false_segments).
- frame: 3 frames of each clip and 2 of the sample video, each as given, JPEG q40, scaled 50% and
  centre-cropped 80%, searched in the whole library: a hit when the top answer is that video and
  its moment is within +-0.3 s of the frame's presentation time. 20 pictures in no video (other
  LFW people, the celebrity photos) must not read "same frame" (frame.false_same_frame).
- naive: the single-video way for one person query, every video decoded and searched
  (`search_video_faces` per video, uncached), beside the library's search of the same query.
- search at scale: the library's track vectors per hour measured here, then a library of
  >= 1,000 hours synthesised at that density: vectors of synthetic people drawn from the SFace LFW
  gallery's statistics (bench/scale.py's synthesis: person means, within- and between-person
  covariance), appended to the real vectors, each pointing at a real track chunk (so an answer is
  resolved to a video and time as in the real library). Person queries (the cast queries and
  synthetic people) time the whole search (backend + grouping into videos and segments), with the
  default backend at that size ("auto": Annoy) and exact beside it.

    python bench/video_library.py     # writes bench/results/video_library.json
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rvs.config import Config, default_data_dir  # noqa: E402
from rvs.video.synth import PlacedShot, Shot, load_rgb, pan, read_rgb, write_video  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLIP_SECONDS = [12, 20, 30, 45, 60, 90, 120, 15, 25, 40]
TOLERANCE_S = 0.3
TARGET_HOURS = 1000.0
TARGETS = {
    "index.realtime_factor": ">= 10",
    "person.segment_recall": ">= 0.9",
    "person.segment_precision": ">= 0.9",
    "person.strangers_false_segments": "== 0",
    "frame.best_frame_hit_rate": ">= 0.9",
    "search.ms_p50": "<= 200",
}


def _texture(rng, size=(1280, 720)) -> np.ndarray:
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = np.linspace(rng.integers(20, 80), rng.integers(150, 230), w, dtype=np.uint8)[None, :, None]
    for _ in range(120):
        c = tuple(int(x) for x in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), int(rng.integers(10, 60)), c, -1)
        else:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(20, 120)), y + int(rng.integers(20, 80))), c, -1)
    return img


def _canvas(photos: list[np.ndarray], rng) -> np.ndarray:
    """A 1280x720 backdrop (blurred shapes) with the photos side by side in its central part."""
    canvas = cv2.GaussianBlur(_texture(rng), (0, 0), 6)
    side = 360 if len(photos) == 1 else 280
    total = side * len(photos) + 20 * (len(photos) - 1)
    x = (1280 - total) // 2
    for p in photos:
        canvas[360 - side // 2 : 360 - side // 2 + side, x : x + side] = cv2.resize(p, (side, side), interpolation=cv2.INTER_AREA)
        x += side + 20
    return canvas


@dataclasses.dataclass
class Clip:
    name: str
    path: Path
    placed: list[PlacedShot]
    people: list[list[str]]  # per shot, the cast people in it


def build(data: Path, out: Path, seed: int = 7) -> tuple[list[Clip], dict, list[str]]:
    """Write the clips (see the module docstring); returns (clips, {person: (video photo, query photo)}, strangers)."""
    lfw = data / "lfw" / "images_deepfunneled"
    rng = np.random.default_rng(seed)
    multi = [p for p in sorted(lfw.iterdir()) if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2]
    chosen = rng.choice(len(multi), 48, replace=False)
    cast = [multi[i] for i in chosen[:24]]
    strangers = [multi[i].name for i in chosen[24:]]
    photos = {p.name: (sorted(p.glob("*.jpg"))[0], sorted(p.glob("*.jpg"))[1]) for p in cast}
    clips = []
    for c, seconds in enumerate(CLIP_SECONDS):
        shots: list[Shot] = []
        people: list[list[str]] = []
        left = seconds * 25
        # Each clip draws from its own third of the cast, so people recur in some clips, not all.
        pool = [cast[(c * 8 + k) % 24].name for k in range(10)]
        while left > 0:
            n = min(left, int(rng.integers(3, 13)) * 25)
            if left - n < 75:
                n = left
            kind = rng.random()
            if kind < 0.45:
                who = [str(rng.choice(pool))]
            elif kind < 0.75:
                who = [str(x) for x in rng.choice(pool, int(rng.integers(2, 4)), replace=False)]
            else:
                who = []
            img = _canvas([load_rgb(photos[w][0]) for w in who], rng) if who else _texture(rng)
            w0 = rng.uniform(0.9, 1.0) if len(who) > 1 else rng.uniform(0.75, 0.95)
            w1 = float(np.clip(w0 + rng.uniform(-0.08, 0.08), 0.75 if len(who) <= 1 else 0.9, 1.0))
            jitter = 0.03 if len(who) > 1 else 0.08
            start = (0.5 + rng.uniform(-jitter, jitter), 0.5 + rng.uniform(-0.02, 0.02), w0)
            end = (0.5 + rng.uniform(-jitter, jitter), 0.5 + rng.uniform(-0.02, 0.02), w1)
            shots.append(pan(img, start, end, n, f"clip {c} shot {len(shots)}"))
            people.append(who)
            left -= n
        path = out / f"clip{c:02d}.mp4"
        clips.append(Clip(path.name, path, write_video(path, shots), people))
    shutil.copy(data / "videos" / "arcade_faces.mp4", out / "arcade_faces.mp4")
    return clips, photos, strangers


def appearances(clips: list[Clip]) -> list[tuple[str, str, float, float]]:
    """(video, person, start, end): each shot a person is in, on the player's clock."""
    out = []
    for c in clips:
        for shot, who in zip(c.placed, c.people):
            for p in who:
                out.append((c.name, p, shot.times[0], shot.times[-1] + 0.04))
    return out


def person_quality(lib, clips, photos, strangers, cfg, models) -> dict:
    from rvs.library.search import search_person

    truth = appearances(clips)
    lfw = next(iter(photos.values()))[0].parent.parent
    returned = true_returned = 0
    found = set()
    per_person = []
    ms = []
    for person, (_, query) in photos.items():
        mine = [a for a in truth if a[1] == person]
        if not mine:
            continue
        t = time.perf_counter()
        r = search_person(lib, query, cfg, models)
        ms.append((time.perf_counter() - t) * 1000)
        n_true = 0
        for h in r.hits:
            for s in h.segments:
                returned += 1
                ok = [k for k, a in enumerate(truth) if a[0] == h.video and a[1] == person and s.start < a[3] and s.end > a[2]]
                if ok:
                    true_returned += 1
                    n_true += 1
                    found.update(ok)
        per_person.append({"person": person, "appearances": len(mine), "segments": sum(len(h.segments) for h in r.hits), "true_segments": n_true})
    n_app = sum(1 for a in truth if a[1] in photos)
    false_stranger = 0
    stranger_rows = []
    for name in strangers:
        q = sorted((lfw / name).glob("*.jpg"))[0]
        r = search_person(lib, q, cfg, models)
        n = sum(len(h.segments) for h in r.hits)
        false_stranger += n
        stranger_rows.append({"person": name, "segments": n, "closest_distance": round(r.closest.score, 4) if r.closest else None})
    return {
        "queries": len(per_person),
        "appearances": n_app,
        "segments_returned": returned,
        "segment_precision": round(true_returned / max(1, returned), 4),
        "segment_recall": round(len(found) / max(1, n_app), 4),
        "strangers": len(strangers),
        "strangers_false_segments": false_stranger,
        "query_ms_p50": round(statistics.median(ms), 1),
        "per_person": per_person,
        "strangers_rows": stranger_rows,
    }


def _variants() -> dict:
    def jpeg(im, q=40):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=q)
        return Image.open(buf).convert("RGB")

    def crop(im, share=0.8):
        w, h = im.size
        cw, ch = round(w * share), round(h * share)
        return im.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)).resize((w, h), Image.BICUBIC)

    return {"exact": lambda im: im, "jpeg_q40": jpeg, "scale_50": lambda im: im.resize((im.width // 2, im.height // 2), Image.BICUBIC), "crop_80": crop}


def frame_quality(lib, clips, folder: Path, data: Path, strangers, cfg, rng) -> dict:
    from rvs.library.search import search_frame

    variants = _variants()
    queries = []
    for c in clips:
        frames = read_rgb(c.path)
        times = [t for s in c.placed for t in s.times]
        for k in sorted(rng.choice(len(frames), 3, replace=False)):
            queries.append((c.name, float(times[k]), frames[k]))
    arcade = read_rgb(folder / "arcade_faces.mp4")
    queries += [("arcade_faces.mp4", k / 25.0, arcade[k]) for k in (30, 80)]
    rows, ms = [], []
    for video, t, frame in queries:
        for var, make in variants.items():
            q = make(Image.fromarray(frame))
            s = time.perf_counter()
            r = search_frame(lib, q, cfg)
            ms.append((time.perf_counter() - s) * 1000)
            top = r.hits[0] if r.hits else None
            hit = top is not None and top.video == video and abs(top.best_time - t) <= TOLERANCE_S + 1e-6
            rows.append({"video": video, "time": round(t, 3), "variant": var, "hit": hit, "top": top.video if top else None, "best_time": round(top.best_time, 3) if top else None, "reading": top.decision if top else None})
    negatives = [sorted((data / "lfw" / "images_deepfunneled" / n).glob("*.jpg"))[0] for n in strangers[:16]] + sorted((data / "photos").glob("*/1.jpg"))
    false_same = 0
    for p in negatives:
        r = search_frame(lib, p, cfg)
        false_same += sum(1 for h in r.hits if h.decision == "same frame")
    by_var = {v: round(sum(r["hit"] for r in rows if r["variant"] == v) / max(1, sum(1 for r in rows if r["variant"] == v)), 4) for v in variants}
    return {
        "queries": len(rows),
        "best_frame_hit_rate": round(sum(r["hit"] for r in rows) / max(1, len(rows)), 4),
        "by_variant": by_var,
        "negative_pictures": len(negatives),
        "false_same_frame": false_same,
        "query_ms_p50": round(statistics.median(ms), 1),
        "misses": [r for r in rows if not r["hit"]],
    }


def naive_person(folder: Path, query: Path, cfg: Config, models) -> dict:
    """The single-video way: decode and search every video for one query (no cache)."""
    from rvs.video.api import search_video_faces

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        c = dataclasses.replace(cfg, video_cache_dir=Path(tmp))
        n = 0
        for v in sorted(folder.glob("*.mp4")):
            n += len(search_video_faces(query, v, c, None, models).segments)
    return {"seconds": round(time.perf_counter() - t, 2), "segments": n}


def scaled_search(lib, cfg: Config, models, cast_queries: list[Path], index_dir: Path, seed: int = 3) -> dict:
    """Search time on a library synthesised to >= TARGET_HOURS at the measured vector density."""
    from bench.scale import LfwStats, synth_gallery
    from rvs.faces.embedders import video_threshold
    from rvs.gallery.store import FaceIndex
    from rvs.library.search import person_hits
    from rvs.video.faces import query_embedding

    per_hour = len(lib.vectors) / lib.hours
    n_total = int(np.ceil(per_hour * TARGET_HOURS))
    idx = FaceIndex.load(index_dir)
    st = LfwStats(idx.embeddings, idx.meta["identity"])
    t = time.perf_counter()
    syn, _, syn_queries = synth_gallery(st, n_total - len(lib.vectors), seed)
    synth_s = time.perf_counter() - t
    rng = np.random.default_rng(seed)
    refs = np.concatenate([lib.refs, lib.refs[rng.integers(0, len(lib.refs), len(syn))]])
    real_q = np.stack([query_embedding(q, cfg, models)[0] for q in cast_queries])
    queries = np.concatenate([real_q, syn_queries[: 200 - len(real_q)]]).astype(np.float32)
    out = {"vectors_per_hour": round(per_hour, 1), "hours": TARGET_HOURS, "vectors": n_total, "synth_seconds": round(synth_s, 1)}
    for name in ("auto", "exact"):
        big = dataclasses.replace(lib, vectors=np.concatenate([lib.vectors, syn]), refs=refs, _tracks={}, _frames={}, _backend=None)
        c = dataclasses.replace(cfg, search_backend=name)
        t = time.perf_counter()
        be = big.backend(c)
        build_s = time.perf_counter() - t
        ms = []
        thr = video_threshold(cfg)
        for q in queries:
            s = time.perf_counter()
            person_hits(big, q, c, thr)
            ms.append((time.perf_counter() - s) * 1000)
        out[name] = {
            "backend": type(be).__name__,
            "build_seconds": round(build_s, 1),
            "ms_p50": round(float(np.percentile(ms, 50)), 2),
            "ms_p95": round(float(np.percentile(ms, 95)), 2),
            "queries": len(ms),
        }
        big.close()
    out["ms_p50"] = out["auto"]["ms_p50"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--index", type=Path, default=Config().cache_dir / "index" / "lfw", help="the SFace LFW gallery (synthesis statistics)")
    ap.add_argument("--out", type=Path, default=RESULTS / "video_library.json")
    ap.add_argument("--no-naive", action="store_true")
    args = ap.parse_args()
    from rvs.library import store
    from rvs.library.indexer import index_folder
    from rvs.video.faces import face_models

    load_start = os.getloadavg()
    t0 = time.perf_counter()
    cfg = Config()
    models = face_models(cfg)
    with tempfile.TemporaryDirectory(prefix="rvs-video-library-") as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        clips, photos, strangers = build(args.data, folder)
        build_s = time.perf_counter() - t0
        print(f"built {len(clips) + 1} videos in {build_s:.0f} s")
        summary = index_folder(folder, Path(tmp) / "library", cfg, models=models, log_line=print, progress=False)
        lib = store.load(Path(tmp) / "library")
        print(f"indexed {summary['video_seconds_indexed']:.0f} s of video at {summary['realtime_factor']}x real time")
        person = person_quality(lib, clips, photos, strangers, cfg, models)
        print(f"person: precision {person['segment_precision']} recall {person['segment_recall']} strangers' segments {person['strangers_false_segments']}")
        frame = frame_quality(lib, clips, folder, args.data, strangers, cfg, np.random.default_rng(11))
        print(f"frame: hit rate {frame['best_frame_hit_rate']} ({frame['by_variant']}), false same-frame {frame['false_same_frame']}")
        naive = None
        if not args.no_naive:
            q = next(iter(photos.values()))[1]
            naive = naive_person(folder, q, cfg, models)
            naive["library_ms"] = person["query_ms_p50"]
            naive["speedup"] = round(naive["seconds"] * 1000 / max(person["query_ms_p50"], 1e-3), 1)
            print(f"naive person query: {naive['seconds']} s (every video decoded) vs library {person['query_ms_p50']} ms")
        scale = scaled_search(lib, cfg, models, [p[1] for p in photos.values()][:24], args.index)
        print(f"search at {scale['hours']:.0f} h ({scale['vectors']:,} vectors): p50 {scale['auto']['ms_p50']} ms ({scale['auto']['backend']}), exact {scale['exact']['ms_p50']} ms")
        videos = [
            {"name": v.name, "duration": round(v.duration, 2), "tracks": v.n_tracks, "vectors": v.n_vectors, "shots": v.n_shots, "index_seconds": round(v.index_seconds, 2)}
            for v in lib.videos
        ]
        lib.close()
    out = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "seconds": round(time.perf_counter() - t0, 1),
        "library": {"videos": videos, "hours": round(sum(v["duration"] for v in videos) / 3600, 4), "clip_seconds": CLIP_SECONDS},
        "index": {k: summary[k] for k in ("videos", "indexed", "video_seconds_indexed", "realtime_factor", "vectors", "skipped")},
        "person": person,
        "frame": frame,
        "naive_person_query": naive,
        "search": scale,
        "targets": TARGETS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"load average start / end: {out['machine']['loadavg_start'][0]} / {out['machine']['loadavg_end'][0]}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
