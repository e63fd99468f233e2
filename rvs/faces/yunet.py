"""YuNet: OpenCV Zoo's face detector (`face_detection_yunet_2023mar.onnx`, 232 kB), the detector
SFace was published with. In: an RGB frame (H x W x 3 uint8). Out: a list of `Face`, largest
first, each with its box, five landmarks, score and the 112 x 112 aligned crop SFace reads (no
FaceNet crop: YuNet's boxes are not MTCNN's, so models reading "crop" keep MTCNN).

Used on video frames, where detection is most of the cost: ~25 ms a 960-px frame on one core
against MTCNN's ~95 ms, and it finds as many faces (bench/alignment.py: SFace on LFW aligned from
YuNet's points 0.9947 pairs.txt accuracy, from MTCNN's 0.9948). The file is checked by size and
sha256 (rvs.models.zoo); `Config.yunet_weights` is "opencv-zoo-2023mar" or a path.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from rvs.config import Config
from rvs.errors import WeightsError
from rvs.models.zoo import ZooFile

if TYPE_CHECKING:
    from rvs.faces.detect import Face

FILE = ZooFile(
    name="face_detection_yunet_2023mar.onnx",
    size=232_589,
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
    what="the YuNet face detector",
    default="opencv-zoo-2023mar",
)
SCORE_THRESHOLD = 0.8  # YuNet's face score; OpenCV Zoo's demo uses 0.9, LFW's faces all pass 0.8
NMS_THRESHOLD = 0.3


class YuNetDetector:
    """Faces in RGB frames (see the module docstring). `min_face_size`: boxes with a shorter
    side (pixels of the frame given) are dropped, as MTCNN's `min_face_size` would."""

    def __init__(self, config: Config | None = None, min_face_size: int = 30):
        import cv2

        self.config = config or Config()
        data, self.source = FILE.load_bytes(str(self.config.yunet_weights), self.config.cache_dir)
        try:
            self.net = cv2.FaceDetectorYN.create("onnx", np.frombuffer(data, np.uint8), np.zeros(0, np.uint8), (320, 320), SCORE_THRESHOLD, NMS_THRESHOLD, 5000)
        except cv2.error as e:
            raise WeightsError(f"OpenCV could not load the YuNet detector: {str(e).strip().splitlines()[-1]}") from None
        self.min_face_size = min_face_size
        self._lock = threading.Lock()  # one cv2 model, not safe from two threads at once

    def detect_array(self, rgb: np.ndarray, max_side: int = 0, min_face_size: int | None = None) -> list[Face]:
        """Faces of an RGB frame; `max_side` > 0: looked for in a copy shrunk to that side (boxes
        and landmarks in the frame's pixels, aligned crops cut from the frame itself).
        min_face_size: in the frame's pixels (default: the detector's)."""
        min_size = self.min_face_size if min_face_size is None else min_face_size
        import cv2

        from rvs.faces.detect import Face
        from rvs.faces.warp import align_face

        h, w = rgb.shape[:2]
        s = min(1.0, max_side / max(h, w)) if max_side > 0 else 1.0
        small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else rgb
        h, w = small.shape[:2]
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        with self._lock:
            self.net.setInputSize((w, h))
            _, found = self.net.detect(bgr)
        faces = []
        for row in found if found is not None else []:
            x, y, bw, bh = (float(v) / s for v in row[:4])
            if min(bw, bh) < min_size:
                continue
            # YuNet lists the person's right eye first: the one on the image's left, as MTCNN and
            # the ArcFace template do.
            marks = np.asarray(row[4:14], np.float32).reshape(5, 2) / s
            box = np.array([x, y, x + bw, y + bh], np.float32)
            faces.append(Face(box=box, landmarks=marks, prob=float(row[14]), crop=None, aligned=align_face(rgb, marks)))
        faces.sort(key=lambda f: -f.area)
        return faces
