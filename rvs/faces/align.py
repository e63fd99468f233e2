"""Many images -> their faces, batched: `iter_faces` detects `detect_batch_size` images at a time
(an unreadable image is one error line, not a stopped run), `align_main_faces` keeps the main
(centre-weighted largest) face of each as an aligned crop. Used by gallery building and evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rvs.config import Config
from rvs.errors import BadInputError
from rvs.faces.detect import Face, FaceDetector, select_main_face
from rvs.imageio import load_image


def iter_faces(
    paths: Sequence[Path], config: Config, detector: FaceDetector, progress: bool = True, desc: str = "detect"
) -> Iterator[tuple[int, tuple[int, int], list[Face] | None, str | None]]:
    """Yield (i, image_size, faces, error) for every path; unreadable images give faces=None and
    a one-line error instead of stopping the run."""
    bs = config.detect_batch_size
    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, smoothing=0.05) as bar:
        for start in range(0, len(paths), bs):
            batch, sizes, ok = [], [], []
            for i in range(start, min(start + bs, len(paths))):
                try:
                    img = load_image(paths[i], max_pixels=config.max_pixels)
                except BadInputError as e:
                    yield i, (0, 0), None, str(e)
                    continue
                batch.append(img)
                sizes.append(img.size)
                ok.append(i)
            for i, size, faces in zip(ok, sizes, detector.detect(batch) if batch else []):
                yield i, size, faces, None
            bar.update(min(bs, len(paths) - start))


@dataclass
class AlignedFaces:
    """Main face of each image: crops N x 160 x 160 x 3 uint8, boxes N x 4, landmarks N x 5 x 2,
    probs N; `found` marks images where a face was detected (crops of the others are zeros)."""

    crops: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    found: np.ndarray
    landmarks: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)


def align_main_faces(paths: Sequence[Path], config: Config, detector: FaceDetector | None = None, progress: bool = True) -> AlignedFaces:
    """Detect the main (centre-weighted largest) face of each image and return aligned crops."""
    detector = detector or FaceDetector(config)
    n, s = len(paths), config.face_size
    out = AlignedFaces(
        np.zeros((n, s, s, 3), np.uint8), np.zeros((n, 4), np.float32), np.zeros(n, np.float32), np.zeros(n, bool), np.zeros((n, 5, 2), np.float32)
    )
    for i, size, faces, err in iter_faces(paths, config, detector, progress, desc="align"):
        if err:
            out.errors[i] = err
            continue
        j = select_main_face(faces, size)
        if j is not None:
            f = faces[j]
            out.crops[i], out.boxes[i], out.probs[i], out.found[i], out.landmarks[i] = f.crop, f.box, f.prob, True, f.landmarks
    return out
