"""Evaluation (rvs.eval): threshold selection and metrics on known answers; the crop cache; real LFW subsets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rvs.eval.metrics import assign_folds, best_threshold, kfold_verification, retrieval_metrics, roc_auc, tar_at_far
from rvs.faces.embedders import get_spec
from rvs.lfw.dataset import Pair, read_pairs
from tests.conftest import requires_data

# Measured here (python -m rvs eval, pairs.txt, default weights, margin 32, Euclidean distance):
# 0.9893 +- 0.0057 with the shipped embedding centre (the default), 0.9862 +- 0.0066 without it;
# 0.9898 with the published model's protocol (flip + training-fold mean + angular, --subtract-mean
# --flip). The 0.990 target is not reached; the assertion leaves a little room under the
# measured value so a regression of the pipeline fails here.
FULL_LFW_MIN_ACCURACY = 0.988


def test_best_threshold_separable_and_ties():
    t, acc = best_threshold(np.array([0.1, 0.2, 0.9, 1.0]), np.array([1, 1, 0, 0], bool))
    assert acc == 1.0 and t == pytest.approx(0.55)  # midpoint of the gap, not a grid point
    t, acc = best_threshold(np.array([0.1, 0.5, 0.6, 1.0]), np.array([1, 0, 1, 0], bool))
    assert acc == 0.75 and t in (pytest.approx(0.3), pytest.approx(0.8))
    # "same iff d < t": equal distances are never split.
    t, acc = best_threshold(np.array([0.5, 0.5, 0.5]), np.array([1, 1, 0], bool))
    assert acc == pytest.approx(2 / 3)


def test_kfold_threshold_selection_known_answer():
    """10 folds x (10 same + 10 different); same in [0.2, 0.8], different in [1.2, 1.8], except
    one same pair of fold 3 at 1.5. Every threshold is the midpoint of the gap, (0.8 + 1.2) / 2
    = 1.0; fold 3 scores 19/20, the others 20/20 -> mean 0.995."""
    dist, same, folds = [], [], []
    for f in range(10):
        d_same = np.linspace(0.2, 0.8, 10)
        if f == 3:
            d_same[4] = 1.5
        dist += [*d_same, *np.linspace(1.2, 1.8, 10)]
        same += [True] * 10 + [False] * 10
        folds += [f] * 20
    r = kfold_verification(np.array(dist), np.array(same), np.array(folds))
    assert r.fold_thresholds == pytest.approx([1.0] * 10)
    assert r.fold_accuracies == pytest.approx([1.0] * 3 + [0.95] + [1.0] * 6)
    assert r.accuracy_mean == pytest.approx(0.995)
    assert r.accuracy_std == pytest.approx(np.std([1.0] * 9 + [0.95]))
    assert r.best_threshold == pytest.approx(1.0) and r.best_threshold_accuracy == pytest.approx(199 / 200)
    assert r.n_pairs == 200


def test_kfold_threshold_uses_only_the_other_folds():
    # Fold 0's own data would put the threshold at 0.5; the other fold says 1.5.
    dist = np.array([0.4, 0.6, 1.4, 1.6])
    same = np.array([1, 0, 1, 0], bool)
    r = kfold_verification(dist, same, np.array([0, 0, 1, 1]))
    assert r.fold_thresholds == pytest.approx([1.5, 0.5])
    assert r.fold_accuracies == pytest.approx([0.5, 0.5])


def test_auc_and_tar():
    assert roc_auc(np.array([0.1, 0.4, 0.3, 0.9]), np.array([1, 1, 0, 0], bool)) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5]), np.array([1, 0], bool)) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    neg = rng.uniform(1.0, 2.0, 1000)
    neg[:2] = [0.1, 0.3]  # the two closest negatives
    pos = np.array([0.05, 0.2, 0.25, 0.5, 0.9])
    d = np.concatenate([pos, neg])
    s = np.array([1] * 5 + [0] * 1000, bool)
    # FAR 1e-3 of 1000 negatives allows 1 false accept: threshold 0.3 -> 3 of 5 positives.
    assert tar_at_far(d, s, 1e-3) == pytest.approx(0.6)
    assert tar_at_far(d, s, 0.0) == pytest.approx(0.2)


def test_view1_folds_are_balanced():
    pairs = [Pair("a", i, "a", i + 1, 0) for i in range(1100)] + [Pair("a", i, "b", i, 0) for i in range(1100)]
    f = assign_folds(pairs)
    for k in range(10):
        m = f == k
        assert m.sum() == 220 and sum(p.same for p, x in zip(pairs, m) if x) == 110
    v2 = [Pair("a", 1, "a", 2, k) for k in range(10)]
    assert assign_folds(v2).tolist() == list(range(10))


def test_retrieval_metrics_known_answer():
    ang = np.radians([0, 10, 90, 100, 45])
    emb = np.stack([np.cos(ang), np.sin(ang)], 1)
    r = retrieval_metrics(emb, np.array([0, 0, 1, 1, 2]))
    assert (r["queries"], r["gallery"], r["identities"]) == (4, 5, 3)
    assert r["rank1"] == 1.0 and r["mAP"] == 1.0 and r["recall@5"] == 1.0
    # Person 1's second photo now sits between person 0's: its query misses at rank 1, and
    # person 0's queries find it first.
    ang = np.radians([0, 20, 90, 10, 60])
    emb = np.stack([np.cos(ang), np.sin(ang)], 1)
    r = retrieval_metrics(emb, np.array([0, 0, 1, 1, 2]))
    # q0 (0deg): 10(p1) 20(p0) -> AP 1/2; q1 (20deg): 10(p1) 0(p0) -> AP 1/2;
    # q2 (90deg): 60(p2) 20 10(p1) -> AP 1/3; q3 (10deg): 0 20 60 90(p1) -> AP 1/4.
    assert r["rank1"] == 0.0
    assert r["recall@1"] == 0.0 and r["recall@5"] == 1.0
    assert r["mAP"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 3 + 1 / 4) / 4)


# The fast guard: LFW View 1's whole test split (pairsDevTest.txt: 500 same + 500 different pairs,
# 1,549 images, people disjoint from the View 1 training people the centre was taken from).
# Measured here with the default pipeline: 10-fold accuracy 0.985, AUC 0.9985, best threshold
# 1.142, 14 pairs wrong at Config.match_threshold (1.15). A 3-point regression is 30 more wrong
# pairs; the bounds allow ~4 (a different CPU's bf16/fp32 kernels move a pair or two).
VIEW1_TEST_ACCURACY = 0.985
VIEW1_TEST_ERRORS_AT_THRESHOLD = 14


FACENET_THRESHOLD = get_spec("facenet").match_threshold


@requires_data
def test_default_model_on_lfw_view1_test_split(config):
    """~10 s with the crop cache (~/.cache/rvs/lfw), under a minute from nothing on 2 cores."""
    from rvs.eval.crops import CropCache, default_embedder, embed_crops
    from rvs.eval.protocols import pair_paths, verify_pairs

    pairs = read_pairs(config.data_dir / "lfw" / "pairsDevTest.txt")
    assert len(pairs) == 1000 and sum(p.same for p in pairs) == 500
    cache = CropCache(config, progress=False)
    embed_fn, model_id = default_embedder(config)
    res, info = verify_pairs(pairs, cache, embed_fn, model_id, progress=False)
    assert res.n_pairs == 1000 and info["images"] == 1549
    assert res.accuracy_mean >= VIEW1_TEST_ACCURACY - 0.005, res.accuracy_mean
    assert res.roc_auc >= 0.997, res.roc_auc
    # The threshold the app and CLI use is still where this split puts it.
    assert abs(res.best_threshold - FACENET_THRESHOLD) < 0.05, res.best_threshold
    a, b = pair_paths(pairs)
    uniq = sorted(set(a) | set(b))
    emb = embed_crops(cache.get(uniq), embed_fn, model_id, cache, progress=False)  # cached by verify_pairs
    pos = {p: i for i, p in enumerate(uniq)}
    dist = np.linalg.norm(emb[[pos[p] for p in a]] - emb[[pos[p] for p in b]], axis=1)
    wrong = int(((dist < FACENET_THRESHOLD) != np.array([p.same for p in pairs])).sum())
    assert wrong <= VIEW1_TEST_ERRORS_AT_THRESHOLD + 4, wrong


@requires_data
def test_eval_cli_on_small_pairs_file(config, tmp_path, capsys):
    from rvs.cli import main

    pairs = (config.data_dir / "lfw" / "pairsDevTest.txt").read_text().splitlines()
    small = tmp_path / "pairs.txt"
    small.write_text("\n".join(["10", *pairs[1:11], *pairs[501:511]]) + "\n")
    out = tmp_path / "r.json"
    assert main(["eval", "--pairs", str(small), "--no-retrieval", "--json", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "match_threshold" in text
    r = json.loads(out.read_text())
    # Measured: all 20 right (10-fold); one miss allowed.
    assert r["verification"]["n_pairs"] == 20 and r["verification"]["accuracy_mean"] >= 0.95


@pytest.mark.slow
@requires_data
def test_full_lfw_pairs_accuracy(config):
    from rvs.eval.protocols import evaluate_lfw

    r = evaluate_lfw(config, retrieval=False, progress=False)
    assert r["verification"]["n_pairs"] == 6000
    assert r["verification"]["accuracy_mean"] >= FULL_LFW_MIN_ACCURACY


def test_subtract_mean_distances():
    from rvs.eval.metrics import subtract_mean_distances

    ea = np.array([[1.0, 0.0], [-1.0, 0.0]])
    eb = np.array([[0.0, 1.0], [0.0, -1.0]])
    d = subtract_mean_distances(ea, eb)(np.ones(2, bool))
    assert d == pytest.approx([0.5, 0.5])  # mean 0, orthogonal -> arccos(0) / pi
    # Invariant to a shared offset (what the mean subtraction is for); uses only training pairs' mean.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    train = np.arange(20) < 15
    d1 = subtract_mean_distances(a, b)(train)
    d2 = subtract_mean_distances(a + 5.0, b + 5.0)(train)
    assert d1 == pytest.approx(d2) and ((d1 >= 0) & (d1 <= 1)).all()
    r = kfold_verification(None, np.arange(20) % 2 == 0, np.arange(20) % 2, dist_for_fold=subtract_mean_distances(a, b))
    assert r.n_pairs == 20


@requires_data
def test_crop_cache_resumes_after_interruption(config, tmp_path, monkeypatch):
    """Parts are written as they finish: a run killed midway keeps them, the next run detects
    only what is missing, and a later request for more images adds to the same cache."""
    import dataclasses

    import rvs.eval.crops as ev
    import rvs.faces.align as align
    from rvs.errors import RvsError

    cfg = dataclasses.replace(config, cache_dir=tmp_path / "cache")
    paths = [f"Aaron_Peirsol/Aaron_Peirsol_{i:04d}.jpg" for i in (1, 2, 3, 4)] + ["Aaron_Sorkin/Aaron_Sorkin_0001.jpg"]
    monkeypatch.setattr(ev, "PART_SIZE", 2)
    cfg = dataclasses.replace(cfg, detect_batch_size=2)
    real = align.align_main_faces
    calls: list[int] = []

    def flaky(ps, *a, **k):
        calls.append(len(ps))
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the second part
        return real(ps, *a, **k)

    monkeypatch.setattr(align, "align_main_faces", flaky)
    with pytest.raises(KeyboardInterrupt):
        ev.CropCache(cfg, progress=False).get(paths[:4])
    assert len(ev.CropCache(cfg).cached_paths()) == 2  # the first part survived
    calls.clear()
    got = ev.CropCache(cfg, progress=False).get(paths[:4])
    assert sum(calls) == 2 and got.found.all() and got.crops.shape == (4, 160, 160, 3)
    calls.clear()
    more = ev.CropCache(cfg, progress=False).get(paths)
    assert sum(calls) == 1 and np.array_equal(more.crops[:4], got.crops)
    # Another margin: recut from cached boxes, no detection.
    calls.clear()
    wide = ev.CropCache(cfg, progress=False).get(paths[:2], margin=48)
    assert calls == [] and not np.array_equal(wide.crops, got.crops[:2]) and wide.key != got.key
    with pytest.raises(RvsError, match="not found"):
        ev.CropCache(cfg, progress=False).get(["Nobody/Nobody_0001.jpg"])
