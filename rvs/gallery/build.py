"""Building and updating a gallery: a folder of photos -> faces -> embeddings -> a saved `FaceIndex`.

Batched end to end (images are detected `detect_batch_size` at a time and crops embedded
`embed_batch_size` at a time), with a progress bar and a summary of what was skipped and why.

Incremental: `update=True` re-embeds only new or changed photos (by content hash and recipe);
`remove_from_gallery` takes out a person or a photo and keeps them out of later updates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rvs.config import Config
from rvs.errors import IndexError_, RvsError
from rvs.faces.detect import DETECTOR_ID, FaceDetector
from rvs.faces.embedders import FaceEmbedder, create_embedder
from rvs.faces.recipe import recipe_of
from rvs.fileio import sha256_file
from rvs.gallery.calibrate import calibrate_index
from rvs.gallery.embedding import detect_embed
from rvs.gallery.photos import Photo, content_hash, folder_photos, read_uri_or_none, uri_photos
from rvs.gallery.store import META_FIELDS, FaceIndex

log = logging.getLogger(__name__)


def build_index(
    folder: str | Path | None,
    out_dir: str | Path | None,
    config: Config,
    all_faces: bool = False,
    embedder: FaceEmbedder | None = None,
    detector: FaceDetector | None = None,
    progress: bool = True,
    limit: int | None = None,
    update: bool = False,
    uris: str | Path | None = None,
    ray: str | None = None,
    update_from: str | Path | None = None,
) -> tuple[FaceIndex, dict]:
    """Index every image under `folder` (folder-per-person like LFW, or flat), or the photos
    listed in the file `uris`.

    all_faces=False keeps the main face of each image (the labelled person in LFW-style
    galleries); True indexes every face. update=True starts from the index at `out_dir`: photos
    whose bytes it already holds (same sha256, same model and crop recipe) keep their faces,
    only new or changed photos are detected and embedded, deleted ones are dropped (and people
    or photos removed with `python -m rvs gallery remove` stay out); the search backend follows
    (Milvus: insert/delete; Annoy: rebuilt from the stored embeddings) and the open-set
    calibration is refitted (update_from: start from that index folder instead of out_dir).
    ray: run the embedding stage on Ray Data ("" = a local Ray, else the cluster address).
    Returns the index and a summary dict.

    The steps: list the photos -> hash them -> plan (keep / reuse / embed / drop against the old
    index) -> embed what is new -> merge into the index -> record how it was made -> calibrate
    -> save -> report.
    """
    t0 = time.perf_counter()
    photos, source = _list_photos(folder, uris, limit)
    detector = detector or FaceDetector(config)
    embedder = embedder or create_embedder(config)
    recipe = recipe_of(detector, embedder)
    old = _reusable_index(update_from or out_dir, embedder.model_id, recipe, all_faces) if update else None
    if old is not None and config.search_backend != "auto":
        old.configure(config)  # an explicit backend setting wins over the one the index recorded
    excluded = _excluded(old)
    photos = [p for p in photos if p.identity not in excluded["people"] and p.key not in excluded["photos"]]
    hashes, datas = _hash_photos(photos)
    t_hash = time.perf_counter() - t0
    index = old
    if index is None:
        index = FaceIndex(np.zeros((0, embedder.spec.dim), np.float32), {k: [] for k in META_FIELDS}, embedder.model_id, config.n_trees, config.search_k).configure(config)
    plan = _plan(index, photos, hashes)
    if ray is not None:
        from rvs.gallery.distributed import ray_detect_embed

        results, t_detect, t_embed = ray_detect_embed(plan.todo, config, ray, all_faces=all_faces, progress=progress)
    else:
        srcs = [datas.get(p.key) or _src(p) for p in plan.todo] if datas else None
        results, t_detect, t_embed = detect_embed(plan.todo, config, detector, embedder, all_faces, progress, datas=srcs)
    merged = _merge(index, plan, results, hashes)
    _record(index, source, detector, config, recipe, all_faces)
    if not len(index):
        raise RvsError(f"{source}: no face found in any photo")
    t1 = time.perf_counter()
    calibration = calibrate_index(index, config)
    t_cal = time.perf_counter() - t1
    t1 = time.perf_counter()
    if out_dir is not None:
        index.save(out_dir)
    t_save = time.perf_counter() - t1
    summary = {
        "images": len(photos),
        "faces_indexed": len(index),
        "identities": index.n_identities,
        "images_without_face": len(set(index.sources) - set(index.meta["path"])),
        "failures": len(merged.failures),
        "failure_messages": merged.failures[:20],
        "no_face_examples": merged.no_face[:20],
        "seconds": round(time.perf_counter() - t0, 2),
        "detect_seconds": round(t_detect, 2),
        "embed_seconds": round(t_embed, 2),
        "model_id": embedder.model_id,
        "backend": index.backend_name,
        "open_set": calibration,
        "out": str(out_dir) if out_dir else None,
    }
    if update:
        summary["update"] = {
            "from_existing_index": old is not None,
            "embedded_images": len(plan.todo),
            "kept_images": len(plan.keep),
            "moved_images": len(plan.moved),
            "dropped_faces": len(plan.drop),
            "added_faces": merged.added,
            "hash_seconds": round(t_hash, 2),
            "calibrate_seconds": round(t_cal, 2),
            "save_seconds": round(t_save, 2),
        }
    return index, summary


def _list_photos(folder: str | Path | None, uris: str | Path | None, limit: int | None) -> tuple[list[Photo], str]:
    """The photos to index and a name for where they come from (for messages and the manifest)."""
    if uris is not None:
        photos, source = uri_photos(uris), str(Path(uris).resolve())
    else:
        folder = Path(folder)
        if not folder.is_dir():
            raise RvsError(f"{folder}: not a folder")
        photos, source = folder_photos(folder), str(folder.resolve())
    if limit:
        photos = photos[:limit]
    if not photos:
        raise RvsError(f"{source}: no images found")
    return photos, source


def _hash_photos(photos: list[Photo]) -> tuple[dict[str, str], dict[str, bytes]]:
    """sha256 of every photo's bytes ("" when unreadable: the embedding stage reports it), and
    the bytes of remote photos (read once, for hashing and embedding)."""
    datas: dict[str, bytes] = {}
    hashes: dict[str, str] = {}
    for p in photos:
        if "://" in str(p.src):
            datas[p.key] = read_uri_or_none(p.src)
            hashes[p.key] = content_hash(datas[p.key]) if datas[p.key] is not None else ""
        else:
            try:
                hashes[p.key] = sha256_file(p.src)
            except OSError:
                hashes[p.key] = ""
    return hashes, datas


@dataclass
class _Plan:
    """What an (incremental) build does with each photo: keep its faces (same bytes, same name),
    reuse them under a new name (`moved`: (photo, old key)), or embed it (`todo`); `drop`: index
    rows not kept (deleted, changed or renamed photos)."""

    keep: set[str]
    moved: list[tuple[Photo, str]]
    todo: list[Photo]
    drop: list[int]


def _plan(index: FaceIndex, photos: list[Photo], hashes: dict[str, str]) -> _Plan:
    old_sources = dict(index.sources)
    by_hash: dict[str, str] = {}
    for key, h in old_sources.items():
        by_hash.setdefault(h, key)
    rows_of = _rows_by_path(index)
    keep, moved, todo = set(), [], []
    for p in photos:
        h = hashes[p.key]
        if h and old_sources.get(p.key) == h and all(index.meta["identity"][r] == p.identity for r in rows_of.get(p.key, [])):
            keep.add(p.key)
        elif h and h in by_hash:
            moved.append((p, by_hash[h]))  # same bytes under another name: its faces are reused
        else:
            todo.append(p)
    drop = [r for r, path in enumerate(index.meta["path"]) if path not in keep]
    return _Plan(keep, moved, todo, drop)


def _rows_by_path(index: FaceIndex) -> dict[str, list[int]]:
    rows_of: dict[str, list[int]] = {}
    for r, path in enumerate(index.meta["path"]):
        rows_of.setdefault(path, []).append(r)
    return rows_of


@dataclass
class _Merged:
    added: int
    failures: list[str]
    no_face: list[str]


def _merge(index: FaceIndex, plan: _Plan, results: list, hashes: dict[str, str]) -> _Merged:
    """Apply the plan: drop rows, add reused faces under their new names, add the new faces; the
    index's photo hashes become those of what it now holds."""
    rows_of = _rows_by_path(index)
    reuse_emb, reuse_meta = [], {k: [] for k in META_FIELDS}
    for p, was in plan.moved:
        for r in rows_of.get(was, []):
            reuse_emb.append(index.embeddings[r])
            reuse_meta["identity"].append(p.identity)
            reuse_meta["path"].append(p.key)
            reuse_meta["box"].append(index.meta["box"][r])
            reuse_meta["prob"].append(index.meta["prob"][r])
    new_emb, new_meta = [], {k: [] for k in META_FIELDS}
    failures, no_face = [], []
    sources = {k: hashes[k] for k in plan.keep}
    sources.update({p.key: hashes[p.key] for p, _ in plan.moved})
    ident_of = {p.key: p.identity for p in plan.todo}
    for res in results:
        if res.error:
            failures.append(res.error)
            continue
        if hashes.get(res.key):
            sources[res.key] = hashes[res.key]
        if not len(res.embeddings):
            no_face.append(res.key)
            continue
        for e, b, pr in zip(res.embeddings, res.boxes, res.probs):
            new_emb.append(e)
            new_meta["identity"].append(ident_of[res.key])
            new_meta["path"].append(res.key)
            new_meta["box"].append([round(float(v), 1) for v in b])
            new_meta["prob"].append(round(float(pr), 4))
    index.remove(plan.drop)
    if reuse_emb:
        index.add(np.stack(reuse_emb), reuse_meta)
    if new_emb:
        index.add(np.stack(new_emb), new_meta)
    index.sources = sources
    return _Merged(len(new_emb) + len(reuse_emb), failures, no_face)


