"""LFW evaluation: 10-fold verification on pairs.txt and leave-one-out retrieval on View 1 people.

Pipeline: every image named by the protocol -> main face (MTCNN, `align_main_faces`) -> 160x160
crop -> 512-d unit embedding -> Euclidean distance between unit embeddings (0..2).

Two disk caches under `config.cache_dir/"lfw"` make repeated runs cheap and let evaluation and
training share one detection pass:

- crops: detection results (box, probability, found) and aligned uint8 crops, written in parts
  of `PART_SIZE` images (`.npz`, loaded with allow_pickle=False). An interrupted run keeps every
  finished part and continues with the missing images. Images where MTCNN finds no face get a
  fixed centre crop (LFW photos are centred on the labelled face); they are counted and reported.
- embeddings: per model id and crop settings, plain and mirrored crops separately, so one pass
  serves both the plain and the flip-averaged (test-time augmentation) scores.

Verification follows the LFW View 2 protocol: the threshold is chosen on nine folds and the
accuracy measured on the tenth. The best threshold over all pairs is what calibrates
`Config.match_threshold` (the "same person" distance of the search engine).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rvs.config import Config
from rvs.errors import RvsError
from rvs.faces.detect import DETECTOR_ID, crop_face
from rvs.fileio import atomic_write
from rvs.lfw.dataset import Pair, lfw_images_dir, lfw_root, read_pairs, read_people
from rvs.metrics import average_precision, hits_matrix, ranked_exact, recall_at

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: MTCNN pyramid resized with OpenCV in batches too (boxes changed)
PART_SIZE = 256  # images per cache part: what an interrupted run can lose at most
RECALL_KS = (1, 5, 10, 20)
# Fallback face box as fractions of the image (x1, y1, x2, y2): the median MTCNN box over the
# LFW deep-funneled images (measured on a random 192 of them), so a missed detection is cropped like a hit.
CENTRE_BOX = (0.31, 0.26, 0.68, 0.75)

# uint8 crops N x 160 x 160 x 3 -> float32 N x D unit embeddings.
EmbedFn = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------------------
# Aligned-crop cache


@dataclass
class LfwCrops:
    """Aligned main-face crops of LFW images, in the order they were asked for.

    paths: image paths relative to the LFW images folder ("Name/Name_0001.jpg").
    crops: N x S x S x 3 uint8. boxes: N x 4 (zeros where no face). probs: N.
    found: N bool, False where MTCNN found no face and the centre crop was used instead.
    """

    paths: list[str]
    crops: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    found: np.ndarray
    key: str = ""  # detector settings + crop geometry: part of the embedding cache's key

    @property
    def n_fallback(self) -> int:
        return int((~self.found).sum())


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """np.savez written atomically: a killed run never leaves a truncated part."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a path
            np.savez(f, **arrays)

    atomic_write(path, write)


