"""Open-set identification: is this face someone in the gallery, who, and how sure?

In: unit embeddings of query faces and a gallery (embeddings + identities). Out: for each query an
`Identification`: the gallery identity that would be named, the calibrated probability that
naming it is right, and one of three answers:

- "named": the probability clears the gallery's operating point (`OpenSetModel.threshold`);
- "possible": below it, but at or above `OpenSetModel.possible_threshold`: the candidate is
  plausible and is said with its probability ("possibly NAME (57%)"), never as a name;
- "no_match": below both; only then is absence claimed ("no match in this gallery"), and the
  nearest faces are look-alikes.

Why not the 1:1 threshold: `Config.match_threshold` (1.15) separates pairs of photos. Searching
one face against N people, the nearest stranger is almost always under it: on LFW every
non-mated probe got a name (FPIR 1.0). The decision here is made per gallery:

1. Templates: one unit mean embedding per identity (`Templates`).
2. Score: the query's distances to all templates, normalised by the query's own cohort (the
   next-nearest identities) and a few gallery facts, fed to a logistic model -> P(named identity
   is right). Cohort normalisation matters because some faces are close to everyone.
3. Calibration (`calibrate`), at index build time, from the gallery's own embeddings:
   mated examples = each photo of a person with >= 2 photos searched with that photo left out
   (leave-one-out), plus reference people (LFW, shipped, names not in the gallery) added to
   the gallery with one photo and searched with another; strangers = each gallery photo searched
   with its whole identity left out (leave-one-identity-out), plus reference strangers (LFW
   people with one photo, names not in the gallery). The logistic model is fitted on these
   (weighted to `Config.open_set_prior` mated queries) and the operating threshold is set where
   a 95% upper bound of the strangers' false-positive rate stays under `Config.open_set_fpir`,
   and never below a probability of 0.5 (a name is never more likely wrong than right). The
   "possible" band starts where the same bound for strangers reaches `Config.open_set_possible_fpir`:
   strangers rarely hear "possibly", people of the gallery rarely hear "no match".
4. The result (`OpenSetModel`) is stored in the index manifest ("open_set") with how it was
   obtained; search uses it, and an index without one names nobody.

bench/openset.py measures all of this on LFW with identity-disjoint folds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rvs.config import PACKAGE_DATA

HINGE_KNOTS = (0.8, 0.9, 1.0, 1.1)  # distances where the hinge features below bend
FEATURES = (
    "d1",  # distance to the nearest identity template
    "d2",  # ... to the second nearest
    "cohort5",  # mean distance to identities 2..5 (the query's own neighbourhood: some faces are close to everyone)
    "cohort20",  # ... 2..20
    "log_photos",  # log of the named identity's number of gallery photos (more photos, better template)
    "d1_sample",  # distance to the named identity's nearest photo
    # Curvature in the two distances that decide most (the logistic model is linear in its
    # features; with a strong embedder the boundary between mated and stranger scores is not):
    # squares, and hinges max(0, d - k) at fixed knots. On bench/openset.py's training folds
    # (fused model) they raised DIR at the operating point from 0.89 to 0.94 and lowered the ECE.
    "d1_sq",
    "d1_sample_sq",
    *(f"d1_hinge_{k:g}" for k in HINGE_KNOTS),
    *(f"d1_sample_hinge_{k:g}" for k in HINGE_KNOTS),
)
METHOD = "template-cohort-logistic-v3"
REFERENCE_DIR = PACKAGE_DATA / "reference"


def _dist(q: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows of unit vectors q (n x D) and t (m x D)."""
    return np.sqrt(np.clip(2.0 - 2.0 * (q @ t.T), 0.0, None))


