"""The demo's back end: where the model and gallery come from, one search engine, answers ready to show.

`load_service(config)` runs once at app start:

1. `--gallery FOLDER` / `RVS_GALLERY` given: a starter gallery built from that folder (below).
2. else `rvs.hub.client.resolve_artifacts(config)`: the Hub repo `RVS_HUB_REPO@RVS_HUB_REVISION` (or a
   cached snapshot of it), or the local index `RVS_INDEX_DIR`.
3. if that fails (Hub unreachable, not configured, index missing): offline, the default converted
   weights with the local index at `config.index_dir`; if there is none, a *starter* gallery built
   from `config.data_dir/lfw/images_deepfunneled`: the 300 people with the most photos, up to 3
   each (~900 images, 1-3 min on 2 cores), saved to `cache_dir/index/lfw-starter` and reused.
4. nothing at all: the service still starts (video frame search needs no gallery) and image
   search answers with what to do.

`Service` holds the engine and turns searches into display-ready answers (annotated query,
captioned thumbnails, the identification, plot), with no UI framework code: app.py stays a thin layer.

Threads: Gradio runs handlers in worker threads. The detector and embedder are torch modules
used under `torch.inference_mode` (no shared mutable state), Annoy reads are thread-safe, and the
thumbnail cache is an `lru_cache` (internally locked), so searches run concurrently without a lock.
Video search loads its models lazily behind its own lock (rvs.video.faces).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rvs.config import Config
from rvs.draw import draw_faces, fit, format_time, placeholder_tile, similarity_plot
from rvs.errors import BadInputError, IndexError_, RvsError
from rvs.faces.recipe import check_index_recipe, recipe_of
from rvs.gallery.identify import format_probability
from rvs.gallery.starter import FULL_INDEX_HINT, build_starter, lfw_folder
from rvs.gallery.store import FaceIndex
from rvs.hub.artifacts import Artifacts
from rvs.hub.client import resolve_artifacts
from rvs.imageio import ImageLike, crop_box, load_image
from rvs.progress import say

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

MAX_VIDEO_FRAMES_SHOWN = 12
THUMB = 192
















# ---------------------------------------------------------------------------------------------
# Answers (what the UI shows)


@dataclass
class ImageAnswer:
    """An image search, ready to display.

    annotated: the query with every face boxed and numbered (searched faces highlighted).
    face_choices / face_value: the face picker's options ("1 (largest)", "2", ..., "all") and value.
    matches: (thumbnail, caption) of the nearest gallery faces, e.g. "Colin Powell · 0.532".
    summary: markdown: who each face is (or "not in this gallery") and timings. data: the SearchResult as a dict (API users).
    """

    annotated: Image.Image
    face_choices: list[str]
    face_value: str
    matches: list[tuple[Image.Image, str]]
    summary: str
    data: dict


@dataclass
class VideoAnswer:
    """A video search, ready to display: frames (image, "00:02.04 · score 0.99"), a similarity
    over time plot, one table row per segment, a markdown summary and the result as a dict."""

    frames: list[tuple[Image.Image, str]]
    plot: Image.Image
    rows: list[list[Any]]
    summary: str
    data: dict
    headers: list[str] = field(default_factory=lambda: ["#", "start", "end", "best frame", "score", "samples"])


def face_choices(n: int) -> list[str]:
    """The face picker's options for an image with n faces (numbers follow the boxes drawn)."""
    if n <= 0:
        return ["1 (largest)"]
    return ["1 (largest)", *[str(i) for i in range(2, n + 1)], *(["all"] if n > 1 else [])]


def parse_face(value: str | int | None) -> str | int:
    """"all" | face number (1-based) from the picker's value ("1 (largest)", "2", "all", "largest")."""
    if value is None:
        return 1
    if isinstance(value, int):
        return value
    v = str(value).strip().lower()
    if v in ("", "largest"):
        return 1
    if v == "all":
        return "all"
    head = v.split()[0]
    if head.isdigit() and int(head) >= 1:
        return int(head)
    raise BadInputError(f"face must be 'all', 'largest' or a face number, got {value!r}")


def pretty_name(identity: str) -> str:
    return identity.replace("_", " ")


