"""Building a gallery: a folder of photos -> faces -> embeddings -> a saved `FaceIndex`.

Batched end to end (images are detected `detect_batch_size` at a time and crops embedded
`embed_batch_size` at a time), with a progress bar and a summary of what was skipped and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rvs.config import Config
from rvs.detect import DETECTOR_ID, Face, FaceDetector, select_main_face
from rvs.embed import Embedder
from rvs.errors import BadInputError, RvsError
from rvs.identify import OpenSetModel, Reference, calibrate
from rvs.imageio import load_image
from rvs.index import FaceIndex
from rvs.lfw import list_images
from rvs.recipe import recipe_of

log = logging.getLogger(__name__)


def iter_faces(
    paths: Sequence[Path], config: Config, detector: FaceDetector, progress: bool = True, desc: str = "detect"
) -> Iterator[tuple[int, tuple[int, int], list[Face] | None, str | None]]:
    """Yield (i, image_size, faces, error) for every path; unreadable images give faces=None and
    a one-line error instead of stopping the run."""
    bs = config.detect_batch_size
    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, smoothing=0.05) as bar:
        for start in range(0, len(paths), bs):
            batch, sizes, ok = [], [], []
            for i in range(start, min(start + bs, len(paths))):
                try:
                    img = load_image(paths[i], max_pixels=config.max_pixels)
                except BadInputError as e:
                    yield i, (0, 0), None, str(e)
                    continue
                batch.append(img)
                sizes.append(img.size)
                ok.append(i)
            for i, size, faces in zip(ok, sizes, detector.detect(batch) if batch else []):
                yield i, size, faces, None
            bar.update(min(bs, len(paths) - start))


@dataclass
class AlignedFaces:
    """Main face of each image: crops N x 160 x 160 x 3 uint8, boxes N x 4, probs N; `found` marks
    images where a face was detected (crops of the others are zeros)."""

    crops: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    found: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)


def align_main_faces(paths: Sequence[Path], config: Config, detector: FaceDetector | None = None, progress: bool = True) -> AlignedFaces:
    """Detect the main (centre-weighted largest) face of each image and return aligned crops."""
    detector = detector or FaceDetector(config)
    n, s = len(paths), config.face_size
    out = AlignedFaces(np.zeros((n, s, s, 3), np.uint8), np.zeros((n, 4), np.float32), np.zeros(n, np.float32), np.zeros(n, bool))
    for i, size, faces, err in iter_faces(paths, config, detector, progress, desc="align"):
        if err:
            out.errors[i] = err
            continue
        j = select_main_face(faces, size)
        if j is not None:
            out.crops[i], out.boxes[i], out.probs[i], out.found[i] = faces[j].crop, faces[j].box, faces[j].prob, True
    return out


def build_index(
    folder: str | Path,
    out_dir: str | Path | None,
    config: Config,
    all_faces: bool = False,
    embedder: Embedder | None = None,
    detector: FaceDetector | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> tuple[FaceIndex, dict]:
    """Index every image under `folder` (folder-per-person like LFW, or flat).

    all_faces=False keeps the main face of each image (the labelled person in LFW-style
    galleries); True indexes every face. Returns the index and a summary dict.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RvsError(f"{folder}: not a folder")
    items = list_images(folder)
    if limit:
        items = items[:limit]
    if not items:
        raise RvsError(f"{folder}: no images found")
    t0 = time.perf_counter()
    detector = detector or FaceDetector(config)
    embedder = embedder or Embedder(config)
    paths = [p for _, p in items]
    crops, meta = [], {"identity": [], "path": [], "box": [], "prob": []}
    no_face, failures = [], []
    for i, size, faces, err in iter_faces(paths, config, detector, progress, desc="index"):
        if err:
            failures.append(err)
            continue
        if not faces:
            no_face.append(str(paths[i]))
            continue
        chosen = faces if all_faces else [faces[select_main_face(faces, size)]]
        for f in chosen:
            crops.append(f.crop)
            meta["identity"].append(items[i][0])
            meta["path"].append(str(paths[i].relative_to(folder)))
            meta["box"].append([round(float(v), 1) for v in f.box])
            meta["prob"].append(round(float(f.prob), 4))
    t_detect = time.perf_counter() - t0
    emb = _embed_with_progress(embedder, crops, progress)
    t_embed = time.perf_counter() - t0 - t_detect
    index = FaceIndex(emb, meta, embedder.model_id, config.n_trees, config.search_k)
    index.extra["source_folder"] = str(folder.resolve())
    index.extra["detector"] = DETECTOR_ID
    # The crops were cut with the detector's settings, which may not be `config`'s.
    dc = getattr(detector, "config", config)
    index.extra["crop"] = {"size": dc.face_size, "margin": dc.margin, "margin_units": dc.margin_units}
    # What every query must match to be compared with these faces (rvs.recipe; SearchEngine checks it).
    index.extra["recipe"] = recipe_of(detector, embedder)
    index.build_annoy()
    calibration = calibrate_index(index, config)
    if out_dir is not None:
        index.save(out_dir)
    summary = {
        "images": len(items),
        "faces_indexed": len(emb),
        "identities": index.n_identities,
        "images_without_face": len(no_face),
        "failures": len(failures),
        "failure_messages": failures[:20],
        "no_face_examples": no_face[:20],
        "seconds": round(time.perf_counter() - t0, 2),
        "detect_seconds": round(t_detect, 2),
        "embed_seconds": round(t_embed, 2),
        "model_id": embedder.model_id,
        "open_set": calibration,
        "out": str(out_dir) if out_dir else None,
    }
    return index, summary


