"""The face embedders rvs knows, by name: one module each (its `SPEC` and `create(config)`), one
registry line here. `Config.model` / `--model` picks one; `create_embedder(config)` builds it.
"""

from __future__ import annotations

import dataclasses
import importlib
import re

from rvs.config import Config
from rvs.faces.embedders.base import EmbedderSpec, FaceEmbedder, embed_faces, face_inputs

REGISTRY = {
    "facenet": "rvs.faces.embedders.facenet",
    "sface": "rvs.faces.embedders.sface",
    "fused": "rvs.faces.embedders.fused",
}

__all__ = ["REGISTRY", "config_for_model_id", "model_name", "EmbedderSpec", "FaceEmbedder", "create_embedder", "embed_faces", "face_inputs", "get_spec", "match_threshold", "video_threshold"]


def _module(name: str):
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name])


def get_spec(name: str) -> EmbedderSpec:
    return _module(name).SPEC


def create_embedder(config: Config) -> FaceEmbedder:
    """The embedder `config.model` names, with its weights loaded and checked (WeightsError)."""
    return _module(config.model).create(config)


def model_name(model_id: str) -> str | None:
    """The registry name behind a model id ("facenet-casia-...", "sface-...", "fused-w0.8[...]"), or None."""
    for name in REGISTRY:
        if model_id == name or model_id.startswith(name + "-"):
            return name
    return None


def config_for_model_id(config: Config, model_id: str) -> Config:
    """`config` set to the model that made `model_id` (a gallery's): its name and, for the fused
    model, its SFace weight. An id of no registered model is FaceNet with other weights (what the
    training package exports: `Config.weights` names them)."""
    over: dict = {"model": model_name(model_id) or "facenet"}
    m = re.match(r"fused-w([0-9.]+)\[", model_id)
    if m:
        over["fused_sface_weight"] = float(m.group(1))
    return dataclasses.replace(config, **over)


def match_threshold(config: Config) -> float:
    """The 1:1 "same person" distance: `Config.match_threshold` when set, else the model's own."""
    return float(config.match_threshold) if config.match_threshold is not None else get_spec(config.model).match_threshold


def video_threshold(config: Config) -> float:
    """Video person mode's distance: `Config.video_face_threshold` when set, else the model's own."""
    return float(config.video_face_threshold) if config.video_face_threshold is not None else get_spec(config.model).video_threshold