@dataclass
class Templates:
    """Per-identity templates of a gallery.

    names: identity per template; vectors: n_id x D unit means; sums: unnormalised sums (for
    leave-one-out); counts: photos per identity; label: template index of each gallery row.
    """

    names: list[str]
    vectors: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    label: np.ndarray
    embeddings: np.ndarray

    def rows_of(self, j: int) -> np.ndarray:
        """Gallery rows of template j (the grouping is computed once, not per query)."""
        if not hasattr(self, "_order"):
            self._order = np.argsort(self.label, kind="stable")
            self._starts = np.searchsorted(self.label[self._order], np.arange(len(self.names)))
        return self._order[self._starts[j] : self._starts[j] + self.counts[j]]

    @classmethod
    def from_gallery(cls, embeddings: np.ndarray, identities: Sequence[str]) -> Templates:
        emb = np.ascontiguousarray(embeddings, np.float32)
        names = sorted(set(identities))
        pos = {n: i for i, n in enumerate(names)}
        label = np.fromiter((pos[n] for n in identities), np.int64, len(identities))
        sums = np.zeros((len(names), emb.shape[1] if emb.ndim == 2 else 0), np.float32)
        np.add.at(sums, label, emb)
        counts = np.bincount(label, minlength=len(names)).astype(np.int64)
        return cls(names, _unit(sums), sums, counts, label, emb)

    def __len__(self) -> int:
        return len(self.names)


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n > 0, n, 1.0)).astype(np.float32)


def _cohort_mean(s: np.ndarray, k: int) -> np.ndarray:
    """Mean of sorted distances 2..k+1 (columns 1..k); the last available column when fewer."""
    hi = min(k + 1, s.shape[1])
    return s[:, 1:hi].mean(1) if hi > 1 else np.full(len(s), 2.0, np.float32)


