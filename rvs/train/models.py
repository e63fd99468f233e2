"""The report's two models.

Both take standardized input (rvs.faces.embed.standardize: (x - 127.5) / 128) and expose
`embed(x) -> N x 512 unit vectors`, so evaluation treats them alike.
"""

from __future__ import annotations

import logging
import socket

import torch
import torch.nn as nn
import torch.nn.functional as F

from rvs.config import Config
from rvs.errors import RvsError

log = logging.getLogger(__name__)

# InceptionResnetV1's top-level modules in forward order (for freezing a prefix).
ENCODER_ORDER = [
    "conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b",
    "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8", "avgpool_1a", "dropout",
    "last_linear", "last_bn",
]  # fmt: skip


class Decoder(nn.Module):
    """512-d embedding -> 3 x 160 x 160 image in the standardized input space.

    A linear layer to a 5 x 5 map, then five stride-2 transposed convolutions (5 -> 160 px),
    halving the channels each time; tanh bounds the output to [-1, 1] like the input.
    """

    def __init__(self, dim: int = 512, channels: int = 256, size: int = 160):
        super().__init__()
        if size % 32:
            raise ValueError("decoder output size must be a multiple of 32")
        self.c, self.s0 = channels, size // 32
        self.fc = nn.Linear(dim, channels * self.s0 * self.s0)
        layers: list[nn.Module] = []
        c = channels
        for i in range(5):
            last = i == 4
            out = 3 if last else max(c // 2, 8)
            layers.append(nn.ConvTranspose2d(c, out, kernel_size=4, stride=2, padding=1))
            if not last:
                layers += [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            c = out
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc(z)).view(-1, self.c, self.s0, self.s0)
        return torch.tanh(self.net(x))


class ImprovedModel(nn.Module):
    """InceptionResnetV1 encoder + decoder: forward(x) -> (unit embedding, reconstruction)."""

    def __init__(self, encoder: nn.Module, decoder_channels: int = 256, freeze_bn: bool = True):
        super().__init__()
        self.encoder = encoder
        self.decoder = Decoder(512, decoder_channels, 160)
        self.frozen: list[str] = []
        self.freeze_bn = freeze_bn

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.encoder(x)
        r = self.decoder(e)
        if r.shape[-1] != x.shape[-1]:
            r = F.interpolate(r, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return e, r

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def freeze_before(self, name: str) -> None:
        """Freeze the encoder's modules before `name` (no gradient, BatchNorm statistics kept)."""
        if not name:
            return
        if name not in ENCODER_ORDER:
            raise RvsError(f"train_from={name!r}: not an encoder module ({', '.join(ENCODER_ORDER)})")
        self.frozen = ENCODER_ORDER[: ENCODER_ORDER.index(name)]
        for m in self.frozen:
            for p in getattr(self.encoder, m).parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ImprovedModel:
        super().train(mode)
        for m in self.frozen:  # frozen modules: BatchNorms keep the pretrained running statistics
            getattr(self.encoder, m).eval()
        if self.freeze_bn:
            # The default weights come from a graph with BatchNorm folded into the convolutions:
            # each BatchNorm is an identity plus bias. In train mode it would normalise by batch
            # statistics instead and change the pretrained function at step 0 (measured: View 1
            # test accuracy 0.99 -> 0.86 after a 300-step smoke run). Eval mode keeps it; the
            # BatchNorm weights and biases still train.
            for mod in self.encoder.modules():
                if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    mod.eval()
        return self


def build_improved(init_weights: str, config: Config, decoder_channels: int = 256, freeze_bn: bool = True) -> tuple[ImprovedModel, str]:
    """(model, id of the initial weights). init_weights: an rvs.models.weights spec, or "" for random."""
    from rvs.faces.embed import build_model

    if init_weights:
        from rvs.models.weights import load_weights

        w = load_weights(init_weights, config)
        encoder, init_id = build_model(w.state_dict), w.model_id
    else:
        encoder, init_id = build_model(None), "random"
    return ImprovedModel(encoder, decoder_channels, freeze_bn), init_id


class BaselineModel(nn.Module):
    """ResNet-50 trunk + two fully connected layers (2048 -> 512 -> identities).

    The first fully connected layer is the embedding (before its ReLU, L2-normalised), the
    second classifies the training identities. Input is the shared standardized space; it is
    mapped to ImageNet's normalisation inside so that ImageNet weights see what they expect.
    """

    def __init__(self, n_classes: int, embedding_dim: int = 512, imagenet: bool = True):
        super().__init__()
        from torchvision.models import resnet50

        self.imagenet_loaded = False
        self.imagenet_note = "random init (ImageNet weights not requested)"
        weights = None
        if imagenet:
            weights, self.imagenet_note = _imagenet_weights()
            self.imagenet_loaded = weights is not None
        self.trunk = resnet50(weights=weights) if weights is not None else resnet50(weights=None)
        self.trunk.fc = nn.Identity()
        self.fc1 = nn.Linear(2048, embedding_dim)
        self.fc2 = nn.Linear(embedding_dim, n_classes)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x01 = (x * 128.0 + 127.5) / 255.0  # undo rvs standardisation -> [0, 1]
        return self.fc1(self.trunk((x01 - self.mean) / self.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.features(x)))

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.features(x), dim=1)


def _imagenet_weights(timeout: float = 15.0):
    """torchvision's ImageNet ResNet-50 weights, downloaded (or from torch's cache) when
    reachable; (None, reason) when not, e.g. on a machine without internet."""
    from torchvision.models import ResNet50_Weights

    w = ResNet50_Weights.IMAGENET1K_V2
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # torch.hub's urllib download has no timeout of its own
    try:
        w.get_state_dict(progress=False, check_hash=True)
        return w, f"ImageNet weights {w.name} (torchvision)"
    except Exception as e:
        msg = f"ImageNet weights unavailable ({type(e).__name__}: {str(e)[:100]}); random init"
        log.warning(msg)
        return None, msg
    finally:
        socket.setdefaulttimeout(old)
