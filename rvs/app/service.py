"""The demo's back end: `Service` holds one search engine and where its gallery came from, and
turns searches into display-ready answers (annotated query, captioned thumbnails, the
identification, plot; built by `rvs.app.answers`) with no UI framework code: app.py stays a thin
layer. Start-up (which gallery, pulled or built how) is `rvs.app.startup.load_service`.

Threads: Gradio runs handlers in worker threads. The detector and embedder are torch modules
used under `torch.inference_mode` (no shared mutable state), Annoy reads are thread-safe, and the
thumbnail cache is an `lru_cache` (internally locked), so searches run concurrently without a lock.
Video search loads its models lazily behind its own lock (rvs.video.faces).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rvs.app.answers import (
    PHOTO_EXAMPLES,
    PREPARING,
    ImageAnswer,
    VideoAnswer,
    about_lines,
    describe_identification,
    face_choices,
    gallery_line,
    hide_paths,
    match_strength,
    parse_face,
    preparing_line,
    pretty_name,
    search_footnote,
    tile_tooltip,
    video_answer,
)
from rvs.app.draw import draw_faces, fit, placeholder_tile
from rvs.config import Config
from rvs.errors import BadInputError, IndexError_, RvsError
from rvs.faces.verification import load_calibration
from rvs.fileio import atomic_write
from rvs.gallery.store import FaceIndex
from rvs.hub.artifacts import Artifacts, artifact_folder
from rvs.hub.client import resolve_artifacts
from rvs.imageio import ImageLike, crop_box, load_image
from rvs.lfw.dataset import lfw_images_dir
from rvs.progress import Progress

log = logging.getLogger(__name__)

THUMB = 192
SHARED_FACE_MARGIN = 0.4  # around a shared result's face crop (its tiles open face to face against it)


class Service:
    """One search engine and where its model and gallery came from.

    engine: rvs.gallery.search.SearchEngine, or None when no gallery could be loaded (`problem` says why;
    video frame search still works). description: one line for the app header. notes: what went
    wrong on the way (e.g. the Hub was unreachable), for the header and the log.
    """

    def __init__(
        self,
        config: Config,
        engine: Any,
        artifacts: Artifacts | None,
        notes: Sequence[str] = (),
        problem: str | None = None,
    ):
        self.config = config
        self.engine = engine
        self.artifacts = artifacts
        self.notes = list(notes)
        self.problem = problem
        self.index: FaceIndex | None = engine.index if engine is not None else None
        src = (self.index.extra.get("source_folder") if self.index is not None else None) or ""
        self.source_folder = Path(src) if src and Path(src).is_dir() else None
        self.thumbnail = lru_cache(maxsize=512)(self._thumbnail)
        self.video_library = self._load_video_library()
        self._video_examples: list[tuple[Path, Path, str]] | None = None
        # A published gallery (artifact folder) brings face thumbnails and example inputs along.
        self.artifact_folder = artifact_folder(artifacts)
        self.thumbnails = None
        self.photos = None
        self.bundled_examples: list[dict] = []
        if self.artifact_folder is not None:
            from rvs.gallery.thumbnails import Thumbnails
            from rvs.hub.examples import load_examples

            if self.index is not None and (self.artifact_folder / "gallery").is_dir():
                try:
                    self.thumbnails = Thumbnails(self.artifact_folder / "gallery", len(self.index))
                except IndexError_ as e:
                    self.notes.append(f"face thumbnails unusable ({e})")
                try:
                    self.photos = Thumbnails(self.artifact_folder / "gallery", len(self.index), stem="photos")
                except IndexError_ as e:  # an artifact of an older rvs has none: thumbnails stand in
                    log.info("no gallery photos in the artifact: %s", e)
            self.bundled_examples = load_examples(self.artifact_folder)

    # ---- description ----
    @property
    def description(self) -> str:
        if self.artifacts is not None:
            return self.artifacts.describe()
        return self.problem or "no gallery loaded"

    def status_lines(self) -> list[str]:
        return [self.description, *self.notes]

    # ---- gallery images ----
    def gallery_image_path(self, rel: str) -> Path | None:
        """The gallery photo behind an index path, if it is on this machine. Index paths are
        relative and must stay inside the source folder: a hostile index cannot point elsewhere."""
        if self.source_folder is None or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            return None
        p = self.source_folder / rel
        return p if p.is_file() else None

    def gallery_photo(self, item: int) -> Image.Image | None:
        """Gallery item `item`'s whole photo: from this machine's photo folder, else from the
        artifact's photo pack; None when neither has it."""
        assert self.index is not None
        p = self.gallery_image_path(self.index.item(item)["path"])
        if p is not None:
            try:
                return load_image(p, self.config.max_pixels)
            except RvsError as e:
                log.warning("gallery image %s unreadable: %s", p, e)
        return self.photos.get(item) if self.photos is not None else None

    def _thumbnail(self, item: int) -> Image.Image:
        """Square thumbnail of gallery item `item`: its photo cropped to the stored face box with
        a margin, or a placeholder tile with the name when the photo is not here (Hub gallery)."""
        assert self.index is not None
        meta = self.index.item(item)
        p = self.gallery_image_path(meta["path"])
        if p is not None:
            try:
                return crop_box(load_image(p, self.config.max_pixels), meta["box"], size=THUMB)
            except RvsError as e:
                log.warning("gallery image %s unreadable: %s", p, e)
        if self.thumbnails is not None:
            t = self.thumbnails.get(item)
            if t is not None:
                return t
        return placeholder_tile(meta["identity"], THUMB)

    # ---- image search ----
    def _require_engine(self):
        if self.engine is None:
            if self.loading:
                raise IndexError_("the gallery is still being prepared (see the top of the page); video frame search works already")
            raise IndexError_(self.problem or "no gallery is loaded")
        return self.engine

    # ---- start-up in the background (the app listens at once) ----
    loading: bool = False

    @classmethod
    def preparing(cls, config: Config, gallery: str | os.PathLike | None = None) -> Service:
        """A Service that answers while the real one loads (`adopt` swaps it in). Its gallery's
        artifacts are resolved now when that is quick (a preloaded or local Hub artifact: its
        examples then show from the start); nothing heavy runs here."""
        arts = None
        if not gallery and not config.gallery and config.hub_repo.strip():
            try:
                arts = resolve_artifacts(config)
            except RvsError:
                arts = None  # load_service reports it
        svc = cls(arts.apply(config) if arts is not None else config, None, arts, [], problem=None)
        svc.loading = True
        return svc

    def adopt(self, other: Service) -> None:
        """Take over a loaded Service's engine, gallery and messages (thread-safe enough: each
        field is one assignment, and `loading` is cleared last)."""
        self.config, self.engine, self.artifacts, self.index = other.config, other.engine, other.artifacts, other.index
        self.notes, self.problem, self.source_folder = other.notes, other.problem, other.source_folder
        self.artifact_folder, self.thumbnails, self.photos = other.artifact_folder, other.thumbnails, other.photos
        if other.bundled_examples:
            self.bundled_examples = other.bundled_examples
        if other.video_library is not None:
            self.video_library = other.video_library
        self.thumbnail.cache_clear()
        self.loading = False

    def prepare_in_background(self, load: Callable[[], Service]) -> threading.Thread:
        """Run `load` (the real Service: models, gallery) in a thread and adopt what it returns.
        The Service owns its start-up state: a failure becomes the page's one line, never a
        page that says "preparing" forever."""

        def run() -> None:
            try:
                self.adopt(load())
            except Exception:
                log.exception("the gallery could not be prepared")
                self.problem, self.loading = "the gallery could not be prepared (see the server log)", False

        thread = threading.Thread(target=run, name="rvs-prepare", daemon=True)
        thread.start()
        return thread

    def gallery_people(self) -> list[list[Any]]:
        """[name, photos] of everyone in the gallery, by name (the page's searchable list)."""
        if self.index is None:
            return []
        from collections import Counter

        return [[pretty_name(n), c] for n, c in sorted(Counter(self.index.meta["identity"]).items())]

    def about_markdown(self) -> str:
        """The gallery's provenance for the "About this gallery" section."""
        if self.loading or self.index is None:
            return "The gallery is not loaded yet." if self.loading else hide_paths(self.problem or "No gallery is loaded.")
        origin = self.artifacts.public_origin if self.artifacts is not None else None
        return about_lines(len(self.index), self.index.n_identities, origin, self.index.model_id, self.index.extra.get("open_set"))

    def _is_lfw(self) -> bool:
        """Whether the gallery's photos are LFW's (the header then says so)."""
        src = str(self.index.extra.get("source_name") or self.index.extra.get("source_folder") or "") if self.index is not None else ""
        return "lfw" in src.lower() or "starter" in src.lower()

    def status_markdown(self) -> str:
        """The header's status lines: what the gallery is, or what is being prepared."""
        if self.loading:
            hub = self.config.hub_repo.strip() and self.artifacts is None
            key = "hub" if hub else "load" if self.artifacts is not None else "build"
            return preparing_line(PREPARING[key].format(repo=self.config.hub_repo))
        if self.index is not None:
            lines = gallery_line(len(self.index), self.index.n_identities, self._is_lfw())
            return "\n".join([lines, *(f"- {hide_paths(n)}" for n in self.notes)])
        return "\n".join(f"- {hide_paths(line)}" for line in self.status_lines())

    def preview(self, image: ImageLike, name: str | None = None) -> tuple[Image.Image, list[str]]:
        """Detect faces only: the query with faces boxed and numbered, and the picker's options."""
        engine = self._require_engine()
        img = load_image(image, max_pixels=self.config.max_pixels, name=name)
        faces = engine.detector.detect_one(img)
        if not faces:
            return fit(img, 1024)[0], face_choices(0)
        return draw_faces(img, [f.box for f in faces], [f.landmarks for f in faces], selected=[0]), face_choices(len(faces))

    def search_image(
        self, image: ImageLike, face: str | int | None = "1 (largest)", k: int | None = None, name: str | None = None
    ) -> ImageAnswer:
        """Search the chosen face(s) of `image`: the k nearest gallery faces and who it is.

        Every face is searched in one batch (the embedder handles a batch about as fast as one
        face), so the answer can number and box them all; the chosen ones are shown.
        Raises BadInputError (unreadable image), NoFaceError, RvsError (no such face number).
        """
        engine = self._require_engine()
        cal = load_calibration(engine.embedder.model_id)
        k = int(k or self.config.k)
        k = max(1, min(k, 100))
        want = parse_face(face)
        img = load_image(image, max_pixels=self.config.max_pixels, name=name)
        result = engine.search(img, k=k, faces="all")
        n = result.n_faces_detected
        if want != "all" and want > n:
            raise BadInputError(f"face {want} does not exist: the image has {n} face(s); pick one of 1..{n} or 'all'")
        chosen = result.faces if want == "all" else [result.faces[want - 1]]
        faces = [fr.face for fr in result.faces]
        annotated = draw_faces(img, [f.box for f in faces], [f.landmarks for f in faces], selected=[fr.face_number - 1 for fr in chosen])
        many = len(chosen) > 1
        per_face = max(1, k // len(chosen)) if many else k
        tiles = []
        tile_refs = []  # what each tile is, for the face-to-face view
        for fr in chosen:
            for m in fr.matches[:per_face]:
                tile_refs.append({
                    "face": fr.face_number, "item": int(m.item), "distance": round(float(m.distance), 4),
                    "query_box": [round(float(v), 1) for v in fr.face.box], "tooltip": tile_tooltip(m.distance),
                })
                prefix = f"#{fr.face_number} " if many else ""
                kind = "" if m.identity == fr.named else "look-alike: "
                tiles.append((self.thumbnail(m.item), f"{prefix}{kind}{pretty_name(m.identity)} · {match_strength(m.distance, cal)}"))
        lines = [describe_identification(fr, self.index.n_identities if self.index is not None else 0, f"Face {fr.face_number}: " if n > 1 else "") for fr in chosen]
        t = result.timings_ms
        lines.append(f"<small>{search_footnote(n, t['total'])}</small>")
        value = "all" if want == "all" else face_choices(n)[want - 1]
        data = result.to_dict()
        for r in data["results"]:
            for m in r["matches"]:
                # Gradio clients take any {"path": str} in an output for a file to download.
                m["gallery_path"] = m.pop("path")
                if cal is not None:
                    m["same_person_probability"] = round(cal.probability(m["distance"]), 4)
        data["shown_faces"] = [fr.face_number for fr in chosen]
        data["tiles"] = tile_refs
        scale = annotated.width / img.width
        boxes = [[round(float(v) * scale, 1) for v in f.box] for f in faces]
        crop = crop_box(img, chosen[0].face.box, margin=0.35, size=160)
        return ImageAnswer(annotated, face_choices(n), value, tiles, "\n\n".join(lines), data, boxes, crop)

    # ---- video search ----
    def search_video(
        self,
        video: str | os.PathLike,
        query: ImageLike,
        mode: str = "frame",
        progress: Progress | None = None,
        keep_cache: bool | None = None,
        query_name: str = "query image",
        video_name: str | None = None,
        limits: bool = False,
    ) -> VideoAnswer:
        """Where in `video` the query picture (mode "frame") or its person ("face") appears.

        Uploads (not the bundled examples, unless keep_cache) are searched with a private feature
        cache removed afterwards: nothing derived from them stays, and two searches of the same
        upload never share or delete each other's files. limits=True (the served app): videos
        over `app_max_video_seconds` / `app_max_video_frames` are refused before any decoding.
        """
        if video is None or not str(video):
            raise BadInputError("upload a video first")
        if query is None:
            raise BadInputError("upload a query image (a frame, a screenshot, or a photo of the person)")
        try:
            from rvs.video import api as V

            fn = V.search_video_faces if mode == "face" else V.search_video_frames
            read_frames = V.read_frames
        except (ImportError, AttributeError) as e:
            raise RvsError(f"video search is not available in this build ({e})") from None
        qimg = load_image(query, max_pixels=self.config.max_pixels, name=query_name)
        path = Path(video)
        label = video_name or path.name
        if keep_cache is None:
            keep_cache = _is_under(path, Path(self.config.data_dir))
        try:
            if limits:
                self._check_video_limits(V.probe_video(path), label)
            cfg = self.config
            private = None
            if not keep_cache:
                private = Path(self.config.cache_dir) / "requests" / uuid.uuid4().hex
                cfg = dataclasses.replace(self.config, video_cache_dir=private)
            try:
                if mode == "face":
                    res = V.search_video_faces(qimg, path, cfg, progress, self._video_face_models())
                else:
                    res = fn(qimg, path, cfg, progress)
            finally:
                if private is not None:
                    shutil.rmtree(private, ignore_errors=True)
        except RvsError as e:
            # Messages name the file; say the user's file name, not the server's temporary path.
            raise type(e)(str(e).replace(str(path), label)) from None
        ans = video_answer(res, path, read_frames)
        ans.data["video"] = label  # the user's file name, never this server's path
        return ans

    def share(self, query: ImageLike, face: str | int | None = "1 (largest)", k: int | None = None, name: str | None = None) -> str:
        """Keep a search's answer for a link (rvs.app.shared): the search is run again here, so a
        shared answer is always rvs's own (never words a client sent), and what is kept is the
        searched face's crop, the answer's words and the tiles' gallery rows. Returns the id."""
        want = parse_face(face)
        if want == "all":
            raise BadInputError("share one face's result: pick a face number")
        ans = self.search_image(query, want, k, name=name)
        tiles = ans.data.get("tiles") or []
        if not tiles:
            raise BadInputError("nothing to share: this search found no gallery faces")
        img = load_image(query, max_pixels=self.config.max_pixels, name=name)
        crop = crop_box(img, tiles[0]["query_box"], margin=SHARED_FACE_MARGIN, size=256)
        store = self._shared_store()
        captions = [c for _, c in ans.matches]
        payload = {"summary": ans.summary, "rows": [t["item"] for t in tiles], "distances": [t["distance"] for t in tiles], "captions": captions, "model_id": self.index.model_id}
        return store.save(payload, crop)

    def open_shared(self, rid: str) -> tuple[Image.Image, list, str, dict] | None:
        """A shared result by id: (the face, the tiles, the answer, what each tile is: for opening
        it face to face against the shared face crop), or None (unknown or expired)."""
        got = self._shared_store().load(rid)
        if got is None or self.index is None:
            return None
        payload, face = got
        if payload.get("model_id") != self.index.model_id:
            return None
        rows, captions = payload.get("rows", []), payload.get("captions", [])
        dists = payload.get("distances") or [None] * len(rows)
        keep = [(r, str(c), d) for r, c, d in zip(rows, captions, dists) if isinstance(r, int) and 0 <= r < len(self.index)]
        # The crop was cut with SHARED_FACE_MARGIN around the face (share): the face is its centre.
        side = face.width / (1 + 2 * SHARED_FACE_MARGIN)
        box = [round((face.width - side) / 2, 1), round((face.height - side) / 2, 1), round((face.width + side) / 2, 1), round((face.height + side) / 2, 1)]
        refs = [{"item": r, "distance": d, "query_box": box} for r, _, d in keep if isinstance(d, (int, float))]
        data = {"shared": rid, "tiles": refs if len(refs) == len(keep) else []}
        return face, [(self.thumbnail(r), c) for r, c, _ in keep], str(payload.get("summary", "")), data

    def shared_face(self, rid: str) -> Image.Image | None:
        """The face crop a shared result keeps (what its tiles open face to face against)."""
        got = self._shared_store().load(str(rid))
        return got[1] if got is not None else None

    def _shared_store(self):
        from rvs.app.shared import SharedResults

        return SharedResults(Path(self.config.cache_dir) / "shared", self.config.app_share_days)

    def face_to_face(self, query: ImageLike, tile: dict, name: str | None = None) -> tuple[Image.Image, Image.Image, str, list]:
        """A result tile opened: (the query's face at full resolution, the gallery photo with its
        face boxed, what the match is in words, the person's other photos in the gallery)."""
        from rvs.app.answers import face_to_face_markdown

        engine = self._require_engine()
        try:
            item, box, dist = int(tile["item"]), [float(v) for v in tile["query_box"]][:4], float(tile["distance"])
        except (KeyError, TypeError, ValueError):
            raise BadInputError("pick a result tile of this search") from None
        if not 0 <= item < len(self.index) or len(box) != 4 or not all(math.isfinite(v) for v in box) or not 0.0 <= dist <= 2.0:
            raise BadInputError("pick a result tile of this search")
        img = load_image(query, max_pixels=self.config.max_pixels, name=name)
        side = max(box[2] - box[0], box[3] - box[1])
        q = crop_box(img, box, margin=0.4, size=int(min(512, max(192, side * 1.8))))
        meta = self.index.item(item)
        photo = self.gallery_photo(item)
        photo = draw_faces(photo, [meta["box"]], None, selected=[0], labels=[""], max_side=768, min_side=256) if photo is not None else self.thumbnail(item)
        cal = load_calibration(engine.embedder.model_id)
        ident = meta["identity"]
        same = [i for i, n in enumerate(self.index.meta["identity"]) if n == ident and i != item]
        others = [(self.thumbnail(i), pretty_name(ident)) for i in same[:12]]
        return q, photo, face_to_face_markdown(pretty_name(ident), dist, cal, len(same)), others

    def compare(self, a: ImageLike, b: ImageLike, face_a: str | int | None = None, face_b: str | int | None = None, names: tuple[str, str] = ("photo 1", "photo 2")) -> tuple[Image.Image, str, dict, Any]:
        """Same person? The two faces side by side (each photo's chosen face), the calibrated
        answer as markdown, the result as a dict (rvs.faces.compare), and, when a photo has more
        than one face, both photos with every face numbered plus where each face is on that
        picture (photo 0/1, number, box): a tap there picks another face."""
        from rvs.app.answers import compare_markdown
        from rvs.faces.compare import compare_faces

        if a is None or b is None:
            raise BadInputError("upload two photos to compare")
        det, emb = self._face_models()
        imgs = [load_image(x, max_pixels=self.config.max_pixels, name=n) for x, n in zip((a, b), names)]
        nums = [None if f in (None, "", "main") else parse_face(f) for f in (face_a, face_b)]
        if "all" in nums:
            raise BadInputError("pick one face of each photo (a number), not 'all'")
        c = compare_faces(imgs[0], imgs[1], det, emb, self.config, nums[0], nums[1], names)
        crops = [crop_box(im, f.box, margin=0.4, size=320) for im, f in zip(imgs, c.faces)]
        pair = Image.new("RGB", (656, 320), (255, 255, 255))
        pair.paste(crops[0], (0, 0))
        pair.paste(crops[1], (336, 0))
        return pair, compare_markdown(c), c.to_dict(), _faces_side_by_side(imgs, c)

    def _face_models(self):
        """(detector, embedder): the ones video person mode uses too (the search engine's, else
        loaded once per process), so comparing photos loads no second copy."""
        m = self._video_face_models()
        return m.query_detector, m.embedder

    def _load_video_library(self):
        """The configured video library (`Config.video_library`), or None: absent, or refused in
        one logged line (a damaged library never stops the app)."""
        from rvs.library import store

        folder = self.config.video_library_dir()
        if not (folder / store.MANIFEST).is_file():
            return None
        try:
            return store.load(folder)
        except RvsError as e:
            log.warning("video library not offered: %s", e)
            return None

    def search_library(self, query: Any, mode: str, query_name: str | None = None) -> tuple[list, str, dict]:
        """Which videos of the library show the query's person (mode "person") or picture ("frame")."""
        from rvs.app.answers import library_answer
        from rvs.library.search import search_frame, search_person
        from rvs.video.reader import read_frame

        lib = self.video_library
        if lib is None:
            raise BadInputError("no video library is configured on this server")
        if query is None:
            raise BadInputError("upload a query picture first")
        img = load_image(query, max_pixels=self.config.max_pixels, name=query_name)
        res = search_person(lib, img, self.config, self._video_face_models()) if mode == "person" else search_frame(lib, img, self.config)

        def frame_of(hit):
            try:
                return fit(read_frame(hit.path, hit.best_time), 480)[0] if Path(hit.path).is_file() else None
            except RvsError:
                return None

        return library_answer(res, frame_of)

    def _video_face_models(self):
        """Face mode's models: the search engine's detector and embedder when the gallery's model
        is the configured one (loaded once per process either way)."""
        from rvs.video.faces import face_models

        e = self.engine
        if e is not None and getattr(e.embedder, "model_id", None) and e.config.model == self.config.model:
            return face_models(self.config, e.detector, e.embedder)
        return face_models(self.config)

    def _check_video_limits(self, info: Any, label: str) -> None:
        c = self.config
        if info.duration > c.app_max_video_seconds:
            raise BadInputError(
                f"{label} is {info.duration / 60:.1f} min long; this app searches videos up to "
                f"{c.app_max_video_seconds / 60:.0f} min (cut it, or use `python -m rvs video` for any length)"
            )
        if info.frame_count > c.app_max_video_frames:
            raise BadInputError(
                f"{label} has {info.frame_count:,} frames; this app searches up to {c.app_max_video_frames:,} "
                "(lower its frame rate or cut it, or use `python -m rvs video`)"
            )

    # ---- examples ----
    def example_probes(self, n: int = 2) -> list[Path]:
        """Up to n LFW photos of gallery people that are not themselves in the gallery."""
        from rvs.hub.examples import probe_photos

        if self.index is None:
            return []
        return [p for _, p in probe_photos(self.index.meta, lfw_images_dir(self.config), n)]

    def example_images(self) -> list[Path]:
        """Example photos: those the published gallery brings, else the ones here
        (data_dir/photos/*/1.jpg, multiface.jpg, two LFW probes)."""
        return [p for p, _ in self.labelled_example_images()]

    def labelled_example_images(self) -> list[tuple[Path, str]]:
        """(photo, label) of every example photo (see example_images)."""
        bundled = [(e["file"], e["label"]) for e in self.bundled_examples if e["kind"] == "image"]
        if bundled:
            return bundled
        from rvs.hub.examples import pretty

        photos = Path(self.config.data_dir) / "photos"
        out = [(p, pretty(p.parent.name)) for p in sorted(photos.glob("*/1.jpg"))]
        out.append((photos / "multiface.jpg", PHOTO_EXAMPLES["group"]))
        out += [(p, PHOTO_EXAMPLES["probe"].format(name=pretty(p.parent.name))) for p in self.example_probes(2)]
        return [(p, label) for p, label in out if p.is_file()]

    def video_examples(self) -> list[tuple[Path, Path, str]]:
        """(video, query image, mode) for the bundled sample video: a frame of it at 2 s for frame
        mode and the largest face at 1 s for person mode, written once to cache_dir/examples."""
        if self._video_examples is not None:
            return self._video_examples
        bundled = [(e["file"], e["query"], e["mode"]) for e in self.bundled_examples if e["kind"] == "video"]
        if bundled:
            self._video_examples = bundled
            return bundled
        video = Path(self.config.data_dir) / "videos" / "arcade_faces.mp4"
        out: list[tuple[Path, Path, str]] = []
        if video.is_file():
            from rvs.video.api import read_frame

            d = Path(self.config.cache_dir) / "examples"
            d.mkdir(parents=True, exist_ok=True)
            frame = d / "arcade_faces_frame_2.00s.jpg"
            if not frame.is_file():
                _save_atomic(read_frame(video, 2.0), frame)
            out.append((video, frame, "frame"))
            face = d / "arcade_faces_face_1.00s.jpg"
            if not face.is_file():
                from rvs.faces.detect import FaceDetector

                img = read_frame(video, 1.0)
                detector = self.engine.detector if self.engine is not None else FaceDetector(self.config)
                faces = detector.detect_one(img)
                if faces:
                    _save_atomic(crop_box(img, faces[0].box, margin=0.6, size=256), face)
            if face.is_file():
                out.append((video, face, "face"))
        self._video_examples = out
        return out

    def warm(self) -> None:
        """One search on a real photo (or a blank image) so the first user does not pay for lazy
        initialisation (MTCNN's first pass, oneDNN kernels, Annoy's first page-in)."""
        if self.engine is None:
            return
        t0 = time.perf_counter()
        probes = self.example_probes(1)
        try:
            if probes:
                self.engine.search(probes[0], k=self.config.k)
            else:
                self.engine.detect(Image.new("RGB", (160, 160), (128, 128, 128)))
                blank = {"crop": np.zeros((1, self.config.face_size, self.config.face_size, 3), np.uint8), "aligned": np.zeros((1, 112, 112, 3), np.uint8)}
                self.engine.embedder.embed_inputs({k: blank[k] for k in self.engine.embedder.spec.inputs})
        except RvsError:
            pass
        log.info("warm-up took %.1f s", time.perf_counter() - t0)


def _faces_side_by_side(imgs: Sequence[Image.Image], c: Any, height: int = 360) -> tuple[Image.Image, list[tuple[int, int, list[float]]]] | None:
    """Both photos of a comparison with every face boxed and numbered (the compared ones
    highlighted), side by side, and each face's (photo 0/1, face number, box on that picture):
    what a tap on it picks. None when each photo has one face (nothing to pick)."""
    if all(len(f) <= 1 for f in c.found):
        return None
    drawn, boxes, x = [], [], 0
    for k, (im, faces) in enumerate(zip(imgs, c.found)):
        pic = draw_faces(im, [f.box for f in faces], None, selected=[c.numbers[k] - 1], max_side=4 * height, min_side=0)
        s = height / pic.height
        pic = pic.resize((max(1, round(pic.width * s)), height), Image.LANCZOS)
        scale = pic.width / im.width
        boxes += [(k, i + 1, [x + v * scale if j % 2 == 0 else v * scale for j, v in enumerate(map(float, f.box))]) for i, f in enumerate(faces)]
        drawn.append((x, pic))
        x += pic.width + 16
    out = Image.new("RGB", (x - 16, height), (255, 255, 255))
    for x0, pic in drawn:
        out.paste(pic, (x0, 0))
    return out, boxes


def _save_atomic(img: Image.Image, path: Path) -> None:
    atomic_write(path, lambda tmp: img.save(tmp, format="JPEG", quality=92))


def _is_under(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False
