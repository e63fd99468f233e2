"""Open-set identification on LFW: does rvs name only the people who are in the gallery?

Protocol (people-disjoint, 10 folds):
- Gallery "full": the people with >= 2 indexed photos (1,680 in LFW; 1,679 here: one photo has
  no detectable face). All their photos but one are enrolled; the held-out photo (chosen at
  random, seed 0) is that person's mated probe.
- Gallery "starter": the app's starter gallery, the 300 people with the most photos, their first
  3 photos each; the mated probe is a random other photo of each.
- Non-mated probes: the people with exactly one photo (4,069; none is in either gallery).
- People (mated and non-mated) are split into 10 folds. For each fold, everything that is chosen
  or fitted (the app's gallery calibration from its reference strangers/people, thresholds for
  FPIR 1% / 0.1%, the naive baselines' thresholds) uses the other 9 folds' people only, and is
  measured on the held-out fold's probes. Figures are means over the 10 held-out folds.
- FPIR: share of non-mated probes that get any name. DIR: share of mated probes named with
  the right name. "at_threshold" is the app's operating point: rvs.gallery.identify.calibrate on the
  gallery (leave-one-out + leave-one-identity-out examples from the gallery itself + reference
  strangers/people from the training folds), target FPIR `Config.open_set_fpir`.
- Calibration: the probability shown to users, P(named identity is right), measured on the
  held-out probes (expected calibration error, 10 equal-width bins), over all probes and over
  the named ones.
- The naive ways, side by side: the nearest gallery photo under `match_threshold` (1.15, the 1:1
  verification threshold the app used before) with the old vote share as "confidence"; and the
  raw nearest-photo distance with its threshold chosen for FPIR 1% on the training folds.

- Three answers: "named" (P above the operating point), "possible" (P in the calibrated band
  below it: "possibly NAME (P%)") and "no match". false_absence_rate: mated probes answered "no
  match" although their rank-1 gallery identity is the right person; possible.stranger_rate:
  non-mated probes answered "possible"; possible.right_rate: "possible" answers whose candidate
  is the right person.
- Models (`models`): FaceNet, SFace and their fusion at several SFace weights, all on the same
  detections (one MTCNN pass over LFW, rvs.eval.crops). The default is chosen on training folds
  only: for each held-out fold, the model with the best DIR at the operating point (then FPIR)
  on the other nine folds' probes; `choice` says which model each fold's training folds chose,
  and the headline figures ("full", "starter", "calibration") are the chosen model's.

Embeddings come from the LFW crop and embedding caches (built on first use: one MTCNN pass, then
each model; ~10 min on 2 cores). Prints a table, writes bench/results/openset.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rvs.config import Config  # noqa: E402
from rvs.eval.crops import CropCache, model_embeddings  # noqa: E402
from rvs.faces.embedders import get_spec  # noqa: E402
from rvs.faces.embedders.fused import combine  # noqa: E402
from rvs.gallery.identify import Reference, Templates, calibrate, query_features  # noqa: E402
from rvs.lfw.dataset import lfw_images_dir  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FOLDS = 10


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over equal-width bins of |mean p - mean y| x share."""
    if len(p) == 0:
        return float("nan")
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(total)


def split(identities: list[str], seed: int = 0):
    ids = np.array(identities)
    by: dict[str, list[int]] = defaultdict(list)
    for i, n in enumerate(ids):
        by[n].append(i)
    rng = np.random.default_rng(seed)
    people = sorted(by)
    fold_of = dict(zip(people, rng.permutation(len(people)) % FOLDS))
    multi = [n for n in people if len(by[n]) >= 2]
    single = [n for n in people if len(by[n]) == 1]
    return ids, by, fold_of, multi, single, rng


def reference_from(emb: np.ndarray, by: dict, strangers: list[str], people: list[str], model_id: str) -> Reference:
    """A reference set like the shipped one, from training-fold people only."""
    pe = [n for n in people if len(by[n]) >= 2]
    return Reference(
        model_id,
        strangers,
        emb[[by[n][0] for n in strangers]] if strangers else np.zeros((0, emb.shape[1]), np.float32),
        pe,
        emb[[i for n in pe for i in by[n][:4]]] if pe else np.zeros((0, emb.shape[1]), np.float32),
        [min(len(by[n]), 4) for n in pe],
    )


