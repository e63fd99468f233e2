"""Image search: an image in; for each face its nearest gallery faces and who it is (or "not in this gallery") out."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rvs.config import Config
from rvs.errors import IndexError_, NoFaceError, RvsError
from rvs.faces.detect import Face, FaceDetector
from rvs.faces.embedders import FaceEmbedder, create_embedder, embed_faces, get_spec, model_name
from rvs.faces.quality import naming_problem
from rvs.faces.recipe import check_index_recipe, recipe_of
from rvs.gallery.identify import Identification, Identifier, OpenSetModel
from rvs.gallery.store import FaceIndex
from rvs.imageio import ImageLike, load_image
from rvs.threads import limit_blas_threads


def model_mismatch(index_model_id: str, query_model_id: str) -> str:
    """One line: a gallery of one model cannot answer queries of another."""
    a, b = model_name(index_model_id), model_name(query_model_id)
    if a != b and b is not None:
        title = get_spec(a).title if a is not None else index_model_id
        a = a or "MODEL"
        return (
            f"this gallery was built with {title} ({index_model_id}) and cannot be searched with {get_spec(b).title} vectors; "
            f"search it with `python -m rvs --model {a} ...` (RVS_MODEL={a}) or rebuild it with `python -m rvs --model {b} index FOLDER`"
        )
    return f"the index was built with {index_model_id!r} but the embedder is {query_model_id!r}; rebuild the index with `python -m rvs index`"


@dataclass
class Match:
    """One gallery face. distance: Euclidean between unit embeddings (0..2; lower = more alike)."""

    rank: int
    identity: str
    path: str
    distance: float
    box: list[float]
    item: int

    @property
    def similarity(self) -> float:
        """Cosine similarity, from the distance of unit vectors: d^2 = 2 - 2 cos."""
        return 1.0 - self.distance**2 / 2.0

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "identity": self.identity,
            "path": self.path,
            "distance": round(self.distance, 4),
            "similarity": round(self.similarity, 4),
            "box": self.box,
        }


@dataclass
class FaceResult:
    """One searched face: who it is (`identification`: a name only when calibrated and sure enough,
    else "not in this gallery") and its nearest gallery faces (`matches`: look-alikes unless the
    identification names the same person)."""

    face_number: int  # 1-based, in the order faces are drawn (largest first)
    face: Face
    matches: list[Match]
    identification: Identification

    @property
    def named(self) -> str | None:
        return self.identification.identity

    def to_dict(self) -> dict:
        return {
            "face": self.face_number,
            **self.face.to_dict(),
            "identification": self.identification.to_dict(),
            "matches": [m.to_dict() for m in self.matches],
        }


@dataclass
class SearchResult:
    image_size: tuple[int, int]
    faces: list[FaceResult]
    n_faces_detected: int
    model_id: str
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "image_size": list(self.image_size),
            "faces_detected": self.n_faces_detected,
            "model_id": self.model_id,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "results": [f.to_dict() for f in self.faces],
        }


class SearchEngine:
    """Detect -> embed -> search -> identify, with one detector, embedder and index in memory.

    `search(image)` takes a path, bytes, PIL image or array; returns a SearchResult. Names come
    from the gallery's open-set calibration (index manifest "open_set", rvs.gallery.identify); a gallery
    without a usable one names no one (`calibration_problem` says why).
    """

    def __init__(self, index: FaceIndex, config: Config | None = None, detector: FaceDetector | None = None, embedder: FaceEmbedder | None = None):
        self.config = config or Config()
        limit_blas_threads(self.config.blas_threads)
        self.index = index
        self.detector = detector or FaceDetector(self.config)
        self.embedder = embedder or create_embedder(self.config)
        if index.model_id != self.embedder.model_id:
            raise IndexError_(model_mismatch(index.model_id, self.embedder.model_id))
        # Same model is not enough: faces cut with another margin or detector are other vectors.
        # An index without a recipe (built before rvs recorded one) is accepted on its model id
        # alone, so existing galleries keep working; rebuilding one records its recipe.
        self.recipe = recipe_of(self.detector, self.embedder)
        check_index_recipe(index.extra.get("recipe"), self.recipe, f"the gallery index ({len(index)} faces)")
        self.calibration_problem: str | None = None
        model = None
        info = index.extra.get("open_set")
        if info is None:
            self.calibration_problem = "this gallery has no open-set calibration (run `python -m rvs calibrate`), so no one is named"
        else:
            try:
                model = OpenSetModel.from_dict(info)
            except (TypeError, ValueError) as e:
                self.calibration_problem = f"this gallery's open-set calibration is unusable ({e}), so no one is named"
        if self.config.name_threshold is not None and model is not None:
            model = dataclasses.replace(model, threshold=float(self.config.name_threshold))
        self.identifier = Identifier(index.embeddings, index.meta["identity"], model)

    @classmethod
    def from_index_dir(cls, index_dir: str | Path, config: Config | None = None, **kw) -> SearchEngine:
        return cls(FaceIndex.load(index_dir), config, **kw)

    def detect(self, image: ImageLike):
        img = load_image(image, max_pixels=self.config.max_pixels)
        return img, self.detector.detect_one(img)

    def search(self, image: ImageLike, k: int | None = None, faces: str | int = "all", exact: bool | None = None) -> SearchResult:
        """Search every face (faces="all"), the largest ("largest") or the n-th (1-based int).

        exact: True numpy, False Annoy, None (default) whichever the gallery's size calls for.
        Raises BadInputError for unreadable images and NoFaceError when no face is found.
        """
        k = k or self.config.k
        t0 = time.perf_counter()
        img = load_image(image, max_pixels=self.config.max_pixels)
        t1 = time.perf_counter()
        detected = self.detector.detect_one(img)
        t2 = time.perf_counter()
        if not detected:
            raise NoFaceError(f"no face found in the image ({img.width}x{img.height} px); try a larger, frontal, well-lit face")
        numbers = list(range(1, len(detected) + 1))
        if faces == "largest":
            numbers = [1]
        elif isinstance(faces, int):
            if not 1 <= faces <= len(detected):
                raise RvsError(f"face {faces} does not exist: the image has {len(detected)} face(s)")
            numbers = [faces]
        chosen = [detected[n - 1] for n in numbers]
        emb = embed_faces(self.embedder, chosen)
        t3 = time.perf_counter()
        ids, dists = self.index.search(emb, k, exact=exact)
        t4 = time.perf_counter()
        blocked = [naming_problem(f, self.config) for f in chosen]
        idents = self.identifier.identify(emb, blocked)
        results = []
        for n, f, row_ids, row_d, ident in zip(numbers, chosen, ids, dists, idents):
            matches = [
                Match(r + 1, self.index.meta["identity"][i], self.index.meta["path"][i], float(d), self.index.meta["box"][i], int(i))
                for r, (i, d) in enumerate(zip(row_ids, row_d))
                if i >= 0 and np.isfinite(d)
            ]
            results.append(FaceResult(n, f, matches, ident))
        timings = {"load": (t1 - t0) * 1e3, "detect": (t2 - t1) * 1e3, "embed": (t3 - t2) * 1e3, "search": (t4 - t3) * 1e3, "total": (t4 - t0) * 1e3}
        return SearchResult(img.size, results, len(detected), self.embedder.model_id, timings)
