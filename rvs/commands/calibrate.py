"""`python -m rvs calibrate [--index DIR]`: (re)compute a gallery's open-set calibration.

Index builds calibrate on their own; this command updates an index built before calibration
existed, or with another target (`--fpir`). `--make-reference` writes the reference set that rvs
ships for a model (rvs/data/reference/) from a full LFW index, or with `--lfw` from the LFW crop
and embedding caches of `--model` (rvs.eval.crops; maintainers only).
"""

from __future__ import annotations

import argparse
import json

from rvs.config import Config


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="compute a gallery's open-set threshold and probability model")
    p.add_argument("--index", help="index folder (default: Config.index_dir, RVS_INDEX_DIR)")
    p.add_argument("--fpir", type=float, help="target share of people not in the gallery who get a name (default 0.01)")
    p.add_argument("--make-reference", action="store_true", help="write rvs/data/reference/<model>.* from this (full LFW) index")
    p.add_argument("--lfw", action="store_true", help="with --make-reference: from every LFW photo's main face (evaluation caches), not an index")
    p.add_argument(
        "--verification", action="store_true",
        help="write rvs/data/verification/<model>.json: the 1:1 'same person?' calibration on LFW pairs.txt (`--model`; maintainers only)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rvs.gallery.calibrate import calibrate_index
    from rvs.gallery.identify import REFERENCE_DIR, reference_from_index
    from rvs.gallery.store import FaceIndex

    over = {"open_set_fpir": args.fpir} if args.fpir is not None else {}
    cfg = Config.from_env(**over)
    d = args.index or cfg.index_dir
    if args.verification:
        return _verification(cfg, args.json)
    if args.make_reference and args.lfw:
        from rvs.eval.crops import CropCache, model_embeddings
        from rvs.faces.embedders import create_embedder
        from rvs.lfw.dataset import lfw_images_dir

        images = lfw_images_dir(cfg)
        paths = sorted(str(p.relative_to(images)) for p in images.glob("*/*.jpg"))
        emb = model_embeddings(CropCache(cfg), paths, cfg.model)
        ref = reference_from_index(emb, [p.split("/")[0] for p in paths], create_embedder(cfg).model_id)
        stem = ref.save(REFERENCE_DIR)
        print(f"wrote {stem}.*: {len(ref.strangers)} strangers, {len(ref.people_names)} people with 2-4 photos")
        return 0
    index = FaceIndex.load(d)
    if args.make_reference:
        ref = reference_from_index(index.embeddings, index.meta["identity"], index.model_id)
        stem = ref.save(REFERENCE_DIR)
        print(f"wrote {stem}.*: {len(ref.strangers)} strangers, {len(ref.people_names)} people with 2-4 photos")
        return 0
    info = calibrate_index(index, cfg)
    index.save(d)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(describe_calibration(info))
    return 0


def describe_calibration(info: dict | None) -> str:
    if not info:
        return "not calibrated: too few people or photos to tell strangers from gallery people; this gallery names no one"
    st = info["stats"]
    return (
        f"open-set calibration: a face is named when P(right) > {info['threshold']:.3f} "
        f"(target FPIR {info['target_fpir']:.3g}; on calibration strangers {st['fpir_calibration']:.4f}, 95% bound "
        f"{st['fpir_upper_bound_95']:.4f}; {st['identities']} people, {info['source']})"
    )


def _verification(cfg: Config, as_json: bool) -> int:
    """Fit and write the model's 1:1 calibration from the LFW crop and embedding caches."""
    import numpy as np

    from rvs.eval.crops import CropCache, model_embeddings
    from rvs.eval.metrics import assign_folds
    from rvs.eval.protocols import pair_paths
    from rvs.eval.verification import fit_verification
    from rvs.faces.embedders import create_embedder
    from rvs.faces.verification import DATA, calibration_file
    from rvs.fileio import write_json_atomic
    from rvs.lfw.dataset import lfw_root, read_pairs

    pairs = read_pairs(lfw_root(cfg) / "pairs.txt")
    a, b = pair_paths(pairs)
    uniq = sorted(set(a) | set(b))
    emb = model_embeddings(CropCache(cfg), uniq, cfg.model)
    pos = {p: i for i, p in enumerate(uniq)}
    dist = np.linalg.norm(emb[[pos[p] for p in a]] - emb[[pos[p] for p in b]], axis=1)
    cal, report = fit_verification(create_embedder(cfg).model_id, dist, np.array([p.same for p in pairs]), assign_folds(pairs))
    DATA.mkdir(parents=True, exist_ok=True)
    out = calibration_file(cal.model_id)
    write_json_atomic(out, {**cal.to_dict(), "held_out": report, "source": "LFW pairs.txt, 10 folds (rvs.eval.verification)"})
    if as_json:
        print(json.dumps({**cal.to_dict(), "held_out": report}, indent=1))
    else:
        print(
            f"wrote {out}: same person at distance <= {cal.same_threshold:.3f} (held-out false accepts {cal.far_at_same:.4f}), "
            f"different people at >= {cal.different_threshold:.3f} (held-out false rejects {cal.frr_at_different:.4f}), "
            f"unsure between ({report['unsure_share']:.1%} of pairs); probability ECE {cal.ece:.4f}"
        )
    return 0
