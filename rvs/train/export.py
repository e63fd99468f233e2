"""Export a fine-tuned encoder as weights that `rvs.weights.load_weights(path)` accepts.

Output: `<name>.safetensors` (an InceptionResnetV1 state dict, no pickle) and the sidecar
`<name>.safetensors.json` with model_id and sha256 (checked at load) plus provenance.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rvs.weights import CENTER_KEY, center_digest, check_center


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_encoder(
    encoder: torch.nn.Module, path: str | Path, meta: dict | None = None, prefix: str = "rvs-improved", center: np.ndarray | None = None
) -> dict:
    """Write the encoder's weights to `path` (.safetensors) and its sidecar; return the sidecar.

    center: the embedding centre to store with the weights (tensor `rvs.weights.CENTER_KEY`);
    `rvs.embed.Embedder` applies it like the default weights' centre.

    The model id is `<prefix>-<first 12 hex of the file's sha256>`, so two different exports
    never share an id (index manifests use it to refuse mismatched embeddings).
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: export must end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items() if not k.startswith("logits.")}
    if center is not None:
        state[CENTER_KEY] = torch.from_numpy(check_center(center, str(path)).copy())
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": "InceptionResnetV1 state dict (facenet-pytorch keys)"})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    digest = _sha256(path)
    side = {
        "model_id": f"{prefix}-{digest[:12]}",
        "sha256": digest,
        **({"embedding_center_digest": center_digest(check_center(center, str(path)))} if center is not None else {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(meta or {}),
    }
    side_path = path.with_name(path.name + ".json")
    tmp_side = side_path.with_name(side_path.name + ".tmp")
    tmp_side.write_text(json.dumps(side, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp_side, side_path)
    return side
