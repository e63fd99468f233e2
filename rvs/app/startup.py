"""Start-up: which weights and gallery the app serves. `load_service(config)` runs once at app start:

1. `--gallery FOLDER` / `RVS_GALLERY` given: a starter gallery built from that folder (below).
2. else `rvs.hub.client.resolve_artifacts(config)`: the Hub repo `RVS_HUB_REPO@RVS_HUB_REVISION` (or a
   cached snapshot of it), or the local index `RVS_INDEX_DIR`.
3. if that fails (Hub unreachable, not configured, index missing): offline, the default converted
   weights with the local index at `config.index_dir`; if there is none, a *starter* gallery built
   from `config.data_dir/lfw/images_deepfunneled`: the 300 people with the most photos, up to 3
   each (~900 images, 1-3 min on 2 cores), saved to `cache_dir/index/lfw-starter` and reused.
4. nothing at all: the service still starts (video frame search needs no gallery) and image
   search answers with what to do.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from rvs.app.service import Service
from rvs.config import Config
from rvs.errors import RvsError, WeightsError
from rvs.faces.recipe import check_index_recipe, recipe_of
from rvs.gallery.starter import FULL_INDEX_HINT, build_starter
from rvs.gallery.store import FaceIndex
from rvs.hub.artifacts import Artifacts
from rvs.hub.client import resolve_artifacts
from rvs.lfw.dataset import lfw_images_dir
from rvs.progress import say

log = logging.getLogger(__name__)


def load_service(
    config: Config | None = None,
    gallery: str | os.PathLike | None = None,
    warm: bool = True,
    progress: bool = True,
    starter_people: int | None = None,
    starter_per_person: int | None = None,
    resolved: Artifacts | None = None,
) -> Service:
    """Resolve weights + gallery (see the module docstring), load the engine, warm it up.

    resolved: artifacts already fetched and verified for this config (`Service.preparing` did
    it), so start-up does not download and hash them twice.

    gallery: a folder to build a starter gallery from (default: RVS_GALLERY). starter_people /
    starter_per_person: the starter's size (default: RVS_STARTER_PEOPLE / RVS_STARTER_PER_PERSON,
    else 300 x 3; 0 = no limit). Never raises for a missing gallery: the Service reports it.
    """
    from rvs.faces.detect import FaceDetector
    from rvs.faces.embedders import create_embedder, get_spec
    from rvs.gallery.search import SearchEngine

    config = config or Config.from_env()
    gallery = gallery or config.gallery or None
    people = starter_people if starter_people is not None else config.starter_people
    per_person = starter_per_person if starter_per_person is not None else config.starter_per_person
    notes: list[str] = []
    arts: Artifacts | None = None
    t0 = time.perf_counter()

    if gallery is None:
        if config.hub_repo.strip() and not is_commit(config.hub_revision):
            say(unpinned_revision_warning(config))
        try:
            arts = resolved or resolve_artifacts(config)
        except RvsError as e:
            say(f"cannot use the Hub repo {config.hub_repo}@{config.hub_revision}: {e}" if config.hub_repo.strip() else str(e))
            if config.hub_repo.strip():
                notes.append(f"Hub repo {config.hub_repo} unavailable ({_first_line(e)}); offline fallback in use")
                # Offline fallback: default converted weights + the local index, if there is one.
                try:
                    arts = resolve_artifacts(dataclasses.replace(config, hub_repo=""))
                except RvsError as e2:
                    say(f"no local index either: {e2}")
    if arts is not None:
        config = arts.apply(config)
    folder = Path(gallery).expanduser() if gallery else lfw_images_dir(config)
    no_gallery = (
        f"no gallery: no index at {config.index_dir} and no photos at {folder}. Build one with "
        "`python -m rvs index FOLDER`, start the app with `--gallery FOLDER`, or set RVS_HUB_REPO"
    )
    if arts is None and not folder.is_dir():
        # Nothing to search: skip loading the face models (video frame search needs none).
        say(no_gallery)
        return Service(config, None, None, notes, problem=no_gallery)

    try:
        try:
            embedder = create_embedder(config)
        except WeightsError as e:
            if config.model == "facenet":
                raise
            # A bad or missing SFace file must not take the app down: FaceNet needs nothing else.
            say(f"cannot use the {get_spec(config.model).title} model ({_first_line(e)}); falling back to FaceNet")
            notes.append(f"{get_spec(config.model).title} model refused ({_first_line(e)}); FaceNet in use")
            config = dataclasses.replace(config, model="facenet")
            embedder = create_embedder(config)
        detector = FaceDetector(config)
    except RvsError as e:
        say(f"cannot load the face models: {e}")
        return Service(config, None, None, notes, problem=f"face models unavailable: {_first_line(e)}")

    index: FaceIndex | None = None
    problem = None
    if arts is not None:
        try:
            index = FaceIndex.load(arts.index_dir, verify=False, expect_model_id=embedder.model_id)  # resolve_artifacts verified it
            check_index_recipe(index.extra.get("recipe"), recipe_of(detector, embedder), f"index {arts.index_dir}")
            # Who gets a name is decided here, not by the publisher: the open-set model is fitted
            # again from the verified embeddings (seconds), in memory; the files stay as published.
            from rvs.gallery.calibrate import ensure_calibrated

            ensure_calibrated(index, config, trust=arts.origin.startswith("local"))
        except RvsError as e:
            notes.append(f"index {arts.index_dir} unusable ({_first_line(e)})")
            arts, index = None, None
    if index is None:
        if folder.is_dir():
            try:
                index, out = build_starter(folder, config, detector, embedder, people, per_person, progress=progress)
                arts = _starter_artifacts(index, out, folder, config)
                if not gallery:
                    say(f"this is a starter gallery; for the full LFW gallery run:  {FULL_INDEX_HINT}")
            except RvsError as e:
                problem = f"cannot build a gallery from {folder}: {_first_line(e)}"
        else:
            problem = no_gallery
    if problem:
        say(problem)
        return Service(config, None, None, notes, problem=problem)

    engine = SearchEngine(index, config, detector=detector, embedder=embedder)
    service = Service(config, engine, arts, notes)
    if warm:
        service.warm()
    say(f"{service.description} · ready in {time.perf_counter() - t0:.0f} s")
    return service


def is_commit(revision: str) -> bool:
    """A full 40-hex commit id (not a branch or tag, which can move)."""
    return len(revision) == 40 and all(ch in "0123456789abcdef" for ch in revision)


def unpinned_revision_warning(config: Config) -> str:
    return (
        f"warning: RVS_HUB_REVISION={config.hub_revision!r} is a branch or tag, not a commit: every start pulls whatever "
        f"{config.hub_repo} has there now; pin a 40-hex commit (README, App settings)"
    )


def _starter_artifacts(index: FaceIndex, out: Path, folder: Path, config: Config) -> Artifacts:
    st = index.extra.get("starter", {})
    size = f"{st.get('people', '?')} people x up to {st.get('per_person', '?')} photos" if st.get("per_person") else "all photos"
    return Artifacts(
        weights_path=None,
        weights_spec=config.weights,
        index_dir=out,
        model_id=index.model_id,
        gallery_size=len(index),
        n_identities=index.n_identities,
        origin=f"starter gallery ({size}) built locally from {folder}",
    )


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0][:300] if s else type(e).__name__
