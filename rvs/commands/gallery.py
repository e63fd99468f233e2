"""`python -m rvs gallery list|remove NAME [--index DIR]`: what a gallery holds; take a person or a photo out."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from rvs.config import Config


def register(sub) -> None:
    p = sub.add_parser("gallery", help="list a gallery's people, or remove a person or a photo from it")
    gs = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = gs.add_parser("list", help="the gallery's people with their photo counts")
    ls.add_argument("--index", help="index folder (default: Config.index_dir, RVS_INDEX_DIR)")
    ls.add_argument("--json", action="store_true")
    rm = gs.add_parser("remove", help="remove a person (identity) or one photo (its path in the index); it stays out of later `index --update`s")
    rm.add_argument("name", help="an identity (e.g. Colin_Powell) or a photo path as `gallery list --photos` shows it")
    rm.add_argument("--index", help="index folder (default: Config.index_dir, RVS_INDEX_DIR)")
    rm.add_argument("--json", action="store_true")
    ls.add_argument("--photos", action="store_true", help="list every photo, not only people")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rvs.gallery.build import remove_from_gallery
    from rvs.gallery.store import FaceIndex

    cfg = Config.from_env()
    d = args.index or cfg.index_dir
    index = FaceIndex.load(d)
    if args.action == "list":
        counts = Counter(index.meta["identity"])
        info = {
            "index": str(d),
            "faces": len(index),
            "people": len(counts),
            "backend": index.backend_name,
            "excluded": index.extra.get("excluded", {"people": [], "photos": []}),
            "identities": dict(sorted(counts.items())),
        }
        if args.photos:
            info["photos"] = sorted(set(index.meta["path"]))
        if args.json:
            print(json.dumps(info, indent=1))
            return 0
        print(f"{d}: {len(index)} faces of {len(counts)} people (search backend: {index.backend_name})")
        for name, n in sorted(counts.items()):
            print(f"  {n:>4}  {name}")
        for path in info.get("photos", []):
            print(f"  {path}")
        ex = info["excluded"]
        if ex.get("people") or ex.get("photos"):
            print(f"removed (kept out of updates): {', '.join(ex.get('people', []) + ex.get('photos', []))}")
        return 0
    out = remove_from_gallery(index, args.name, cfg)
    index.save(d)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"removed {out['kind']} {out['removed']}: {out['faces_removed']} face(s); {out['faces_left']} faces of {out['identities_left']} people left (recalibrated)")
    return 0
