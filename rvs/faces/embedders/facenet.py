"""FaceNet: 160 x 160 face crops (MTCNN box + margin) in, 512-d unit vectors out.

InceptionResnetV1 (facenet-pytorch's class) with David Sandberg's CASIA-WebFace weights by default
(rvs.models.weights: where they come from and how they are checked). The seed's model, and the
one the training package trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rvs.config import Config
from rvs.faces.embedders.base import EmbedderSpec

SPEC = EmbedderSpec(
    name="facenet",
    dim=512,
    inputs=("crop",),
    title="FaceNet",
    architecture="Inception-ResNet-v1 (facenet-pytorch), 160 x 160 crops, 512-d",
    training_data="CASIA-WebFace (~494k photos of 10,575 people), David Sandberg's 20180408-102900 weights",
    licence="MIT (facenet, facenet-pytorch); CASIA-WebFace is for non-commercial research",
    # LFW pairs.txt with the default weights, centred: accuracy-optimal 1.147 (10-fold 0.9892); at
    # 1.0 one in 3,000 different-person pairs passes and 92% of same-person pairs are kept.
    match_threshold=1.15,
    video_threshold=1.0,
)


def standardize(crops: np.ndarray) -> torch.Tensor:
    """uint8 NxHxWx3 RGB -> float Nx3xHxW in about [-1, 1]: facenet's fixed image standardization,
    which Sandberg's 2018 models and facenet-pytorch's weights were trained with."""
    t = torch.from_numpy(np.array(crops, dtype=np.uint8, copy=True)).permute(0, 3, 1, 2).float()
    return (t - 127.5) / 128.0


def recenter(e: torch.Tensor, center: torch.Tensor | None) -> torch.Tensor:
    """Unit embeddings N x 512 -> normalize(e - center): the weights' reference centre removed
    (`Config.center_embeddings`); unchanged when center is None."""
    return e if center is None else torch.nn.functional.normalize(e - center, dim=1)


def use_bf16(precision: str, device: torch.device) -> bool:
    """bfloat16 autocast only where the hardware does it natively; emulated bf16 is slower."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def build_model(state_dict: dict | None = None) -> torch.nn.Module:
    """An `InceptionResnetV1` (facenet-pytorch's class) in eval mode, loaded with `state_dict`."""
    from facenet_pytorch import InceptionResnetV1

    model = InceptionResnetV1(pretrained=None, classify=False)
    if state_dict is not None:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        # The classifier head ("logits.*") is optional; everything else must be there.
        missing = [k for k in missing if not k.startswith("logits.")]
        if missing:
            raise ValueError(f"weights are missing {len(missing)} tensors, e.g. {missing[:3]}")
    return model.eval()


class Embedder:
    """InceptionResnetV1 face embedder (`SPEC`).

    In: face crops as uint8 array N x 160 x 160 x 3 (RGB), e.g. `Face.crop` from rvs.faces.detect.
    Out: float32 array N x 512, each row L2-normalised, so Euclidean distance d and cosine
    similarity s relate as d^2 = 2 - 2s. When the weights carry a reference centre and
    `Config.center_embeddings` is on, the network's unit output has the centre subtracted and is
    normalised again; `model_id` then names weights and centre (what index manifests record).
    """

    def __init__(
        self,
        config: Config | None = None,
        model: torch.nn.Module | None = None,
        model_id: str | None = None,
        center: np.ndarray | None = None,
    ):
        self.config = config or Config()
        self.device = self.config.torch_device()
        if model is None:
            from rvs.models.weights import load_weights

            weights = load_weights(self.config.weights, self.config)
            model = build_model(weights.state_dict)
            model_id = weights.embedding_id(self.config.center_embeddings)
            center = weights.center if self.config.center_embeddings else None
        elif center is not None:
            from rvs.models.weights import embedding_id

            model_id = embedding_id(model_id or "unknown", center)
        self.model = model.to(self.device).eval()
        self.model_id = model_id or "unknown"
        self.center = None if center is None else torch.as_tensor(np.asarray(center, np.float32)).to(self.device)
        self.bf16 = use_bf16(self.config.embed_precision, self.device)
        self.spec = SPEC
        if self.device.type == "cpu":
            # oneDNN convolutions run faster on NHWC tensors
            self.model = self.model.to(memory_format=torch.channels_last)

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def embed_inputs(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.embed(inputs["crop"])

    @torch.inference_mode()
    def embed(self, crops: np.ndarray | Sequence[np.ndarray], flip: bool = False) -> np.ndarray:
        """Embed crops in batches of `Config.embed_batch_size`.

        flip: also embed the mirrored crop and average (test-time augmentation; ~2x slower).
        """
        crops = np.asarray(crops, dtype=np.uint8) if not isinstance(crops, np.ndarray) else crops
        if len(crops) == 0:
            return np.zeros((0, 512), np.float32)
        bs = self.config.embed_batch_size
        out = []
        for start in range(0, len(crops), bs):
            x = standardize(crops[start : start + bs]).to(self.device)
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                e = self.model(x).float()
                if flip:
                    e = e + self.model(torch.flip(x, dims=[3])).float()
            e = recenter(torch.nn.functional.normalize(e.float(), dim=1), self.center)
            out.append(e.cpu().numpy())
        return np.concatenate(out).astype(np.float32)


def create(config: Config) -> Embedder:
    return Embedder(config)