def features_from_distances(
    dt: np.ndarray, counts: np.ndarray, d_sample: np.ndarray, top: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Features (n x len(FEATURES)) and the named template per row.

    dt: n x n_id distances to templates (masked entries = inf/large); counts: photos per template
    (n x n_id or n_id); d_sample: distance to the named identity's nearest photo (n), computed by
    the caller for `top`."""
    n, m = dt.shape
    if top is None:
        top = dt.argmin(1)
    kk = min(m, 21)
    part = np.partition(dt, kk - 1, axis=1)[:, :kk] if kk < m else dt.copy()
    s = np.sort(part, axis=1)
    s = np.where(np.isfinite(s), s, 2.0)
    c = counts[top] if counts.ndim == 1 else counts[np.arange(n), top]
    d2 = s[:, 1] if s.shape[1] > 1 else np.full(n, 2.0, np.float32)
    # Far cohorts (100, 1000 identities) were tried: no gain on LFW, and they depend on the
    # gallery's size and made an out-of-LFW look-alike more confident (bench/openset.py).
    d1 = s[:, 0]
    hinges = [np.maximum(d1 - k, 0.0) for k in HINGE_KNOTS] + [np.maximum(d_sample - k, 0.0) for k in HINGE_KNOTS]
    x = np.stack([d1, d2, _cohort_mean(s, 4), _cohort_mean(s, 19), np.log(np.maximum(c, 1)), d_sample, d1**2, d_sample**2, *hinges], axis=1)
    return x.astype(np.float64), top


def query_features(t: Templates, q: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, named template and template distance for query embeddings q against gallery t."""
    xs, tops, d1s = [], [], []
    for s in range(0, len(q), chunk):
        qq = q[s : s + chunk]
        dt = _dist(qq, t.vectors)
        top = dt.argmin(1)
        ds = _nearest_photo(qq, t, top)
        x, top = features_from_distances(dt, t.counts, ds, top)
        xs.append(x)
        tops.append(top)
        d1s.append(dt[np.arange(len(qq)), top])
    if not xs:
        return np.zeros((0, len(FEATURES))), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(xs), np.concatenate(tops), np.concatenate(d1s)


def _nearest_photo(q: np.ndarray, t: Templates, top: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Distance from each query to the nearest gallery photo of its named identity (excluding
    gallery row `exclude[i]` for leave-one-out; inf when none is left)."""
    out = np.empty(len(q), np.float32)
    for i, j in enumerate(top):
        rows = t.rows_of(int(j))
        if exclude is not None:
            rows = rows[rows != exclude[i]]
        out[i] = _dist(q[i : i + 1], t.embeddings[rows]).min() if len(rows) else 2.0
    return out


# ---------------------------------------------------------------------------------------------
# Calibration examples drawn from the gallery itself


def leave_one_out(t: Templates, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mated examples: each photo of an identity with >= 2 photos, searched against the gallery
    with that photo removed from its template. Returns (features, correct: named own identity,
    weight: 1 / the identity's photos, so every person counts once, as a probe set would)."""
    rows = np.flatnonzero(t.counts[t.label] >= 2)
    xs, ok = [], []
    for s in range(0, len(rows), chunk):
        r = rows[s : s + chunk]
        q = t.embeddings[r]
        dt = _dist(q, t.vectors)
        own = t.label[r]
        # The photo's own template without it: (sum - e) / |sum - e|.
        loo = _unit(t.sums[own] - q)
        dt[np.arange(len(r)), own] = np.sqrt(np.clip(2.0 - 2.0 * np.sum(q * loo, 1), 0.0, None))
        top = dt.argmin(1)
        ds = _nearest_photo(q, t, top, exclude=r)
        # The photo count stays the gallery's: strangers see full counts, and a count that is one
        # lower exactly for mated examples would let the model tell them apart by it.
        x, top = features_from_distances(dt, t.counts, ds, top)
        xs.append(x)
        ok.append(top == own)
    if not xs:
        return np.zeros((0, len(FEATURES))), np.zeros(0, bool), np.zeros(0)
    return np.concatenate(xs), np.concatenate(ok), 1.0 / t.counts[t.label[rows]]


def leave_one_identity_out(t: Templates, chunk: int = 1024, max_rows: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stranger examples: gallery photos searched with their whole identity removed. Returns
    (features, weight: 1 / the identity's photos)."""
    if len(t) < 2:
        return np.zeros((0, len(FEATURES))), np.zeros(0)
    rows = np.arange(len(t.label))
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    xs = []
    for s in range(0, len(rows), chunk):
        r = rows[s : s + chunk]
        q = t.embeddings[r]
        dt = _dist(q, t.vectors)
        dt[np.arange(len(r)), t.label[r]] = np.inf
        top = dt.argmin(1)
        ds = _nearest_photo(q, t, top)
        x, _ = features_from_distances(dt, t.counts, ds, top)
        xs.append(x)
    return np.concatenate(xs), 1.0 / t.counts[t.label[rows]]


# ---------------------------------------------------------------------------------------------
# The model


@dataclass
class OpenSetModel:
    """Logistic model over FEATURES -> P(the named identity is right), and the operating point.

    threshold: the probability a query must reach to be named (chosen for `target_fpir`).
    Stored in index manifests as "open_set" (plain JSON)."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    threshold: float
    target_fpir: float
    prior: float
    method: str = METHOD
    stats: dict = field(default_factory=dict)
    # Below `threshold`, at or above this: "possibly NAME". 1.0 = no "possible" band (an old manifest).
    possible_threshold: float = 1.0

    def logit(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return z @ np.asarray(self.coef) + self.intercept

    def probability(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(self.logit(x))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> OpenSetModel:
        """Parse and check a stored model; ValueError when it is not usable (a hostile or old
        manifest must not make search produce NaN or name everyone)."""
        if not isinstance(d, dict) or d.get("method") != METHOD:
            raise ValueError(f"unknown open-set method {d.get('method') if isinstance(d, dict) else d!r}")
        m = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        if list(m.features) != list(FEATURES):
            raise ValueError("open-set features differ from this rvs version")
        arrs = [np.asarray(v, np.float64) for v in (m.mean, m.scale, m.coef)]
        if any(a.shape != (len(FEATURES),) or not np.all(np.isfinite(a)) for a in arrs) or np.any(arrs[1] <= 0):
            raise ValueError("open-set model coefficients are malformed")
        if not (math.isfinite(m.intercept) and 0.0 < m.threshold < 1.0 and 0.0 < m.target_fpir < 1.0):
            raise ValueError("open-set threshold or target is out of range")
        if not (isinstance(m.possible_threshold, (int, float)) and 0.0 < m.possible_threshold <= 1.0):
            raise ValueError("open-set 'possible' threshold is out of range")
        m.possible_threshold = min(float(m.possible_threshold), 1.0)
        return m

    def answer(self, p: float) -> str:
        """"named", "possible" or "no_match" for a calibrated probability."""
        if p > self.threshold:
            return "named"
        if p >= min(self.possible_threshold, self.threshold):
            return "possible"
        return "no_match"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-3, iters: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Weighted L2-regularised logistic regression by Newton's method on standardised features.
    Returns (mean, scale, coef, intercept)."""
    mean = np.average(x, axis=0, weights=w)
    scale = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w))
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    beta = np.zeros(z.shape[1])
    w = w / w.sum() * len(w)
    reg = np.full(z.shape[1], l2 * len(w))
    reg[-1] = 0.0
    for _ in range(iters):
        p = _sigmoid(z @ beta)
        g = z.T @ (w * (p - y)) + reg * beta
        h = (z * (w * p * (1 - p))[:, None]).T @ z + np.diag(reg) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(h, g)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return mean, scale, beta[:-1], float(beta[-1])


def fpir_upper_bound(k: int, n: int, z: float = 1.645) -> float:
    """One-sided 95% Wilson upper bound of a false-positive rate seen k times in n strangers."""
    if n == 0:
        return 1.0
    p = k / n
    den = 1 + z * z / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + half) / den)


