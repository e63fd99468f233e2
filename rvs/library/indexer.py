"""Indexing videos into a library: one decode per video, faces and frames from the same samples.

`index_video(path, out_dir, config, models)`: the video is decoded once at `video_face_fps` on
the player's clock (sparsely, frames shrunk to `video_face_max_side`: rvs.video.reader); each
sample's faces are detected, tracked and embedded per track chunk (rvs.video.tracks), and its
frame-mode features are computed on a `video_width` copy (rvs.video.frames.FeatureWriter), with a
shot number: a new shot starts where consecutive samples' histograms correlate below
`SHOT_HIST` or their pHashes differ by more than `SHOT_PHASH` bits (a cut).

`index_folder(folder, out, config, update, ray)`: every video under `folder` (by extension,
symlinks leaving the folder ignored), incremental by content hash with `update` (a video already
in the library is not decoded again; a video no longer in the folder leaves the library), a
video that cannot be decoded reported in one line and skipped. With `ray`, one Ray Data task
per video (rvs.gallery.distributed.ray_session), each writing its folder; the manifest is
written here.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from rvs.config import Config
from rvs.errors import IndexError_, RvsError
from rvs.faces.embedders import embed_faces, get_spec
from rvs.faces.recipe import embedder_precision, embedding_recipe
from rvs.fileio import folder_swap
from rvs.library import store
from rvs.library.store import VideoEntry
from rvs.progress import Progress, progress_bar
from rvs.video.cache import video_key
from rvs.video.decode import downscale
from rvs.video.faces import VideoFaceModels, face_models, scaled_face, torch_threads, video_detect_config
from rvs.video.frames import FeatureWriter
from rvs.video.reader import FrameStream, check_video_path, use_yuv
from rvs.video.tracks import Tracker

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".flv", ".3gp", ".ogv"}
SHOT_HIST = 0.5  # consecutive samples' histogram correlation below this: a cut
SHOT_PHASH = 24  # or their pHashes this many bits apart (of 64)


def list_videos(folder: Path) -> list[Path]:
    """Video files under `folder`, sorted; hidden files and symlinks leading outside it are left out."""
    root = folder.resolve()
    out = []
    for p in sorted(folder.rglob("*")):
        if p.name.startswith(".") or p.suffix.lower() not in VIDEO_EXTENSIONS or not p.is_file():
            continue
        if not p.resolve().is_relative_to(root):
            log.warning("%s: a link out of %s, left out", p, folder)
            continue
        out.append(p)
    return out


def library_recipe(config: Config, models: VideoFaceModels) -> dict:
    """What makes two libraries' vectors comparable: embedder, frame detector, sampling, tracks."""
    c = config
    return {
        "embedding": embedding_recipe(video_detect_config(c), models.embedder.model_id, embedder_precision(models.embedder)),
        "detector": models.frame_detector.settings(),
        "sample_fps": c.video_face_fps,
        "max_side": c.video_face_max_side,
        "tracks": {"iou": c.video_track_iou, "gap_s": c.video_track_gap_s, "chunk_s": c.video_track_chunk_s},
        "frames": {"width": c.video_width, "orb_features": c.video_orb_features, "bins": [c.video_hist_bins_h, c.video_hist_bins_s]},
    }