def _record(index: FaceIndex, source: str, detector: FaceDetector, config: Config, recipe: dict, all_faces: bool) -> None:
    """How the gallery was made, in its manifest: where from, detector, crop, recipe, face selection."""
    index.extra["source_folder"] = source
    index.extra["detector"] = DETECTOR_ID
    # The crops were cut with the detector's settings, which may not be `config`'s.
    dc = getattr(detector, "config", config)
    index.extra["crop"] = {"size": dc.face_size, "margin": dc.margin, "margin_units": dc.margin_units}
    # What every query must match to be compared with these faces (rvs.faces.recipe; SearchEngine checks it).
    index.extra["recipe"] = recipe
    index.extra["all_faces"] = bool(all_faces)


def _src(p: Photo):
    return Path(p.src)


def _reusable_index(out_dir, model_id: str, recipe: dict, all_faces: bool) -> FaceIndex | None:
    """The index at out_dir when its faces can be reused for an update (same model, crop recipe
    and face selection), else None (a full build; logged)."""
    if out_dir is None or not Path(out_dir).exists():
        return None
    try:
        old = FaceIndex.load(out_dir)
    except IndexError_ as e:
        log.warning("cannot update %s (%s): building it anew", out_dir, e)
        return None
    why = None
    if old.model_id != model_id:
        why = f"it was built with {old.model_id}"
    elif old.extra.get("recipe") not in (None, recipe):
        why = "it was built with another crop/embedding recipe"
    elif bool(old.extra.get("all_faces", False)) != bool(all_faces):
        why = "it was built with another --all-faces setting"
    elif not old.sources:
        why = "it records no photo hashes (built before incremental updates)"
    if why:
        log.warning("cannot update %s incrementally (%s): embedding every photo", out_dir, why)
        return None
    return old


