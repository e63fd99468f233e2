"""Training the report's two models on LFW View 1 (identity-disjoint train/test people).

- improved: InceptionResnetV1 encoder (initialised from the default pretrained weights) + a
  transposed-convolution decoder; loss = contrastive (pairs) + consistency (reconstruction).
- baseline: torchvision ResNet-50 with two fully connected layers, cross-entropy over the
  training identities; the first fully connected layer is the embedding.

Modules: `config` (TrainConfig), `data` (splits, samplers, augmentation), `losses`, `models`,
`loop` (train / resume / evaluate), `export` (encoder -> safetensors for rvs.models.weights).
"""

from rvs.train.config import TrainConfig

__all__ = ["TrainConfig"]