def ensure_calibrated(index: FaceIndex, config: Config, save_to: str | Path | None = None, trust: bool = True) -> bool:
    """Calibrate an index whose open-set model is missing, of an older method or malformed (built
    before calibration existed, or by another rvs version), and save it when `save_to` is given.
    trust=False (a downloaded artifact): recalibrate from its verified embeddings whatever it
    says, so a publisher cannot ship a threshold that names everyone. True if it changed."""
    info = index.extra.get("open_set")
    if trust and info is not None:
        try:
            OpenSetModel.from_dict(info)
            return False
        except (TypeError, ValueError):
            pass
    log.info("calibrating open-set identification for a gallery of %d faces", len(index))
    calibrate_index(index, config)
    if save_to is not None and "open_set" in index.extra:
        index.save(save_to)
    return True


def calibrate_index(index: FaceIndex, config: Config, reference: Reference | None = None) -> dict | None:
    """Fit the gallery's open-set model (rvs.identify.calibrate) and store it, with how it was
    obtained, in `index.extra["open_set"]` (saved into the manifest). Uses the reference set
    shipped for the index's model when there is one. Returns the stored dict, or None (and
    removes any old one) when the gallery is too small to calibrate: it then names no one."""
    t0 = time.perf_counter()
    reference = reference or Reference.load(index.model_id)
    model = calibrate(
        index.embeddings, index.meta["identity"], reference, target_fpir=config.open_set_fpir, prior=config.open_set_prior, min_probability=config.open_set_min_probability
    )
    if model is None:
        index.extra.pop("open_set", None)
        log.warning("gallery too small to calibrate open-set identification: it will name no one")
        return None
    info = model.to_dict()
    info["source"] = (
        f"this gallery's photos (leave-one-out) + LFW reference strangers shipped for {reference.model_id}"
        if reference is not None
        else "this gallery's photos only (leave-one-out; no reference set ships for this model)"
    )
    info["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    info["seconds"] = round(time.perf_counter() - t0, 2)
    index.extra["open_set"] = info
    return info


def _embed_with_progress(embedder: Embedder, crops: list[np.ndarray], progress: bool) -> np.ndarray:
    if not crops:
        return np.zeros((0, 512), np.float32)
    arr = np.stack(crops)
    chunk = embedder.config.embed_batch_size * 4
    parts = []
    with tqdm(total=len(arr), desc="embed", unit="face", disable=not progress) as bar:
        for s in range(0, len(arr), chunk):
            parts.append(embedder.embed(arr[s : s + chunk]))
            bar.update(len(parts[-1]))
    return np.concatenate(parts)
