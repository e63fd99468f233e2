"""The training loop: seeds, data, model, optimizer, schedule, checkpoints with resume, logging,
final evaluation on the View 1 test people and export.

Files in `cfg.out_dir`:
    checkpoint/model.safetensors  model weights (no pickle)
    checkpoint/optimizer.pt       optimizer + LR schedule + RNG tensors (torch.save; read back
                                  with weights_only=True, and only from this local folder)
    checkpoint/state.json         step, sampler state, the config that wrote it
    metrics.jsonl                 one JSON line per `log_every` steps, plus the final evaluation
    config.json, result.json      the settings used, and the summary `train` returns
    export/encoder.safetensors    improved model: the fine-tuned encoder for rvs.models.weights
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rvs.config import Config
from rvs.errors import RvsError
from rvs.eval.crops import CropCache
from rvs.eval.protocols import evaluate_view1_test
from rvs.faces.embed import recenter, use_bf16
from rvs.train.config import TrainConfig
from rvs.train.data import ImageSampler, PairSampler, augment, check_disjoint, load_split, read_split_people, to_input
from rvs.train.losses import improved_loss

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out_dir: str
    model: str
    steps: int
    seconds: float  # the training steps only
    loss_first: float | None  # mean training loss over the first logged window of this run
    loss_last: float | None  # ... and over the last one
    losses: list[dict] = field(default_factory=list)  # the metrics.jsonl training lines
    test: dict | None = None  # evaluate_view1_test result
    export: dict | None = None  # sidecar of the exported encoder
    notes: list[str] = field(default_factory=list)
    wall_seconds: float | None = None  # the whole run: data, training, centre, test scores, export

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed + 1)  # augmentation has its own stream, saved in checkpoints
    return gen


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RvsError("device=cuda requested but CUDA is not available")
    return dev


def lr_factor(epoch: int, milestones: list[int], gamma: float) -> float:
    """gamma ** (number of milestones reached): 1e-3 -> 1e-4 at 10 -> 1e-5 at 20 -> 1e-6 at 50."""
    return gamma ** sum(epoch >= m for m in milestones)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(out_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, gen: torch.Generator, step: int, sampler_state: dict, cfg: TrainConfig) -> Path:
    """Write checkpoint/ atomically: into a fresh sibling folder, then swapped in."""
    from safetensors.torch import save_file

    final = out_dir / "checkpoint"
    tmp = out_dir / f".checkpoint.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    torch.save(
        {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(), "aug_rng": gen.get_state()},
        tmp / "optimizer.pt",
    )
    (tmp / "state.json").write_text(json.dumps({"step": step, "sampler": sampler_state, "config": cfg.to_dict()}, indent=1))
    old = out_dir / f".checkpoint.{os.getpid()}.old"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(ckpt: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, gen: torch.Generator, device: torch.device) -> dict:
    """Restore weights, optimizer, schedule and RNGs in place; return state.json's content."""
    from safetensors.torch import load_file

    state = json.loads((ckpt / "state.json").read_text())
    model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(device)))
    # weights_only=True: only tensors and plain containers are unpickled (no code).
    rest = torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True)
    opt.load_state_dict(rest["optimizer"])
    sched.load_state_dict(rest["scheduler"])
    torch.set_rng_state(rest["torch_rng"].cpu())
    gen.set_state(rest["aug_rng"].cpu())
    return state


# ---------------------------------------------------------------------------------------------
# Steps


def improved_step(model, batch, cfg: TrainConfig, gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor, dict]:
    """One forward pass of the improved model on a batch of pairs; returns (loss, parts)."""
    crops, (ia, ib, same) = batch
    x = to_input(crops[np.concatenate([ia, ib])], cfg.image_size)
    x = augment(x, gen, cfg.flip, cfg.jitter).to(device)
    emb, recon = model(x)
    n = len(ia)
    t = torch.from_numpy(same).to(device)
    return improved_loss(emb[:n], emb[n:], t, recon, x, cfg.contrastive_margin, cfg.consistency_weight)


