"""A fake Hugging Face Hub on 127.0.0.1, for testing the real huggingface_hub client offline.

It speaks the part of the Hub HTTP API that huggingface_hub 2.4's `snapshot_download`,
`hf_hub_download`, `HfApi.repo_info/list_repo_tree/create_repo/create_branch/upload_folder`
call, read off the client's source:

    GET  /api/models/{owner}/{name}[/revision/{rev}]       repo info: sha + siblings
    GET  /api/models/{owner}/{name}/tree/{rev}[/{path}]    ?recursive=true: files and folders
    HEAD/GET /{owner}/{name}/resolve/{rev}/{path}          X-Repo-Commit, ETag, Content-Length, Range
    POST /api/repos/create                                 {"name", "organization", "visibility"}
    POST /api/models/{owner}/{name}/branch/{branch}        {"startingPoint"}
    POST /api/models/{owner}/{name}/preupload/{rev}        always uploadMode "regular"
    POST /api/models/{owner}/{name}/commit/{rev}           NDJSON: header, file (base64), deletedFile/Folder

Errors carry `X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound` as the Hub does,
which is what the client maps to its typed exceptions.

Xet is never advertised (no `X-Xet-Hash` header, no `xetHash` in trees) and preupload never
answers "lfs" (with hf_xet installed the client would upload non-regular files via Xet): so
every byte goes over plain HTTP, inline in the commit. Repos live in memory with their full
history, so an older commit can be fetched by its sha. Test hooks: `tampered` serves other
bytes for a file (same ETag, honest Content-Length), `fail` answers an HTTP error for a file
(use a status the client does not retry, e.g. 403: it retries 5xx with backoff), `requests` logs what was called,
`unhandled` records calls the server does not know (a test can assert it stays empty).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(data: bytes) -> str:
    """The git blob id of `data`: what the Hub sends as ETag / tree oid of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes]
    created: float = field(default_factory=time.time)


@dataclass
class Repo:
    repo_id: str
    private: bool = False
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit sha

    def resolve(self, rev: str) -> Commit | None:
        if rev in self.refs:
            return self.commits[self.refs[rev]]
        if SHA_RE.match(rev) and rev in self.commits:
            return self.commits[rev]
        return None


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.extra = status, message, code, headers or {}, extra


