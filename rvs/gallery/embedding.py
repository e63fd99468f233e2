"""The embedding stage of a gallery, in this process: photos -> faces -> embeddings, batched, as one
`PhotoFaces` record per photo. `rvs.gallery.distributed` runs the same stage on Ray Data and
hands back the same records.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rvs.config import Config
from rvs.faces.align import iter_faces
from rvs.faces.detect import FaceDetector, select_main_face
from rvs.faces.embedders import FaceEmbedder, face_inputs
from rvs.gallery.photos import Photo, read_uri


@dataclass
class PhotoFaces:
    """What the embedding stage returns for one photo: its faces (boxes, probs, unit embeddings;
    none when no face was found) or an error (unreadable). Same from the local and the Ray path."""

    key: str
    boxes: np.ndarray
    probs: np.ndarray
    embeddings: np.ndarray
    error: str | None = None


def detect_embed(
    photos: Sequence[Photo],
    config: Config,
    detector: FaceDetector,
    embedder: FaceEmbedder,
    all_faces: bool = False,
    progress: bool = True,
    datas: Sequence[bytes] | None = None,
) -> tuple[list[PhotoFaces], float, float]:
    """The embedding stage, in this process: detect (batched), keep the main face or all faces,
    embed (batched). Returns per-photo results in order, and detect / embed seconds."""
    t0 = time.perf_counter()
    srcs = list(datas) if datas is not None else [read_uri(p.src) if "://" in str(p.src) else Path(p.src) for p in photos]
    chosen_faces, owner, boxes, probs = [], [], [], []
    errors: dict[int, str] = {}
    for i, size, faces, err in iter_faces(srcs, config, detector, progress, desc="detect"):
        if err:
            errors[i] = err
            continue
        if not faces:
            continue
        chosen = faces if all_faces else [faces[select_main_face(faces, size)]]
        for f in chosen:
            chosen_faces.append(f)
            owner.append(i)
            boxes.append([round(float(v), 1) for v in f.box])
            probs.append(round(float(f.prob), 4))
    t_detect = time.perf_counter() - t0
    emb = _embed_with_progress(embedder, chosen_faces, progress)
    t_embed = time.perf_counter() - t0 - t_detect
    owner_a = np.array(owner, np.int64)
    out = []
    for i, p in enumerate(photos):
        sel = np.flatnonzero(owner_a == i)
        out.append(
            PhotoFaces(
                p.key,
                np.array([boxes[j] for j in sel], np.float32).reshape(-1, 4),
                np.array([probs[j] for j in sel], np.float32),
                emb[sel] if len(sel) else np.zeros((0, embedder.spec.dim), np.float32),
                errors.get(i),
            )
        )
    return out, t_detect, t_embed


def _embed_with_progress(embedder: FaceEmbedder, faces: list, progress: bool) -> np.ndarray:
    if not faces:
        return np.zeros((0, embedder.spec.dim), np.float32)
    chunk = 128
    parts = []
    with tqdm(total=len(faces), desc="embed", unit="face", disable=not progress) as bar:
        for s in range(0, len(faces), chunk):
            parts.append(embedder.embed_inputs(face_inputs(faces[s : s + chunk], embedder.spec.inputs)))
            bar.update(len(parts[-1]))
    return np.concatenate(parts)