def operating_threshold(stranger_probs: np.ndarray, target_fpir: float, weights: np.ndarray | None = None) -> tuple[float, float, float]:
    """The lowest probability threshold whose strangers' FPIR upper bound stays <= target.

    weights: per stranger example (1 / photos of its person, so each person counts once); the
    bound then uses the effective number of strangers. Returns (threshold, FPIR seen, bound)."""
    p = np.asarray(stranger_probs, np.float64)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, np.float64)
    if len(p) == 0 or w.sum() <= 0:
        return 1 - 1e-9, 0.0, 1.0
    order = np.argsort(-p, kind="stable")
    p, w = p[order], w[order]
    n_eff = w.sum() ** 2 / np.sum(w * w)
    # FPIR if the threshold sits at p[i] (named when p > threshold: the strangers before i).
    fpir = np.concatenate([[0.0], np.cumsum(w)[:-1]]) / w.sum()
    ok = [i for i in range(len(p)) if fpir_upper_bound(int(round(fpir[i] * n_eff)), int(round(n_eff))) <= target_fpir]
    i = max(ok) if ok else 0
    # Ties: everything at p[i] is refused too, which only lowers the FPIR.
    thr = min(max(float(p[i]), 1e-6), 1 - 1e-9)
    return thr, float(fpir[i]), fpir_upper_bound(int(round(fpir[i] * n_eff)), int(round(n_eff)))