def centre_box(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return np.array([CENTRE_BOX[0] * w, CENTRE_BOX[1] * h, CENTRE_BOX[2] * w, CENTRE_BOX[3] * h], np.float32)


class CropCache:
    """Detection + crops for images under one LFW-style folder, cached on disk in parts.

    Layout: `<cache>/lfw/det-<key>/part-*.npz` (paths, boxes, probs, found) and beside each part
    `crops-s<size>-m<margin>/part-*.npz` (paths, crops). The detection key covers everything
    that changes which box is found (detector settings, image folder); crops for another margin
    are recut from the cached boxes without running the detector again.
    """

    def __init__(self, config: Config, images_dir: Path | None = None, progress: bool = True):
        self.config = config
        self.images_dir = Path(images_dir or lfw_images_dir(config)).resolve()
        self.progress = progress
        c = config
        det = {
            "v": CACHE_VERSION,
            "detector": DETECTOR_ID,
            "images": str(self.images_dir),
            "min_face_size": c.min_face_size,
            "thresholds": list(c.detect_thresholds),
            "min_face_prob": c.min_face_prob,
            "detect_max_side": c.detect_max_side,
        }
        self.det_dir = Path(c.cache_dir) / "lfw" / f"det-{_digest(det)}"
        self.crop_dir = self.det_dir / f"crops-{self.crop_key(c.margin)}"
        self._index: dict[str, tuple[str, int]] | None = None

    def crop_key(self, margin: int) -> str:
        # The fallback box decides the crops of images without a detected face.
        units = "" if self.config.margin_units == "crop" else f"{self.config.margin_units}-"
        return f"s{self.config.face_size}-m{units}{margin}-" + _digest(CENTRE_BOX)[:6]

    def key(self, margin: int | None = None) -> str:
        """Identifies crops for the embedding cache (detector settings + crop geometry)."""
        return f"{self.det_dir.name}-{self.crop_key(self.config.margin if margin is None else margin)}"

    # -- bookkeeping
    def _scan(self) -> dict[str, tuple[str, int]]:
        index: dict[str, tuple[str, int]] = {}
        if self.det_dir.is_dir():
            for part in sorted(self.det_dir.glob("part-*.npz")):
                with np.load(part, allow_pickle=False) as z:
                    for row, p in enumerate(z["paths"].tolist()):
                        index[p] = (part.name, row)
        self._index = index
        return index

    def cached_paths(self) -> set[str]:
        return set(self._scan())

    def _new_part_name(self) -> str:
        # Unique across processes: two runs filling the same cache never overwrite each other.
        return f"part-{time.time_ns()}-{os.getpid()}.npz"

    # -- filling
    def _detect_missing(self, rel_paths: Sequence[str]) -> None:
        from rvs.faces.align import align_main_faces
        from rvs.faces.detect import FaceDetector

        index = self._scan()
        missing = sorted({p for p in rel_paths if p not in index})
        if not missing:
            return
        absent = [p for p in missing if not (self.images_dir / p).is_file()]
        if absent:  # a wrong list or data folder must not turn into silently blank crops
            raise RvsError(f"{len(absent)} image(s) not found under {self.images_dir}, e.g. {absent[:3]}")
        detector = FaceDetector(self.config)
        bs = self.config.detect_batch_size
        with tqdm(total=len(missing), desc="detect (cached)", unit="img", disable=not self.progress, smoothing=0.05) as bar:
            for start in range(0, len(missing), PART_SIZE):
                chunk = missing[start : start + PART_SIZE]
                parts = []
                for s in range(0, len(chunk), bs):
                    sub = chunk[s : s + bs]
                    parts.append(align_main_faces([self.images_dir / p for p in sub], self.config, detector, progress=False))
                    for i in parts[-1].errors:
                        log.warning("%s: %s", sub[i], parts[-1].errors[i])
                    bar.update(len(sub))
                crops = np.concatenate([a.crops for a in parts])
                found = np.concatenate([a.found for a in parts])
                boxes = np.concatenate([a.boxes for a in parts])
                probs = np.concatenate([a.probs for a in parts])
                for i in np.flatnonzero(~found):
                    crops[i] = self._fallback_crop(chunk[i], self.config.margin)
                name = self._new_part_name()
                paths = np.array(chunk)
                _atomic_savez(self.det_dir / name, paths=paths, boxes=boxes, probs=probs, found=found)
                _atomic_savez(self.crop_dir / name, paths=paths, crops=crops)
        self._scan()

    def _fallback_crop(self, rel: str, margin: int) -> np.ndarray:
        from rvs.imageio import load_image

        try:
            img = load_image(self.images_dir / rel, max_pixels=self.config.max_pixels)
        except RvsError:
            return np.zeros((self.config.face_size, self.config.face_size, 3), np.uint8)
        return crop_face(img, centre_box(img.size), self.config.face_size, margin, self.config.margin_units)

    def _recrop(self, rel_paths: Sequence[str], boxes: np.ndarray, found: np.ndarray, margin: int) -> np.ndarray:
        """Cut crops at `margin` from cached boxes (no detection): image load + resize only."""
        from rvs.imageio import load_image

        s = self.config.face_size
        out = np.zeros((len(rel_paths), s, s, 3), np.uint8)
        for i, rel in enumerate(tqdm(rel_paths, desc=f"crop m={margin}", unit="img", disable=not self.progress or len(rel_paths) < 500)):
            try:
                img = load_image(self.images_dir / rel, max_pixels=self.config.max_pixels)
            except RvsError:
                continue
            box = boxes[i] if found[i] else centre_box(img.size)
            out[i] = crop_face(img, box, s, margin, self.config.margin_units)
        return out

    def _ensure_crop_part(self, part: str) -> None:
        if (self.crop_dir / part).is_file():
            return
        with np.load(self.det_dir / part, allow_pickle=False) as z:
            paths, boxes, found = z["paths"].tolist(), z["boxes"], z["found"]
        crops = self._recrop(paths, boxes, found, self.config.margin)
        _atomic_savez(self.crop_dir / part, paths=np.array(paths), crops=crops)

    # -- reading
    def get(self, rel_paths: Sequence[str], margin: int | None = None) -> LfwCrops:
        """Crops for `rel_paths` (detecting whatever is not cached yet).

        margin: recut at another margin than `config.margin` from the cached boxes, in memory
        only (for margin sweeps; nothing is written).
        """
        rel_paths = list(rel_paths)
        self._detect_missing(rel_paths)
        index = self._index or self._scan()
        n, s = len(rel_paths), self.config.face_size
        out = LfwCrops(
            rel_paths, np.zeros((n, s, s, 3), np.uint8), np.zeros((n, 4), np.float32), np.zeros(n, np.float32), np.zeros(n, bool), self.key(margin)
        )
        by_part: dict[str, list[tuple[int, int]]] = {}
        for i, p in enumerate(rel_paths):
            part, row = index[p]
            by_part.setdefault(part, []).append((i, row))
        for part, items in by_part.items():
            dst = np.array([i for i, _ in items])
            src = np.array([r for _, r in items])
            with np.load(self.det_dir / part, allow_pickle=False) as z:
                out.boxes[dst], out.probs[dst], out.found[dst] = z["boxes"][src], z["probs"][src], z["found"][src]
            if margin is None or margin == self.config.margin:
                self._ensure_crop_part(part)
                with np.load(self.crop_dir / part, allow_pickle=False) as z:
                    out.crops[dst] = z["crops"][src]
        if margin is not None and margin != self.config.margin:
            out.crops[:] = self._recrop(rel_paths, out.boxes, out.found, margin)
        return out


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


# ---------------------------------------------------------------------------------------------
# Embedding cache


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:60] + "-" + hashlib.sha256(s.encode()).hexdigest()[:8]


