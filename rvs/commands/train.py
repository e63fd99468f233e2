"""`python -m rvs train improved|baseline --config FILE [--override key=value ...]`.

Settings: rvs.train.config.TrainConfig defaults, then the JSON config (top-level keys, then the
section named after the model), then the overrides. Resumes from `out_dir` when a checkpoint
is there. See train/configs/ for the CPU smoke and GPU full configs.
"""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("train", help="train the improved (encoder + decoder) or baseline (ResNet-50) model on LFW View 1")
    p.add_argument("model", choices=["improved", "baseline"])
    p.add_argument("--config", metavar="FILE", help="JSON training config (e.g. train/configs/smoke.json)")
    p.add_argument(
        "--override", "-o", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="override settings, e.g. max_steps=50 lr=1e-4"
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rvs.train.config import TrainConfig

    cfg = TrainConfig.from_sources(args.model, args.config, args.override)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    from rvs.train.loop import train

    res = train(cfg, progress=not args.quiet)
    print(f"{res.model}: {res.steps} steps in {res.seconds:.0f}s, loss {res.loss_first} -> {res.loss_last}  ({res.out_dir})")
    for n in res.notes:
        print(f"  {n}")
    if res.test:
        v, r = res.test["verification"], res.test["retrieval"]
        print(
            f"  View 1 test people: verification {v['accuracy_mean']:.4f} +- {v['accuracy_std']:.4f} (AUC {v['roc_auc']:.4f}), "
            f"rank-1 {r.get('rank1', float('nan')):.4f}, mAP {r.get('mAP', float('nan')):.4f}"
        )
    if res.export:
        print(f"  exported {res.export['path']} (model_id {res.export['model_id']}); load with --weights {res.export['path']}")
    return 0
