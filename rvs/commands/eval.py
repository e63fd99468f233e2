"""`python -m rvs eval`: LFW verification (10-fold, pairs.txt) and View 1 retrieval.

Prints a table (and writes JSON with --json OUT). The "best threshold" line is the value for
`Config.match_threshold` (RVS_MATCH_THRESHOLD). `--margins` sweeps the crop margin on a pairs
list (use the View 1 dev list pairsDevTrain.txt, not pairs.txt, to keep pairs.txt for testing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rvs.config import Config


def register(sub) -> None:
    p = sub.add_parser("eval", help="LFW verification accuracy (10-fold) and retrieval metrics")
    p.add_argument("--weights", help="weights spec (default: Config.weights, casia-webface)")
    p.add_argument("--flip", action="store_true", help="average each embedding with its mirror image's (test-time augmentation)")
    p.add_argument("--limit-folds", type=int, metavar="N", help="only the first N folds of pairs.txt (quick check)")
    p.add_argument("--json", metavar="OUT", help="also write the full result as JSON to OUT")
    p.add_argument("--pairs", metavar="FILE", help="pairs list (default: <LFW>/pairs.txt; View 1 lists are split into 10 folds)")
    p.add_argument("--people", metavar="FILE", help="people list for retrieval (default: <LFW>/peopleDevTest.txt)")
    p.add_argument("--no-retrieval", action="store_true", help="skip the retrieval metrics")
    p.add_argument("--margin", type=int, help="crop margin in pixels of the 160 px crop (default: Config.margin)")
    p.add_argument(
        "--margin-units",
        choices=["crop", "image"],
        help="margin in pixels of the crop (default, scales with the face) or of the photo (Sandberg's original alignment)",
    )
    p.add_argument("--margins", metavar="LIST", help="sweep margins, e.g. 16,24,32,40,48 (verification only)")
    p.add_argument(
        "--subtract-mean",
        action="store_true",
        help="the published model's protocol: subtract the training folds' mean embedding, angular distance (not the search engine's distance)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rvs.eval.protocols import evaluate_lfw, format_report

    over = {"weights": args.weights} if args.weights else {}
    if args.margin_units:
        over["margin_units"] = args.margin_units
    cfg = Config.from_env(**over)
    common = dict(flip=args.flip, limit_folds=args.limit_folds, pairs_file=Path(args.pairs) if args.pairs else None, progress=not args.quiet)
    common["subtract_mean"] = args.subtract_mean
    if args.margins:
        margins = [int(m) for m in args.margins.split(",") if m.strip()]
        rows = [evaluate_lfw(cfg, margin=m, retrieval=False, **common) for m in margins]
        print(f"margin sweep on {rows[0]['pairs_file']} (flip={'on' if args.flip else 'off'}, model {rows[0]['model_id']})")
        print(f"{'margin':>6}  {'accuracy':>16}  {'AUC':>7}  {'best thr':>8}  {'fallback':>8}")
        for r in rows:
            v = r["verification"]
            print(
                f"{r['margin']:>6}  {v['accuracy_mean']:.4f} +- {v['accuracy_std']:.4f}  {v['roc_auc']:.4f}  {v['best_threshold']:8.3f}  "
                f"{r['verification_info']['fallback_centre_crops']:>8}"
            )
        best = max(rows, key=lambda r: (r["verification"]["accuracy_mean"], r["verification"]["roc_auc"]))
        print(f"best margin: {best['margin']}")
        out = {"sweep": rows, "best_margin": best["margin"]}
    else:
        out = evaluate_lfw(
            cfg,
            people_file=Path(args.people) if args.people else None,
            retrieval=not args.no_retrieval,
            margin=args.margin,
            **common,
        )
        print(format_report(out))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0