def evaluate_gallery(name: str, emb, ids, by, fold_of, gallery_rows, mated_probe, single, cfg: Config, log, match_thr: float) -> dict:
    """All metrics for one gallery. mated_probe: person -> probe row (people in the gallery)."""
    g_ids = [ids[i] for i in gallery_rows]
    t = Templates.from_gallery(emb[gallery_rows], g_ids)
    in_gallery = set(g_ids)
    mated_people = sorted(mated_probe)
    m_rows = np.array([mated_probe[n] for n in mated_people])
    m_fold = np.array([fold_of[n] for n in mated_people])
    n_rows = np.array([by[n][0] for n in single])
    n_fold = np.array([fold_of[n] for n in single])
    xm, tm, _ = query_features(t, emb[m_rows])
    xn, _, _ = query_features(t, emb[n_rows])
    correct_m = np.array([t.names[j] for j in tm]) == np.array(mated_people)
    # Naive: nearest gallery photo (exact), with the 1:1 verification threshold.
    g = emb[gallery_rows]
    gl = np.array(g_ids)

    def nearest(q):
        s = q @ g.T
        j = s.argmax(1)
        return gl[j], np.sqrt(np.clip(2 - 2 * s[np.arange(len(q)), j], 0, None))

    nm_id, nm_d = nearest(emb[m_rows])
    _, nn_d = nearest(emb[n_rows])
    nm_ok = nm_id == np.array(mated_people)
    others = sorted(n for n in by if len(by[n]) >= 2 and n not in in_gallery)

    per_fold = []
    all_p, all_y, all_named = [], [], []
    for f in range(FOLDS):
        t0 = time.perf_counter()
        tr_single = [n for n in single if fold_of[n] != f]
        tr_people = [n for n in others if fold_of[n] != f]
        ref = reference_from(emb, by, tr_single, tr_people, "bench")
        model = calibrate(
            emb[gallery_rows], g_ids, ref, target_fpir=cfg.open_set_fpir, prior=cfg.open_set_prior,
            min_probability=cfg.open_set_min_probability, possible_fpir=cfg.open_set_possible_fpir,
        )
        pm, pn = model.probability(xm), model.probability(xn)
        te_m, te_n = m_fold == f, n_fold == f
        tr_n = ~te_n
        thr = model.threshold
        row = {
            "fold": f,
            "mated": int(te_m.sum()),
            "non_mated": int(te_n.sum()),
            "threshold": thr,
            "fpir_at_threshold": float(np.mean(pn[te_n] > thr)),
            "dir_at_threshold": float(np.mean((pm[te_m] > thr) & correct_m[te_m])),
            "possible_threshold": model.possible_threshold,
            # Mated probes whose rank-1 identity is right but who are told "no match".
            "false_absence_rate": float(np.mean(pm[te_m & correct_m] < model.possible_threshold)) if (te_m & correct_m).any() else 0.0,
            "possible_stranger_rate": float(np.mean((pn[te_n] >= model.possible_threshold) & (pn[te_n] <= thr))),
            "possible_mated": int(np.sum(te_m & (pm >= model.possible_threshold) & (pm <= thr))),
            "possible_mated_right": int(np.sum(te_m & (pm >= model.possible_threshold) & (pm <= thr) & correct_m)),
            "possible_non_mated": int(np.sum(te_n & (pn >= model.possible_threshold) & (pn <= thr))),
            "closed_set_rank1": float(np.mean(correct_m[te_m])),
            "naive_rank1": float(np.mean(nm_ok[te_m])),
            "naive_1to1_fpir": float(np.mean(nn_d[te_n] < match_thr)),
            "naive_1to1_dir": float(np.mean((nm_d[te_m] < match_thr) & nm_ok[te_m])),
        }
        for target, key in ((0.01, "0_01"), (0.001, "0_001")):
            th = float(np.quantile(pn[tr_n], 1 - target))
            row[f"fpir_at_fpir_{key}"] = float(np.mean(pn[te_n] > th))
            row[f"dir_at_fpir_{key}"] = float(np.mean((pm[te_m] > th) & correct_m[te_m]))
            dth = float(np.quantile(nn_d[tr_n], target))
            row[f"naive_distance_fpir_at_fpir_{key}"] = float(np.mean(nn_d[te_n] < dth))
            row[f"naive_distance_dir_at_fpir_{key}"] = float(np.mean((nm_d[te_m] < dth) & nm_ok[te_m]))
        per_fold.append(row)
        p = np.concatenate([pm[te_m], pn[te_n]])
        y = np.concatenate([correct_m[te_m], np.zeros(te_n.sum(), bool)])
        all_p.append(p)
        all_y.append(y)
        all_named.append(p > thr)
        log(
            f"{name} fold {f}: FPIR {row['fpir_at_threshold']:.4f} DIR {row['dir_at_threshold']:.4f} "
            f"(threshold p>{thr:.3f}, {time.perf_counter() - t0:.1f} s)"
        )
    counts = ("possible_mated", "possible_mated_right", "possible_non_mated")
    mean = {k: float(np.mean([r[k] for r in per_fold])) for k in per_fold[0] if k != "fold" and k not in counts}
    tot = {k: int(sum(r[k] for r in per_fold)) for k in counts}
    n_possible = tot["possible_mated"] + tot["possible_non_mated"]
    p, y, named = np.concatenate(all_p), np.concatenate(all_y).astype(float), np.concatenate(all_named)
    out = {
        "gallery_people": len(t),
        "gallery_photos": len(gallery_rows),
        "mated_probes": len(m_rows),
        "non_mated_probes": len(n_rows),
        **{k: round(v, 4) for k, v in mean.items() if k not in ("mated", "non_mated")},
        "fpir_at_threshold_max_fold": round(max(r["fpir_at_threshold"] for r in per_fold), 4),
        "possible": {
            "stranger_rate": round(mean["possible_stranger_rate"], 4),
            # Of all "possibly NAME" answers (mated and non-mated probes), the share where NAME is right.
            "right_rate": round(tot["possible_mated_right"] / n_possible, 4) if n_possible else None,
            "answers": n_possible,
            **tot,
        },
        "calibration": {
            "ece": round(ece(p, y), 4),
            "ece_named": round(ece(p[named], y[named]), 4),
            "named": int(named.sum()),
            "mean_probability_named": round(float(p[named].mean()), 4),
            "accuracy_named": round(float(y[named].mean()), 4),
        },
        "folds": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in per_fold],
    }
    return out


