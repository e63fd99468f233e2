"""`python -m rvs compare PHOTO_A PHOTO_B`: the same person in both photos? (calibrated 1:1 answer)"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="are the faces in two photos the same person? (calibrated on LFW pairs)",
        description=(
            "Compare one face of each photo (default: the main face, large and central; --face-a/--face-b N: "
            "the N-th largest) and answer 'same person' (with its probability), 'different people' or 'unsure', "
            "from the model's 1:1 calibration on LFW pairs.txt."
        ),
    )
    p.add_argument("photo_a", metavar="PHOTO_A")
    p.add_argument("photo_b", metavar="PHOTO_B")
    p.add_argument("--face-a", type=int, default=None, metavar="N")
    p.add_argument("--face-b", type=int, default=None, metavar="N")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rvs.app.answers import compare_line
    from rvs.config import Config
    from rvs.faces.compare import compare_faces
    from rvs.faces.detect import FaceDetector
    from rvs.faces.embedders import create_embedder

    cfg = Config.from_env()
    c = compare_faces(args.photo_a, args.photo_b, FaceDetector(cfg), create_embedder(cfg), cfg, args.face_a, args.face_b, (args.photo_a, args.photo_b))
    print(json.dumps(c.to_dict(), indent=1) if args.json else compare_line(c))
    return 0