# ---------------------------------------------------------------------------------------------
# The service


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
        self._video_examples: list[tuple[Path, Path, str]] | None = None
        # A published gallery (artifact folder) brings face thumbnails and example inputs along.
        self.artifact_folder = artifact_folder(artifacts)
        self.thumbnails = None
        self.bundled_examples: list[dict] = []
        if self.artifact_folder is not None:
            from rvs.gallery.thumbnails import Thumbnails
            from rvs.hub.examples import load_examples

            if self.index is not None and (self.artifact_folder / "gallery").is_dir():
                try:
                    self.thumbnails = Thumbnails(self.artifact_folder / "gallery", len(self.index))
                except IndexError_ as e:
                    self.notes.append(f"face thumbnails unusable ({e})")
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
        self.artifact_folder, self.thumbnails = other.artifact_folder, other.thumbnails
        if other.bundled_examples:
            self.bundled_examples = other.bundled_examples
        self.thumbnail.cache_clear()
        self.loading = False

    def gallery_people(self) -> list[list[Any]]:
        """[name, photos] of everyone in the gallery, by name (the page's searchable list)."""
        if self.index is None:
            return []
        from collections import Counter

        return [[pretty_name(n), c] for n, c in sorted(Counter(self.index.meta["identity"]).items())]

    def about_markdown(self) -> str:
        """The gallery's provenance for the "About this gallery" section: where it came from, the
        model, and how names are decided."""
        if self.loading or self.index is None:
            return "The gallery is not loaded yet." if self.loading else (self.problem or "No gallery is loaded.")
        lines = [f"- **Gallery**: {len(self.index):,} faces of {self.index.n_identities:,} people"]
        if self.artifacts is not None:
            lines.append(f"- **From**: {self.artifacts.origin}")
        lines.append(f"- **Model**: `{self.index.model_id}`")
        info = self.index.extra.get("open_set")
        if isinstance(info, dict) and "threshold" in info:
            st = info.get("stats", {})
            lines.append(
                f"- **Names**: given when the probability of being right exceeds {format_probability(info['threshold'])}; "
                f"calibrated on this gallery for at most {info['target_fpir']:.0%} of people not in it getting a name "
                f"({st.get('fpir_calibration', 0):.2%} on its calibration strangers)"
            )
        else:
            lines.append("- **Names**: this gallery has no open-set calibration, so no one is named")
        return "\n".join(lines)

    def results_csv(self, data: dict) -> str | None:
        """The search result (API dict) as a CSV file, one row per result tile; its path."""
        import csv

        rows = []
        for r in data.get("results") or []:
            ident = r.get("identification") or {}
            for m in r.get("matches") or []:
                rows.append(
                    [r.get("face"), ident.get("identity") or "", ident.get("probability"), m.get("rank"), m.get("identity"),
                     m.get("distance"), m.get("gallery_path")]
                )
        if not rows:
            return None
        d = Path(tempfile.mkdtemp(prefix="rvs-results-"))
        path = d / "rvs-results.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["face", "named", "probability", "rank", "gallery_identity", "distance", "gallery_photo"])
            w.writerows(rows)
        return str(path)

    def status_markdown(self) -> str:
        """The header's status lines: what the gallery is, or what is being prepared."""
        if self.loading:
            what = (
                f"downloading and checking the gallery {self.config.hub_repo}"
                if self.config.hub_repo.strip() and self.artifacts is None
                else "loading the face models and the gallery"
                if self.artifacts is not None
                else "building a starter gallery from the LFW photos here (once; a few minutes on 2 cores)"
            )
            return f"- **Preparing the gallery**: {what}. Video frame search works already; image search starts when this line changes."
        if self.index is not None:
            short = f"- Gallery: {len(self.index):,} faces of {self.index.n_identities:,} people · model {self.index.model_id.split('+')[0]}"
            return "\n".join([short, *(f"- {n}" for n in self.notes)]) + "\n- Details and the list of people: *About this gallery*, below."
        return "\n".join(f"- {line}" for line in self.status_lines())

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
        for fr in chosen:
            for m in fr.matches[:per_face]:
                prefix = f"#{fr.face_number} " if many else ""
                kind = "" if m.identity == fr.named else "look-alike: "
                tiles.append((self.thumbnail(m.item), f"{prefix}{kind}{pretty_name(m.identity)} · {m.distance:.3f}"))
        lines = [self.describe_identification(fr, f"Face {fr.face_number}: " if n > 1 else "") for fr in chosen]
        t = result.timings_ms
        lines.append(
            f"<small>{n} face{'s' if n != 1 else ''} found · detect {t['detect']:.0f} ms · embed {t['embed']:.0f} ms · "
            f"search {t['search']:.1f} ms · total {t['total']:.0f} ms · distance = Euclidean between unit embeddings "
            f"(0 same, 2 opposite)</small>"
        )
        value = "all" if want == "all" else face_choices(n)[want - 1]
        data = result.to_dict()
        for r in data["results"]:
            for m in r["matches"]:
                # Gradio clients take any {"path": str} in an output for a file to download.
                m["gallery_path"] = m.pop("path")
        data["shown_faces"] = [fr.face_number for fr in chosen]
        return ImageAnswer(annotated, face_choices(n), value, tiles, "\n\n".join(lines), data)

    def describe_identification(self, fr: Any, label: str = "") -> str:
        """Markdown for one searched face: the name with its calibrated probability, or "Not in
        this gallery" with why, the nearest faces presented as look-alikes."""
        ident = fr.identification
        people = self.index.n_identities if self.index is not None else 0
        if ident.identity is not None:
            return (
                f"### {label}{pretty_name(ident.identity)}\n**{format_probability(ident.probability)}** probability that this is "
                f"{pretty_name(ident.identity)} (calibrated for this gallery of {people:,} people; a name is given above "
                f"{format_probability(ident.threshold)}) · nearest photo at distance {fr.matches[0].distance:.3f}"
                if fr.matches
                else f"### {label}{pretty_name(ident.identity)}"
            )
        why = ident.reason or "no one in this gallery resembles this face closely enough to name"
        closest = f" The closest photo is at distance {fr.matches[0].distance:.3f}." if fr.matches else ""
        return (
            f"### {label}Not in this gallery\nThis face is not named: {why}. The faces below are **look-alikes, "
            f"not matches**.{closest}"
        )

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
                res = fn(qimg, path, cfg, progress)
            finally:
                if private is not None:
                    shutil.rmtree(private, ignore_errors=True)
        except RvsError as e:
            # Messages name the file; say the user's file name, not the server's temporary path.
            raise type(e)(str(e).replace(str(path), label)) from None
        return self._video_answer(res, path, read_frames)

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

    def _video_answer(self, res: Any, path: Path, read_frames: Callable) -> VideoAnswer:
        if res.mode == "frame" and getattr(res, "fusion", None) == "moments":
            return self._moments_answer(res, path, read_frames)
        face = res.mode == "face"
        segs = list(res.segments)
        shown = segs[:MAX_VIDEO_FRAMES_SHOWN]
        hits = [max(s.hits, key=lambda h: (h.rank, h.score)) if s.hits else None for s in shown]
        times = [s.best_time for s in shown]
        closest_only = not shown and res.closest is not None
        if closest_only:
            times, hits = [res.closest.time], [res.closest]
        frames = []
        for t, hit, img in zip(times, hits, read_frames(path, times) if times else []):
            if face and hit is not None and hit.faces:
                labels = [f"{f.similarity:.2f}" for f in hit.faces]
                img = draw_faces(img, [f.box for f in hit.faces], labels=labels, max_side=720)
            else:
                img = fit(img, 720)[0]
            score = hit.score if hit is not None else float("nan")
            caption = f"{format_time(t)} · score {score:.2f}"
            frames.append((img, f"closest: {caption} (below threshold)" if closest_only else caption))
        # Face mode's curve is a cosine similarity while its threshold is a distance.
        thr = 1.0 - res.threshold**2 / 2.0 if face else res.threshold
        what = (
            "Person: best face similarity (cosine) per sampled frame; matching segments shaded"
            if face
            else "Frame: fused similarity (pHash + histogram + ORB) per frame; matching segments shaded"
        )
        plot = similarity_plot(
            res.curve,
            [(s.start, s.end) for s in segs],
            times if not closest_only else [],
            threshold=thr,
            duration=res.duration,
            ylabel="similarity",
            title=what,
        )
        rows = [
            [i + 1, format_time(s.start), format_time(s.end), format_time(s.best_time), round(float(s.score), 3), s.n_frames]
            for i, s in enumerate(segs)
        ]
        t = res.timings
        head = (
            f"**{len(segs)} matching segment{'s' if len(segs) != 1 else ''}**"
            if segs
            else "**No match**: nothing in the video reaches the threshold"
            + (f" (closest at {format_time(res.closest.time)}, score {res.closest.score:.2f})" if res.closest else "")
        )
        summary = (
            f"{head} · {res.n_samples} frames compared ({res.sample_fps:.1f}/s of a {res.duration:.1f} s, "
            f"{res.width}x{res.height} video) · {t.get('total_s', 0):.1f} s"
            + (" (features cached)" if res.cached else "")
        )
        return VideoAnswer(frames, plot, rows, summary, res.to_dict(curve=False, hits=False))

    def _moments_answer(self, res: Any, path: Path, read_frames: Callable) -> VideoAnswer:
        """Frame search answered with moments: the best frames with their reading ("same frame",
        "same shot", "similar scene"), one table row each, segments only around same-frame peaks."""
        moments = list(res.moments)[:MAX_VIDEO_FRAMES_SHOWN]
        times = [m.time for m in moments]
        frames = [(fit(img, 720)[0], m.caption()) for m, img in zip(moments, read_frames(path, times) if times else [])]
        thr = res.threshold if res.threshold == res.threshold else None  # NaN: nothing matched
        plot = similarity_plot(
            res.curve,
            [(s.start, s.end) for s in res.segments],
            times,
            threshold=thr,
            duration=res.duration,
            ylabel="score",
            title="Frame: keypoints matching the query in one consistent layout, per frame; moments marked",
        )
        rows = [
            [i + 1, format_time(m.time), m.reading, round(float(m.score), 3), f"{format_time(m.start)}-{format_time(m.end)}" if m.reading == "same frame" else ""]
            for i, m in enumerate(res.moments)
        ]
        t = res.timings
        summary = (
            f"**{res.describe()}** · {res.n_samples} frames compared ({res.duration:.1f} s, {res.width}x{res.height} video) · "
            f"{t.get('total_s', 0):.1f} s" + (" (features cached)" if res.cached else "")
        )
        headers = ["#", "time", "reading", "score", "segment"]
        return VideoAnswer(frames, plot, rows, summary, res.to_dict(curve=False, hits=False), headers)

    # ---- examples ----
    def example_probes(self, n: int = 2) -> list[Path]:
        """Up to n LFW photos of gallery people that are not themselves in the gallery."""
        from rvs.hub.examples import probe_photos

        if self.index is None:
            return []
        return [p for _, p in probe_photos(self.index.meta, lfw_folder(self.config), n)]

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
        out.append((photos / "multiface.jpg", "A group photo (several faces)"))
        out += [(p, f"{pretty(p.parent.name)} (a photo not in the gallery)") for p in self.example_probes(2)]
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
                self.engine.embedder.embed(np.zeros((1, self.config.face_size, self.config.face_size, 3), np.uint8))
        except RvsError:
            pass
        log.info("warm-up took %.1f s", time.perf_counter() - t0)


def artifact_folder(arts: Artifacts | None) -> Path | None:
    """The published-gallery folder behind `arts` (it holds rvs.json), or None."""
    if arts is None:
        return None
    folder = Path(arts.index_dir).parent
    return folder if (folder / "rvs.json").is_file() else None


def _save_atomic(img: Image.Image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    img.save(tmp, format="JPEG", quality=92)
    os.replace(tmp, path)


def _is_under(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Startup


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
    from rvs.faces.embed import Embedder
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
    folder = Path(gallery).expanduser() if gallery else lfw_folder(config)
    no_gallery = (
        f"no gallery: no index at {config.index_dir} and no photos at {folder}. Build one with "
        "`python -m rvs index FOLDER`, start the app with `--gallery FOLDER`, or set RVS_HUB_REPO"
    )
    if arts is None and not folder.is_dir():
        # Nothing to search: skip loading the face models (video frame search needs none).
        say(no_gallery)
        return Service(config, None, None, notes, problem=no_gallery)

    try:
        detector = FaceDetector(config)
        embedder = Embedder(config)
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


__all__ = ["ImageAnswer", "Service", "VideoAnswer", "face_choices", "load_service", "parse_face"]
