"""The embedding recipe: everything that decides which vector a face in a photo becomes.

Two embeddings are comparable only when they were made the same way: the same weights and
reference centre (the model id, `rvs.models.weights.embedding_id`), the same numeric precision, the
same detector code (`rvs.faces.detect.DETECTOR_ID`), the same crop geometry (size, margin, margin
units) and the same detection settings that decide which boxes are found and kept (MTCNN
thresholds, minimum face size, the side detection runs at, the minimum face probability).

`embedding_recipe(config, model_id)` is that list as a plain dict and `recipe_digest` a short
stable digest of it. They key every cache and memo that holds embeddings or crops (the starter
gallery, the video face cache, the face-model memos), are written into index manifests
(`index.extra["recipe"]`, which travels to the Hub inside the artifact) and are checked when a
query meets a gallery (`check_index_recipe`): a gallery cut or embedded otherwise is refused with
one line instead of being searched with vectors it cannot be compared with.

The recipe is kept out of the model id, so indexes built before it existed stay loadable.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rvs.config import Config
from rvs.errors import IndexError_

RECIPE_VERSION = 1

# Fields that may differ between a gallery and its queries without making them incomparable:
# bf16 and fp32 embeddings of one crop agree to cosine > 0.9999 (rvs.faces.embed), and the minimum face
# probability only decides which detections are kept, not how a kept face is cut. Both still key
# caches (a gallery's content changes with them), they are just not a reason to refuse a search.
QUERY_COMPATIBLE = frozenset({"precision", "min_face_prob"})


def detection_settings(config: Config) -> dict[str, Any]:
    """The detection and crop settings of the recipe: what decides a face's box and crop."""
    from rvs.faces.detect import DETECTOR_ID

    return {
        "detector": DETECTOR_ID,
        "face_size": int(config.face_size),
        "margin": int(config.margin),
        "margin_units": str(config.margin_units),
        "min_face_size": int(config.min_face_size),
        "detect_thresholds": [float(t) for t in config.detect_thresholds],
        "min_face_prob": float(config.min_face_prob),
        "detect_max_side": int(config.detect_max_side),
    }


def embedder_settings(config: Config) -> dict[str, Any]:
    """The settings that choose the embedder before its weights are loaded (and its model id is
    known): weights spec, centring, precision. Keys the embedder memo of rvs.video.faces."""
    return {
        "model": str(config.model),
        "weights": str(config.weights),
        "sface_weights": str(config.sface_weights),
        "fused_sface_weight": float(config.fused_sface_weight),
        "center_embeddings": bool(config.center_embeddings),
        "embed_precision": str(config.embed_precision),
    }


def resolved_precision(config: Config) -> str:
    """"bf16" or "fp32": what `Config.embed_precision` ("auto" included) means on this machine."""
    from rvs.faces.embed import use_bf16

    return "bf16" if use_bf16(config.embed_precision, config.torch_device()) else "fp32"


def embedding_recipe(config: Config, model_id: str, precision: str | None = None) -> dict[str, Any]:
    """The recipe of embeddings made with `config`'s detection settings by the embedder `model_id`
    (weights + centre, `Embedder.model_id`). precision: "bf16" / "fp32" as the embedder runs
    (default: resolved from `config.embed_precision` on this machine)."""
    return {
        "version": RECIPE_VERSION,
        "model_id": str(model_id),
        "precision": precision or resolved_precision(config),
        **detection_settings(config),
    }


def embedder_precision(embedder: Any) -> str:
    """"bf16" or "fp32": how an embedder (rvs.faces.embedders) runs."""
    return str(getattr(embedder, "precision", "bf16" if getattr(embedder, "bf16", False) else "fp32"))


def recipe_of(detector: Any, embedder: Any) -> dict[str, Any]:
    """The recipe of a detector + embedder pair: crops as the detector's config cuts them, vectors
    as the embedder makes them."""
    config = getattr(detector, "config", None) or getattr(embedder, "config", None) or Config()
    return embedding_recipe(config, embedder.model_id, embedder_precision(embedder))


def recipe_digest(recipe: dict[str, Any]) -> str:
    """A short stable digest of a recipe (or of any JSON-able settings dict)."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def recipe_differences(a: dict[str, Any], b: dict[str, Any], ignore: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Names of the fields on which two recipes differ (missing counts as different)."""
    keys = sorted((set(a) | set(b)) - set(ignore))
    return [k for k in keys if a.get(k) != b.get(k)]


def _show(recipe: dict[str, Any], key: str) -> str:
    v = recipe.get(key, "(absent)")
    if key == "margin" and "margin_units" in recipe:
        return f"{v} px of the {recipe['margin_units']}"
    return str(v)


def check_index_recipe(index_recipe: dict[str, Any] | None, query_recipe: dict[str, Any], label: str = "the gallery") -> None:
    """Refuse (IndexError_, one line) a gallery whose recipe differs from the queries' on anything
    that changes a face's vector (everything but `QUERY_COMPATIBLE`).

    An index without a recipe was built before recipes existed: it is accepted (its model id was
    checked already), so the galleries people have keep working; rebuilding one records it."""
    if index_recipe is None:
        return
    if not isinstance(index_recipe, dict):
        raise IndexError_(f"{label} has a malformed embedding recipe ({type(index_recipe).__name__}); rebuild it with `python -m rvs index`")
    diff = recipe_differences(index_recipe, query_recipe, QUERY_COMPATIBLE)
    if diff:
        what = "; ".join(f"{k} {_show(index_recipe, k)} vs {_show(query_recipe, k)}" for k in diff)
        raise IndexError_(
            f"{label} was built with another embedding recipe than these queries ({what}): its faces are cut or embedded "
            "differently and cannot be compared; rebuild it with `python -m rvs index`, or search with the settings it was built with"
        )
