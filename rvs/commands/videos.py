"""`python -m rvs videos index|search|list|remove`: a library of videos, indexed once, searched like a gallery."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rvs.commands.video import fmt_time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "videos",
        help="a video library: index a folder of videos once, then find a person or a picture in all of them",
        description=(
            "Index every video of a folder once (faces tracked and embedded, frame features per sample), then ask "
            "which videos show a person (and when), or where a picture appears. Times are a player's clock. "
            "The library lives in --library/--out (default: RVS_VIDEO_LIBRARY, else <cache>/video-library)."
        ),
    )
    act = p.add_subparsers(dest="action", required=True)
    ix = act.add_parser("index", help="index the videos under FOLDER (incremental with --update)")
    ix.add_argument("folder", metavar="FOLDER")
    ix.add_argument("--out", default=None, metavar="DIR", help="library folder (default: RVS_VIDEO_LIBRARY or <cache>/video-library)")
    ix.add_argument("--update", action="store_true", help="keep videos already indexed (by content hash); index only new ones, drop vanished ones")
    ix.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS", help="one Ray Data task per video (local Ray, or a cluster address)")
    ix.add_argument("--json", action="store_true", help="print the summary as JSON")
    se = act.add_parser("search", help="which videos show the person (or the picture) in PHOTO, and when")
    se.add_argument("photo", metavar="PHOTO")
    se.add_argument("--mode", choices=["person", "frame"], default="person", help="person (default): the query's largest face; frame: the picture itself")
    se.add_argument("--library", default=None, metavar="DIR")
    se.add_argument("--json", action="store_true")
    se.add_argument("--top", type=int, default=10, help="videos shown in the table (JSON has all)")
    for name, helptext in (("list", "the videos in the library"), ("remove", "take videos out of the library (by name)")):
        a = act.add_parser(name, help=helptext)
        if name == "remove":
            a.add_argument("names", nargs="+", metavar="NAME", help="a video's name as `videos list` shows it")
        a.add_argument("--library", default=None, metavar="DIR")
        a.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def library_dir(cfg, given: str | None) -> Path:
    return Path(given) if given else cfg.video_library_dir()


def _search_table(r, top: int) -> str:
    lines = [f"searched {r.videos_searched} videos ({r.hours_searched * 60:.1f} min) in {sum(r.timings.values()) * 1000:.0f} ms"]
    if r.mode == "person":
        lines.append(f"same person: embedding distance <= {r.threshold:g}")
    if not r.hits:
        lines.append("not found in any video of this library.")
        if r.closest is not None:
            c = r.closest
            lines.append(f"closest face: {c.video} at {fmt_time(c.best_time)}, distance {c.score:.3f} (not the same person)")
        return "\n".join(lines)
    lines.append(f"{'#':>3}  {'video':<32}  {'best at':>8}  {'score':>6}  {'decision':<13}  segments")
    for n, h in enumerate(r.hits[:top], 1):
        segs = ", ".join(f"{fmt_time(s.start)}-{fmt_time(s.end)}" for s in h.segments[:4]) + (" ..." if len(h.segments) > 4 else "")
        lines.append(f"{n:>3}  {h.video[:32]:<32}  {fmt_time(h.best_time):>8}  {h.score:>6.3f}  {h.decision:<13}  {segs}")
    if len(r.hits) > top:
        lines.append(f"... {len(r.hits) - top} more (--top N, or --json)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from rvs.config import Config
    from rvs.errors import BadInputError
    from rvs.library import store

    cfg = Config.from_env()
    if args.action == "index":
        from rvs.library.indexer import index_folder

        out = library_dir(cfg, args.out)
        say = (lambda s: print(s, file=sys.stderr)) if args.json else print
        summary = index_folder(args.folder, out, cfg, update=args.update, ray=args.ray, log_line=say)
        if args.json:
            print(json.dumps(summary, indent=1))
        else:
            rt = f", {summary['realtime_factor']}x real time" if summary["realtime_factor"] else ""
            print(
                f"library {out}: {summary['videos']} videos ({summary['hours'] * 60:.1f} min), {summary['indexed']} indexed now{rt}, "
                f"{summary['kept']} kept, {len(summary['skipped'])} skipped, {len(summary['removed'])} removed"
            )
        return 0
    lib_dir = library_dir(cfg, args.library)
    if args.action == "search":
        from rvs.library.search import search_frame, search_person

        lib = store.load(lib_dir)
        r = search_person(lib, args.photo, cfg) if args.mode == "person" else search_frame(lib, args.photo, cfg)
        print(json.dumps(r.to_dict(), indent=1) if args.json else _search_table(r, args.top))
        return 0
    if args.action == "list":
        lib = store.load(lib_dir)
        if args.json:
            print(json.dumps([v.__dict__ for v in lib.videos], indent=1))
        else:
            print(f"library {lib_dir}: {len(lib.videos)} videos, {lib.hours * 60:.1f} min, {len(lib.vectors)} face vectors ({lib.model_id})")
            for v in lib.videos:
                print(f"  {v.name:<40} {fmt_time(v.duration):>8}  {v.width}x{v.height}  {v.n_tracks:>4} face tracks  {v.n_shots:>4} shots")
        return 0
    if args.action == "remove":
        from rvs.library.indexer import remove_videos

        gone = remove_videos(lib_dir, args.names)
        missing = [n for n in args.names if n not in gone]
        if missing:
            raise BadInputError(f"not in the library: {', '.join(missing)} (see `python -m rvs videos list`)")
        print(f"removed {len(gone)} video(s) from {lib_dir}")
        return 0
    return 2
