"""Two photos, one face each: the same person? (1:1 verification)

In: two images (path, bytes, PIL or array), the face to take from each (1-based number, faces
numbered largest first as image search numbers them; None = the main face, large and central),
a detector and an embedder. Out: `Comparison`: both faces (box, crop for display), their
distance, and the calibrated verdict of the model (rvs.faces.verification). NoFaceError names
the photo without a face; BadInputError a face number that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rvs.config import Config
from rvs.errors import BadInputError, NoFaceError
from rvs.faces.detect import Face, FaceDetector, select_main_face
from rvs.faces.embedders import FaceEmbedder, embed_faces
from rvs.faces.verification import Verdict, VerificationCalibration, load_calibration
from rvs.imageio import ImageLike, load_image


@dataclass
class Comparison:
    faces: tuple[Face, Face]
    distance: float  # Euclidean, between the two unit embeddings
    numbers: tuple[int, int]  # 1-based face numbers used
    counts: tuple[int, int]  # faces found in each photo
    verdict: Verdict | None  # None when the model has no 1:1 calibration
    calibration: VerificationCalibration | None
    model_id: str
    found: tuple[list[Face], list[Face]] = ([], [])  # every face of each photo (numbered 1.. in this order)

    def to_dict(self) -> dict:
        d = {
            "model_id": self.model_id,
            "distance": round(self.distance, 4),
            "faces": [
                {"photo": k + 1, "face": self.numbers[k], "faces_found": self.counts[k], "box": [round(float(v), 1) for v in self.faces[k].box]}
                for k in range(2)
            ],
        }
        if self.verdict is not None and self.calibration is not None:
            c = self.calibration
            d.update(self.verdict.to_dict())
            d["calibration"] = {
                "same_threshold": round(c.same_threshold, 4),
                "different_threshold": round(c.different_threshold, 4),
                "lfw_false_accept_rate": round(c.far_at_same, 4),
                "lfw_false_reject_rate": round(c.frr_at_different, 4),
                "pairs": c.pairs,
            }
        return d


def _pick(faces: list[Face], number: int | None, size: tuple[int, int], label: str) -> tuple[Face, int]:
    if not faces:
        raise NoFaceError(f"{label}: no face found")
    if number is None:
        i = select_main_face(faces, size)
        return faces[i], i + 1
    if not 1 <= number <= len(faces):
        raise BadInputError(f"{label}: face {number} does not exist (the photo has {len(faces)} face(s))")
    return faces[number - 1], number


def compare_faces(
    a: ImageLike,
    b: ImageLike,
    detector: FaceDetector,
    embedder: FaceEmbedder,
    config: Config,
    face_a: int | None = None,
    face_b: int | None = None,
    names: tuple[str, str] = ("photo 1", "photo 2"),
) -> Comparison:
    """See the module docstring."""
    imgs = [load_image(x, config.max_pixels, name=n) for x, n in zip((a, b), names)]
    found = detector.detect(imgs)
    picked = [_pick(f, n, im.size, label) for f, n, im, label in zip(found, (face_a, face_b), imgs, names)]
    emb = embed_faces(embedder, [p[0] for p in picked])
    cal = load_calibration(embedder.model_id)
    dist = float(np.linalg.norm(emb[0] - emb[1]))
    return Comparison(
        faces=(picked[0][0], picked[1][0]), distance=dist, numbers=(picked[0][1], picked[1][1]), counts=(len(found[0]), len(found[1])),
        verdict=cal.verdict(dist) if cal is not None else None, calibration=cal, model_id=embedder.model_id, found=(found[0], found[1]),
    )
