"""The served app under hostile clients, long jobs and bad artifacts: each exploit that worked
once, shown refused. Real server (in this process, 127.0.0.1), real files, raw HTTP where a
client library would hide the payload."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LFW, PHOTOS, lfw_image, requires_data
from test_app import APP_PEOPLE, GRADIO_WARNINGS, make_cache, small_gallery, start_app

from rvs.app.serving import NOT_UPLOADED, sweep_leftovers
from rvs.config import PROJECT_ROOT, Config
from rvs.fileio import sha256_file

pytestmark = [requires_data, *GRADIO_WARNINGS]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    from rvs.app.startup import load_service

    root = tmp_path_factory.mktemp("security")
    cache = make_cache(root)
    gallery = small_gallery(root / "gallery", APP_PEOPLE[:4])
    service = load_service(Config(cache_dir=cache, index_dir=cache / "index" / "none"), gallery=gallery, warm=False, progress=False)
    demo, url = start_app(service)
    yield demo, url, service
    demo.close()


def call_raw(url: str, api: str, data: list, timeout: float = 120) -> tuple[str, str]:
    """POST a raw payload to /gradio_api/call/<api> and read the event stream: (event, data)."""
    import httpx

    r = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=30)
    r.raise_for_status()
    event_id = r.json()["event_id"]
    event, payload = "", ""
    with httpx.stream("GET", f"{url}gradio_api/call/{api}/{event_id}", timeout=timeout) as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                payload = line.split(":", 1)[1].strip()
                if event in ("complete", "error"):
                    break
    return event, payload


_UPLOADED: dict[str, dict] = {}


def uploaded_video(url: str) -> dict:
    """The sample video uploaded the way a browser does it: a FileData of the upload folder."""
    import httpx
    from conftest import VIDEO

    if url not in _UPLOADED:
        with open(VIDEO, "rb") as f:
            r = httpx.post(f"{url}gradio_api/upload", files={"files": ("clip.mp4", f, "video/mp4")}, timeout=60)
        r.raise_for_status()
        _UPLOADED[url] = {"path": r.json()[0], "orig_name": "clip.mp4", "meta": {"_type": "gradio.FileData"}}
    return _UPLOADED[url]


SERVER_PATHS = [
    str(lfw_image("Serena_Williams", 7)),  # an image on the server, outside the upload folder (not an example)
    "/etc/shadow",
    "/etc/passwd",
    "/nonexistent/file.jpg",
    "/etc",
    str(PROJECT_ROOT / "app.py"),
]


@pytest.mark.parametrize("shape", ["filedata", "filedata_meta", "string"])
def test_server_paths_are_refused_on_every_image_endpoint(app_server, shape):
    """No payload shape reads a server file, and the answer is the same whether the path exists,
    is a folder, is an image or not: no existence oracle. Without `meta` rvs's guard refuses it;
    with `meta`, or as a bare string, Gradio's own validation refuses it first."""
    _, url, _ = app_server
    seen: dict[str, set[str]] = {}
    for path in SERVER_PATHS:
        payload = {"filedata": {"path": path}, "filedata_meta": {"path": path, "meta": {"_type": "gradio.FileData"}}, "string": path}[shape]
        answers = {
            "detect_faces": call_raw(url, "detect_faces", [payload]),
            "search_image": call_raw(url, "search_image", [payload, "1 (largest)", 5]),
            "search_video": call_raw(url, "search_video", [uploaded_video(url), payload, "frame"]),
        }
        for api, (event, data) in answers.items():
            assert event == "error", f"{api} answered {event} for {path}: {data[:200]}"
            for leak in ("not found", "directory", "not an image", "Permission", "root:"):
                assert leak not in data, (api, path, data)
            if shape == "filedata":
                assert "not uploaded to this app" in data, (api, data)
            echo = re.sub(r"input_value=\\?'[^']*\\?'", "input_value=<path>", data.replace(json.dumps(path)[1:-1], "<path>"))
            seen.setdefault(api, set()).add(echo)
    for api, messages in seen.items():
        assert len(messages) == 1, f"{api} answers differ by path: {messages}"


def test_uploaded_file_and_examples_still_work(app_server):
    from gradio_client import Client, handle_file

    _, url, service = app_server
    client = Client(url, verbose=False, download_files=False)
    out = client.predict(handle_file(str(lfw_image("Colin_Powell", 2))), "1 (largest)", 3, api_name="/search_image")
    assert out[3]["results"][0]["identification"]["identity"] == "Colin_Powell"
    # The app's own example files are readable by path (that is how examples are sent).
    example = str(service.example_images()[0])
    event, data = call_raw(url, "detect_faces", [{"path": example}])
    assert event == "complete", data[:200]


