"""`python -m rvs COMMAND ...`: everything the app does, headless.

Each command lives in `rvs/commands/<name>.py` with `register(subparsers)` that adds its parser
and sets `func(args) -> int`. User errors (`RvsError`) print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from rvs.errors import RvsError

COMMANDS = ["index", "gallery", "calibrate", "search", "video", "videos", "compare", "eval", "train", "push", "weights", "lfw"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rvs", description="rvs: reverse visual search for faces and video")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    from rvs.faces.embedders import REGISTRY

    parser.add_argument(
        "--model", choices=list(REGISTRY), help="face embedder (default: Config.model, RVS_MODEL); a gallery answers only queries of its own model"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"rvs.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"rvs.commands.{name}":
                continue  # command not built yet
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    before = os.environ.get("RVS_MODEL")
    if args.model:
        os.environ["RVS_MODEL"] = args.model  # every command reads its Config from the environment
    try:
        return int(args.func(args) or 0)
    except RvsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line unless --verbose
        if args.verbose:
            raise
        print(f"error: unexpected {type(e).__name__}: {e} (run with -v for the traceback)", file=sys.stderr)
        return 1
    finally:
        if args.model:  # an in-process caller (tests, notebooks) keeps its own environment
            if before is None:
                os.environ.pop("RVS_MODEL", None)
            else:
                os.environ["RVS_MODEL"] = before