def index_video(path: Path, out_dir: Path, config: Config, models: VideoFaceModels, progress: Progress | None = None) -> dict:
    """Decode `path` once and write its tracks, frame features and shots into `out_dir`.
    Returns the counts and timings for its `VideoEntry`. BadInputError for an undecodable file."""
    t0 = time.perf_counter()
    path = check_video_path(path)
    stream = FrameStream(
        path, config.video_face_fps, lambda bgr: bgr, progress, f"indexing {path.name}",
        queue_size=4, max_side=config.video_face_max_side, yuv_decode=use_yuv(config), sparse=True,
    )
    tracker = Tracker(config, lambda faces: embed_faces(models.embedder, faces), get_spec(config.model).match_threshold)
    writer = FeatureWriter(config, out_dir)
    shots: list[int] = []
    prev: tuple[int, np.ndarray] | None = None
    try:
        with torch_threads(config.video_torch_threads):
            for i, t, bgr in stream:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                faces = models.frame_detector.detect([rgb])[0]
                tracker.add(t, i, [scaled_face(f, stream.scale) for f in faces])
                _, _, _, hist = writer.add(i, t, downscale(bgr, config.video_width))
                ph = int(writer.phashes[-1])
                cut = prev is not None and (
                    cv2.compareHist(prev[1], hist, cv2.HISTCMP_CORREL) < SHOT_HIST or bin(prev[0] ^ ph).count("1") > SHOT_PHASH
                )
                shots.append(shots[-1] + int(cut) if shots else 0)
                prev = (ph, hist)
    finally:
        writer.close()
    info = stream.info
    tracks = tracker.finish(models.embedder.spec.dim)
    np.savez(out_dir / "tracks.npz", **tracks.arrays())
    store.save_npy(out_dir / "shots.npy", np.asarray(shots, np.int32))
    writer.finish(info, path, stream.sample_fps, n_shots=(shots[-1] + 1 if shots else 0))
    return {
        "duration": info.duration,
        "fps": info.fps,
        "width": info.width,
        "height": info.height,
        "sample_fps": stream.sample_fps,
        "n_samples": len(tracks.sample_times),
        "n_faces": len(tracks.face_sample),
        "n_tracks": tracks.n_tracks,
        "n_vectors": len(tracks.vectors),
        "n_shots": shots[-1] + 1 if shots else 0,
        "index_seconds": time.perf_counter() - t0,
    }


def _entry(key: str, path: Path, folder: Path, stats: dict) -> VideoEntry:
    st = path.stat()
    return VideoEntry(id=key, name=str(path.relative_to(folder)), path=str(path.resolve()), size=st.st_size, mtime=st.st_mtime, **stats)


def _index_one(key: str, path: Path, out: Path, config: Config, models: VideoFaceModels, progress: Progress | None) -> dict:
    """Index one video into out/videos/<key> (swapped in whole); returns its stats."""
    stats: dict = {}
    with folder_swap(out / "videos" / key) as tmp:
        stats = index_video(path, tmp, config, models, progress)
    return stats


class _VideoStage:
    """A Ray Data actor: models loaded once, then one video per call."""

    def __init__(self, config: Config, out: str):
        self.config, self.out = config, Path(out)
        self.models = face_models(config)

    def __call__(self, batch: dict) -> dict:
        keys, paths, errors, stats = [], [], [], []
        for key, src in zip(batch["key"], batch["path"]):
            keys.append(str(key))
            paths.append(str(src))
            try:
                stats.append(_index_one(str(key), Path(src), self.out, self.config, self.models, None))
                errors.append("")
            except RvsError as e:
                stats.append({})
                errors.append(str(e))
        import json

        return {"key": np.array(keys, dtype=object), "stats": np.array([json.dumps(s) for s in stats], dtype=object), "error": np.array(errors, dtype=object)}


def _ray_index(todo: list[tuple[str, Path]], out: Path, config: Config, address: str | None) -> dict[str, dict | str]:
    """Index videos as Ray Data tasks, one per video; {key: stats or error message}."""
    import json

    from rvs.gallery.distributed import ray_session

    with ray_session(address):
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.print_on_execution_start = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        ds = ray.data.from_items([{"key": k, "path": str(p)} for k, p in todo], override_num_blocks=max(1, len(todo)))
        ds = ds.map_batches(
            _VideoStage, fn_constructor_kwargs={"config": config, "out": str(out)}, batch_size=1, batch_format="numpy",
            num_cpus=1, concurrency=max(1, min(cpus, len(todo))),
        )
        rows = ds.take_all()
    return {str(r["key"]): (str(r["error"]) if r["error"] else json.loads(r["stats"])) for r in rows}


