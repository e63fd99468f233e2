"""Frame-search quality: does a query image find the right moment, and nothing in other videos?

Test videos (built here with PyAV from ../shared/data, H.264 at crf 23, 25 fps; see
rvs/video/synth.py), each a sequence of shots with known frame ranges:

- `arcade_mix` (640x360, 6.1 s): three disjoint parts of arcade_faces.mp4 (0-1.2 s, 3.0-4.2 s,
  1.8-2.4 s) between a zoom into `photos/multiface.jpg` and a short (0.68 s) wide pan over it.
- `photos` (640x360, 6.7 s): pans and zooms over the four celebrity photos, one of them twice
  (two disjoint regions), with a 0.68 s shot.
- `lfw` (640x360, 4.1 s): pans over three mosaics of LFW photos (different people in each).
- `lfw_long` (640x360, ~40 s, more frames than the ORB shortlist): pans over twelve more mosaics
  of other LFW people (alike in colour and layout, so pHash and histogram shortlist poorly),
  every fourth shot 0.68 s long.
- `arcade_faces` (1920x1080, 4.2 s): the sample video itself, one shot.
- `late_start` (640x360, ~5 s): its video stream starts 0.852 s after its AAC audio (what a news
  clip with audio priming or an edit list looks like): a part of arcade_faces.mp4 (0.6-1.8 s),
  pans over a mosaic of other LFW people and over multiface.jpg. Frame i shows at 0.852 s + its
  offset on a player's clock, not at i / fps.
- `vfr` (640x360, ~6 s): variable frame rate, frame durations 40 or 80 ms in runs of 3-12
  (`rvs.video.synth.vfr_durations`): pans over two mosaics of other LFW people and a celebrity photo.

Queries: frames of each video (decoded in order by OpenCV, independently of rvs's timing) at known
player times (what the writer set) (one or two per shot, the middle of short ones),
each in seven variants: `exact` (the decoded frame, lossless), `jpeg_q40`, `scale_50`,
`bright_125` (PIL brightness x1.25), `letterbox` (black bars to 4:3), `crop_80` (centre 80%,
resized back), `flip` (horizontal mirror). Every query is searched in its own video and in every
video without its content (arcade_mix and arcade_faces share content, so neither is a negative for
the other).

Metrics, per variant and overall, for the default (`moments`) and the report's rule (`report`):
- `best_frame_hit_rate`: the best reported moment (report: the best segment's best frame) within
  +-0.3 s of the query frame's presentation time; nothing reported counts as a miss. Also per
  video: `late_start` and `vfr` at the top level of the JSON.
- `coverage_median`: returned duration (sum of segments, a segment of one frame lasting one frame)
  / video duration, median over the positive queries.
- `false_segments`: segments returned on videos that do not contain the query (total).
  `false_moments`: moments of any reading there (the default method only).
- `absent_moment`: frames of arcade_faces.mp4 from the parts arcade_mix leaves out, searched in
  arcade_mix (the scene is there, the moment is not): the best moment should read "same shot",
  with no segment.

    python bench/video_quality.py            # writes bench/results/video_quality.json
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rvs.config import Config, default_data_dir  # noqa: E402
from rvs.video.api import read_frame, search_video_frames  # noqa: E402
from rvs.video.synth import PlacedShot, Shot, clip, load_rgb, pan, read_rgb, vfr_durations, write_video  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TOLERANCE_S = 0.3
TARGETS = {"best_frame_hit_rate": 0.95, "coverage_median": 0.10, "false_segments": 0}


# ---------------------------------------------------------------------------------------------
# Query variants
# ---------------------------------------------------------------------------------------------


def _jpeg(img: Image.Image, q: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=q)
    return Image.open(buf).convert("RGB")


def letterbox(img: Image.Image) -> Image.Image:
    """Black bars above and below, to a 4:3 picture (a 16:9 frame shown on a 4:3 screen)."""
    w, h = img.size
    canvas = Image.new("RGB", (w, max(h, round(w * 3 / 4))))
    canvas.paste(img, (0, (canvas.height - h) // 2))
    return canvas


def centre_crop(img: Image.Image, share: float) -> Image.Image:
    w, h = img.size
    cw, ch = round(w * share), round(h * share)
    x, y = (w - cw) // 2, (h - ch) // 2
    return img.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BICUBIC)


VARIANTS = {
    "exact": lambda im: im,
    "jpeg_q40": lambda im: _jpeg(im, 40),
    "scale_50": lambda im: im.resize((im.width // 2, im.height // 2), Image.BICUBIC),
    "bright_125": lambda im: ImageEnhance.Brightness(im).enhance(1.25),
    "letterbox": letterbox,
    "crop_80": lambda im: centre_crop(im, 0.8),
    "flip": ImageOps.mirror,
}


# ---------------------------------------------------------------------------------------------
# Test videos
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TestVideo:
    name: str
    path: Path
    fps: float
    shots: list[PlacedShot]
    content: set[str]  # sources shown (a query is negative for videos sharing none of its sources)
    query_frames: list[int]

    def shot_of(self, frame: int) -> PlacedShot:
        return next(s for s in self.shots if s.contains(frame))

    def time_of(self, frame: int) -> float:
        """The frame's presentation time (player's clock), as written."""
        return self.shot_of(frame).time_of(frame, self.fps)


def _queries(shots: list[PlacedShot]) -> list[int]:
    """One or two frames per shot: the middle of short shots, else at 30% and 75% of the shot."""
    out = []
    for s in shots:
        n = s.last - s.first + 1
        out += [s.first + n // 2] if n < 25 else [s.first + round(0.3 * (n - 1)), s.first + round(0.75 * (n - 1))]
    return out


def _mosaic(paths: list[Path], cols: int = 4) -> np.ndarray:
    tiles = [load_rgb(p) for p in paths]
    rows = [np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
    return np.vstack(rows)


def build_videos(data: Path, out: Path) -> list[TestVideo]:
    """Write the test videos into `out` (see the module docstring)."""
    arcade = data / "videos" / "arcade_faces.mp4"
    af = read_rgb(arcade)
    photos = {p.parent.name: load_rgb(p) for p in sorted((data / "photos").glob("*/1.jpg"))}
    multi = load_rgb(data / "photos" / "multiface.jpg")
    lfw = data / "lfw" / "images_deepfunneled"
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[100:124]  # 24 people, 8 per mosaic
    mosaics = [_mosaic([next(iter(sorted(p.glob("*.jpg")))) for p in people[i : i + 8]]) for i in range(0, 24, 8)]
    specs: dict[str, list[Shot]] = {
        "arcade_mix": [
            clip(af[0:30], "arcade 0.0-1.2 s"),
            pan(multi, (0.70, 0.45, 0.55), (0.68, 0.42, 0.40), 40, "multiface zoom"),
            clip(af[75:105], "arcade 3.0-4.2 s"),
            pan(multi, (0.48, 0.50, 0.98), (0.52, 0.50, 0.90), 17, "multiface wide"),
            clip(af[45:60], "arcade 1.8-2.4 s"),
        ],
        "photos": [
            pan(photos["angelina_jolie"], (0.5, 0.24, 0.95), (0.5, 0.22, 0.75), 40, "jolie top"),
            pan(photos["paul_rudd"], (0.40, 0.35, 0.80), (0.60, 0.35, 0.80), 30, "rudd"),
            pan(photos["kate_siegel"], (0.5, 0.30, 0.65), (0.5, 0.35, 0.95), 50, "siegel"),
            pan(photos["shea_whigham"], (0.45, 0.40, 0.70), (0.55, 0.40, 0.70), 17, "whigham"),
            pan(photos["angelina_jolie"], (0.40, 0.78, 0.85), (0.60, 0.78, 0.85), 30, "jolie bottom"),
        ],
        "lfw": [
            pan(mosaics[0], (0.40, 0.5, 0.70), (0.60, 0.5, 0.70), 40, "lfw mosaic 1"),
            pan(mosaics[1], (0.50, 0.5, 0.90), (0.50, 0.5, 0.60), 17, "lfw mosaic 2"),
            pan(mosaics[2], (0.60, 0.5, 0.75), (0.40, 0.5, 0.60), 45, "lfw mosaic 3"),
        ],
    }
    # A longer video (1,000+ frames, more than the ORB shortlist): twelve pans over mosaics of
    # other LFW people, alike in colour and layout, some of them short.
    more = sorted(p for p in lfw.iterdir() if p.is_dir())[200:296]
    long_mosaics = [_mosaic([next(iter(sorted(p.glob("*.jpg")))) for p in more[i : i + 8]]) for i in range(0, 96, 8)]
    rng = np.random.default_rng(14)
    long_shots = []
    for k, m in enumerate(long_mosaics):
        n = 17 if k % 4 == 1 else int(rng.integers(60, 140))
        cx, cy, w = rng.uniform(0.4, 0.6), 0.5, rng.uniform(0.6, 0.85)
        dx = rng.choice([-1, 1]) * rng.uniform(0.05, 0.15) * n / 100
        long_shots.append(pan(m, (cx - dx / 2, cy, w), (cx + dx / 2, cy, w), n, f"lfw long mosaic {k + 1}"))
    specs["lfw_long"] = long_shots
    late_people = sorted(p for p in lfw.iterdir() if p.is_dir())[300:308]
    vfr_people = sorted(p for p in lfw.iterdir() if p.is_dir())[308:324]
    late_mosaic = _mosaic([next(iter(sorted(p.glob("*.jpg")))) for p in late_people])
    vfr_mosaics = [_mosaic([next(iter(sorted(p.glob("*.jpg")))) for p in vfr_people[i : i + 8]]) for i in (0, 8)]
    specs["late_start"] = [
        clip(af[15:45], "arcade 0.6-1.8 s"),
        pan(late_mosaic, (0.40, 0.5, 0.70), (0.60, 0.5, 0.65), 50, "lfw late mosaic"),
        pan(multi, (0.30, 0.50, 0.60), (0.40, 0.45, 0.50), 45, "multiface left"),
    ]
    specs["vfr"] = [
        pan(vfr_mosaics[0], (0.45, 0.5, 0.80), (0.55, 0.5, 0.70), 40, "lfw vfr mosaic 1"),
        pan(photos["paul_rudd"], (0.50, 0.45, 0.90), (0.50, 0.40, 0.60), 35, "rudd zoom"),
        pan(vfr_mosaics[1], (0.60, 0.5, 0.70), (0.40, 0.5, 0.75), 40, "lfw vfr mosaic 2"),
    ]
    timing = {"late_start": {"start_s": 0.852}, "vfr": {"durations": vfr_durations(200, 25.0, seed=3)}}
    content = {
        "arcade_mix": {"arcade", "multiface"},
        "photos": {"celebrities"},
        "lfw": {"lfw"},
        "lfw_long": {"lfw_long"},
        "arcade_faces": {"arcade"},
        "late_start": {"arcade", "multiface", "lfw_late"},
        "vfr": {"lfw_vfr", "celebrities"},
    }
    videos = []
    for name, shots in specs.items():
        path = out / f"{name}.mp4"
        placed = write_video(path, shots, **timing.get(name, {}))
        queries = _queries(placed)
        if name == "lfw_long":  # every other shot: the queries stay a sample, not a sweep
            queries = [q for s in placed[::2] for q in _queries([s])[:1]] + [_queries([s])[0] for s in placed[1::4]]
        videos.append(TestVideo(name, path, 25.0, placed, content[name], sorted(set(queries))))
    whole = PlacedShot(clip(af, "arcade 0.0-4.2 s"), 0, len(af) - 1)  # 25 fps from 0 s: frame i at i / 25
    videos.append(TestVideo("arcade_faces", arcade, 25.0, [whole], content["arcade_faces"], [12, 37, 62, 87]))
    return videos


# ---------------------------------------------------------------------------------------------
# Running the queries
# ---------------------------------------------------------------------------------------------

METHODS = {"moments": "moments", "report": "report"}  # name in the JSON -> Config.video_fusion


def _answer(r) -> tuple[float | None, float]:
    """(time of the best reported moment or None, returned seconds) of a search result."""
    if r.moments:
        best = r.moments[0].time if r.moments[0].reading != "similar scene" else None
    else:
        best = r.segments[0].best_time if r.segments else None
    frame_s = 1.0 / r.sample_fps if r.sample_fps else 0.0
    returned = sum(s.end - s.start + frame_s for s in r.segments)
    return best, returned


def summarise(rows: list[dict]) -> dict:
    pos = [r for r in rows if r["positive"]]
    neg = [r for r in rows if not r["positive"]]
    out = {
        "queries": len(pos),
        "best_frame_hit_rate": round(sum(r["hit"] for r in pos) / max(1, len(pos)), 4),
        "coverage_median": round(statistics.median([r["coverage"] for r in pos]), 4) if pos else None,
        "coverage_mean": round(statistics.mean([r["coverage"] for r in pos]), 4) if pos else None,
        "segment_contains_truth_rate": round(sum(r["truth_in_segment"] for r in pos) / max(1, len(pos)), 4),
        "negative_searches": len(neg),
        "false_segments": sum(r["segments"] for r in neg),
        "false_moments": sum(r["moments"] for r in neg),
        "query_seconds_median": round(statistics.median([r["seconds"] for r in rows]), 4) if rows else None,
    }
    false_readings: dict[str, int] = {}
    for r in neg:
        for reading in r["readings"]:
            false_readings[reading] = false_readings.get(reading, 0) + 1
    out["false_moments_by_reading"] = false_readings
    readings: dict[str, int] = {}
    for r in pos:
        if r["best_reading"]:
            readings[r["best_reading"]] = readings.get(r["best_reading"], 0) + 1
    if readings:
        out["best_reading_counts"] = readings
    scores = sorted(r["best_score"] for r in pos if r.get("best_score") is not None)
    if scores:
        out["best_score_min"] = round(scores[0], 4)
        out["best_score_p05"] = round(float(np.percentile(scores, 5)), 4)
    return out


def absent_moments(videos: list[TestVideo], cache: Path) -> dict:
    """Frames of arcade_faces.mp4 from the parts arcade_mix leaves out (1.2-1.8 s, 2.4-3.0 s),
    searched in arcade_mix: the scene is there, the moment is not. The right reading is "same
    shot" (no segment); a "same frame" segment here is a wrong answer."""
    whole = next(v for v in videos if v.name == "arcade_faces")
    mix = next(v for v in videos if v.name == "arcade_mix")
    cfg = Config(cache_dir=cache)
    readings: dict[str, int] = {}
    segments, scores, n = 0, [], 0
    for f in (32, 36, 40, 62, 66, 70):
        frame = read_frame(whole.path, f / whole.fps)
        for var in ("exact", "jpeg_q40", "scale_50", "crop_80", "flip"):
            r = search_video_frames(VARIANTS[var](frame), mix.path, cfg)
            n += 1
            segments += len(r.segments)
            if r.moments:
                readings[r.moments[0].reading] = readings.get(r.moments[0].reading, 0) + 1
                scores.append(r.moments[0].score)
    return {
        "queries": n,
        "best_reading_counts": readings,
        "segments": segments,
        "best_score_max": round(max(scores), 4) if scores else None,
    }


