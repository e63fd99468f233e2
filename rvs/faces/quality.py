"""Can this face be named reliably? Size, sharpness and pose of a detected face.

In: a `Face` (box, 5 landmarks, 160x160 crop). Out: None when the face is fit to name, else one
sentence saying why not ("too small to name reliably (31 px wide; at least 40 px)").

Such faces are still searched (their look-alikes are shown) but never named: the embedding of a
tiny, blurred or profile face is far from the same person's frontal photos and close to many
strangers, so a name would be a guess. Thresholds are `Config.name_*`; on LFW (800 random
photos) faces are 77-128 px wide (0.5-99.5th percentile), crop sharpness >= 12 and the yaw
measure within +-0.44, so LFW-like photos always pass.
"""

from __future__ import annotations

import cv2
import numpy as np

from rvs.config import Config
from rvs.faces.detect import Face


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey 160x160 crop: low for blurred (or upscaled) faces."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop, np.uint8), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def yaw(face: Face) -> float:
    """Horizontal offset of the nose from the eyes' midpoint, in inter-ocular distances: ~0 for
    a frontal face, beyond +-0.5 when the head is turned towards profile."""
    le, re, nose = face.landmarks[0], face.landmarks[1], face.landmarks[2]
    iod = float(np.linalg.norm(re - le))
    if iod < 1e-6:
        return float("inf")
    return float((nose[0] - (le[0] + re[0]) / 2) / iod)


def naming_problem(face: Face, config: Config) -> str | None:
    """Why this face must not be named, or None when it may be."""
    w = float(min(face.box[2] - face.box[0], face.box[3] - face.box[1]))
    if w < config.name_min_face_px:
        return f"too small to name reliably ({w:.0f} px; at least {config.name_min_face_px} px)"
    y = yaw(face)
    if not abs(y) <= config.name_max_yaw:
        return "turned too far to the side (profile) to name reliably"
    s = sharpness(face.crop)
    if s < config.name_min_sharpness:
        return f"too blurred to name reliably (sharpness {s:.0f}; at least {config.name_min_sharpness:g})"
    return None