def index_folder(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    config: Config,
    update: bool = False,
    ray: str | None = None,
    models: VideoFaceModels | None = None,
    log_line: Callable[[str], None] = print,
    progress: bool = True,
) -> dict:
    """Index every video under `folder` into the library at `out` (see the module docstring).
    Returns a summary: videos indexed / kept / skipped (with the reason) / removed, seconds, and
    the index speed in seconds of video per second."""
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise IndexError_(f"{folder}: not a folder of videos")
    t0 = time.perf_counter()
    models = models or face_models(config)
    recipe = library_recipe(config, models)
    old: dict[str, VideoEntry] = {}
    if update and (out / store.MANIFEST).is_file():
        try:
            lib = store.load(out)
            if lib.recipe == recipe:
                old = {v.id: v for v in lib.videos}
            else:
                log.warning("%s was indexed with other settings or another model: indexing every video again", out)
        except IndexError_ as e:
            log.warning("cannot update %s (%s): indexing every video again", out, e)
    videos = list_videos(folder)
    entries: list[VideoEntry] = []
    todo: list[tuple[str, Path]] = []
    skipped: dict[str, str] = {}
    keys: dict[str, Path] = {}
    for p in videos:
        try:
            key = video_key(p, config.video_full_hash_max_bytes)
        except OSError as e:
            skipped[str(p.relative_to(folder))] = f"unreadable ({e.strerror or e})"
            continue
        if key in keys:
            log_line(f"{p.relative_to(folder)}: the same video as {keys[key].relative_to(folder)}, indexed once")
            continue
        keys[key] = p
        if key in old and (out / "videos" / key / "tracks.npz").is_file():
            e = old[key]
            entries.append(_entry(key, p, folder, {k: getattr(e, k) for k in VideoEntry.__dataclass_fields__ if k not in ("id", "name", "path", "size", "mtime")}))
        else:
            todo.append((key, p))
    results: dict[str, dict | str] = {}
    if ray is not None and todo:
        results = _ray_index(todo, out, config, ray)
    total_s = sum(p.stat().st_size for _, p in todo) or 1
    bar = progress_bar(100, "indexing videos", unit="%") if progress and todo and ray is None else None
    done_s = 0
    for n, (key, p) in enumerate(todo, 1):
        name = str(p.relative_to(folder))
        if key not in results:
            share = p.stat().st_size / total_s

            def step(f: float, desc: str, base: float = done_s / total_s, share: float = share) -> None:
                if bar is not None:
                    bar.update(max(0.0, round(100 * (base + share * f), 1) - bar.n))

            try:
                results[key] = _index_one(key, p, out, config, models, step)
            except RvsError as e:
                results[key] = str(e)
            done_s += p.stat().st_size
        r = results[key]
        if isinstance(r, str):
            skipped[name] = r.replace(str(p), name).removeprefix(name + ": ")
            log_line(f"skipped {name}: {skipped[name]}")
            continue
        entries.append(_entry(key, p, folder, r))
        log_line(f"[{n}/{len(todo)}] {name}: {r['duration']:.1f} s, {r['n_tracks']} face tracks, {r['n_shots']} shots ({r['index_seconds']:.1f} s)")
    if bar is not None:
        bar.close()
    entries.sort(key=lambda e: e.name)
    kept = {e.id for e in entries}
    removed = [v.name for k, v in old.items() if k not in kept]
    vdir = out / "videos"
    if vdir.is_dir():
        for d in vdir.iterdir():
            if d.is_dir() and d.name not in kept and not d.name.startswith("."):
                shutil.rmtree(d, ignore_errors=True)
    spec = get_spec(config.model)
    store.save(out, models.embedder.model_id, spec.name, spec.dim, recipe, {"video_threshold": None}, entries)
    new = [e for e in entries if e.id in dict(todo)]
    video_s = sum(e.duration for e in new)
    index_s = sum(e.index_seconds for e in new)
    return {
        "library": str(out),
        "videos": len(entries),
        "indexed": len(new),
        "kept": len(entries) - len(new),
        "skipped": skipped,
        "removed": removed,
        "seconds": round(time.perf_counter() - t0, 2),
        "video_seconds_indexed": round(video_s, 2),
        "realtime_factor": round(video_s / index_s, 2) if index_s > 0 else None,
        "hours": round(sum(e.duration for e in entries) / 3600.0, 4),
        "vectors": sum(e.n_vectors for e in entries),
    }


def remove_videos(out: str | os.PathLike, names: list[str]) -> list[str]:
    """Take the named videos out of the library at `out`; returns the names removed."""
    out = Path(out)
    lib = store.load(out)
    gone = [v for v in lib.videos if v.name in set(names)]
    keep = [v for v in lib.videos if v not in gone]
    m = store.read_manifest(out)
    store.save(out, lib.model_id, m.get("model", ""), int(m["dim"]), lib.recipe, lib.settings, keep)
    for v in gone:
        shutil.rmtree(out / "videos" / v.id, ignore_errors=True)
    return [v.name for v in gone]
