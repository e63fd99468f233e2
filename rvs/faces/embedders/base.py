"""What every face embedder is: its definition (`EmbedderSpec`) and the interface it answers.

An embedder takes face inputs cut by the detector and returns unit vectors (float32 N x dim):
Euclidean distance d and cosine similarity s of two rows relate as d^2 = 2 - 2s. Inputs are named:

- "crop": the MTCNN box plus a margin, `Config.face_size` square (rvs.faces.detect.crop_face);
- "aligned": 112 x 112, the five landmarks moved onto the ArcFace template (rvs.faces.warp).

`Face` objects carry both (`Face.crop`, `Face.aligned`), so `embed_faces` works for any embedder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

INPUTS = ("crop", "aligned")


@dataclass(frozen=True)
class EmbedderSpec:
    """The facts of one embedder, in one place.

    name: what `--model` / `Config.model` calls it. dim: vector size. inputs: the face inputs it
    reads (see the module docstring). title / architecture / training_data / licence: for people
    (model card, About). match_threshold: the accuracy-optimal 1:1 distance on LFW pairs.txt;
    video_threshold: the stricter 1:1 distance of video person mode (about 1 false match in 3,000
    different-person LFW pairs). Both are Euclidean distances between unit vectors."""

    name: str
    dim: int
    inputs: tuple[str, ...]
    title: str
    architecture: str
    training_data: str
    licence: str
    match_threshold: float
    video_threshold: float


class FaceEmbedder(Protocol):
    """The interface of an embedder (FaceNet, SFace, their fusion)."""

    spec: EmbedderSpec
    model_id: str  # names weights and preprocessing: what index manifests record
    precision: str  # "bf16" | "fp32": how it runs here (part of the embedding recipe)

    def embed_inputs(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """{input name: uint8 N x S x S x 3 RGB} -> float32 N x dim unit vectors."""
        ...


def face_inputs(faces: Sequence, needs: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays an embedder reads, stacked from `Face` objects (rvs.faces.detect.Face)."""
    out = {}
    for name in needs:
        if name not in INPUTS:
            raise ValueError(f"unknown face input {name!r}")
        out[name] = np.stack([np.asarray(getattr(f, name), np.uint8) for f in faces])
    return out


def embed_faces(embedder: FaceEmbedder, faces: Sequence) -> np.ndarray:
    """Unit vectors of `Face` objects with any embedder."""
    if len(faces) == 0:
        return np.zeros((0, embedder.spec.dim), np.float32)
    return embedder.embed_inputs(face_inputs(faces, embedder.spec.inputs))


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
