"""`python -m rvs lfw download [--dest DIR] [--url BASE]`: fetch LFW onto a fresh machine
(deep-funneled images + pairs.txt + View 1 lists; see `rvs.lfw.download`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rvs.config import Config


def register(sub) -> None:
    p = sub.add_parser("lfw", help="download LFW (images + protocol lists) for evaluation and training")
    act = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    d = act.add_parser("download", help="fetch what is missing, verify it, resume an interrupted download")
    d.add_argument("--dest", help="LFW folder to fill (default: <RVS_DATA>/lfw, where rvs looks for it)")
    d.add_argument("--url", help="base URL of the files (default: RVS_LFW_URL, else the LFW site)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rvs.lfw.dataset import lfw_root
    from rvs.lfw.download import download_lfw

    cfg = Config.from_env()
    dest = Path(args.dest) if args.dest else lfw_root(cfg)
    done = download_lfw(dest, args.url, progress=not args.quiet)
    new = [k for k, v in done.items() if v]
    print(f"LFW ready in {dest} ({'downloaded: ' + ', '.join(new) if new else 'everything was already there'})")
    if dest.resolve() != lfw_root(cfg).resolve():
        print(f"  rvs reads LFW from <RVS_DATA>/lfw: set RVS_DATA={dest.parent} (and name the folder lfw)")
    return 0
