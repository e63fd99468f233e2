"""Five-point face alignment: a photo and a face's 5 landmarks in, a 112 x 112 RGB crop out, the
landmarks moved onto the ArcFace template by one similarity transform (rotation, scale, shift).

This is the input of embedders trained on ArcFace-aligned faces (SFace, rvs.faces.embedders.sface).
MTCNN's points come in the template's order (left eye, right eye, nose, left and right mouth
corner, as the person in the photo is seen), so no reordering is needed.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

ALIGNED_SIZE = 112
# The ArcFace / InsightFace reference points for a 112 x 112 crop (x, y), which OpenCV's
# FaceRecognizerSF.alignCrop uses too.
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)


def similarity_to_template(landmarks: np.ndarray) -> np.ndarray | None:
    """The 2 x 3 similarity transform that best maps the 5 landmarks onto TEMPLATE (least squares,
    Umeyama), or None when the points are degenerate."""
    src = np.asarray(landmarks, np.float64).reshape(5, 2)
    dst = TEMPLATE.astype(np.float64)
    if not np.all(np.isfinite(src)):
        return None
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / 5
    if var_s < 1e-6:
        return None
    cov = d.T @ s / 5
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    r = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign)) / var_s
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]]).astype(np.float32)


def align_face(img: Image.Image | np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """RGB photo (PIL or H x W x 3 uint8) + 5 landmarks (pixels) -> size x size x 3 uint8 RGB crop
    with the face on the ArcFace template; zeros when the landmarks are degenerate."""
    arr = np.asarray(img, dtype=np.uint8)
    m = similarity_to_template(landmarks)
    if m is None or arr.ndim != 3:
        return np.zeros((size, size, 3), np.uint8)
    if size != ALIGNED_SIZE:
        m = m * (size / ALIGNED_SIZE)
    return cv2.warpAffine(arr, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def template_landmarks(box: np.ndarray) -> np.ndarray:
    """Where the template's points sit inside a face box (x1, y1, x2, y2): the landmarks assumed for
    a face whose points are unknown (an evaluation image where no face was detected)."""
    b = np.asarray(box, np.float32)
    # MTCNN boxes of LFW faces put the eyes at ~35% and the mouth at ~78% of the box height.
    rel = (TEMPLATE - [[16.0, 12.0]]) / [[80.0, 100.0]]
    return np.stack([b[0] + rel[:, 0] * (b[2] - b[0]), b[1] + rel[:, 1] * (b[3] - b[1])], 1).astype(np.float32)
