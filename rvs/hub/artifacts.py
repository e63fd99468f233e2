"""A published gallery. An *artifact folder* is what an rvs model repo on the Hub holds (and what
`rvs.hub.publish.export_artifacts` writes locally):

    model.safetensors       InceptionResnetV1 state dict (safetensors: loading it cannot run code)
    model.safetensors.json  sidecar {model_id, sha256}: what `rvs.models.weights.load_local` reads
    model.json              model_id, sha256, source, embedding dim, normalisation, input format
    face_recognition_sface_2021dec.onnx   SFace, when the gallery's model reads it (sface, fused)
    face_detection_yunet_2023mar.onnx     YuNet, beside SFace (video faces: rvs.video.faces)
    video-library/          a small video library with its videos (rvs.hub.library), when built
    index/                  an rvs index folder (manifest.json, index.ann, embeddings.npy, meta.json)
    README.md               model card (rvs.hub.modelcard)
    rvs.json                format, model_id, gallery size, sha256 + bytes of every file above

Everything in it is untrusted until `verify_artifact_folder` has checked every file against
`rvs.json` (sizes and sha256); a bad artifact is one clear `RvsError`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rvs.config import Config
from rvs.errors import IndexError_, RvsError, WeightsError
from rvs.faces.embedders.sface import FILE_NAME as SFACE_FILE
from rvs.faces.yunet import FILE as YUNET
from rvs.gallery.store import read_manifest, verify_files

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = "rvs-artifacts"
ARTIFACT_VERSION = 1
RVS_JSON = "rvs.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_SIDECAR = "model.safetensors.json"
MODEL_JSON = "model.json"
CARD_FILE = "README.md"
INDEX_SUBDIR = "index"
GALLERY_SUBDIR = "gallery"  # face thumbnails and the photos (rvs.gallery.thumbnails)
LIBRARY_SUBDIR = "video-library"  # a small video library with its videos (rvs.hub.library)
REQUIRED_FILES = (WEIGHTS_FILE, MODEL_JSON, f"{INDEX_SUBDIR}/manifest.json")
SHA_RE = re.compile(r"[0-9a-f]{40}")


class _BadFile(RvsError):
    """A file that fails its size or sha256 check (as opposed to a folder that is not an artifact
    folder at all): the one failure worth a fresh download, since a cached blob may be damaged."""


class BadWeightsFile(_BadFile, WeightsError):
    pass


class BadIndexFile(_BadFile, IndexError_):
    pass


@dataclass
class Artifacts:
    """Verified weights + gallery index, ready for the embedder and `FaceIndex.load`.

    weights_spec: what to pass as `Config.weights` (the snapshot's model.safetensors, or the
    configured spec for a plain local index); weights_path: that file when there is one.
    origin: "owner/repo@main (commit abc1234)" or "local: /path", for messages and the UI.
    offline: True when the Hub could not be reached and a cached snapshot was used.
    """

    weights_path: Path | None
    weights_spec: str
    index_dir: Path
    model_id: str
    gallery_size: int
    n_identities: int
    origin: str
    commit: str | None = None
    offline: bool = False
    sface_path: Path | None = None  # the artifact's SFace file (checked by size + sha256 when loaded)
    yunet_path: Path | None = None  # the artifact's YuNet file (likewise)
    video_library: Path | None = None  # the artifact's video library folder

    @property
    def public_origin(self) -> str:
        """Where the gallery came from, for a page: a Hub repo and commit as they are, a local
        folder without its server path."""
        if self.origin.startswith("local:"):
            return "a gallery folder on this server"
        head, sep, folder = self.origin.partition(" built locally from ")
        return f"{head} built locally from a folder named {Path(folder).name!r}" if sep else self.origin

    def describe(self) -> str:
        """One line for the UI: what the gallery is, which model, from where."""
        cached = " (offline: cached copy)" if self.offline else ""
        return (
            f"Gallery: {self.gallery_size:,} faces of {self.n_identities:,} identities · "
            f"model {self.model_id} · from {self.public_origin}{cached}"
        )

    def apply(self, config: Config) -> Config:
        """`config` with its weights, model and index_dir those of these artifacts: a gallery is
        searched with the model it was built with."""
        from rvs.faces.embedders import config_for_model_id

        over = {"weights": self.weights_spec, "index_dir": self.index_dir}
        if self.sface_path is not None:
            over["sface_weights"] = str(self.sface_path)
        if self.yunet_path is not None:
            over["yunet_weights"] = str(self.yunet_path)
        if self.video_library is not None and not config.video_library:  # a library the user set wins
            over["video_library"] = str(self.video_library)
        return config_for_model_id(dataclasses.replace(config, **over), self.model_id)


def _safe_relpath(name: str, label: str) -> str:
    """Names in rvs.json must stay inside the folder: a hostile manifest must not point at
    /etc/passwd or ../../something."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name or name != p.as_posix():
        raise IndexError_(f"{label}: {RVS_JSON} lists an unsafe file name {name!r}")
    return name


