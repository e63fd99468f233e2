"""`python -m rvs video QUERY_IMAGE VIDEO`: where in VIDEO does QUERY_IMAGE (or its person) appear?"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "video",
        help="reverse video search: find an image (frame mode) or a person (face mode) in a video",
        description=(
            "Find where QUERY_IMAGE appears in VIDEO. Frame mode (default) compares every frame with the image "
            "(ORB keypoints verified geometrically, so crops, letterboxing, scaling and mirroring are found; pHash "
            "and HSV histogram shortlist) and reports the best moments, each read as 'same frame', 'same shot' or "
            "'similar scene'; face mode finds the segments where the person of the query's largest face is visible. "
            "Per-frame features are cached, so a second query on the same video is fast."
        ),
    )
    p.add_argument("query", metavar="QUERY_IMAGE", help="image to look for (a frame, a screenshot, a face photo)")
    p.add_argument("video", metavar="VIDEO", help="video file (anything FFmpeg reads: mp4, mkv, webm, avi, ...)")
    p.add_argument("--mode", choices=["frame", "face"], default="frame", help="frame similarity or person search (default: frame)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.add_argument(
        "--fps", type=float, default=None, metavar="N", help="frames sampled per second of video (default: every frame in frame mode, 2 in face mode)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="frame mode with --fusion report/mean: fused similarity needed to match (default 0.98 / 0.75); "
        "face mode: maximum embedding distance (default Config.video_face_threshold = 1.0, RVS_VIDEO_FACE_THRESHOLD: "
        "1 false match in 3,000 different-person LFW pairs)",
    )
    p.add_argument(
        "--fusion",
        choices=["moments", "report", "mean"],
        default=None,
        help="frame mode: 'moments' (default: ranked peaks with a reading, short segments around them), "
        "'report' (the original report's max/min rule, match >= 0.98, for comparison) or 'mean' of the three "
        "similarities (match >= 0.75)",
    )
    p.add_argument("--top", type=int, default=10, help="moments/segments shown in the table (default 10; JSON has all)")
    p.add_argument("--curve", action="store_true", help="include the per-sample (time, score) curve in the JSON")
    p.set_defaults(func=run)


def fmt_time(t: float) -> str:
    """A time for the CLI's tables: m:ss.cc (h:mm:ss.cc past an hour)."""
    m, s = divmod(max(0.0, t), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:05.2f}" if h else f"{m}:{s:05.2f}"


def _config(args: argparse.Namespace):
    from rvs.config import Config

    cfg = Config.from_env()
    changes = {}
    if args.fps is not None:
        if args.fps < 0:
            from rvs.errors import BadInputError

            raise BadInputError(f"--fps must be >= 0 (0 = every frame), got {args.fps}")
        changes["video_frame_fps" if args.mode == "frame" else "video_face_fps"] = args.fps
    fusion = args.fusion or cfg.video_fusion
    if args.fusion:
        changes["video_fusion"] = args.fusion
    if args.threshold is not None:
        if args.mode == "face":
            changes["video_face_threshold"] = args.threshold
        elif fusion == "moments":
            from rvs.errors import BadInputError

            raise BadInputError("--threshold applies to --fusion report or mean; 'moments' answers with ranked peaks")
        else:
            changes["video_mean_threshold" if fusion == "mean" else "video_match_threshold"] = args.threshold
    return dataclasses.replace(cfg, **changes)