class FakeHub:
    """In-memory Hub. Use as a context manager, or `start()` / `stop()`.

    token: if set, writes need `Authorization: Bearer <token>` and private repos need it to be read.
    """

    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.tampered: dict[tuple[str, str], bytes] = {}  # (repo_id, path) -> bytes served instead
        self.fail: dict[tuple[str, str], int] = {}  # (repo_id, path) -> HTTP status answered instead
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self._lock = threading.RLock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()

    # ---- lifecycle ----
    @property
    def endpoint(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open keep-alive connections, so the endpoint is really gone
        (the client's connection pool would otherwise keep talking to the old handler threads)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- repo state (also used directly by tests to seed or inspect repos) ----
    def create_repo(self, repo_id: str, private: bool = False) -> Repo:
        with self._lock:
            if repo_id in self.repos:
                raise HttpError(409, f"You already created this model repo: {repo_id}")
            repo = Repo(repo_id, private=private)
            # Like the Hub, a new repo starts with one commit holding a .gitattributes.
            first = self._new_commit(repo, None, "initial commit", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
            repo.refs["main"] = first.sha
            self.repos[repo_id] = repo
            return repo

    def commit(self, repo_id: str, files: dict[str, bytes], message: str = "commit", branch: str = "main", deleted: tuple[str, ...] = ()) -> str:
        """Add a commit on `branch` that writes `files` and removes `deleted`; return its sha."""
        with self._lock:
            repo = self.repos[repo_id]
            parent = repo.resolve(branch)
            if parent is None:
                raise HttpError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            new_files = dict(parent.files)
            for d in deleted:
                new_files = {p: b for p, b in new_files.items() if p != d and not p.startswith(d.rstrip("/") + "/")}
            new_files.update(files)
            c = self._new_commit(repo, parent.sha, message, new_files)
            repo.refs[branch] = c.sha
            return c.sha

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        commit = self.repos[repo_id].resolve(rev)
        assert commit is not None
        return dict(commit.files)

    def _new_commit(self, repo: Repo, parent: str | None, message: str, files: dict[str, bytes]) -> Commit:
        self._counter += 1
        digest = hashlib.sha1(
            json.dumps([repo.repo_id, parent, message, self._counter, sorted((p, git_blob_oid(b)) for p, b in files.items())]).encode()
        ).hexdigest()
        c = Commit(digest, parent, message, files)
        repo.commits[c.sha] = c
        return c


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; every response has a length
    timeout = 30  # idle keep-alive connections end eventually

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._conns.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.hub._lock:
                self.hub._conns.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass  # the request log is `hub.requests`; stderr noise helps nobody in a test run

    # ---- plumbing ----
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        raw_path, _, query = self.path.partition("?")
        self.query = {k: v[-1] for k, v in parse_qs(query).items()}
        self.hub.requests.append((method, self.path))
        # Segments are split before unquoting: a revision like "refs%2Fpr%2F1" is one segment.
        seg = raw_path.split("/")[1:]
        body = self._read_body() if method == "POST" else b""
        try:
            if seg[:2] == ["api", "models"] and len(seg) >= 4:
                repo_id = f"{unquote(seg[2])}/{unquote(seg[3])}"
                rest = seg[4:]
                if method == "GET" and not rest:
                    return self._repo_info(repo_id, "main")
                if method == "GET" and len(rest) == 2 and rest[0] == "revision":
                    return self._repo_info(repo_id, unquote(rest[1]))
                if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                    return self._tree(repo_id, unquote(rest[1]), unquote("/".join(rest[2:])))
                if method == "POST" and len(rest) == 2 and rest[0] == "preupload":
                    return self._preupload(repo_id, unquote(rest[1]), body)
                if method == "POST" and len(rest) == 2 and rest[0] == "commit":
                    return self._commit(repo_id, unquote(rest[1]), body)
                if method == "POST" and len(rest) == 2 and rest[0] == "branch":
                    return self._create_branch(repo_id, unquote(rest[1]), body)
            elif seg == ["api", "repos", "create"] and method == "POST":
                return self._create_repo(body)
            elif seg == ["api", "validate-yaml"] and method == "POST":
                return self._validate_yaml(body)
            elif len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
                repo_id = f"{unquote(seg[0])}/{unquote(seg[1])}"
                return self._resolve(repo_id, unquote(seg[3]), "/".join(unquote(s) for s in seg[4:]), head=method == "HEAD")
            self.hub.unhandled.append((method, self.path))
            raise HttpError(404, f"fake hub: no route for {method} {raw_path}")
        except HttpError as e:
            self._send_json(e.status, {"error": e.message, **e.extra}, {**({"X-Error-Code": e.code} if e.code else {}), "X-Error-Message": e.message, **e.headers}, head=method == "HEAD")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None, head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}, head=head)

    # ---- auth ----
    def _authorized(self) -> bool:
        tok = self.hub.token
        return tok is None or self.headers.get("Authorization", "") == f"Bearer {tok}"

    def _need_write(self) -> None:
        if not self._authorized():
            raise HttpError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str) -> Repo:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()):
            # The Hub does not tell "missing" from "private and you may not see it".
            raise HttpError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit_of(self, repo: Repo, rev: str) -> Commit:
        commit = repo.resolve(rev)
        if commit is None:
            raise HttpError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    # ---- read API ----
    def _repo_info(self, repo_id: str, rev: str) -> None:
        with self.hub._lock:
            repo = self._repo(repo_id)
            c = self._commit_of(repo, rev)
            files = sorted(c.files)
        self._send_json(
            200,
            {
                "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0],
                "sha": c.sha,
                "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(c.created)),
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "tags": [],
                "siblings": [{"rfilename": p} for p in files],
            },
        )

    def _tree(self, repo_id: str, rev: str, sub: str) -> None:
        recursive = self.query.get("recursive", "false").lower() in ("1", "true")
        with self.hub._lock:
            c = self._commit_of(self._repo(repo_id), rev)
            files = dict(c.files)
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in files):
            raise HttpError(404, f"{sub} does not exist on {rev}", "EntryNotFound", {"X-Repo-Commit": c.sha})
        entries: dict[str, dict] = {}
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix) :].split("/")
            # Folders on the way to the file (all of them when recursive, else only the first).
            for depth in range(1, len(rel) if recursive else min(len(rel), 2)):
                d = prefix + "/".join(rel[:depth])
                entries.setdefault(d, {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
            if recursive or len(rel) == 1:
                data = files[path]
                entries[path] = {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}
        self._send_json(200, list(entries.values()))

    def _resolve(self, repo_id: str, rev: str, path: str, head: bool) -> None:
        with self.hub._lock:
            c = self._commit_of(self._repo(repo_id), rev)
            data = c.files.get(path)
            served = self.hub.tampered.get((repo_id, path), data)
            fail = self.hub.fail.get((repo_id, path))
        if fail is not None:
            raise HttpError(fail, f"fake hub: {path} fails with {fail} (test hook)")
        if data is None or served is None:
            raise HttpError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": c.sha})
        headers = {
            "X-Repo-Commit": c.sha,
            "ETag": f'"{git_blob_oid(data)}"',  # the real oid, whatever bytes are served
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        status, body = 200, served
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if m and not head:
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(served) - 1
            if start >= len(served):
                raise HttpError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{len(served)}"})
            body = served[start : end + 1]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(served)}"
        self._send(status, body, headers, head=head)

    def _validate_yaml(self, body: bytes) -> None:
        """What the Hub checks in a README's front matter before a commit (a useful subset)."""
        errors = [{"message": m} for m in validate_card_metadata(json.loads(body).get("content", ""))]
        self._send_json(400 if errors else 200, {"errors": errors, "warnings": []} if errors else {"warnings": []})

    # ---- write API ----
    def _create_repo(self, body: bytes) -> None:
        self._need_write()
        payload = json.loads(body or b"{}")
        if payload.get("type", "model") != "model":
            raise HttpError(400, "fake hub: only model repos")
        name, org = payload.get("name"), payload.get("organization")
        if not name or not org:
            raise HttpError(400, "fake hub: repo ids must be owner/name")
        repo_id = f"{org}/{name}"
        if repo_id in self.hub.repos:
            # The Hub answers 409 with the repo url, which `create_repo(exist_ok=True)` returns.
            raise HttpError(409, "You already created this model repo", url=f"{self.hub.endpoint}/{repo_id}")
        self.hub.create_repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        self._send_json(200, {"url": f"{self.hub.endpoint}/{repo_id}", "name": repo_id, "id": repo_id})

    def _create_branch(self, repo_id: str, branch: str, body: bytes) -> None:
        self._need_write()
        payload = json.loads(body or b"{}")
        with self.hub._lock:
            repo = self._repo(repo_id)
            if branch in repo.refs:
                raise HttpError(409, f"Reference already exists: {branch}")
            start = self._commit_of(repo, payload.get("startingPoint") or "main")
            repo.refs[branch] = start.sha
        self._send_json(200, {})

    def _preupload(self, repo_id: str, rev: str, body: bytes) -> None:
        self._need_write()
        payload = json.loads(body)
        with self.hub._lock:
            repo = self._repo(repo_id)
            c = repo.resolve(rev)  # a missing branch is fine: the commit will say so
            existing = c.files if c is not None else {}
        out = []
        for f in payload["files"]:
            old = existing.get(f["path"])
            out.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": git_blob_oid(old) if old is not None else None})
        self._send_json(200, {"files": out, "commitOid": c.sha if c is not None else None})

    def _commit(self, repo_id: str, rev: str, body: bytes) -> None:
        self._need_write()
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HttpError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        files: dict[str, bytes] = {}
        deleted: list[str] = []
        for op in lines[1:]:
            key, value = op.get("key"), op.get("value", {})
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HttpError(400, "fake hub: file content must be base64")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            else:
                raise HttpError(400, f"fake hub: unsupported commit operation {key!r} (no LFS / Xet here)")
        with self.hub._lock:
            repo = self._repo(repo_id)
            head = self._commit_of(repo, rev)
            if rev not in repo.refs:
                raise HttpError(400, f"cannot commit on {rev}: not a branch")
            parent = header.get("parentCommit")
            if parent and parent != head.sha:
                raise HttpError(412, f"parent commit {parent} is not the head of {rev} ({head.sha})")
            sha = self.hub.commit(repo_id, files, header.get("summary", ""), branch=rev, deleted=tuple(deleted))
        self._send_json(200, {"success": True, "commitOid": sha, "commitUrl": f"{self.hub.endpoint}/{repo_id}/commit/{sha}", "pullRequestUrl": None})


# A subset of the Hub's accepted values, enough to catch a typo in rvs.hub.modelcard.
HUB_LICENSES = {"mit", "apache-2.0", "cc-by-4.0", "cc-by-nc-4.0", "bsd-3-clause", "openrail", "other", "unknown"}
HUB_PIPELINE_TAGS = {"image-feature-extraction", "image-classification", "feature-extraction", "zero-shot-image-classification"}


def validate_card_metadata(content: str) -> list[str]:
    """Errors the Hub would report for a README's YAML front matter ([] when it is fine)."""
    import yaml

    if not content.startswith("---"):
        return []
    end = content.find("\n---", 3)
    if end < 0:
        return ["front matter is not closed by ---"]
    try:
        meta = yaml.safe_load(content[3:end]) or {}
    except yaml.YAMLError as e:
        return [f"invalid YAML: {e}"]
    if not isinstance(meta, dict):
        return ["metadata must be a mapping"]
    errors = []
    if "license" in meta and meta["license"] not in HUB_LICENSES:
        errors.append(f"license must be one of the Hub's licence ids, got {meta['license']!r}")
    for key in ("tags", "datasets"):
        v = meta.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            errors.append(f'"{key}" must be a list of strings')
    if "pipeline_tag" in meta and meta["pipeline_tag"] not in HUB_PIPELINE_TAGS:
        errors.append(f'"pipeline_tag" {meta["pipeline_tag"]!r} is not a known pipeline')
    if "library_name" in meta and not isinstance(meta["library_name"], str):
        errors.append('"library_name" must be a string')
    return errors


def hub_client_env(monkeypatch, tmp_path: Path, endpoint: str, timeout: int = 3) -> Path:
    """Point huggingface_hub at `endpoint` with its cache and token store under `tmp_path`.

    huggingface_hub reads HF_ENDPOINT, the timeouts and HF_HUB_OFFLINE into module constants at
    import, so the constants are patched alongside the environment (including the download-URL
    template, which `hf_hub_url` rewrites only when it starts with `constants.ENDPOINT`).
    Returns the HF_HOME folder.
    """
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", str(timeout))
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", str(timeout))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", timeout)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", timeout)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    os.makedirs(home, exist_ok=True)
    return home