def run(videos: list[TestVideo], cache: Path, log=print) -> dict:
    rows: dict[str, list[dict]] = {m: [] for m in METHODS}
    configs = {m: Config(cache_dir=cache, video_fusion=f) for m, f in METHODS.items()}
    for v in videos:
        decoded = read_rgb(v.path)  # by index, in order: independent of rvs's timing
        for qf in v.query_frames:
            frame = Image.fromarray(decoded[qf])
            truth_t = v.time_of(qf)
            for var, make in VARIANTS.items():
                q = make(frame)
                for w in videos:
                    positive = w is v
                    if not positive and v.content & w.content:
                        continue
                    for m, cfg in configs.items():
                        t = time.perf_counter()
                        r = search_video_frames(q, w.path, cfg)
                        dt = time.perf_counter() - t
                        best, returned = _answer(r)
                        row = {
                            "video": v.name,
                            "searched": w.name,
                            "frame": qf,
                            "variant": var,
                            "positive": positive,
                            "best_time": best,
                            "segments": len(r.segments),
                            "moments": len(r.moments),
                            "readings": [m.reading for m in r.moments],
                            "seconds": dt,
                        }
                        if positive:
                            row["hit"] = best is not None and abs(best - truth_t) <= TOLERANCE_S + 1e-6
                            row["coverage"] = returned / r.duration
                            row["truth_in_segment"] = any(s.start - 1e-6 <= truth_t <= s.end + 1e-6 for s in r.segments)
                            row["best_reading"] = r.moments[0].reading if r.moments else None
                            row["best_score"] = r.moments[0].score if r.moments else None
                            # Segments must stay inside the query's shot.
                            shot = v.shot_of(qf)
                            row["segment_crosses_shot"] = any(
                                s.start <= truth_t <= s.end and (s.start < v.time_of(shot.first) - 1e-6 or s.end > v.time_of(shot.last) + 1e-6)
                                for s in r.segments
                            )
                        rows[m].append(row)
            log(f"  {v.name} frame {qf} done")
    out = {}
    for m, rs in rows.items():
        by_var = {var: summarise([r for r in rs if r["variant"] == var]) for var in VARIANTS}
        overall = summarise(rs)
        overall["segments_crossing_a_shot"] = sum(r.get("segment_crosses_shot", False) for r in rs)
        misses = [
            {k: r[k] for k in ("video", "frame", "variant", "best_time")} for r in rs if r["positive"] and not r["hit"]
        ]
        by_video = {v.name: summarise([r for r in rs if r["video"] == v.name]) for v in videos}
        out[m] = {"overall": overall, "variants": by_var, "videos": by_video, "misses": misses}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--out", type=Path, default=RESULTS / "video_quality.json")
    args = ap.parse_args()
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rvs-video-quality-") as tmp:
        videos = build_videos(args.data, Path(tmp))
        print(f"built {len(videos)} test videos in {time.perf_counter() - t0:.1f} s")
        results = run(videos, Path(tmp) / "cache")
        absent = absent_moments(videos, Path(tmp) / "cache")
        described = [
            {
                "name": v.name,
                "frames": sum(s.last - s.first + 1 for s in v.shots),
                "fps": v.fps,
                "first_frame_time": v.time_of(0),
                "variable_frame_rate": v.name == "vfr",
                "shots": [{"name": s.shot.name, "first_frame": s.first, "last_frame": s.last} for s in v.shots],
                "query_frames": v.query_frames,
            }
            for v in videos
        ]
    new, old = results["moments"]["overall"], results["report"]["overall"]
    out = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "opencv": cv2.__version__,
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "seconds": round(time.perf_counter() - t0, 1),
        "tolerance_s": TOLERANCE_S,
        "variants": list(VARIANTS),
        "videos": described,
        "default": "moments",
        "overall": new,
        "late_start": results["moments"]["videos"]["late_start"],
        "vfr": results["moments"]["videos"]["vfr"],
        "report_rule_overall": old,
        "targets": {
            "best_frame_hit_rate": {"target": ">= 0.95", "met": new["best_frame_hit_rate"] >= TARGETS["best_frame_hit_rate"]},
            "coverage_median": {"target": "<= 0.10", "met": new["coverage_median"] <= TARGETS["coverage_median"]},
            "false_segments": {"target": "== 0", "met": new["false_segments"] == TARGETS["false_segments"]},
            **{
                f"{name}.best_frame_hit_rate": {"target": ">= 0.95", "met": results["moments"]["videos"][name]["best_frame_hit_rate"] >= 0.95}
                for name in ("late_start", "vfr")
            },
        },
        "absent_moment": absent,
        "methods": results,
    }
    print(f"{'variant':<12} {'hit moments':>12} {'hit report':>11} {'cov moments':>12} {'cov report':>11}")
    for var in VARIANTS:
        a, b = results["moments"]["variants"][var], results["report"]["variants"][var]
        print(f"{var:<12} {a['best_frame_hit_rate']:>12.3f} {b['best_frame_hit_rate']:>11.3f} {a['coverage_median']:>12.3f} {b['coverage_median']:>11.3f}")
    for k in ("best_frame_hit_rate", "coverage_median", "false_segments"):
        print(f"overall {k}: moments {new[k]}  report {old[k]}")
    for name in ("late_start", "vfr"):
        a, b = results["moments"]["videos"][name], results["report"]["videos"][name]
        print(f"{name}: best_frame_hit_rate moments {a['best_frame_hit_rate']}  report {b['best_frame_hit_rate']}")
    print(f"absent moments (scene there, moment cut out): {absent}")
    print(f"load average start / end: {out['machine']['loadavg_start'][0]} / {out['machine']['loadavg_end'][0]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
