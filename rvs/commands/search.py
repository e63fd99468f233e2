"""`python -m rvs search IMAGE|FOLDER --index DIR -k 20 [--json] [--out FILE]`: who is in this photo
(or in each photo of a folder: one CSV / JSONL row per face)?"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from rvs.config import Config


def register(sub) -> None:
    p = sub.add_parser("search", help="find the nearest gallery faces for every face in an image")
    p.add_argument("image", help="a photo, or a folder of photos (searched one by one: one row per face in --out)")
    p.add_argument("--out", help="folder search: write rows here, CSV or JSONL by extension (default: CSV on stdout)")
    p.add_argument("--index", help="index folder (default: Config.index_dir, RVS_INDEX_DIR)")
    p.add_argument("-k", type=int, default=None, help="results per face (default 20)")
    p.add_argument("--face", default="all", help="'all', 'largest', or a face number (1 = largest)")
    p.add_argument("--exact", action="store_true", help="exact (numpy) search whatever the gallery's backend (exact is the default up to Config.exact_max = 60,000 faces)")
    p.add_argument(
        "--threshold",
        type=float,
        help="name a face only when P(right) exceeds this probability (default: the gallery's calibrated operating point)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rvs.gallery.search import SearchEngine
    from rvs.imageio import load_image

    over = {"name_threshold": args.threshold} if args.threshold is not None else {}
    cfg = Config.from_env(**over)
    if Path(args.image).is_dir():
        return search_folder(args, cfg)
    # Read the image before loading any model, so bad input fails fast.
    img = load_image(args.image, max_pixels=cfg.max_pixels, name=args.image)
    face = args.face if args.face in ("all", "largest") else _int(args.face)
    engine = SearchEngine.from_index_dir(args.index or cfg.index_dir, cfg)
    res = engine.search(img, k=args.k, faces=face, exact=True if args.exact else None)
    if args.json:
        print(json.dumps(res.to_dict(), indent=1))
        return 0
    print(f"{args.image}: {res.n_faces_detected} face(s), {res.timings_ms['total']:.0f} ms, model {res.model_id}")
    for fr in res.faces:
        b = ", ".join(f"{v:.0f}" for v in fr.face.box)
        print(f"\nface {fr.face_number} [{b}] detection p={fr.face.prob:.3f}: {describe(fr.identification)}")
        print(f"  {'rank':>4}  {'distance':>8}  identity / path {'' if fr.named else '(look-alikes unless they are the person named)'}")
        for m in fr.matches:
            print(f"  {m.rank:>4}  {m.distance:8.4f}  {m.identity}  ({m.path})")
    if engine.calibration_problem:
        print(f"\nnote: {engine.calibration_problem}")
    return 0


def describe(ident) -> str:
    from rvs.app.answers import answer_line

    return answer_line(ident)


def _int(s: str) -> int:
    from rvs.errors import BadInputError

    try:
        return int(s)
    except ValueError:
        raise BadInputError(f"--face must be 'all', 'largest' or a number, not {s!r}") from None


ROW_FIELDS = [
    "image", "face", "box", "detection_prob", "answer", "identity", "possibly", "probability", "reason",
    "top_identity", "top_distance", "top_path", "matches", "error",
]


def face_rows(image: str, res) -> list[dict]:
    """One row per searched face of a SearchResult (who it is, and the nearest gallery faces)."""
    rows = []
    for fr in res.faces:
        m0 = fr.matches[0] if fr.matches else None
        ident = fr.identification
        rows.append(
            {
                "image": image,
                "face": fr.face_number,
                "box": [round(float(v), 1) for v in fr.face.box],
                "detection_prob": round(float(fr.face.prob), 4),
                "answer": ident.answer,
                "identity": ident.identity,
                "possibly": ident.candidate if ident.answer == "possible" else None,
                "probability": None if ident.probability is None else round(float(ident.probability), 4),
                "reason": ident.reason,
                "top_identity": m0.identity if m0 else None,
                "top_distance": round(m0.distance, 4) if m0 else None,
                "top_path": m0.path if m0 else None,
                "matches": [{"identity": m.identity, "distance": round(m.distance, 4), "path": m.path} for m in fr.matches],
                "error": None,
            }
        )
    return rows


def search_folder(args: argparse.Namespace, cfg: Config) -> int:
    """Every image under the folder, one at a time: one row per face found (a photo without a
    face or unreadable gets one row with `error`). CSV (lists as JSON) or JSONL by --out's suffix."""
    from rvs.errors import RvsError
    from rvs.gallery.photos import list_images
    from rvs.gallery.search import SearchEngine

    folder = Path(args.image)
    images = [p for _, p in list_images(folder)]
    if not images:
        raise RvsError(f"{folder}: no images found")
    face = args.face if args.face in ("all", "largest") else _int(args.face)
    engine = SearchEngine.from_index_dir(args.index or cfg.index_dir, cfg)
    jsonl = bool(args.out) and args.out.lower().endswith((".jsonl", ".json"))
    f = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        writer = None if jsonl else csv.DictWriter(f, fieldnames=ROW_FIELDS)
        if writer:
            writer.writeheader()
        n_rows = n_faces = 0
        for p in images:
            rel = str(p.relative_to(folder))
            try:
                rows = face_rows(rel, engine.search(p, k=args.k, faces=face, exact=True if args.exact else None))
            except RvsError as e:
                rows = [{**dict.fromkeys(ROW_FIELDS), "image": rel, "error": str(e)}]
            for r in rows:
                n_faces += r["error"] is None
                n_rows += 1
                if jsonl:
                    f.write(json.dumps(r) + "\n")
                else:
                    writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    finally:
        if args.out:
            f.close()
    if args.out:
        print(f"{folder}: {len(images)} images, {n_faces} faces -> {args.out} ({n_rows} rows)")
    return 0