@dataclass
class Reference:
    """Shipped LFW embeddings for calibration: `strangers` (people with one photo) and `people`
    (up to 4 photos each of people with several; `people_photos[i]` rows per person, in order),
    with their names."""

    model_id: str
    stranger_names: list[str]
    strangers: np.ndarray
    people_names: list[str]
    people: np.ndarray
    people_photos: list[int]

    def groups(self) -> list[np.ndarray]:
        """Row indices of `people`, one array per person."""
        ends = np.cumsum(self.people_photos)
        return [np.arange(e - n, e) for e, n in zip(ends, self.people_photos)]

    def excluding(self, names: set[str]) -> Reference:
        """Without anyone whose name is in `names` (case and separators ignored)."""
        key = {_name_key(n) for n in names}
        ks = [i for i, n in enumerate(self.stranger_names) if _name_key(n) not in key]
        kp = [i for i, n in enumerate(self.people_names) if _name_key(n) not in key]
        groups = self.groups()
        rows = np.concatenate([groups[i] for i in kp]) if kp else np.zeros(0, np.int64)
        return Reference(
            self.model_id,
            [self.stranger_names[i] for i in ks],
            self.strangers[ks],
            [self.people_names[i] for i in kp],
            self.people[rows],
            [self.people_photos[i] for i in kp],
        )

    def save(self, folder: Path) -> Path:
        from rvs.fileio import write_json_atomic

        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / _safe(self.model_id)
        for suffix, arr in ((".strangers.npy", self.strangers), (".people.npy", self.people)):
            tmp = stem.with_name(stem.name + suffix + ".tmp")
            with open(tmp, "wb") as f:
                np.save(f, arr.astype(np.float16), allow_pickle=False)
            tmp.replace(stem.with_name(stem.name + suffix))
        write_json_atomic(
            stem.with_name(stem.name + ".json"),
            {
                "model_id": self.model_id,
                "stranger_names": self.stranger_names,
                "people_names": self.people_names,
                "people_photos": self.people_photos,
            },
        )
        return stem

    @classmethod
    def load(cls, model_id: str, folder: Path = REFERENCE_DIR) -> Reference | None:
        """The reference set for `model_id`, or None when none is shipped / it is malformed."""
        stem = folder / _safe(model_id)
        try:
            info = json.loads(stem.with_name(stem.name + ".json").read_text())
            s = np.load(stem.with_name(stem.name + ".strangers.npy"), allow_pickle=False).astype(np.float32)
            p = np.load(stem.with_name(stem.name + ".people.npy"), allow_pickle=False).astype(np.float32)
            photos = [int(n) for n in info["people_photos"]]
            ok = (
                info.get("model_id") == model_id
                and s.ndim == p.ndim == 2
                and len(s) == len(info["stranger_names"])
                and len(photos) == len(info["people_names"])
                and all(n >= 2 for n in photos)
                and len(p) == sum(photos)
                and bool(np.all(np.isfinite(s)))
                and bool(np.all(np.isfinite(p)))
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not ok:
            return None
        return cls(model_id, list(info["stranger_names"]), _unit(s), list(info["people_names"]), _unit(p), photos)


def _safe(model_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)


def _name_key(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def reference_features(t: Templates, ref: Reference, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of reference queries against the gallery: (stranger features, mated features,
    mated correct). Each reference person is added to the gallery with as many photos as a
    random gallery person has (at most all but one of theirs) and searched with another, so the
    gallery's crowding and its number of photos per person apply to them."""
    xs = query_features(t, ref.strangers)[0] if len(ref.strangers) else np.zeros((0, len(FEATURES)))
    if not len(ref.people_names):
        return xs, np.zeros((0, len(FEATURES))), np.zeros(0, bool)
    rng = np.random.default_rng(seed)
    enrol, probe, counts = [], [], []
    for rows in ref.groups():
        k = int(min(rng.choice(t.counts) if len(t) else 1, len(rows) - 1))
        enrol.append(_unit(ref.people[rows[:k]].sum(0, keepdims=True))[0])
        probe.append(ref.people[rows[-1]])
        counts.append(k)
    enrol_v, probe_v = np.stack(enrol), np.stack(probe)
    # Each probe meets the gallery plus its own enrolment only (one extra column), so the
    # crowding it sees is the gallery's, not that of a thousand reference people added at once.
    n_id = len(t)
    own_d = np.sqrt(np.clip(2.0 - 2.0 * np.sum(probe_v * enrol_v, 1), 0.0, None))
    dt = np.hstack([_dist(probe_v, t.vectors), own_d[:, None]])
    all_counts = np.hstack([np.broadcast_to(t.counts, (len(probe_v), n_id)), np.asarray(counts, np.int64)[:, None]])
    own = np.full(len(probe_v), n_id)
    top = dt.argmin(1)
    ds = np.zeros(len(probe_v), np.float32)
    for i, rows in enumerate(ref.groups()):
        if top[i] == n_id:
            ds[i] = _dist(probe_v[i : i + 1], ref.people[rows[: counts[i]]]).min()
    in_gallery = top < n_id
    if in_gallery.any():
        ds[in_gallery] = _nearest_photo(probe_v[in_gallery], t, top[in_gallery])
    xm, top = features_from_distances(dt, all_counts, ds, top)
    return xs, xm, top == own


def calibrate(
    embeddings: np.ndarray,
    identities: Sequence[str],
    reference: Reference | None,
    target_fpir: float = 0.01,
    prior: float = 0.3,
    min_examples: int = 200,
    min_probability: float = 0.5,
    possible_fpir: float = 0.02,
) -> OpenSetModel | None:
    """Fit the gallery's open-set model (see the module docstring). None when there are too few
    mated or stranger examples to calibrate (fewer than `min_examples` each): such a gallery
    names nobody rather than guess."""
    t = Templates.from_gallery(embeddings, identities)
    x_loo, ok_loo, w_loo = leave_one_out(t)
    x_loio, w_loio = leave_one_identity_out(t)
    if reference is not None:
        x_rs, x_rm, ok_rm = reference_features(t, reference.excluding(set(t.names)))
    else:
        x_rs, x_rm, ok_rm = np.zeros((0, len(FEATURES))), np.zeros((0, len(FEATURES))), np.zeros(0, bool)
    x_m = np.vstack([x_loo, x_rm])
    ok_m = np.concatenate([ok_loo, ok_rm])
    # Every person counts once: a person with 500 photos would otherwise make the model and the
    # threshold about that person.
    w_m = np.concatenate([w_loo, np.ones(len(x_rm))])
    x_s = np.vstack([x_loio, x_rs])
    w_s = np.concatenate([w_loio, np.ones(len(x_rs))])
    if len(x_m) < min_examples or len(x_s) < min_examples:
        return None
    x = np.vstack([x_m, x_s])
    y = np.concatenate([ok_m, np.zeros(len(x_s), bool)]).astype(np.float64)
    # Weight mated vs stranger examples to the assumed share of queries of gallery people.
    w = np.concatenate([w_m * prior / w_m.sum(), w_s * (1 - prior) / w_s.sum()])
    mean, scale, coef, intercept = fit_logistic(x, y, w)
    m = OpenSetModel(list(FEATURES), mean.tolist(), scale.tolist(), coef.tolist(), intercept, 0.5, target_fpir, prior)
    # The operating point must hold for each kind of stranger seen: gallery people left out (one
    # photo each, so the bound counts people) and reference strangers; the stricter one wins.
    cands = [
        operating_threshold(m.probability(xx), target_fpir, ww)
        for xx, ww in ((x_loio, w_loio), (x_rs, np.ones(len(x_rs))))
        if ww.sum() >= min_examples
    ]
    thr, fpir_seen, fpir_ub = max(cands) if cands else operating_threshold(m.probability(x_s), target_fpir, w_s)
    # Never name a face that is more likely someone else (small galleries reach the FPIR target
    # at low probabilities: few strangers come close to anyone there).
    rule = "fpir"
    if thr < min_probability:
        thr, rule = min_probability, "min_probability"
        fpir_seen = max(float(np.sum(ww[m.probability(xx) > thr]) / ww.sum()) for xx, ww in ((x_loio, w_loio), (x_rs, np.ones(len(x_rs)))) if ww.sum() > 0)
    m.threshold = thr
    # The "possible" band: as low as the strangers allow at `possible_fpir` (same bound, same two
    # kinds of strangers, the stricter wins), never above the naming threshold.
    pcands = [
        operating_threshold(m.probability(xx), possible_fpir, ww)[0] for xx, ww in ((x_loio, w_loio), (x_rs, np.ones(len(x_rs)))) if ww.sum() >= min_examples
    ]
    m.possible_threshold = min(max(pcands) if pcands else operating_threshold(m.probability(x_s), possible_fpir, w_s)[0], thr)
    p_m = m.probability(x_m)
    m.stats = {
        "mated_examples": {"leave_one_out": int(len(x_loo)), "reference_people": int(len(x_rm))},
        "stranger_examples": {"leave_one_identity_out": int(len(x_loio)), "reference_strangers": int(len(x_rs))},
        "reference_model_id": reference.model_id if reference is not None else None,
        "fpir_calibration": round(fpir_seen, 5),
        "fpir_upper_bound_95": round(fpir_ub, 5),  # at the FPIR rule's threshold (the bound that was required)
        "threshold_rule": rule,
        "dir_calibration": round(float(np.mean((p_m > thr) & ok_m)), 4),
        "possible_fpir_target": possible_fpir,
        "false_absence_calibration": round(float(np.mean(p_m[ok_m] < m.possible_threshold)) if ok_m.any() else 0.0, 4),
        "identities": len(t),
        "photos": int(len(t.label)),
    }
    return m


# ---------------------------------------------------------------------------------------------
# Answers


def format_probability(p: float | None) -> str:
    """A probability for people: "97%", ">99%", "<1%" (never a false "100%")."""
    if p is None or p != p:
        return "?"
    if p >= 0.995:
        return ">99%"
    if p < 0.005:
        return "<1%"
    return f"{p:.0%}"


ANSWERS = ("named", "possible", "no_match")


@dataclass
class Identification:
    """One query face's answer (`answer`: "named", "possible" or "no_match"; see the module
    docstring). identity: the named person, or None. candidate: the nearest identity (named,
    possible, or only a look-alike); probability: P(candidate is right), calibrated for this gallery
    (None when the gallery has no calibration)."""

    identity: str | None
    candidate: str
    probability: float | None
    template_distance: float
    threshold: float | None
    reason: str | None = None
    answer: str = "no_match"
    possible_threshold: float | None = None

    def to_dict(self) -> dict:
        return {
            "answer": self.answer,
            "identity": self.identity,
            "candidate": self.candidate,
            "probability": None if self.probability is None else round(self.probability, 4),
            "template_distance": round(self.template_distance, 4),
            "threshold": None if self.threshold is None else round(self.threshold, 4),
            "possible_threshold": None if self.possible_threshold is None else round(self.possible_threshold, 4),
            "reason": self.reason,
        }


class Identifier:
    """Gallery templates + the gallery's open-set model: `identify(embeddings)` -> Identification
    per row. Without a model (uncalibrated gallery) nobody is named."""

    def __init__(self, embeddings: np.ndarray, identities: Sequence[str], model: OpenSetModel | None):
        self.templates = Templates.from_gallery(embeddings, identities)
        self.model = model

    def identify(self, q: np.ndarray, blocked: Sequence[str | None] | None = None) -> list[Identification]:
        """blocked[i]: a reason why face i must not be named (too small, blurred, profile)."""
        q = np.atleast_2d(np.asarray(q, np.float32))
        if len(self.templates) == 0:
            return [Identification(None, "", None, 2.0, None, "the gallery is empty") for _ in q]
        x, top, d1 = query_features(self.templates, q)
        out = []
        probs = self.model.probability(x) if self.model is not None else [None] * len(q)
        for i in range(len(q)):
            name = self.templates.names[int(top[i])]
            p = None if probs[i] is None else float(probs[i])
            reason = (blocked[i] if blocked is not None else None) or None
            named, answer = None, "no_match"
            if self.model is None:
                reason = reason or "this gallery has no open-set calibration, so no one is named"
            elif p is not None:
                answer = self.model.answer(p)
                if answer == "named" and reason is not None:
                    answer = "possible"  # too small / blurred / turned to be named: said as "possibly"
                named = name if answer == "named" else None
            m = self.model
            out.append(Identification(named, name, p, float(d1[i]), m.threshold if m else None, reason, answer, m.possible_threshold if m else None))
        return out


def reference_from_index(
    embeddings: np.ndarray, identities: Sequence[str], model_id: str, max_people: int = 1000, max_photos: int = 4
) -> Reference:
    """The shipped reference set from an LFW index: every one-photo person as a stranger, and up
    to `max_photos` photos of `max_people` people with several (those with the most photos up to
    `max_photos` first, so that galleries of several photos per person can be mirrored)."""
    by: dict[str, list[int]] = {}
    for i, n in enumerate(identities):
        by.setdefault(n, []).append(i)
    strangers = sorted(n for n, r in by.items() if len(r) == 1)
    multi = sorted((n for n, r in by.items() if len(r) >= 2), key=lambda n: (-min(len(by[n]), max_photos), n))[:max_people]
    multi.sort()
    emb = np.asarray(embeddings, np.float32)
    return Reference(
        model_id,
        strangers,
        emb[[by[n][0] for n in strangers]],
        multi,
        emb[[i for n in multi for i in by[n][:max_photos]]],
        [min(len(by[n]), max_photos) for n in multi],
    )