def embed_crops(
    crops: LfwCrops,
    embed_fn: EmbedFn,
    model_id: str | None,
    cache: CropCache | None,
    flip: bool = False,
    progress: bool = True,
    chunk: int = 256,
) -> np.ndarray:
    """Unit embeddings of `crops`; flip=True averages plain and mirrored embeddings, then
    re-normalises (what `Embedder.embed(flip=True)` does, since the model's outputs are unit).

    With a model_id and a cache, embeddings are stored per (model, crop settings, variant) and
    only crops not seen before are embedded. model_id=None disables the cache (e.g. a model
    in training whose weights change).
    """
    variants = ["plain", "mirror"] if flip else ["plain"]
    out = []
    for v in variants:
        store: Path | None = None
        known: dict[str, np.ndarray] = {}
        if model_id is not None and cache is not None:
            store = Path(cache.config.cache_dir) / "lfw" / "emb" / f"{_safe(model_id)}-{crops.key or cache.key()}-{v}.npz"
            if store.is_file():
                with np.load(store, allow_pickle=False) as z:
                    known = dict(zip(z["paths"].tolist(), z["emb"]))
        todo = [i for i, p in enumerate(crops.paths) if p not in known]
        new: dict[str, np.ndarray] = {}
        if todo:
            with tqdm(total=len(todo), desc=f"embed {v}", unit="face", disable=not progress, smoothing=0.05) as bar:
                for s in range(0, len(todo), chunk):
                    idx = np.array(todo[s : s + chunk])
                    x = crops.crops[idx]
                    if v == "mirror":
                        x = np.ascontiguousarray(x[:, :, ::-1])
                    e = np.asarray(embed_fn(x), np.float32)
                    new.update(zip([crops.paths[i] for i in idx], e))
                    bar.update(len(idx))
            if store is not None:
                known.update(new)
                keys = sorted(known)
                _atomic_savez(store, paths=np.array(keys), emb=np.stack([known[k] for k in keys]))
        known.update(new)
        out.append(np.stack([known[p] for p in crops.paths]) if crops.paths else np.zeros((0, 512), np.float32))
    e = out[0] if len(out) == 1 else out[0] + out[1]
    return (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Verification metrics (pure functions of distances)


def best_threshold(dist: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold t maximising accuracy of "same person iff dist < t", and that accuracy.

    Candidates are the midpoints between consecutive distinct distances (plus one below the
    smallest and one above the largest), so the answer does not depend on a grid step. When
    several intervals tie, the middle one of them is taken.
    """
    dist = np.asarray(dist, np.float64)
    same = np.asarray(same, bool)
    if len(dist) == 0:
        raise ValueError("no distances")
    u = np.unique(dist)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    # For each candidate: same pairs below it are right, different pairs at or above it are right.
    pos = np.sort(dist[same])
    neg = np.sort(dist[~same])
    tp = np.searchsorted(pos, cands, side="left")
    tn = len(neg) - np.searchsorted(neg, cands, side="left")
    acc = (tp + tn) / len(dist)
    best = np.flatnonzero(acc == acc.max())
    i = best[len(best) // 2]
    return float(cands[i]), float(acc[i])


def accuracy_at(dist: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((np.asarray(dist) < threshold) == np.asarray(same, bool)))


@dataclass
class VerificationResult:
    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    best_threshold: float  # over all pairs: calibrates Config.match_threshold
    best_threshold_accuracy: float
    roc_auc: float
    tar_at_far: dict[str, float] = field(default_factory=dict)
    n_pairs: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def kfold_verification(
    dist: np.ndarray | None,
    same: np.ndarray,
    folds: np.ndarray,
    fars: Sequence[float] = (1e-3,),
    dist_for_fold: Callable[[np.ndarray], np.ndarray] | None = None,
) -> VerificationResult:
    """LFW protocol: for each fold, threshold from the other folds, accuracy on this fold.

    dist_for_fold: for distances that depend on statistics of the training folds (see
    `subtract_mean_distances`), a function (training-pair mask) -> distances of all pairs,
    used instead of `dist`; the all-pairs figures then use the mask of every pair.
    """
    same, folds = np.asarray(same, bool), np.asarray(folds)
    if dist_for_fold is None:
        fixed = np.asarray(dist, np.float64)
        dist_for_fold = lambda train: fixed  # noqa: E731
    accs, thrs = [], []
    for f in np.unique(folds):
        test = folds == f
        train = ~test if (~test).any() else test  # one fold only: nothing else to train on
        d = np.asarray(dist_for_fold(train), np.float64)
        t, _ = best_threshold(d[train], same[train])
        thrs.append(t)
        accs.append(accuracy_at(d[test], same[test], t))
    dist = np.asarray(dist_for_fold(np.ones(len(same), bool)), np.float64)
    bt, ba = best_threshold(dist, same)
    return VerificationResult(
        accuracy_mean=float(np.mean(accs)),
        accuracy_std=float(np.std(accs)),
        fold_accuracies=[float(a) for a in accs],
        fold_thresholds=[float(t) for t in thrs],
        best_threshold=bt,
        best_threshold_accuracy=ba,
        roc_auc=roc_auc(dist, same),
        tar_at_far={f"{far:g}": tar_at_far(dist, same, far) for far in fars},
        n_pairs=len(dist),
    )


def subtract_mean_distances(ea: np.ndarray, eb: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Sandberg's published LFW protocol (validate_on_lfw --subtract_mean --distance_metric 1):
    subtract the mean embedding of the training folds' pairs, then angular distance
    arccos(cosine) / pi in [0, 1]. Returns the `dist_for_fold` function for kfold_verification.
    Not what the search engine does (it uses plain Euclidean distances), so thresholds from this
    mode are not match_threshold values."""

    def fn(train: np.ndarray) -> np.ndarray:
        mu = np.concatenate([ea[train], eb[train]]).mean(axis=0)
        x, y = ea - mu, eb - mu
        cos = (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-12)
        return np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi

    return fn


def roc_auc(dist: np.ndarray, same: np.ndarray) -> float:
    """Probability that a same-person pair is closer than a different-person pair (ties 1/2)."""
    from scipy.stats import rankdata

    same = np.asarray(same, bool)
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(-np.asarray(dist, np.float64))  # higher rank = more similar
    return float((r[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tar_at_far(dist: np.ndarray, same: np.ndarray, far: float) -> float:
    """True-accept rate at the strictest threshold that accepts at most floor(far * n_neg)
    different-person pairs (with 3,000 negative pairs, FAR 1e-3 allows 3 false accepts)."""
    dist, same = np.asarray(dist, np.float64), np.asarray(same, bool)
    neg = np.sort(dist[~same])
    k = int(np.floor(far * len(neg)))
    if len(neg) == 0 or (same.sum() == 0):
        return float("nan")
    thr = neg[k] if k < len(neg) else np.inf  # accept d < thr: exactly the k closest negatives
    return float(np.mean(dist[same] < thr))


def assign_folds(pairs: Sequence[Pair], n_folds: int = 10) -> np.ndarray:
    """Fold of each pair: pairs.txt's own folds, or for a one-fold View 1 list, `n_folds`
    contiguous slices of the same pairs and of the different pairs (balanced folds)."""
    folds = np.array([p.fold for p in pairs])
    if len(np.unique(folds)) > 1:
        return folds
    same = np.array([p.same for p in pairs])
    out = np.zeros(len(pairs), np.int64)
    for mask in (same, ~same):
        idx = np.flatnonzero(mask)
        out[idx] = np.arange(len(idx)) * n_folds // max(len(idx), 1)
    return out


# ---------------------------------------------------------------------------------------------
# Retrieval metrics


def retrieval_metrics(emb: np.ndarray, labels: np.ndarray, ks: Sequence[int] = RECALL_KS) -> dict:
    """Leave-one-out retrieval within one set of images: each image whose identity has at least
    one other image queries all the others (the rest stay in the gallery as distractors).

    Returns rank1, recall@k (share of queries with a correct identity in the top k), mAP over
    the full ranking, and the counts.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    q = np.flatnonzero(counts[labels] >= 2)
    if len(q) == 0:
        return {"queries": 0, "gallery": len(labels)}
    # k = N - 1: the query itself is pushed to the end by exclude_self and cut off.
    ranked = ranked_exact(emb[q], emb, k=len(emb) - 1, exclude_self=q)
    hits = hits_matrix(ranked, labels, labels[q])
    rec = recall_at(hits, tuple(ks))
    ap = average_precision(hits, counts[labels[q]] - 1)
    return {
        "queries": int(len(q)),
        "gallery": int(len(labels)),
        "identities": int((counts > 0).sum()),
        "rank1": rec[1] if 1 in rec else float(hits[:, 0].mean()),
        **{f"recall@{k}": v for k, v in rec.items()},
        "mAP": float(ap.mean()),
    }


# ---------------------------------------------------------------------------------------------
# End-to-end runs


def default_embedder(config: Config, weights: str | None = None) -> tuple[EmbedFn, str]:
    """(embed function, model id) for InceptionResnetV1 with `weights` (default: config.weights)."""
    import dataclasses

    from rvs.faces.embed import Embedder

    cfg = dataclasses.replace(config, weights=weights) if weights else config
    emb = Embedder(cfg)
    return (lambda x: emb.embed(x, flip=False)), embedding_cache_id(emb)


def embedding_cache_id(emb) -> str:
    """Keys `embed_crops`' cache for an `rvs.faces.embed.Embedder`: its model id and precision (bf16 and
    fp32 embeddings differ slightly, so they are kept apart)."""
    return emb.model_id + ("@bf16" if emb.bf16 else "@fp32")


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