def _table(result, top: int) -> str:
    r = result
    sampling = "every frame" if r.sample_fps >= r.fps - 1e-6 else f"{r.sample_fps:g} samples/s"
    lines = [
        f"video: {Path(r.video).name}  {r.width}x{r.height}  {r.fps:.2f} fps  {fmt_time(r.duration)}  {r.frame_count} frames",
        f"mode: {r.mode} ({sampling}, {r.n_samples} samples{', cached features' if r.cached else ''})",
    ]
    if r.mode == "face" and r.query_box is not None:
        lines.append("query face: box " + ", ".join(f"{v:.0f}" for v in r.query_box))
    if r.mode == "frame" and r.fusion == "moments":
        return "\n".join(lines + _moments_table(r, top))
    rule = f"fused similarity >= {r.threshold:g}" if r.mode == "frame" else f"embedding distance <= {r.threshold:g}"
    if not r.segments:
        lines.append(f"no match ({rule}).")
        if r.closest is not None:
            lines.append(f"closest: frame {r.closest.frame} at {fmt_time(r.closest.time)}, score {r.closest.score:.3f}")
    else:
        lines.append(f"{len(r.segments)} segment(s) where {rule}:")
        face = r.mode == "face"
        # Frame mode: score = fused similarity, rank = mean of the three; face mode: cosine
        # similarity and embedding distance of the best face.
        cols = ("similar", "dist") if face else ("score", "rank")
        header = f"{'#':>3}  {'start':>8}  {'end':>8}  {'best at':>8}  {'frame':>6}  {cols[0]:>7}  {cols[1]:>6}  {'hits':>5}"
        lines.append(header + ("  best face box" if face else ""))
        for n, s in enumerate(r.segments[:top], 1):
            best = next(h for h in s.hits if h.frame == s.best_frame)
            second = best.faces[0].distance if face else s.rank
            row = (
                f"{n:>3}  {fmt_time(s.start):>8}  {fmt_time(s.end):>8}  {fmt_time(s.best_time):>8}  "
                f"{s.best_frame:>6}  {s.score:>7.3f}  {second:>6.3f}  {s.n_frames:>5}"
            )
            if face:
                row += "  " + ", ".join(f"{v:.0f}" for v in best.faces[0].box)
            lines.append(row)
        if len(r.segments) > top:
            lines.append(f"... {len(r.segments) - top} more (--top N, or --json for all)")
    t = r.timings
    lines.append(
        f"time: {t.get('total_s', 0):.2f} s (video {t.get('features_s', 0):.2f} s, matching {t.get('match_s', 0):.2f} s)"
    )
    return "\n".join(lines)


def _moments_table(r, top: int) -> list[str]:
    lines = []
    if not r.moments:
        lines.append("no match: no frame shares keypoints with the query in a consistent layout.")
        if r.closest is not None:
            lines.append(f"closest: frame {r.closest.frame} at {fmt_time(r.closest.time)}, score {r.closest.score:.3f}")
    else:
        lines.append(f"{len(r.moments)} moment(s), best first (score: matched keypoint share x placement; ncc: aligned pixels agree, 1 = same):")
        lines.append(f"{'#':>3}  {'at':>8}  {'frame':>6}  {'reading':<13}  {'score':>6}  {'ncc':>5}  {'segment':>19}")
        for n, m in enumerate(r.moments[:top], 1):
            seg = f"{fmt_time(m.start)}-{fmt_time(m.end)}" if m.reading == "same frame" else ""
            ncc = f"{m.ncc:.2f}" if m.ncc is not None else "-"
            lines.append(f"{n:>3}  {fmt_time(m.time):>8}  {m.frame:>6}  {m.reading:<13}  {m.score:>6.3f}  {ncc:>5}  {seg:>19}")
        if len(r.moments) > top:
            lines.append(f"... {len(r.moments) - top} more (--top N, or --json for all)")
    t = r.timings
    lines.append(f"time: {t.get('total_s', 0):.2f} s (video {t.get('features_s', 0):.2f} s, matching {t.get('match_s', 0):.2f} s)")
    return lines


def run(args: argparse.Namespace) -> int:
    from rvs.progress import progress_bar
    from rvs.video.api import search_video_faces, search_video_frames

    cfg = _config(args)
    search = search_video_frames if args.mode == "frame" else search_video_faces
    # A bar on a terminal; one line per 10% / 30 s when stderr is a pipe or a log file.
    with progress_bar(100, "video", file=sys.stderr, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}") as bar:

        def progress(frac: float, desc: str) -> None:
            bar.set_description_str(desc, refresh=False)
            bar.update(max(0.0, round(frac * 100, 1) - bar.n))

        result = search(args.query, args.video, cfg, progress)
    if args.json:
        print(json.dumps(result.to_dict(curve=args.curve), indent=1))
    else:
        print(_table(result, args.top))
    return 0
