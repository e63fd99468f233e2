"""Face embedding, whichever model: `create_embedder(config)` (the model `Config.model` names) and
`embed_faces(embedder, faces)`. The models live in rvs.faces.embedders, one module each;
`Embedder` is FaceNet's class (evaluation and the training package use it directly).
"""

from __future__ import annotations

from rvs.faces.embedders import create_embedder, embed_faces, get_spec
from rvs.faces.embedders.facenet import Embedder, build_model, recenter, standardize, use_bf16

__all__ = ["Embedder", "build_model", "create_embedder", "embed_faces", "get_spec", "recenter", "standardize", "use_bf16"]
