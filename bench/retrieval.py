"""Retrieval benchmark on full LFW: quality (rank-1, recall@k, mAP), Annoy vs exact, speed.

Every image of the people with >= 2 images is a probe; the gallery is all other LFW images
(leave-one-out). In the same run, the index is built the batched way and, on a sample, the
naive way (one image at a time, unbatched), and reported as a ratio.

    python bench/retrieval.py                 # full LFW (~15 min on 2 cores)
    python bench/retrieval.py --limit 2000    # quick subset

Prints a table and writes bench/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rvs.config import Config  # noqa: E402
from rvs.eval.metrics import average_precision, hits_matrix, overlap_recall, ranked_exact, recall_at  # noqa: E402
from rvs.faces.detect import FaceDetector, select_main_face  # noqa: E402
from rvs.faces.embedders import FaceEmbedder, create_embedder, embed_faces  # noqa: E402
from rvs.gallery.build import build_index  # noqa: E402
from rvs.gallery.search import SearchEngine  # noqa: E402
from rvs.gallery.store import FaceIndex  # noqa: E402
from rvs.imageio import load_image  # noqa: E402
from rvs.lfw.dataset import lfw_images_dir, lfw_root, read_pairs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
KS = (1, 5, 10, 20)


def naive_index_rate(paths: list[Path], config: Config, detector: FaceDetector, embedder: FaceEmbedder) -> float:
    """The naive way: one image at a time through detect -> embed, no batching. Images/second."""
    from annoy import AnnoyIndex

    ann = AnnoyIndex(embedder.spec.dim, "angular")
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        img = load_image(p)
        faces = detector.detect([img])[0]
        j = select_main_face(faces, img.size)
        if j is None:
            continue
        ann.add_item(i, embed_faces(embedder, [faces[j]])[0])
    ann.build(config.n_trees)
    return len(paths) / (time.perf_counter() - t0)


def pairs_by_model(cfg: Config, pairs_file: Path) -> dict:
    """LFW pairs.txt 10-fold verification of every registered model on the same detections (the
    LFW crop caches, rvs.eval.crops: one MTCNN pass, undetected faces cropped at the centre box),
    with each model's accuracy-optimal threshold and the distance letting about 1 in 3,000
    different-person pairs through (what video person mode uses)."""
    from rvs.eval.crops import CropCache, model_embeddings
    from rvs.eval.metrics import kfold_verification
    from rvs.faces.embedders import REGISTRY, get_spec

    pairs = read_pairs(pairs_file)
    a = [f"{p.name1}/{p.name1}_{p.num1:04d}.jpg" for p in pairs]
    b = [f"{p.name2}/{p.name2}_{p.num2:04d}.jpg" for p in pairs]
    uniq = sorted(set(a) | set(b))
    pos = {p: i for i, p in enumerate(uniq)}
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    cache = CropCache(cfg)
    out = {}
    for name in REGISTRY:
        e = model_embeddings(cache, uniq, name)
        d = np.linalg.norm(e[[pos[x] for x in a]] - e[[pos[x] for x in b]], axis=1)
        v = kfold_verification(d, same, folds, fars=(1e-3, 1e-2))
        neg = np.sort(d[~same])
        out[name] = {
            "title": get_spec(name).title,
            "accuracy_mean": v.accuracy_mean,
            "accuracy_std": v.accuracy_std,
            "best_threshold": v.best_threshold,
            "tar_at_far": v.to_dict()["tar_at_far"],
            # 1 of 3,000 different-person pairs at or below it.
            "threshold_1_in_3000": float(neg[0] + (neg[1] - neg[0]) / 2),
            "same_kept_at_1_in_3000": float(np.mean(d[same] <= neg[0] + (neg[1] - neg[0]) / 2)),
            "spec_match_threshold": get_spec(name).match_threshold,
            "spec_video_threshold": get_spec(name).video_threshold,
            "false_matches_at_video_threshold": int(np.sum(d[~same] <= get_spec(name).video_threshold)),
            "same_kept_at_video_threshold": float(np.mean(d[same] <= get_spec(name).video_threshold)),
        }
        print(f"  pairs.txt {name:8s}: {v.accuracy_mean:.4f} +- {v.accuracy_std:.4f}, best threshold {v.best_threshold:.3f}", flush=True)
    return out


def leave_one_out_annoy(index: FaceIndex, probes: np.ndarray, k: int, search_k: int) -> np.ndarray:
    """The Annoy backend as search uses it (forest over the principal axes, candidates re-ranked
    with the full embeddings), each probe's own row dropped."""
    out = np.full((len(probes), k), -1, np.int64)
    for s in range(0, len(probes), 256):
        chunk = probes[s : s + 256]
        ids, _ = index.search(index.embeddings[chunk], k + 1, exact=False, search_k=search_k)
        for r, (i, row) in enumerate(zip(chunk, ids)):
            row = [x for x in row if x != i and x >= 0][:k]
            out[s + r, : len(row)] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, help="only the first N LFW images (quick run)")
    ap.add_argument("--naive-sample", type=int, default=200, help="images indexed the naive way for the speed ratio")
    ap.add_argument("--queries", type=int, default=60, help="single-image queries timed end to end")
    ap.add_argument("--index-out", type=Path, help="where to keep the built index (default: Config.index_dir for a full run)")
    ap.add_argument("--reuse-index", action="store_true", help="skip the build if --index-out already holds a valid index")
    ap.add_argument("--out", type=Path, default=RESULTS / "retrieval.json")
    args = ap.parse_args()

    cfg = Config.from_env()
    root = lfw_images_dir(cfg)
    if not root.is_dir():
        print(f"LFW not found at {root}", file=sys.stderr)
        return 2
    index_out = args.index_out or (cfg.index_dir if not args.limit else cfg.cache_dir / "index" / f"lfw-{args.limit}")
    detector, embedder = FaceDetector(cfg), create_embedder(cfg)
    # warm-up so first-call costs do not land in either measurement
    warm = load_image(root / "George_W_Bush" / "George_W_Bush_0001.jpg")
    embed_faces(embedder, detector.detect([warm])[0][:1])

    all_paths = sorted(root.rglob("*.jpg"))
    if args.limit:
        all_paths = all_paths[: args.limit]
    rng = random.Random(0)
    naive_paths = rng.sample(all_paths, min(args.naive_sample, len(all_paths)))

    print(f"naive indexing of {len(naive_paths)} images, one at a time ...", flush=True)
    naive_rate = naive_index_rate(naive_paths, cfg, detector, embedder)

    build_seconds = None
    if args.reuse_index:
        try:
            index = FaceIndex.load(index_out, expect_model_id=embedder.model_id)
            print(f"reusing index at {index_out}")
        except Exception as e:  # noqa: BLE001 - any problem means: rebuild
            print(f"cannot reuse index ({e}); building")
            args.reuse_index = False
    if not args.reuse_index:
        t0 = time.perf_counter()
        index, summary = build_index(root, index_out, cfg, detector=detector, embedder=embedder, limit=args.limit)
        build_seconds = time.perf_counter() - t0
        print(json.dumps({k: v for k, v in summary.items() if k not in ("failure_messages",)}, indent=1))
    n_images = len(all_paths)
    batched_rate = n_images / build_seconds if build_seconds else None

    # ---- quality: leave-one-out over full LFW ----
    labels_str = np.array(index.meta["identity"])
    _, labels = np.unique(labels_str, return_inverse=True)
    counts_indexed = Counter(labels.tolist())
    per_person_images = Counter(p.parent.name for p in all_paths)
    # Probes: every image of people with >= 2 images; images lost to detection count as misses.
    n_probe_images = sum(c for c in per_person_images.values() if c >= 2)
    probes = np.array([i for i, lab in enumerate(labels) if counts_indexed[lab] >= 2])
    n_missing = n_probe_images - len(probes)
    emb = index.embeddings
    t0 = time.perf_counter()
    full_rank = ranked_exact(emb[probes], emb, k=None, exclude_self=probes)[:, :-1]  # drop self (last)
    exact_seconds = time.perf_counter() - t0
    hits_full = hits_matrix(full_rank, labels, labels[probes])
    n_rel = np.array([counts_indexed[labels[i]] - 1 for i in probes])
    scale = len(probes) / n_probe_images  # misses for probe images without a detected face
    rec = {k: v * scale for k, v in recall_at(hits_full, KS).items()}
    mean_ap = float(average_precision(hits_full, n_rel).sum() / n_probe_images)

    # ---- Annoy vs exact: pick the smallest search_k reaching recall@10 >= 0.99 ----
    exact10 = full_rank[:, :10]
    sweep = []
    sample = np.array(rng.sample(range(len(probes)), min(2000, len(probes))))
    for sk in (10_000, 25_000, 50_000, 100_000, 150_000, 250_000):
        t0 = time.perf_counter()
        approx = leave_one_out_annoy(index, probes[sample], 10, sk)
        ms = (time.perf_counter() - t0) / len(sample) * 1e3
        sweep.append({"search_k": sk, "recall_at_10": overlap_recall(approx, exact10[sample]), "ms_per_query": ms})
        print(f"  search_k={sk:>7}: annoy recall@10 vs exact {sweep[-1]['recall_at_10']:.4f}, {ms:.2f} ms/query", flush=True)
    t0 = time.perf_counter()
    approx_all = leave_one_out_annoy(index, probes, 20, cfg.search_k)
    annoy_ms = (time.perf_counter() - t0) / len(probes) * 1e3
    annoy_recall10 = overlap_recall(approx_all, exact10)
    annoy_rank1 = float(hits_matrix(approx_all, labels, labels[probes])[:, 0].mean() * scale)
    t0 = time.perf_counter()
    ranked_exact(emb[probes[:500]], emb, k=20)
    exact_ms = (time.perf_counter() - t0) / 500 * 1e3

    # ---- LFW pairs.txt verification from the same embeddings (calibrates match_threshold) ----
    verification = by_model = verification_index = None
    pairs_file = lfw_root(cfg) / "pairs.txt"
    if pairs_file.exists() and not args.limit:
        from rvs.eval.metrics import kfold_verification

        pos = {p: i for i, p in enumerate(index.meta["path"])}
        d, same, folds = [], [], []
        for pr in read_pairs(pairs_file):
            a = pos.get(f"{pr.name1}/{pr.name1}_{pr.num1:04d}.jpg")
            b = pos.get(f"{pr.name2}/{pr.name2}_{pr.num2:04d}.jpg")
            # a pair with an undetected face counts as wrong: distance on the wrong side
            d.append(np.linalg.norm(emb[a] - emb[b]) if a is not None and b is not None else (9.0 if pr.same else 0.0))
            same.append(pr.same)
            folds.append(pr.fold)
        v = kfold_verification(np.array(d), np.array(same), np.array(folds), fars=(1e-3, 1e-2))
        neg = np.sort(np.array(d)[~np.array(same)])
        # The index's embeddings; a pair with a photo where no face was detected counts as wrong.
        verification_index = {**v.to_dict(), "threshold_at_far_1e-3": float(neg[int(1e-3 * len(neg))])}
        print("pairs.txt per model (LFW crop caches, same detections):", flush=True)
        by_model = pairs_by_model(cfg, pairs_file)
        # The LFW protocol scores every pair: `python -m rvs eval`'s way (a photo where MTCNN finds
        # no face is cut at the median face box), for the default model.
        verification = {**by_model[cfg.model], "protocol": "every pair scored (undetected faces: centre box), as `python -m rvs eval`"}

    # ---- end-to-end single query: one 250x250 image, detect + embed + search ----
    engine = SearchEngine(index, cfg, detector=detector, embedder=embedder)
    qpaths = rng.sample(all_paths, min(args.queries, len(all_paths)))
    times = []
    for p in qpaths:
        t0 = time.perf_counter()
        try:
            engine.search(p, k=20, faces="largest")
        except Exception:  # noqa: BLE001 - a no-face image still costs its time
            pass
        times.append((time.perf_counter() - t0) * 1e3)

    result = {
        "dataset": "LFW deep-funneled" + (f" (first {args.limit} images)" if args.limit else ""),
        "model_id": embedder.model_id,
        "n_gallery": len(index),
        "n_images": n_images,
        "n_identities": int(index.n_identities),
        "n_probes": n_probe_images,
        "n_probes_without_face": n_missing,
        "rank1": rec[1],
        "recall_at": {str(k): rec[k] for k in KS},
        "map": mean_ap,
        "annoy_rank1": annoy_rank1,
        "annoy_recall_at_10_vs_exact": annoy_recall10,
        "annoy": {"n_trees": index.n_trees, "search_k": cfg.search_k, "ms_per_query": annoy_ms, "sweep": sweep},
        "exact_ms_per_query": exact_ms,
        "annoy_speedup_vs_exact": exact_ms / annoy_ms,
        "exact_full_ranking_seconds": exact_seconds,
        "index_build_seconds": build_seconds,
        "images_per_second": batched_rate,
        "naive_images_per_second": naive_rate,
        "naive_sample": len(naive_paths),
        "batched_speedup_vs_naive": (batched_rate / naive_rate) if batched_rate else None,
        "naive_full_index_seconds_extrapolated": n_images / naive_rate,
        "query_ms_p50": float(np.percentile(times, 50)),
        "query_ms_p95": float(np.percentile(times, 95)),
        "model": cfg.model,
        "verification_pairs_txt": verification,
        "verification_pairs_txt_index": verification_index,
        # Every model on the same detections, the default's figure from its full index above.
        "verification_by_model": by_model,
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print_table(result)
    print(f"\nwrote {args.out}")
    return 0


def print_table(r: dict) -> None:
    rows = [
        ("gallery faces / identities", f"{r['n_gallery']} / {r['n_identities']}"),
        ("probes (without face)", f"{r['n_probes']} ({r['n_probes_without_face']})"),
        ("rank-1 (exact)", f"{r['rank1']:.4f}"),
        ("recall@1/5/10/20", " / ".join(f"{r['recall_at'][k]:.4f}" for k in ("1", "5", "10", "20"))),
        ("mAP", f"{r['map']:.4f}"),
        ("rank-1 (annoy)", f"{r['annoy_rank1']:.4f}"),
        ("annoy recall@10 vs exact", f"{r['annoy_recall_at_10_vs_exact']:.4f}"),
        ("annoy / exact ms per query", f"{r['annoy']['ms_per_query']:.2f} / {r['exact_ms_per_query']:.2f}"),
        ("index build seconds", f"{r['index_build_seconds']:.0f}" if r["index_build_seconds"] else "reused"),
        ("images/s batched / naive", f"{r['images_per_second'] or 0:.1f} / {r['naive_images_per_second']:.1f}"),
        ("batched speedup vs naive", f"{r['batched_speedup_vs_naive'] or 0:.2f}x"),
        ("naive full index (extrapolated)", f"{r['naive_full_index_seconds_extrapolated']:.0f} s"),
        ("query ms p50 / p95", f"{r['query_ms_p50']:.0f} / {r['query_ms_p95']:.0f}"),
    ]
    v, vi = r.get("verification_pairs_txt"), r.get("verification_pairs_txt_index")
    if v:
        rows += [
            ("LFW pairs.txt accuracy (every pair)", f"{v['accuracy_mean']:.4f} +- {v['accuracy_std']:.4f}"),
            ("  from the index (misses wrong)", f"{vi['accuracy_mean']:.4f} +- {vi['accuracy_std']:.4f}"),
            ("best threshold / at FAR 1e-3", f"{v['best_threshold']:.3f} / {vi['threshold_at_far_1e-3']:.3f}"),
        ]
        for name, m in (r.get("verification_by_model") or {}).items():
            rows.append((f"  {name}", f"{m['accuracy_mean']:.4f}; false matches at the video threshold {m['false_matches_at_video_threshold']} / 3000"))
    w = max(len(a) for a, _ in rows)
    print()
    for a, b in rows:
        print(f"{a:<{w}}  {b}")


if __name__ == "__main__":
    raise SystemExit(main())
