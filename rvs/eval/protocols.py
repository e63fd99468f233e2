"""LFW evaluation: 10-fold verification on pairs.txt and leave-one-out retrieval on View 1 people.

Pipeline: every image named by the protocol -> main face (MTCNN, `align_main_faces`) -> 160x160
crop -> unit embedding (FaceNet, or any `EmbedFn`) -> Euclidean distance between unit embeddings (0..2).

The crops and embeddings come from `rvs.eval.crops`; the metrics from `rvs.eval.metrics`.

Verification follows the LFW View 2 protocol: the threshold is chosen on nine folds and the
accuracy measured on the tenth. The best threshold over all pairs is what calibrates
`Config.match_threshold` (the "same person" distance of the search engine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rvs.config import Config
from rvs.errors import RvsError
from rvs.eval.crops import CropCache, EmbedFn, default_embedder, embed_crops, embedding_cache_id
from rvs.eval.metrics import (
    RECALL_KS,
    VerificationResult,
    assign_folds,
    kfold_verification,
    retrieval_metrics,
    subtract_mean_distances,
)
from rvs.lfw.dataset import Pair, lfw_images_dir, lfw_root, read_pairs, read_people

log = logging.getLogger(__name__)


def people_images(people: dict[str, int]) -> tuple[list[str], np.ndarray, list[str]]:
    """(relative image paths, integer labels, names) for a `read_people` dict, all images of each."""
    paths, labels, names = [], [], []
    for k, (name, count) in enumerate(sorted(people.items())):
        names.append(name)
        for num in range(1, count + 1):
            paths.append(f"{name}/{name}_{num:04d}.jpg")
            labels.append(k)
    return paths, np.array(labels, np.int64), names


def pair_paths(pairs: Sequence[Pair]) -> tuple[list[str], list[str]]:
    a = [f"{p.name1}/{p.name1}_{p.num1:04d}.jpg" for p in pairs]
    b = [f"{p.name2}/{p.name2}_{p.num2:04d}.jpg" for p in pairs]
    return a, b


def verify_pairs(
    pairs: Sequence[Pair],
    cache: CropCache,
    embed_fn: EmbedFn,
    model_id: str | None,
    flip: bool = False,
    margin: int | None = None,
    progress: bool = True,
    subtract_mean: bool = False,
) -> tuple[VerificationResult, dict]:
    """Verification result for `pairs` plus a summary dict (fallback crops, timings).

    subtract_mean: score with `subtract_mean_distances` (the published model's protocol)."""
    t0 = time.perf_counter()
    a, b = pair_paths(pairs)
    uniq = sorted(set(a) | set(b))
    crops = cache.get(uniq, margin=margin)
    t1 = time.perf_counter()
    emb = embed_crops(crops, embed_fn, model_id, cache, flip=flip, progress=progress)
    pos = {p: i for i, p in enumerate(uniq)}
    ea, eb = emb[[pos[p] for p in a]], emb[[pos[p] for p in b]]
    same = np.array([p.same for p in pairs])
    if subtract_mean:
        res = kfold_verification(None, same, assign_folds(pairs), dist_for_fold=subtract_mean_distances(ea, eb))
    else:
        res = kfold_verification(np.linalg.norm(ea - eb, axis=1), same, assign_folds(pairs))
    fb = [p for p, f in zip(crops.paths, crops.found) if not f]
    info = {
        "images": len(uniq),
        "fallback_centre_crops": len(fb),
        "fallback_examples": fb[:10],
        "align_seconds": round(t1 - t0, 1),
        "embed_seconds": round(time.perf_counter() - t1, 1),
    }
    return res, info


def retrieval_on_people(
    people_file: Path,
    cache: CropCache,
    embed_fn: EmbedFn,
    model_id: str | None,
    flip: bool = False,
    progress: bool = True,
) -> dict:
    paths, labels, _ = people_images(read_people(people_file))
    crops = cache.get(paths)
    emb = embed_crops(crops, embed_fn, model_id, cache, flip=flip, progress=progress)
    out = retrieval_metrics(emb, labels)
    out["fallback_centre_crops"] = crops.n_fallback
    return out


def reference_center(config: Config, people_file: Path | None = None, progress: bool = True) -> tuple[np.ndarray, str, dict]:
    """Mean raw embedding (centring off, float32) of every image of the people in `people_file`
    (default: LFW View 1 training people, peopleDevTrain.txt: 4,038 people, 9,525 images, none of
    them a View 1 test person). Returns (centre, weights model id, provenance)."""
    import dataclasses

    people_file = Path(people_file or lfw_root(config) / "peopleDevTrain.txt")
    cfg = dataclasses.replace(config, center_embeddings=False, embed_precision="fp32")
    from rvs.faces.embed import Embedder

    emb = Embedder(cfg)
    cache = CropCache(cfg, progress=progress)
    paths, _, names = people_images(read_people(people_file))
    crops = cache.get(paths)
    e = embed_crops(crops, emb.embed, embedding_cache_id(emb), cache, progress=progress)
    provenance = {
        "reference": f"LFW {people_file.name} (deep-funneled), every image",
        "people": len(names),
        "images": len(paths),
        "fallback_centre_crops": crops.n_fallback,
        "margin": cfg.margin,
        "margin_units": cfg.margin_units,
        "precision": "fp32",
        "made_by": "python -m rvs weights center",
    }
    return e.mean(axis=0).astype(np.float32), emb.model_id, provenance


def evaluate_view1_test(
    config: Config,
    embed_fn: EmbedFn,
    model_id: str | None,
    flip: bool = False,
    cache: CropCache | None = None,
    progress: bool = True,
) -> dict:
    """Scores on the View 1 test people only (people never seen by rvs.train): verification on
    pairsDevTest.txt (1,000 pairs, 10-fold cross-validated threshold) and leave-one-out
    retrieval over all their images, from one embedding pass."""
    root = lfw_root(config)
    cache = cache or CropCache(config, progress=progress)
    paths, labels, _ = people_images(read_people(root / "peopleDevTest.txt"))
    pairs = read_pairs(root / "pairsDevTest.txt")
    a, b = pair_paths(pairs)
    known = set(paths)
    extra = sorted((set(a) | set(b)) - known)  # none for the real lists; kept for safety
    crops = cache.get(paths + extra)
    emb = embed_crops(crops, embed_fn, model_id, cache, flip=flip, progress=progress)
    pos = {p: i for i, p in enumerate(crops.paths)}
    dist = np.linalg.norm(emb[[pos[p] for p in a]] - emb[[pos[p] for p in b]], axis=1)
    same = np.array([p.same for p in pairs])
    return {
        "model_id": model_id,
        "flip": flip,
        "verification": kfold_verification(dist, same, assign_folds(pairs)).to_dict(),
        "retrieval": retrieval_metrics(emb[: len(paths)], labels),
        "images": len(crops.paths),
        "fallback_centre_crops": crops.n_fallback,
    }


def evaluate_lfw(
    config: Config,
    weights: str | None = None,
    flip: bool = False,
    limit_folds: int | None = None,
    pairs_file: Path | None = None,
    people_file: Path | None = None,
    retrieval: bool = True,
    margin: int | None = None,
    embed_fn: EmbedFn | None = None,
    model_id: str | None = None,
    progress: bool = True,
    subtract_mean: bool = False,
) -> dict:
    """Full evaluation as a JSON-ready dict: verification on `pairs_file` (default pairs.txt),
    and retrieval on `people_file` (default peopleDevTest.txt) unless retrieval=False."""
    root = lfw_root(config)
    pairs_file = Path(pairs_file or root / "pairs.txt")
    people_file = Path(people_file or root / "peopleDevTest.txt")
    for f in (pairs_file, lfw_images_dir(config)):
        if not f.exists():
            raise RvsError(f"{f}: not found (LFW lives in {root}; set RVS_DATA)")
    pairs = read_pairs(pairs_file)
    if limit_folds:
        pairs = [p for p in pairs if p.fold < limit_folds]
    cache = CropCache(config, progress=progress)
    if embed_fn is None:
        embed_fn, model_id = default_embedder(config, weights)
    res, info = verify_pairs(pairs, cache, embed_fn, model_id, flip=flip, margin=margin, progress=progress, subtract_mean=subtract_mean)
    out = {
        "model_id": model_id,
        "pairs_file": pairs_file.name,
        "flip": flip,
        "distance": "angular, training-fold mean subtracted" if subtract_mean else "euclidean (unit embeddings)",
        "margin": config.margin if margin is None else margin,
        "margin_units": config.margin_units,
        "verification": res.to_dict(),
        "verification_info": info,
    }
    if retrieval and people_file.exists():
        out["retrieval"] = retrieval_on_people(people_file, cache, embed_fn, model_id, flip=flip, progress=progress)
        out["retrieval"]["people_file"] = people_file.name
    return out


def format_report(result: dict) -> str:
    """Plain-text table of an `evaluate_lfw` result."""
    v = result["verification"]
    info = result.get("verification_info", {})
    lines = [
        f"model       {result.get('model_id')}",
        f"protocol    {result.get('pairs_file')}: {v['n_pairs']} pairs, {len(v['fold_accuracies'])} folds, "
        f"flip={'on' if result.get('flip') else 'off'}, margin={result.get('margin')} px of the {result.get('margin_units', 'crop')}",
        f"distance    {result.get('distance', 'euclidean (unit embeddings)')}",
        f"images      {info.get('images', '?')} ({info.get('fallback_centre_crops', 0)} without a detected face: centre crop)",
        "",
        "verification",
        f"  accuracy          {v['accuracy_mean']:.4f} +- {v['accuracy_std']:.4f}",
        f"  ROC AUC           {v['roc_auc']:.4f}",
    ]
    for far, tar in v.get("tar_at_far", {}).items():
        lines.append(f"  TAR @ FAR={far:<7} {tar:.4f}")
    lines += [
        f"  fold thresholds   {min(v['fold_thresholds']):.3f} .. {max(v['fold_thresholds']):.3f}",
        f"  best threshold    {v['best_threshold']:.3f}  (accuracy {v['best_threshold_accuracy']:.4f} on all pairs)",
    ]
    if result.get("distance", "euclidean").startswith("euclidean"):
        lines.append(f"  -> match_threshold = {v['best_threshold']:.2f}  (Euclidean distance between unit embeddings; RVS_MATCH_THRESHOLD)")
    else:
        lines.append(f"  (distance: {result['distance']}; not a match_threshold value)")
    r = result.get("retrieval")
    if r and r.get("queries"):
        lines += [
            "",
            f"retrieval ({r.get('people_file', '')}: {r['gallery']} images, {r['identities']} people, {r['queries']} queries, leave-one-out)",
            "  " + "  ".join(f"{k:>9}" for k in ["rank1", *[f"recall@{k}" for k in RECALL_KS if k != 1], "mAP"]),
            "  " + "  ".join(f"{r[k]:9.4f}" for k in ["rank1", *[f"recall@{k}" for k in RECALL_KS if k != 1], "mAP"]),
        ]
    return "\n".join(lines)
