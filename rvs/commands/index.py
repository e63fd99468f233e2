"""`python -m rvs index FOLDER --out DIR`: build a gallery index from a folder of photos."""

from __future__ import annotations

import argparse
import json

from rvs.config import Config


def register(sub) -> None:
    p = sub.add_parser("index", help="index a folder of photos (folder-per-person like LFW, or flat)")
    p.add_argument("folder", help="photos: FOLDER/<Name>/*.jpg (identity = sub-folder) or FOLDER/*.jpg (identity = file name)")
    p.add_argument("--out", help="index folder to write (default: Config.index_dir, RVS_INDEX_DIR)")
    p.add_argument("--all-faces", action="store_true", help="index every face, not only the main (centre-weighted largest) one")
    p.add_argument("--weights", help="weights spec (default: casia-webface)")
    p.add_argument("--limit", type=int, help="only the first N images (quick trial)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rvs.gallery import build_index

    over = {"weights": args.weights} if args.weights else {}
    cfg = Config.from_env(**over)
    out = args.out or cfg.index_dir
    _, summary = build_index(args.folder, out, cfg, all_faces=args.all_faces, limit=args.limit)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(
            f"indexed {summary['faces_indexed']} faces of {summary['identities']} identities from {summary['images']} images "
            f"in {summary['seconds']:.0f}s -> {summary['out']}\n"
            f"  images without a face: {summary['images_without_face']}   unreadable: {summary['failures']}   model: {summary['model_id']}"
        )
        for m in summary["failure_messages"][:5]:
            print(f"  skipped: {m}")
    return 0
