"""Face detection: every face in an image, with box, 5 landmarks, probability and an aligned crop.

Wraps facenet-pytorch's MTCNN. Detection runs on a copy of the image downscaled to at most
`Config.detect_max_side` (speed, and MTCNN gains nothing from more pixels), while crops are cut
from the full-resolution original so that small faces in large photos keep their detail.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from rvs.config import Config
from rvs.faces.embedders import get_spec
from rvs.faces.warp import align_face

# Names the detection behaviour in caches and manifests; bump when boxes can change.
DETECTOR_ID = "mtcnn-facenet-pytorch-2.5.3+cv2-area-pyramid+plausible-landmarks"


def _fast_imresample(img: torch.Tensor, sz: tuple[int, int]) -> torch.Tensor:
    """Area resize of an NCHW CPU tensor with OpenCV, image by image, instead of torch's
    adaptive_avg_pool2d.

    MTCNN resizes every candidate box separately (thousands of tiny calls per batch); torch's
    per-call overhead made this a third of detection time. OpenCV's INTER_AREA is also what the
    original MTCNN port (Sandberg's facenet) uses for the image pyramid. Batches go through the
    same per-image path on purpose: with torch for batches and OpenCV for single images, a
    gallery photo (indexed in a batch) and the same photo as a query got boxes up to 10 px apart.
    """
    if img.device.type != "cpu":
        return torch.nn.functional.interpolate(img, size=sz, mode="area")
    outs = []
    for one in img:
        out = cv2.resize(one.permute(1, 2, 0).numpy(), (sz[1], sz[0]), interpolation=cv2.INTER_AREA)
        outs.append(out[:, :, None] if out.ndim == 2 else out)
    return torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2)


def _patch_mtcnn() -> None:
    from facenet_pytorch.models.utils import detect_face

    detect_face.imresample = _fast_imresample


@dataclass
class Face:
    """One detected face.

    box: (x1, y1, x2, y2) in pixels of the original image.
    landmarks: 5x2 (x, y): left eye, right eye, nose, left mouth corner, right mouth corner.
    prob: MTCNN face probability in [0, 1].
    crop: face_size x face_size x 3 uint8 RGB, the box plus margin resized (FaceNet's input);
    None from detectors whose boxes are not MTCNN's (rvs.faces.yunet).
    aligned: 112 x 112 x 3 uint8 RGB, the landmarks on the ArcFace template (SFace's input;
    rvs.faces.warp), cut when the configured model reads it, else None.
    """

    box: np.ndarray
    landmarks: np.ndarray
    prob: float
    crop: np.ndarray | None
    aligned: np.ndarray | None = None

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "prob": round(float(self.prob), 4),
        }


def crop_face(img: Image.Image, box: np.ndarray, face_size: int = 160, margin: int = 32, margin_units: str = "crop") -> np.ndarray:
    """Cut `box` plus a margin out of `img`, resized to a `face_size` square (uint8 HxWx3).

    margin_units "crop": the margin is in pixels of the output crop and scales with the box, so a
    face fills the same share of the crop whatever its size in the photo (facenet-pytorch's
    `extract_face`). "image": a fixed number of photo pixels (Sandberg's align_dataset_mtcnn).
    """
    w, h = img.size
    if margin_units == "crop":
        mx = margin * (box[2] - box[0]) / (face_size - margin)
        my = margin * (box[3] - box[1]) / (face_size - margin)
    elif margin_units == "image":
        mx = my = float(margin)
    else:
        raise ValueError(f"margin_units must be 'crop' or 'image', not {margin_units!r}")
    x1 = int(max(box[0] - mx / 2, 0))
    y1 = int(max(box[1] - my / 2, 0))
    x2 = int(min(box[2] + mx / 2, w))
    y2 = int(min(box[3] + my / 2, h))
    if x2 <= x1 or y2 <= y1:
        return np.zeros((face_size, face_size, 3), np.uint8)
    face = img.crop((x1, y1, x2, y2)).resize((face_size, face_size), Image.BILINEAR)
    return np.asarray(face, dtype=np.uint8)


def plausible_landmarks(box: np.ndarray, landmarks: np.ndarray) -> bool:
    """Do MTCNN's five points sit like a face's? In the frame of the eye axis (so tilted heads
    pass): the mouth 0.5-4 eye distances below the eyes, the nose between eyes and mouth, the
    eyes at least a tenth of the box apart, every point within the box (+20%). All 5,270
    detections in a third of LFW pass; a box whose points are scattered is not a face."""
    b = np.asarray(box, np.float64)
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (5, 2) or not np.all(np.isfinite(lm)) or not np.all(np.isfinite(b)):
        return False
    w, h = b[2] - b[0], b[3] - b[1]
    if w <= 0 or h <= 0:
        return False
    le, re, nose, ml, mr = lm
    axis = re - le
    iod = float(np.linalg.norm(axis))
    if iod < 0.1 * w:
        return False
    down_dir = np.array([-axis[1], axis[0]]) / iod  # perpendicular to the eyes, towards the mouth
    mid = (le + re) / 2
    mouth = float(((ml + mr) / 2 - mid) @ down_dir) / iod
    nose_d = float((nose - mid) @ down_dir) / iod
    if not (0.5 <= mouth <= 4.0 and -0.1 <= nose_d <= mouth + 0.3):
        return False
    sx, sy = 0.2 * w, 0.2 * h
    return bool(np.all((lm[:, 0] >= b[0] - sx) & (lm[:, 0] <= b[2] + sx) & (lm[:, 1] >= b[1] - sy) & (lm[:, 1] <= b[3] + sy)))


def select_main_face(faces: Sequence[Face], image_size: tuple[int, int], center_weight: float = 2.0) -> int | None:
    """Index of the main face: box area minus a penalty for distance from the image centre.

    LFW photos show the labelled person in the centre, often beside bigger or sharper faces;
    this is facenet-pytorch's `center_weighted_size` rule.
    """
    if not faces:
        return None
    cx, cy = image_size[0] / 2, image_size[1] / 2
    scores = []
    for f in faces:
        fx, fy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        scores.append(f.area - center_weight * ((fx - cx) ** 2 + (fy - cy) ** 2))
    return int(np.argmax(scores))


class FaceDetector:
    """MTCNN face detector.

    In: a list of RGB PIL images (any sizes). Out: for each image, a list of `Face`, largest first.
    """

    def __init__(self, config: Config | None = None):
        from facenet_pytorch import MTCNN

        _patch_mtcnn()
        self.config = config or Config()
        c = self.config
        self.device = c.torch_device()
        # Cut the five-point aligned crop only for models that read it (it costs a full-size copy).
        self.cut_aligned = "aligned" in get_spec(c.model).inputs
        self.mtcnn = MTCNN(
            image_size=c.face_size,
            margin=c.margin,
            min_face_size=c.min_face_size,
            thresholds=list(c.detect_thresholds),
            keep_all=True,
            post_process=False,
            device=self.device,
        )

    def _scaled(self, img: Image.Image) -> tuple[Image.Image, float]:
        side = max(img.size)
        if side <= self.config.detect_max_side:
            return img, 1.0
        s = self.config.detect_max_side / side
        small = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.BILINEAR)
        return small, s

    @torch.inference_mode()
    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Detect every face in each image; batched over images of equal (downscaled) size."""
        c = self.config
        scaled = [self._scaled(im) for im in images]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, (small, _) in enumerate(scaled):
            groups[small.size].append(i)
        out: list[list[Face]] = [[] for _ in images]
        for idxs in groups.values():
            for start in range(0, len(idxs), c.detect_batch_size):
                chunk = idxs[start : start + c.detect_batch_size]
                batch = [scaled[i][0] for i in chunk]
                boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
                for j, i in enumerate(chunk):
                    if boxes[j] is None:
                        continue
                    s = scaled[i][1]
                    faces = []
                    pixels = None
                    for b, p, lm in zip(boxes[j], probs[j], points[j]):
                        # The detection-quality rule: confident and shaped like a face.
                        if p is None or p < c.min_face_prob or not plausible_landmarks(b, lm):
                            continue
                        box = np.asarray(b, np.float32) / s
                        marks = np.asarray(lm, np.float32) / s
                        aligned = None
                        if self.cut_aligned:
                            pixels = np.asarray(images[i].convert("RGB")) if pixels is None else pixels
                            aligned = align_face(pixels, marks)
                        faces.append(
                            Face(
                                box=box,
                                landmarks=marks,
                                prob=float(p),
                                crop=crop_face(images[i], box, c.face_size, c.margin, c.margin_units),
                                aligned=aligned,
                            )
                        )
                    faces.sort(key=lambda f: -f.area)
                    out[i] = faces
        return out

    def detect_one(self, image: Image.Image) -> list[Face]:
        return self.detect([image])[0]
