"""Every training setting in one dataclass, overridable from JSON files and `key=value` strings.

Defaults are the original report's: the improved model (InceptionResnetV1 encoder + decoder,
contrastive + consistency loss) trains 100 epochs with Adam at 1e-3, divided by 10 at epochs
10, 20 and 50. The baseline (ResNet-50 classifier) uses 224x224 inputs and batch 64.
`train/configs/*.json` hold the "smoke" (CPU, minutes) and "full" (GPU) variants.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from rvs.errors import RvsError

MODELS = ("improved", "baseline")


@dataclass
class TrainConfig:
    model: str = "improved"  # improved | baseline

    # --- schedule ---
    epochs: int = 100
    # Steps per epoch; 0 = one pass over the training images (improved: images / (2 * batch),
    # since each pair holds two images; baseline: images / batch).
    steps_per_epoch: int = 0
    max_steps: int = 0  # stop after this many optimizer steps in total (0 = no limit)
    lr: float = 1e-3
    lr_milestones: list[int] = field(default_factory=lambda: [10, 20, 50])  # epochs
    lr_gamma: float = 0.1
    weight_decay: float = 0.0
    # Learning-rate multiplier for the pretrained encoder (1 = the report's single LR).
    encoder_lr_scale: float = 1.0
    # Train only the encoder's modules from this one on (e.g. "repeat_3"); earlier ones stay
    # frozen (no gradient, BatchNorm in eval mode). "" = train everything (the report).
    train_from: str = ""

    # --- data ---
    batch_size: int = 16  # improved: pairs per batch; baseline: images per batch
    image_size: int = 160  # network input; crops are resized when it differs from the cache's 160
    pos_fraction: float = 0.5  # share of same-person pairs per batch
    flip: bool = True  # random horizontal flip
    jitter: int = 8  # random shift of the crop by up to this many pixels (reflect padding)
    num_train_people: int = 0  # 0 = all of peopleDevTrain (smaller for quick experiments)

    # --- improved model ---
    init_weights: str = "casia-webface"  # encoder initialisation (rvs.models.weights spec); "" = random
    # Margin on the Euclidean distance between unit embeddings: sqrt(2) ~ 1.4 is "orthogonal", the
    # typical distance of two unrelated faces, above the ~1.1 same-person threshold, so different
    # people closer than that keep being pushed apart.
    contrastive_margin: float = 1.4
    consistency_weight: float = 1.0
    decoder_channels: int = 256
    # Keep the encoder's BatchNorm layers in eval mode (running statistics fixed). Needed with
    # the default weights, whose BatchNorms are folded (see models.ImprovedModel.train).
    freeze_bn: bool = True

    # --- baseline ---
    pretrained_imagenet: bool = True  # torchvision ImageNet weights when they can be downloaded
    embedding_dim: int = 512  # the first fully connected layer = the embedding

    # --- runtime ---
    seed: int = 0
    device: str = "auto"
    out_dir: str = "artifacts/train/improved"
    checkpoint_every: int = 100  # steps
    log_every: int = 10  # steps
    resume: bool = True  # continue from out_dir/checkpoint if present
    num_threads: int = 0  # torch CPU threads (0 = torch's default)
    eval_at_end: bool = True  # verification + retrieval on the View 1 test people
    eval_flip: bool = False
    # improved: give the fine-tuned encoder its own embedding centre (mean embedding of its training
    # images, the recipe of the default weights' centre), applied in the final evaluation and
    # stored in the export, so it is scored and served like the default pipeline it competes with.
    center_embeddings: bool = True
    export: bool = True  # improved: write the encoder as safetensors + sidecar at the end

    def validate(self) -> TrainConfig:
        if self.model not in MODELS:
            raise RvsError(f"unknown model {self.model!r}: use one of {', '.join(MODELS)}")
        if self.batch_size < 2:
            raise RvsError("batch_size must be >= 2")
        if not 0.0 < self.pos_fraction < 1.0:
            raise RvsError("pos_fraction must be in (0, 1)")
        if sorted(self.lr_milestones) != list(self.lr_milestones):
            raise RvsError("lr_milestones must be increasing")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_sources(cls, model: str, config_file: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
        """Defaults for `model`, then the JSON file (its top-level keys, then the section named
        after the model, e.g. {"batch_size": 16, "baseline": {"image_size": 112}}), then
        `key=value` overrides."""
        data: dict = {}
        if config_file:
            try:
                raw = json.loads(Path(config_file).read_text())
            except (OSError, ValueError) as e:
                raise RvsError(f"{config_file}: cannot read training config ({e})") from None
            data = {k: v for k, v in raw.items() if k not in MODELS and not k.startswith("_")}
            data.update(raw.get(model, {}))
        data["model"] = model
        if model == "baseline":
            data = {"image_size": 224, "batch_size": 64, "out_dir": "artifacts/train/baseline", **data}
        cfg = cls.from_dict(data)
        return apply_overrides(cfg, overrides or []).validate()

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RvsError(f"unknown training setting(s): {', '.join(unknown)}")
        cfg = cls()
        for k, v in data.items():
            setattr(cfg, k, _coerce(cls, k, v))
        return cfg


def _field_type(cls: type, name: str) -> type:
    hints = typing.get_type_hints(cls)
    return hints[name]


def _coerce(cls: type, name: str, value):
    """Convert a JSON value or a command-line string to the field's declared type."""
    t = _field_type(cls, name)
    origin = typing.get_origin(t)
    if origin is list or t is list:
        (item,) = typing.get_args(t) or (str,)
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        return [_scalar(item, v, name) for v in value]
    if origin in (typing.Union, types.UnionType):
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return _scalar(t, value, name)


def _scalar(t: type, value, name: str):
    try:
        if t is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return low in ("1", "true", "yes", "on")
            return bool(value)
        if t is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if t is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise RvsError(f"training setting {name}: {value!r} is not a valid {t.__name__}") from None


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply `key=value` strings (e.g. "lr=3e-4", "lr_milestones=5,8", "flip=false")."""
    names = {f.name for f in dataclasses.fields(cfg)}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise RvsError(f"override {item!r}: expected key=value")
        if key not in names:
            raise RvsError(f"override {item!r}: unknown setting {key!r}")
        setattr(cfg, key, _coerce(type(cfg), key, value.strip()))
    return cfg
