"""The starter gallery: a small gallery built on first start from a folder of photos (LFW here:
the 300 people with the most photos, up to 3 each, ~900 images, 1-3 min on 2 cores), saved to
`cache_dir/index/lfw-starter` and reused while the folder, the selection and the embedding
recipe stay the same.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rvs.config import Config
from rvs.errors import IndexError_, RvsError
from rvs.faces.recipe import embedder_precision, embedding_recipe, recipe_digest
from rvs.gallery.calibrate import ensure_calibrated
from rvs.gallery.photos import list_images
from rvs.gallery.store import FaceIndex
from rvs.lfw.dataset import lfw_images_dir
from rvs.progress import say

STARTER_PEOPLE = Config.starter_people
STARTER_PER_PERSON = Config.starter_per_person
STARTER_NAME = "lfw-starter"
FULL_INDEX_HINT = "make index   (= python -m rvs index ../shared/data/lfw/images_deepfunneled)"


def starter_selection(folder: Path, people: int = STARTER_PEOPLE, per_person: int = STARTER_PER_PERSON) -> list[tuple[str, list[Path]]]:
    """(identity, images) of the `people` identities with the most images, `per_person` each
    (first in name order); 0 means no limit. Folder-per-person trees (LFW) group by sub-folder;
    a flat folder counts each image as its own identity."""

    groups: dict[str, list[Path]] = {}
    for ident, path in list_images(folder):
        groups.setdefault(ident, []).append(path)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    if people > 0:
        ranked = ranked[:people]
    return [(ident, sorted(paths)[:per_person] if per_person > 0 else sorted(paths)) for ident, paths in ranked]


def _selection_digest(folder: Path, selection: list[tuple[str, list[Path]]], recipe: dict) -> str:
    """Keys a saved starter gallery: the folder, the photos chosen, and the embedding recipe
    (rvs.faces.recipe: weights, centre, precision, detector, crop geometry, detection thresholds)."""
    h = hashlib.sha256(f"{folder.resolve()}\0{recipe_digest(recipe)}".encode())
    for _, paths in selection:
        for p in paths:
            h.update(str(p.relative_to(folder)).encode() + b"\0")
    return h.hexdigest()[:16]


def starter_dir(config: Config, folder: Path) -> Path:
    """`cache_dir/index/lfw-starter` for LFW; `<name>-starter-<hash>` for any other folder, so two
    galleries never overwrite each other."""
    base = Path(config.cache_dir) / "index"
    if folder.resolve() == lfw_images_dir(config).resolve():
        return base / STARTER_NAME
    tag = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
    return base / f"{folder.name or 'gallery'}-starter-{tag}"


def build_starter(
    folder: str | os.PathLike,
    config: Config,
    detector: Any = None,
    embedder: Any = None,
    people: int = STARTER_PEOPLE,
    per_person: int = STARTER_PER_PERSON,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[FaceIndex, Path]:
    """The starter gallery index of `folder` (see `starter_selection`), reused from disk when an
    index of the same selection and model exists, else built (tqdm progress bar) and saved.

    The selection is indexed through a temporary folder of symlinks, so `rvs.gallery.build.build_index`
    does the work and the photos are never copied; the saved index points at `folder` itself.
    """
    # Imported here, not at the top: the app imports this module while it starts listening, and
    # the page must not wait for torch and the face models (they load in the background).
    from rvs.faces.embedders import create_embedder
    from rvs.gallery.build import build_index

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise RvsError(f"gallery folder {folder} does not exist")
    out = Path(out_dir) if out_dir is not None else starter_dir(config, folder)
    embedder = embedder or create_embedder(config)
    selection = starter_selection(folder, people, per_person)
    n_images = sum(len(p) for _, p in selection)
    if not n_images:
        raise RvsError(f"gallery folder {folder} holds no images")
    # The crops are cut by `detector` (its own config), else by a detector built from `config`.
    recipe = embedding_recipe(getattr(detector, "config", None) or config, embedder.model_id, embedder_precision(embedder))
    digest = _selection_digest(folder, selection, recipe)
    try:
        index = FaceIndex.load(out, expect_model_id=embedder.model_id)
        if index.extra.get("starter_digest") == digest:
            ensure_calibrated(index, config, save_to=out)
            return index, out
        say(f"the starter gallery at {out} is out of date; rebuilding it")
    except IndexError_:
        pass
    say(
        f"building a starter gallery: {n_images} images of {len(selection)} people from {folder} -> {out} "
        f"(once; about {max(1, round(n_images / 6 / 60))} min on 2 cores)"
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rvs-starter-") as tmp:
        root = Path(tmp)
        for _, paths in selection:
            for p in paths:
                link = root / p.relative_to(folder)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(p.resolve())
        # Incremental: photos the previous gallery at `out` already holds (same bytes, same recipe)
        # are not embedded again; a grown or shrunk folder costs only its new photos.
        index, summary = build_index(root, None, config, detector=detector, embedder=embedder, progress=progress, update=True, update_from=out)
    # Paths in the index are relative to the link folder, which mirrors `folder`.
    index.extra.update(
        source_folder=str(folder.resolve()),
        starter_digest=digest,
        starter={"people": len(selection), "per_person": per_person, "images": n_images},
    )
    index.save(out)
    say(
        f"starter gallery ready: {summary['faces_indexed']} faces of {summary['identities']} people in "
        f"{time.perf_counter() - t0:.0f} s ({summary['images_without_face']} images without a face)"
    )
    return index, out
