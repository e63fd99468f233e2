"""FaceNet and SFace together: both inputs of a face in, one 640-d unit vector out.

The two models' unit vectors are concatenated with weights sqrt(1 - w) and sqrt(w), so the fused
vector is a unit vector whose cosine similarity is the weighted mean of the two models' cosines:
cos = (1 - w) cos_facenet + w cos_sface (w = `Config.fused_sface_weight`). Every search backend
(exact, Annoy, Milvus) therefore works on it unchanged, and score-level fusion and this are the
same thing. The first 512 values are FaceNet's vector scaled by sqrt(1 - w).
"""

from __future__ import annotations

import numpy as np

from rvs.config import Config
from rvs.faces.embedders import facenet, sface
from rvs.faces.embedders.base import EmbedderSpec, unit_rows

SPEC = EmbedderSpec(
    name="fused",
    dim=facenet.SPEC.dim + sface.SPEC.dim,
    inputs=("crop", "aligned"),
    title="FaceNet + SFace",
    architecture=f"{facenet.SPEC.architecture} + {sface.SPEC.architecture}; weighted concatenation",
    training_data=f"{facenet.SPEC.training_data}; {sface.SPEC.training_data}",
    licence=f"{facenet.SPEC.licence}; {sface.SPEC.licence}",
    match_threshold=1.15,
    video_threshold=1.06,
)


def combine(facenet_vectors: np.ndarray, sface_vectors: np.ndarray, sface_weight: float) -> np.ndarray:
    """Unit FaceNet rows (N x 512) and unit SFace rows (N x 128) -> fused unit rows (N x 640)."""
    if not 0.0 < sface_weight < 1.0:
        raise ValueError(f"fused_sface_weight must be between 0 and 1, not {sface_weight}")
    a = unit_rows(facenet_vectors) * np.sqrt(1.0 - sface_weight)
    b = unit_rows(sface_vectors) * np.sqrt(sface_weight)
    return unit_rows(np.concatenate([a, b], axis=1))


class FusedEmbedder:
    """FaceNet + SFace (`SPEC`). In: {"crop": N x 160 x 160 x 3, "aligned": N x 112 x 112 x 3}."""

    spec = SPEC

    def __init__(self, config: Config | None = None, parts: tuple | None = None):
        self.config = config or Config()
        self.facenet, self.sface = parts or (facenet.Embedder(self.config), sface.SFaceEmbedder(self.config))
        self.weight = float(self.config.fused_sface_weight)
        self.model_id = f"fused-w{self.weight:g}[{self.facenet.model_id}|{self.sface.model_id}]"
        self.precision = self.facenet.precision
        self.bf16 = self.facenet.bf16

    def embed_inputs(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return combine(self.facenet.embed(inputs["crop"]), self.sface.embed(inputs["aligned"]), self.weight)


def create(config: Config) -> FusedEmbedder:
    return FusedEmbedder(config)