def test_bad_input_is_an_api_error_not_a_null_success(app_server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    _, url, _ = app_server
    client = Client(url, verbose=False, download_files=False)
    bad = tmp_path / "<img src=x onerror=alert(1)>.jpg"
    bad.write_text("not a picture")
    with pytest.raises(AppError) as e:
        client.predict(handle_file(str(bad)), api_name="/detect_faces")
    msg = str(e.value)
    assert "not an image" in msg and "<img" not in msg
    # A raw client can name its upload anything: the name comes back escaped.
    import httpx

    with open(bad, "rb") as f:
        up = httpx.post(f"{url}gradio_api/upload", files={"files": ("x.jpg", f, "image/jpeg")}, timeout=30).json()[0]
    event, data = call_raw(url, "detect_faces", [{"path": up, "orig_name": "<img src=x onerror=alert(1)>.jpg"}])
    assert event == "error" and "not an image" in data
    assert "<img" not in data and "&lt;img src=x onerror=alert(1)&gt;.jpg" in data


def test_user_errors_log_one_line_no_traceback(app_server, tmp_path, capfd, caplog):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    _, url, _ = app_server
    client = Client(url, verbose=False, download_files=False)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    capfd.readouterr()
    with caplog.at_level("INFO", logger="rvs.app"), pytest.raises(AppError):
        client.predict(handle_file(str(bad)), "1 (largest)", 5, api_name="/search_image")
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    lines = [r for r in caplog.records if r.name == "rvs.app"]
    assert len(lines) == 1 and "not an image" in lines[0].getMessage() and lines[0].exc_info is None


# ---------------------------------------------------------------------------------------------
# Long jobs: cancellation, limits, private caches


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """60 s at 5 fps, 640x360: a slow pan over a photo of six faces (person mode works for long)."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from rvs.video.synth import load_rgb, pan, write_video

    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_video(path, [pan(load_rgb(PHOTOS / "multiface.jpg"), (0.3, 0.5, 0.8), (0.7, 0.5, 0.8), 300, "pan")], size=(640, 360), fps=5)
    return path


def test_cancel_stops_the_work_and_frees_the_core(app_server, long_video):
    from gradio_client import Client, handle_file

    demo, url, _ = app_server
    budget = demo.rvs_budget
    client = Client(url, verbose=False, download_files=False)
    job = client.submit(handle_file(str(long_video)), handle_file(str(lfw_image("Colin_Powell", 1))), "face", api_name="/search_video")
    # Wait until the search is computing (it holds a CPU slot), then cancel it.
    for _ in range(300):
        if budget.in_use:
            break
        time.sleep(0.1)
    assert budget.in_use == 1, "the video search never started"
    time.sleep(1.0)
    job.cancel()
    waited = 0
    for waited in range(100):  # noqa: B007 - read after the loop
        if budget.in_use == 0:
            break
        time.sleep(0.1)
    assert budget.in_use == 0, "the cancelled search still computes"
    assert waited <= 50, f"the worker stopped {waited / 10:.1f} s after cancel"


def test_long_videos_are_refused_by_the_app(app_server, long_video):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    _, url, service = app_server
    old = service.config
    service.config = dataclasses.replace(old, app_max_video_seconds=30.0)
    try:
        client = Client(url, verbose=False, download_files=False)
        with pytest.raises(AppError, match="up to 0 min|up to 1 min|searches videos up to"):
            client.predict(handle_file(str(long_video)), handle_file(str(lfw_image("Colin_Powell", 1))), "frame", api_name="/search_video")
    finally:
        service.config = old


def test_concurrent_searches_of_one_upload_do_not_collide(app_server, tmp_path):
    _, _, service = app_server
    sys.path.insert(0, str(PROJECT_ROOT))
    from rvs.video.synth import load_rgb, pan, write_video

    video = tmp_path / "clip.mp4"
    write_video(video, [pan(load_rgb(PHOTOS / "multiface.jpg"), (0.3, 0.5, 0.8), (0.7, 0.5, 0.8), 40, "pan")], size=(480, 270), fps=10)
    query = tmp_path / "q.png"
    from rvs.video.api import read_frame

    read_frame(video, 2.0).save(query)
    results, errors = [], []

    def run() -> None:
        try:
            results.append(service.search_video(video, query, "frame", keep_cache=False))
        except Exception as e:  # collected: the assertion below shows it
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == 3 and all(r.data.get("moments") or r.data.get("segments") for r in results)
    assert not list((Path(service.config.cache_dir) / "requests").glob("*")), "private caches are removed"


def test_leftovers_of_killed_runs_are_swept(tmp_path):
    cache = tmp_path / "cache"
    stale = [cache / "video" / "abc" / ".tmp-frames-x", cache / "requests" / "dead", tmp_path / "uploads" / "u1"]
    fresh = cache / "requests" / "live"
    for d in [*stale, fresh]:
        d.mkdir(parents=True)
        (d / "f").write_bytes(b"x")
    old = time.time() - 3600
    import os

    for d in stale:
        os.utime(d, (old, old))
    assert sweep_leftovers(cache, tmp_path / "uploads", older_than_s=900) == 3
    assert not any(d.exists() for d in stale) and fresh.exists()


# ---------------------------------------------------------------------------------------------
# Bad artifacts: a corrupt or tampered index never crashes the process


def _tamper(index_dir: Path, name: str, change) -> None:
    p = index_dir / name
    change(p)
    manifest = json.loads((index_dir / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}  # a "good" checksum
    (index_dir / "manifest.json").write_text(json.dumps(manifest))


def _garbage(p: Path) -> None:
    """An Annoy file that an older rvs wrote (rvs writes none now), corrupt: rvs must never load it."""
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 64_000, dtype=np.uint8).tobytes())


def _rvs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rvs", *args], capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)


def test_corrupt_annoy_file_with_good_checksum_does_not_kill_the_cli(index_copy):
    _tamper(index_copy, "index.ann", _garbage)
    p = _rvs("search", str(lfw_image("Colin_Powell", 2)), "--index", str(index_copy), "-k", "3", "--json")
    assert p.returncode == 0, p.stderr[-500:]
    assert json.loads(p.stdout)["results"][0]["matches"][0]["identity"] == "Colin_Powell"


def test_empty_annoy_file_with_good_checksum(index_copy):
    _tamper(index_copy, "index.ann", lambda p: p.write_bytes(b""))
    p = _rvs("search", str(lfw_image("Colin_Powell", 2)), "--index", str(index_copy), "-k", "3")
    assert p.returncode == 0 and "unexpected" not in p.stderr, p.stderr[-500:]


def test_nan_embeddings_are_refused_in_one_line(index_copy):
    def nan(p: Path) -> None:
        e = np.load(p)
        e[3] = np.nan
        with open(p, "wb") as f:
            np.save(f, e, allow_pickle=False)

    _tamper(index_copy, "embeddings.npy", nan)
    p = _rvs("search", str(lfw_image("Colin_Powell", 2)), "--index", str(index_copy))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not finite unit vectors" in lines[0], p.stderr


def test_app_keeps_serving_with_a_tampered_index(index_copy, tmp_path):
    """The process under test gets the corrupt .ann (good checksum) and must answer searches."""
    from rvs.app.startup import load_service

    _tamper(index_copy, "index.ann", _garbage)
    cfg = Config(cache_dir=tmp_path / "c", index_dir=index_copy)
    service = load_service(cfg, warm=False, progress=False)
    assert service.engine is not None, service.problem
    demo, url = start_app(service)
    try:
        from gradio_client import Client, handle_file

        client = Client(url, verbose=False, download_files=False)
        for _ in range(2):
            out = client.predict(handle_file(str(lfw_image("Colin_Powell", 2))), "1 (largest)", 3, api_name="/search_image")
            assert out[3]["results"][0]["matches"][0]["identity"] == "Colin_Powell"
    finally:
        demo.close()


@pytest.mark.parametrize("repo", ["../../../etc", "a/b/../../c", "owner/name/extra", "/etc/passwd", "x" * 300])
def test_bad_hub_repo_falls_back_with_one_line(tmp_path, repo):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RVS_HUB_REPO": repo,
        "RVS_CACHE": str(tmp_path / "cache"),
        "RVS_DATA": str(tmp_path / "no-data"),
        "HF_HUB_OFFLINE": "1",
    }
    code = "from rvs.app.startup import load_service; s = load_service(warm=False, progress=False); print('NOTES', s.notes)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT, env=env)
    assert p.returncode == 0, p.stderr[-800:]
    assert "Traceback" not in p.stderr and "HFValidationError" not in p.stderr
    assert "is not a Hub repo id" in p.stderr and "offline fallback" in p.stdout


def test_upload_guard_refuses_what_is_not_uploaded(tmp_path):
    from rvs.app.serving import UploadGuard
    from rvs.errors import BadInputError

    up = tmp_path / "uploads"
    (up / "abc").mkdir(parents=True)
    ok = up / "abc" / "x.jpg"
    ok.write_bytes(b"x")
    link = up / "abc" / "escape.jpg"
    link.symlink_to(LFW / "Colin_Powell" / "Colin_Powell_0001.jpg")
    g = UploadGuard([up], files=[PHOTOS / "multiface.jpg"])
    assert g.check(str(ok)) == str(ok.resolve())
    assert g.check(str(PHOTOS / "multiface.jpg"))
    for bad in (str(link), str(up / ".." / "x"), str(up), "", None, 3, {"a": 1}, "/etc/passwd\x00.jpg"):
        with pytest.raises(BadInputError, match=NOT_UPLOADED[:20]):
            g.check(bad)
