"""Export a fine-tuned encoder as weights that `rvs.models.weights.load_weights(path)` accepts.

Output: `<name>.safetensors` (an InceptionResnetV1 state dict, no pickle) and the sidecar
`<name>.safetensors.json` with model_id and sha256 (checked at load) plus provenance.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from rvs.fileio import atomic_write, sha256_file, write_json_atomic
from rvs.models.weights import CENTER_KEY, center_digest, check_center


def export_encoder(
    encoder: torch.nn.Module, path: str | Path, meta: dict | None = None, prefix: str = "rvs-improved", center: np.ndarray | None = None
) -> dict:
    """Write the encoder's weights to `path` (.safetensors) and its sidecar; return the sidecar.

    center: the embedding centre to store with the weights (tensor `rvs.models.weights.CENTER_KEY`);
    `rvs.faces.embed.Embedder` applies it like the default weights' centre.

    The model id is `<prefix>-<first 12 hex of the file's sha256>`, so two different exports
    never share an id (index manifests use it to refuse mismatched embeddings).
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: export must end in .safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items() if not k.startswith("logits.")}
    if center is not None:
        center = check_center(center, str(path))
        state[CENTER_KEY] = torch.from_numpy(center.copy())
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"format": "InceptionResnetV1 state dict (facenet-pytorch keys)"}))
    digest = sha256_file(path)
    side = {
        "model_id": f"{prefix}-{digest[:12]}",
        "sha256": digest,
        **({"embedding_center_digest": center_digest(center)} if center is not None else {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(meta or {}),
    }
    write_json_atomic(path.with_name(path.name + ".json"), side, indent=2, sort_keys=True, default=str)
    return side