MODEL_KEYS = ("fpir_at_threshold", "dir_at_threshold", "dir_at_fpir_0_01", "dir_at_fpir_0_001", "closed_set_rank1", "false_absence_rate")


def summary(r: dict) -> dict:
    return {
        **{k: r[k] for k in MODEL_KEYS},
        "possible": {k: r["possible"][k] for k in ("stranger_rate", "right_rate")},
        "ece": r["calibration"]["ece"],
    }


def choose(results: dict[str, dict]) -> tuple[str, list[str]]:
    """The model chosen on training folds: for each held-out fold f, the best DIR at the operating
    point (ties: lower FPIR) over the other folds; the most frequent choice wins."""
    picks = []
    for f in range(FOLDS):
        def score(name: str, f: int = f) -> tuple[float, float]:
            rows = [r for r in results[name]["full"]["folds"] if r["fold"] != f]
            return float(np.mean([r["dir_at_threshold"] for r in rows])), -float(np.mean([r["fpir_at_threshold"] for r in rows]))

        picks.append(max(results, key=score))
    return max(set(picks), key=picks.count), picks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="0.5,0.6,0.7,0.8", help="SFace weights of the fused model to compare")
    ap.add_argument("--out", type=Path, default=RESULTS / "openset.json")
    args = ap.parse_args()
    cfg = Config.from_env()
    t_start = time.perf_counter()
    images = lfw_images_dir(cfg)
    paths = sorted(str(p.relative_to(images)) for p in images.glob("*/*.jpg"))
    identities = [p.split("/")[0] for p in paths]
    cache = CropCache(cfg)
    base = {m: model_embeddings(cache, paths, m) for m in ("facenet", "sface")}
    variants = {"facenet": base["facenet"], "sface": base["sface"]}
    for w in (float(x) for x in args.weights.split(",")):
        variants[f"fused-{w:g}"] = combine(base["facenet"], base["sface"], w)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = {}
    for name, emb in variants.items():
        thr1 = get_spec(name.split("-")[0]).match_threshold
        ids, by, fold_of, multi, single, rng = split(identities)
        # Full gallery: every multi-photo person, one random photo held out.
        held = {n: int(rng.choice(by[n])) for n in multi}
        full_rows = np.array(sorted(i for n in multi for i in by[n] if i != held[n]))
        full = evaluate_gallery(f"{name} full", emb, ids, by, fold_of, full_rows, held, single, cfg, log, thr1)
        # Starter gallery: as the app builds it (most-photographed people, first photos by name).
        ranked = sorted(multi, key=lambda n: (-len(by[n]), n))[: cfg.starter_people]
        st_rows, st_held = [], {}
        for n in ranked:
            rows = sorted(by[n], key=lambda i: paths[i])
            st_rows += rows[: cfg.starter_per_person]
            st_held[n] = int(rng.choice(rows[cfg.starter_per_person :]))
        starter = evaluate_gallery(f"{name} starter", emb, ids, by, fold_of, np.array(sorted(st_rows)), st_held, single, cfg, log, thr1)
        results[name] = {"full": full, "starter": starter}

    chosen, picks = choose(results)
    full, starter = results[chosen]["full"], results[chosen]["starter"]
    res = {
        "protocol": "LFW open-set identification, 10 people-disjoint folds (see bench/openset.py docstring)",
        "model": chosen,
        "config_model": cfg.model,
        "config_fused_sface_weight": cfg.fused_sface_weight,
        "choice": {"rule": "best DIR at the operating point on the 9 training folds of each held-out fold", "per_fold": picks},
        "target_fpir": cfg.open_set_fpir,
        "possible_fpir": cfg.open_set_possible_fpir,
        "prior": cfg.open_set_prior,
        "full": full,
        "starter": starter,
        "calibration": {**full["calibration"], "starter_ece": starter["calibration"]["ece"]},
        "closed_set_rank1": full["closed_set_rank1"],
        "models": {
            name: {"full": summary(r["full"]), "starter": summary(r["starter"])}
            for name, r in results.items()
        },
        "seconds": round(time.perf_counter() - t_start, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "load_avg": os.getloadavg()[0]},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for short in ("facenet", "sface"):
        res["models"][short]["title"] = get_spec(short).title
    res["models"]["fused"] = res["models"].get(f"fused-{cfg.fused_sface_weight:g}")
    print()
    print(f"{'model':11s} {'gallery':8s} {'FPIR@op':>8s} {'DIR@op':>7s} {'DIR@1%':>7s} {'DIR@.1%':>8s} {'rank1':>6s} "
          f"{'absent!':>7s} {'poss.str':>8s} {'poss.ok':>7s} {'ECE':>6s}")
    for name, r in results.items():
        for g in ("full", "starter"):
            x = r[g]
            print(
                f"{name:11s} {g:8s} {x['fpir_at_threshold']:8.4f} {x['dir_at_threshold']:7.4f} {x['dir_at_fpir_0_01']:7.4f} "
                f"{x['dir_at_fpir_0_001']:8.4f} {x['closed_set_rank1']:6.4f} {x['false_absence_rate']:7.4f} "
                f"{x['possible']['stranger_rate']:8.4f} {x['possible']['right_rate'] or 0:7.4f} {x['calibration']['ece']:6.4f}"
            )
    print(f"chosen on training folds: {chosen} (per fold: {', '.join(picks)}); Config.model = {cfg.model}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
