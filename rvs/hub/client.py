"""Where the app's weights + gallery index come from: a Hugging Face Hub repo or a local folder.

`resolve_artifacts(config)` picks the source from one setting: `config.hub_repo` (pinned at
`config.hub_revision`) when set, else the local `config.index_dir` (a plain index folder whose
weights come from `config.weights`, or an artifact folder). Hub repos are pulled with
`snapshot_download` into `config.cache_dir/"hub"` and every file is checked against `rvs.json`
before anything uses it; when the Hub cannot be reached a previously pulled snapshot is used.
Nothing is ever unpickled. All failures are `RvsError`s with a one-line message.
The folder's layout and its verification: `rvs.hub.artifacts`.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from rvs.config import Config
from rvs.errors import RvsError, WeightsError
from rvs.gallery.store import read_manifest, verify_files
from rvs.hub.artifacts import (
    RVS_JSON,
    SHA_RE,
    Artifacts,
    _BadFile,
    verify_artifact_folder,
)

log = logging.getLogger(__name__)


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


def short_error(e: BaseException) -> str:
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
            offline, reason = True, short_error(e)  # Hub down (5xx): a cached copy may still do
        except Exception as e:  # connection refused, DNS, timeout, offline mode
            if not is_network_error(e):
                raise
            offline, reason = True, short_error(e)
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
            raise type(e)(f"{e}; downloading it again failed too ({short_error(e2)})") from None
        offline = offline or cached
        arts = verify_artifact_folder(path, origin=f"{where} (commit {path.name[:7]})")
    arts.commit, arts.offline = path.name, offline  # snapshot folders are named by commit hash
    return arts


def is_network_error(e: BaseException) -> bool:
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
        if not is_network_error(e):
            raise
        err: BaseException = e
    if not local_only:
        log.warning("download of %s failed (%s); trying the cached copy", where, short_error(err))
        reason = reason or short_error(err)
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
    why = reason or short_error(err)
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