def baseline_step(model, batch, cfg: TrainConfig, gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor, dict]:
    crops, (idx, labels) = batch
    x = augment(to_input(crops[idx], cfg.image_size), gen, cfg.flip, cfg.jitter).to(device)
    logits = model(x)
    y = torch.from_numpy(labels).to(device)
    loss = F.cross_entropy(logits, y)
    return loss, {"accuracy": float((logits.argmax(1) == y).float().mean())}


def make_embed_fn(model, cfg: TrainConfig, device: torch.device, batch: int = 64, bf16: bool = False, center: np.ndarray | None = None):
    """uint8 crops -> unit embeddings with the model in eval mode (for rvs.eval.protocols); bf16 autocast
    and centring as `rvs.faces.embed.Embedder` does them, so trained and pretrained models are scored alike."""
    c = None if center is None else torch.as_tensor(center, dtype=torch.float32, device=device)

    def fn(crops: np.ndarray) -> np.ndarray:
        model.eval()
        out = []
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for s in range(0, len(crops), batch):
                x = to_input(crops[s : s + batch], cfg.image_size).to(device)
                out.append(recenter(F.normalize(model.embed(x).float(), dim=1), c).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 512), np.float32)

    return fn


# ---------------------------------------------------------------------------------------------
# The loop


def train(cfg: TrainConfig, config: Config | None = None, progress: bool = True) -> TrainResult:
    """Train `cfg.model` on the View 1 train people; resume from cfg.out_dir if a checkpoint is
    there (and cfg.resume); evaluate on the View 1 test people; export the improved encoder."""
    cfg.validate()
    config = config or Config.from_env()
    t_start = time.perf_counter()
    threads = torch.get_num_threads()
    try:
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        return _train(cfg, config, progress, t_start, threads)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, config: Config, progress: bool, t_start: float, threads: int) -> TrainResult:
    device = resolve_device(cfg.device)
    gen = seed_everything(cfg.seed)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    notes: list[str] = []

    # Data: identity-disjoint View 1 splits from the shared crop cache.
    cache = CropCache(config, progress=progress)
    train_people = read_split_people("train", config, cfg.num_train_people, cfg.seed)
    check_disjoint(train_people, read_split_people("test", config))
    data = load_split(train_people, config, cache, progress)

    # Model, sampler, optimizer.
    if cfg.model == "improved":
        from rvs.train.models import build_improved

        model, init_id = build_improved(cfg.init_weights, config, cfg.decoder_channels, cfg.freeze_bn)
        model.freeze_before(cfg.train_from)
        sampler = PairSampler(data.labels, cfg.batch_size, cfg.pos_fraction, cfg.seed)
        step_fn = improved_step
        groups = [
            {"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": cfg.lr * cfg.encoder_lr_scale},
            {"params": list(model.decoder.parameters()), "lr": cfg.lr},
        ]
        per_epoch = max(1, len(data) // (2 * cfg.batch_size))
        notes.append(
            f"encoder initialised from {init_id}; trained from {cfg.train_from or 'the first layer'}; "
            f"BatchNorm statistics {'frozen' if cfg.freeze_bn else 'updated'}; encoder LR x{cfg.encoder_lr_scale:g}"
        )
    else:
        from rvs.train.models import BaselineModel

        model = BaselineModel(data.n_people, cfg.embedding_dim, cfg.pretrained_imagenet)
        notes.append(model.imagenet_note)
        sampler = ImageSampler(data.labels, cfg.batch_size, cfg.seed)
        step_fn = baseline_step
        groups = [{"params": list(model.parameters()), "lr": cfg.lr}]
        per_epoch = max(1, len(data) // cfg.batch_size)
    model.to(device)
    per_epoch = cfg.steps_per_epoch or per_epoch
    total = cfg.epochs * per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step // per_epoch, cfg.lr_milestones, cfg.lr_gamma))

    step = 0
    ckpt = out_dir / "checkpoint"
    if cfg.resume and (ckpt / "state.json").is_file():
        state = load_checkpoint(ckpt, model, opt, sched, gen, device)
        step = int(state["step"])
        sampler.set_state(state["sampler"])
        notes.append(f"resumed from {ckpt} at step {step}")
        log.info("resumed at step %d", step)

    metrics_path = out_dir / "metrics.jsonl"
    logged: list[dict] = []
    window: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc=f"train {cfg.model}", unit="step", disable=not progress)
    with open(metrics_path, "a") as mlog:
        while step < total:
            model.train()
            batch = (data.crops, sampler.sample())
            loss, parts = step_fn(model, batch, cfg, gen, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if not torch.isfinite(loss):
                raise RvsError(f"training diverged at step {step} (loss {float(loss)}); lower lr")
            window.append({"loss": float(loss.detach()), **parts})
            bar.update(1)
            bar.set_postfix(loss=f"{window[-1]['loss']:.4f}")
            if step % cfg.log_every == 0 or step == total:
                rec = {
                    "step": step,
                    "epoch": round(step / per_epoch, 3),
                    **{k: round(float(np.mean([w[k] for w in window])), 6) for k in window[0]},
                    "lr": opt.param_groups[-1]["lr"],
                    "seconds": round(time.perf_counter() - t0, 1),
                }
                mlog.write(json.dumps(rec) + "\n")
                mlog.flush()
                logged.append(rec)
                window = []
            if step % cfg.checkpoint_every == 0 or step == total:
                save_checkpoint(out_dir, model, opt, sched, gen, step, sampler.state(), cfg)
    bar.close()
    train_seconds = time.perf_counter() - t0

    result = TrainResult(
        out_dir=str(out_dir),
        model=cfg.model,
        steps=step,
        seconds=round(train_seconds, 1),
        loss_first=logged[0]["loss"] if logged else None,
        loss_last=logged[-1]["loss"] if logged else None,
        losses=logged,
        notes=notes,
    )
    # Inference has no backward pass to share the cores with: all of them, and the embedder's precision.
    torch.set_num_threads(threads)
    bf16 = use_bf16(config.embed_precision, device)
    embed_fn = make_embed_fn(model, cfg, device, bf16=bf16)
    center = None
    if cfg.model == "improved" and cfg.center_embeddings:
        total = np.zeros(512, np.float64)
        with tqdm(total=len(data), desc="embedding centre", unit="img", disable=not progress) as bar:
            for s in range(0, len(data), 512):
                total += embed_fn(data.crops[s : s + 512]).sum(axis=0)
                bar.update(min(512, len(data) - s))
        center = (total / len(data)).astype(np.float32)
        notes.append(f"embedding centre: mean of {len(data)} training-image embeddings")
        embed_fn = make_embed_fn(model, cfg, device, bf16=bf16, center=center)
    del data

    if cfg.eval_at_end:
        result.test = evaluate_view1_test(config, embed_fn, None, flip=cfg.eval_flip, cache=cache, progress=progress)
        with open(metrics_path, "a") as mlog:
            mlog.write(json.dumps({"step": step, "event": "test", **result.test}) + "\n")

    if cfg.model == "improved" and cfg.export:
        from rvs.train.export import export_encoder

        meta = {"base_model": init_id, "train_config": cfg.to_dict(), "steps": step, "test": result.test}
        result.export = export_encoder(model.encoder, out_dir / "export" / "encoder.safetensors", meta, center=center)
        result.export["path"] = str(out_dir / "export" / "encoder.safetensors")
    result.wall_seconds = round(time.perf_counter() - t_start, 1)
    (out_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
    log.info("training finished in %.0f s", result.wall_seconds)
    return result
