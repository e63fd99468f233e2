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
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rvs.gallery.calibrate import calibrate_index
    from rvs.gallery.identify import REFERENCE_DIR, reference_from_index
    from rvs.gallery.store import FaceIndex

    over = {"open_set_fpir": args.fpir} if args.fpir is not None else {}
    cfg = Config.from_env(**over)
    d = args.index or cfg.index_dir
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
