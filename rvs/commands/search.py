"""`python -m rvs search IMAGE --index DIR -k 20 [--json]`: who is in this photo?"""

from __future__ import annotations

import argparse
import json

from rvs.config import Config


def register(sub) -> None:
    p = sub.add_parser("search", help="find the nearest gallery faces for every face in an image")
    p.add_argument("image")
    p.add_argument("--index", help="index folder (default: Config.index_dir, RVS_INDEX_DIR)")
    p.add_argument("-k", type=int, default=None, help="results per face (default 20)")
    p.add_argument("--face", default="all", help="'all', 'largest', or a face number (1 = largest)")
    p.add_argument("--exact", action="store_true", help="exact (numpy) search even for a gallery large enough for Annoy (exact is the default up to 200,000 faces)")
    p.add_argument(
        "--threshold",
        type=float,
        help="name a face only when P(right) exceeds this probability (default: the gallery's calibrated operating point)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rvs.imageio import load_image
    from rvs.search import SearchEngine

    over = {"name_threshold": args.threshold} if args.threshold is not None else {}
    cfg = Config.from_env(**over)
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
        print(f"  {'rank':>4}  {'distance':>8}  identity / path {'' if fr.named else '(look-alikes, not matches)'}")
        for m in fr.matches:
            print(f"  {m.rank:>4}  {m.distance:8.4f}  {m.identity}  ({m.path})")
    if engine.calibration_problem:
        print(f"\nnote: {engine.calibration_problem}")
    return 0


def describe(ident) -> str:
    from rvs.identify import format_probability as fp

    if ident.identity is not None:
        return f"{ident.identity} (probability {fp(ident.probability)} that this is right; named above {fp(ident.threshold)})"
    why = ident.reason or "no one in this gallery resembles this face closely enough to name"
    return f"not in this gallery: {why}"


def _int(s: str) -> int:
    from rvs.errors import BadInputError

    try:
        return int(s)
    except ValueError:
        raise BadInputError(f"--face must be 'all', 'largest' or a number, not {s!r}") from None