def read_artifact_manifest(folder: Path, label: str | None = None) -> dict:
    """rvs.json of an artifact folder, checked for format and shape (not yet the checksums)."""
    label = label or str(folder)
    p = folder / RVS_JSON
    if not p.is_file():
        raise IndexError_(f"{label}: no {RVS_JSON}, so not an rvs artifact folder (make one with `python -m rvs push`)")
    try:
        m = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise IndexError_(f"{label}: {RVS_JSON} is unreadable ({e})") from None
    if not isinstance(m, dict) or m.get("format") != ARTIFACT_FORMAT:
        raise IndexError_(f"{label}: {RVS_JSON} format is {m.get('format') if isinstance(m, dict) else None!r}, expected {ARTIFACT_FORMAT!r}")
    if int(m.get("version", 0)) > ARTIFACT_VERSION:
        raise IndexError_(f"{label}: artifact format version {m['version']} is newer than this rvs ({ARTIFACT_VERSION}); upgrade rvs")
    files = m.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, dict) and "sha256" in v and "bytes" in v for v in files.values()):
        raise IndexError_(f"{label}: {RVS_JSON} has no valid file list")
    for name in files:
        _safe_relpath(name, label)
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        raise IndexError_(f"{label}: {RVS_JSON} does not list {', '.join(missing)}")
    return m


def verify_artifact_folder(folder: str | os.PathLike, origin: str | None = None) -> Artifacts:
    """Check every file of an artifact folder against rvs.json (presence, size, sha256), the
    index against its own manifest, and that weights, model.json and index agree on the model.
    A bad weights file raises BadWeightsFile (a WeightsError), any other bad file BadIndexFile (an
    IndexError_); a folder that is not an artifact folder, or is inconsistent, IndexError_."""
    folder = Path(folder)
    label = origin or str(folder)
    m = read_artifact_manifest(folder, label)
    verify_files(folder, m, label, RVS_JSON, lambda name: BadWeightsFile if name.startswith("model.") or name in (SFACE_FILE, YUNET.name) else BadIndexFile)
    index_dir = folder / INDEX_SUBDIR
    manifest = read_manifest(index_dir)
    for name, info in manifest.get("files", {}).items():
        # The files were checked against rvs.json above; the index's own manifest must agree.
        listed = m["files"].get(f"{INDEX_SUBDIR}/{name}")
        if listed is None or listed["sha256"] != info["sha256"] or listed["bytes"] != info["bytes"]:
            raise IndexError_(f"{label}: {INDEX_SUBDIR}/manifest.json and {RVS_JSON} disagree about {name}")
    try:
        model = json.loads((folder / MODEL_JSON).read_text())
    except ValueError as e:
        raise WeightsError(f"{label}: {MODEL_JSON} is unreadable ({e})") from None
    model_id = m.get("model_id")
    if not (model.get("model_id") == model_id == manifest.get("model_id")):
        raise IndexError_(
            f"{label}: model ids disagree ({RVS_JSON}: {model_id!r}, {MODEL_JSON}: {model.get('model_id')!r}, "
            f"index: {manifest.get('model_id')!r}); the index must be searched with the model that built it"
        )
    if model.get("sha256") != m["files"][WEIGHTS_FILE]["sha256"]:
        raise WeightsError(f"{label}: {MODEL_JSON} describes other weights than {WEIGHTS_FILE} (sha256 differs)")
    weights = folder / WEIGHTS_FILE
    return Artifacts(
        weights_path=weights,
        weights_spec=str(weights),
        index_dir=index_dir,
        model_id=str(model_id),
        gallery_size=int(manifest["n_items"]),
        n_identities=int(manifest.get("n_identities", 0)),
        origin=origin or f"local: {folder}",
        sface_path=folder / SFACE_FILE if SFACE_FILE in m["files"] else None,
        yunet_path=folder / YUNET.name if YUNET.name in m["files"] else None,
        video_library=folder / LIBRARY_SUBDIR if f"{LIBRARY_SUBDIR}/library.json" in m["files"] else None,
    )


def artifact_folder(arts: Artifacts | None) -> Path | None:
    """The published-gallery folder behind `arts` (it holds rvs.json), or None."""
    if arts is None:
        return None
    folder = Path(arts.index_dir).parent
    return folder if (folder / "rvs.json").is_file() else None