def _excluded(index: FaceIndex | None) -> dict[str, set]:
    ex = (index.extra.get("excluded") if index is not None else None) or {}
    return {"people": set(ex.get("people", [])), "photos": set(ex.get("photos", []))}


def remove_from_gallery(index: FaceIndex, name: str, config: Config) -> dict:
    """Remove a person (identity) or one photo (its path in the index) from a gallery, keep it
    out of later `--update`s, and refit the open-set calibration. Returns what went."""
    ids, paths = index.meta["identity"], index.meta["path"]
    if name in set(ids):
        kind, rows = "people", [r for r, v in enumerate(ids) if v == name]
    elif name in set(paths) or name in index.sources:
        kind, rows = "photos", [r for r, v in enumerate(paths) if v == name]
    else:
        raise RvsError(f"{name!r} is neither a person nor a photo of this gallery (see `python -m rvs gallery list`)")
    index.remove(rows)
    gone_photos = {name} if kind == "photos" else {p for p, i in zip(paths, ids) if i == name}
    index.sources = {k: v for k, v in index.sources.items() if k not in gone_photos and not (kind == "people" and _identity_of_key(k) == name)}
    ex = index.extra.setdefault("excluded", {"people": [], "photos": []})
    ex.setdefault(kind, [])
    if name not in ex[kind]:
        ex[kind].append(name)
    if not len(index):
        raise RvsError(f"removing {name!r} would leave the gallery empty")
    calibrate_index(index, config)
    return {"removed": name, "kind": "person" if kind == "people" else "photo", "faces_removed": len(rows), "faces_left": len(index), "identities_left": index.n_identities}


def _identity_of_key(key: str) -> str:
    parts = Path(key).parts
    return parts[0] if len(parts) > 1 else Path(key).stem
