"""The LFW crop and embedding caches that evaluation and training share: two disk caches under `config.cache_dir/"lfw"` make repeated runs cheap and let evaluation and
training share one detection pass:

- crops: detection results (box, probability, found) and aligned uint8 crops, written in parts
  of `PART_SIZE` images (`.npz`, loaded with allow_pickle=False). An interrupted run keeps every
  finished part and continues with the missing images. Images where MTCNN finds no face get a
  fixed centre crop (LFW photos are centred on the labelled face); they are counted and reported.
- embeddings: per model id and crop settings, plain and mirrored crops separately, so one pass
  serves both the plain and the flip-averaged (test-time augmentation) scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rvs.config import Config
from rvs.errors import RvsError
from rvs.faces.detect import DETECTOR_ID, crop_face
from rvs.fileio import atomic_write
from rvs.lfw.dataset import lfw_images_dir

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 2: MTCNN pyramid resized with OpenCV in batches too (boxes changed); 3: landmarks kept
PART_SIZE = 256  # images per cache part: what an interrupted run can lose at most

# Fallback face box as fractions of the image (x1, y1, x2, y2): the median MTCNN box over the
# LFW deep-funneled images (measured on a random 192 of them), so a missed detection is cropped like a hit.
CENTRE_BOX = (0.31, 0.26, 0.68, 0.75)

# uint8 crops N x 160 x 160 x 3 -> float32 N x D unit embeddings.
EmbedFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class LfwCrops:
    """Aligned main-face crops of LFW images, in the order they were asked for.

    paths: image paths relative to the LFW images folder ("Name/Name_0001.jpg").
    crops: N x S x S x 3 uint8. boxes: N x 4 (zeros where no face). probs: N.
    found: N bool, False where MTCNN found no face and the centre crop was used instead.
    landmarks: N x 5 x 2 (the template's points inside the centre box where no face was found).
    """

    paths: list[str]
    crops: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    found: np.ndarray
    key: str = ""  # detector settings + crop geometry: part of the embedding cache's key
    landmarks: np.ndarray | None = None

    def as_input(self, kind: str, images_dir: Path) -> LfwCrops:
        """The same faces as another embedder input: "crop" (self) or "aligned" (112 x 112,
        five-point aligned from the landmarks: rvs.faces.warp), cut from the images in memory."""
        if kind == "crop":
            return self
        if kind != "aligned":
            raise ValueError(f"unknown face input {kind!r}")
        from rvs.faces.warp import ALIGNED_SIZE, align_face
        from rvs.imageio import load_image

        out = np.zeros((len(self.paths), ALIGNED_SIZE, ALIGNED_SIZE, 3), np.uint8)
        for i, rel in enumerate(self.paths):
            try:
                img = load_image(images_dir / rel)
            except RvsError:
                continue
            out[i] = align_face(img, self.landmarks[i])
        return LfwCrops(self.paths, out, self.boxes, self.probs, self.found, f"{self.key}-aligned{ALIGNED_SIZE}", self.landmarks)

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
                landmarks = np.concatenate([a.landmarks for a in parts])
                for i in np.flatnonzero(~found):
                    crops[i] = self._fallback_crop(chunk[i], self.config.margin)
                    landmarks[i] = self._fallback_landmarks(chunk[i])
                name = self._new_part_name()
                paths = np.array(chunk)
                _atomic_savez(self.det_dir / name, paths=paths, boxes=boxes, probs=probs, found=found, landmarks=landmarks)
                _atomic_savez(self.crop_dir / name, paths=paths, crops=crops)
        self._scan()

    def _fallback_crop(self, rel: str, margin: int) -> np.ndarray:
        from rvs.imageio import load_image

        try:
            img = load_image(self.images_dir / rel, max_pixels=self.config.max_pixels)
        except RvsError:
            return np.zeros((self.config.face_size, self.config.face_size, 3), np.uint8)
        return crop_face(img, centre_box(img.size), self.config.face_size, margin, self.config.margin_units)

    def _fallback_landmarks(self, rel: str) -> np.ndarray:
        from rvs.faces.warp import template_landmarks
        from rvs.imageio import load_image

        try:
            img = load_image(self.images_dir / rel, max_pixels=self.config.max_pixels)
        except RvsError:
            return np.zeros((5, 2), np.float32)
        return template_landmarks(centre_box(img.size))

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
            rel_paths, np.zeros((n, s, s, 3), np.uint8), np.zeros((n, 4), np.float32), np.zeros(n, np.float32), np.zeros(n, bool), self.key(margin),
            np.zeros((n, 5, 2), np.float32),
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
                out.landmarks[dst] = z["landmarks"][src]
            if margin is None or margin == self.config.margin:
                self._ensure_crop_part(part)
                with np.load(self.crop_dir / part, allow_pickle=False) as z:
                    out.crops[dst] = z["crops"][src]
        if margin is not None and margin != self.config.margin:
            out.crops[:] = self._recrop(rel_paths, out.boxes, out.found, margin)
        return out


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
        out.append(np.stack([known[p] for p in crops.paths]) if crops.paths else np.zeros((0, 0), np.float32))
    e = out[0] if len(out) == 1 else out[0] + out[1]
    return (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def model_embeddings(cache: CropCache, rel_paths: Sequence[str], model: str | None = None, progress: bool = True) -> np.ndarray:
    """Unit embeddings of the main face of each LFW image with a registered model (default
    `config.model`): FaceNet on the margin crops, SFace on the five-point aligned crops, the fused
    model from those two (both cached per model and crop settings, so each is computed once)."""
    from rvs.faces.embedders import get_spec
    from rvs.faces.embedders.fused import combine

    config = cache.config
    model = model or config.model
    crops = cache.get(rel_paths)

    def facenet() -> np.ndarray:
        fn, mid = default_embedder(config)
        return embed_crops(crops, fn, mid, cache, progress=progress)

    def sface() -> np.ndarray:
        from rvs.faces.embedders.sface import SFaceEmbedder

        emb = SFaceEmbedder(config)
        aligned = crops.as_input("aligned", cache.images_dir)
        return embed_crops(aligned, emb.embed, emb.model_id, cache, progress=progress)

    get_spec(model)  # an unknown name fails here, with the choices
    if model == "facenet":
        return facenet()
    if model == "sface":
        return sface()
    return combine(facenet(), sface(), config.fused_sface_weight)


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
