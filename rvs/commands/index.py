"""`python -m rvs index FOLDER --out DIR [--update] [--backend ...] [--ray [ADDRESS]]`: build or
update a gallery index from a folder of photos (or a list of URIs)."""

from __future__ import annotations

import argparse
import json

from rvs.config import Config


def register(sub) -> None:
    p = sub.add_parser("index", help="index a folder of photos (folder-per-person like LFW, or flat)")
    p.add_argument("folder", nargs="?", help="photos: FOLDER/<Name>/*.jpg (identity = sub-folder) or FOLDER/*.jpg (identity = file name)")
    p.add_argument("--uris", metavar="LIST", help="index the photos listed in this file instead (one path/URI a line, or IDENTITY<TAB>URI)")
    p.add_argument(
        "--update",
        action="store_true",
        help="update the index at --out: embed only new or changed photos (by sha256), drop deleted ones, keep removed people out, recalibrate",
    )
    p.add_argument("--backend", choices=["auto", "exact", "annoy", "milvus"], help="search backend recorded in the index (default auto: exact up to Config.exact_max faces, else Annoy)")
    p.add_argument("--milvus-uri", help="milvus backend: a Milvus server/cluster URI (default: embedded Milvus Lite in the index folder)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="run detection + embedding on Ray Data: a cluster address, or a local Ray when none is given")
    p.add_argument("--out", help="index folder to write (default: Config.index_dir, RVS_INDEX_DIR)")
    p.add_argument("--all-faces", action="store_true", help="index every face, not only the main (centre-weighted largest) one")
    p.add_argument("--weights", help="weights spec (default: casia-webface)")
    p.add_argument("--limit", type=int, help="only the first N images (quick trial)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rvs.errors import RvsError
    from rvs.gallery.build import build_index

    if bool(args.folder) == bool(args.uris):
        raise RvsError("give a FOLDER or --uris LIST (one of them)")
    over = {"weights": args.weights} if args.weights else {}
    if args.backend:
        over["search_backend"] = args.backend
    if args.milvus_uri:
        over["milvus_uri"] = args.milvus_uri
    cfg = Config.from_env(**over)
    out = args.out or cfg.index_dir
    _, summary = build_index(args.folder, out, cfg, all_faces=args.all_faces, limit=args.limit, update=args.update, uris=args.uris, ray=args.ray)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(
            f"indexed {summary['faces_indexed']} faces of {summary['identities']} identities from {summary['images']} images "
            f"in {summary['seconds']:.0f}s -> {summary['out']}\n"
            f"  images without a face: {summary['images_without_face']}   unreadable: {summary['failures']}   model: {summary['model_id']}"
        )
        if "update" in summary:
            u = summary["update"]
            print(
                f"  update: {u['embedded_images']} photos embedded, {u['kept_images']} kept, {u['moved_images']} renamed, "
                f"{u['dropped_faces']} faces dropped, {u['added_faces']} added" + ("" if u["from_existing_index"] else " (no reusable index: full build)")
            )
        print(f"  search backend: {summary['backend']}")
        for m in summary["failure_messages"][:5]:
            print(f"  skipped: {m}")
    return 0
