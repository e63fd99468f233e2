"""The video library (rvs.library, `python -m rvs videos`): three small real videos and a
corrupt one, indexed once; which video shows a person and when, where a picture appears,
incremental updates, removal, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rvs.config import PROJECT_ROOT, Config, default_data_dir
from rvs.errors import IndexError_
from rvs.library import indexer, store
from rvs.library.search import search_frame, search_person

DATA = default_data_dir()
VIDEO = DATA / "videos" / "arcade_faces.mp4"
LFW = DATA / "lfw" / "images_deepfunneled"

pytestmark = pytest.mark.skipif(not VIDEO.exists(), reason=f"sample video missing: {VIDEO}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """arcade.mp4 (the 1080p sample), powell.mp4 (late-starting stream: shapes, Colin Powell from
    0.852 + 1.0 s to ~3.4 s, shapes), shapes.mp4 (no faces, variable frame rate), broken.mp4."""
    from rvs.video.synth import load_rgb, pan, shapes, vfr_durations, write_video

    d = tmp_path_factory.mktemp("videos")
    shutil.copy(VIDEO, d / "arcade.mp4")
    powell = load_rgb(LFW / "Colin_Powell" / "Colin_Powell_0001.jpg")
    shots = [
        pan(shapes(1), (0.45, 0.5, 0.8), (0.55, 0.5, 0.7), 25, "shapes 1"),
        pan(powell, (0.50, 0.45, 0.95), (0.50, 0.42, 0.80), 40, "powell"),
        pan(shapes(2), (0.55, 0.5, 0.7), (0.45, 0.5, 0.8), 25, "shapes 2"),
    ]
    placed = write_video(d / "powell.mp4", shots, size=(480, 270), start_s=0.852)
    (d / "sub").mkdir()
    write_video(d / "sub" / "shapes.mp4", [pan(shapes(3), (0.3, 0.5, 0.5), (0.7, 0.5, 0.5), 60, "shapes 3")], size=(480, 270), durations=vfr_durations(60, 25.0))
    (d / "broken.mp4").write_bytes((d / "powell.mp4").read_bytes()[:3000])  # truncated: no index
    return d, placed


@pytest.fixture(scope="module")
def library(folder, tmp_path_factory):
    d, _ = folder
    out = tmp_path_factory.mktemp("lib") / "library"
    lines: list[str] = []
    summary = indexer.index_folder(d, out, Config(), log_line=lines.append, progress=False)
    return out, summary, lines


def test_index_skips_a_corrupt_video_in_one_line(library):
    out, summary, lines = library
    assert summary["videos"] == summary["indexed"] == 3 and list(summary["skipped"]) == ["broken.mp4"]
    skipped = [line for line in lines if "broken.mp4" in line]
    assert len(skipped) == 1 and "\n" not in skipped[0] and str(out) not in skipped[0]
    lib = store.load(out)
    assert sorted(v.name for v in lib.videos) == ["arcade.mp4", "powell.mp4", "sub/shapes.mp4"]
    shapes = next(v for v in lib.videos if v.name == "sub/shapes.mp4")
    assert shapes.n_tracks == 0 and shapes.n_vectors == 0  # no faces in it
    assert len(lib.vectors) == sum(v.n_vectors for v in lib.videos) > 0


def test_which_video_and_when(library, folder):
    """Colin Powell (another photo of him) is in powell.mp4 only, while his shot is on screen
    (player times: the stream starts 0.852 s late); a stranger is in none."""
    out, _, _ = library
    _, placed = folder
    lib = store.load(out)
    r = search_person(lib, LFW / "Colin_Powell" / "Colin_Powell_0002.jpg", Config())
    assert [h.video for h in r.hits] == ["powell.mp4"], r.to_dict()
    h = r.hits[0]
    assert h.decision == "same person" and h.score <= r.threshold and h.thumb is not None
    t0, t1 = placed[1].times[0], placed[1].times[-1]
    assert len(h.segments) == 1
    seg = h.segments[0]
    assert t0 - 1e-6 <= seg.start <= t0 + 0.6 and t1 - 0.1 <= seg.end <= t1 + 0.6, (seg, t0, t1)
    assert seg.start <= h.best_time <= seg.end
    stranger = search_person(lib, LFW / "George_W_Bush" / "George_W_Bush_0001.jpg", Config())
    assert stranger.hits == [] and stranger.closest is not None and stranger.closest.score > stranger.threshold


def test_person_of_the_sample_video(library):
    from rvs.video.api import read_frame
    from rvs.video.faces import face_models

    out, _, _ = library
    frame = read_frame(VIDEO, 1.0)
    face = face_models(Config()).frame_detector.detect([np.asarray(frame)])[0][0]
    x1, y1, x2, y2 = face.box
    m = 0.4 * (x2 - x1)
    r = search_person(store.load(out), frame.crop((int(x1 - m), int(y1 - m), int(x2 + m), int(y2 + m))), Config())
    assert r.hits and r.hits[0].video == "arcade.mp4"
    assert any(s.start <= 1.0 <= s.end for s in r.hits[0].segments)
    assert all(h.video == "arcade.mp4" for h in r.hits)


def test_picture_found_in_its_video_at_its_time(library, folder):
    from rvs.video.synth import read_rgb

    out, _, _ = library
    d, placed = folder
    lib = store.load(out)
    k = placed[2].first + 12
    r = search_frame(lib, Image.fromarray(read_rgb(d / "powell.mp4")[k]), Config())
    assert r.hits and r.hits[0].video == "powell.mp4" and r.hits[0].decision == "same frame"
    assert abs(r.hits[0].best_time - placed[2].times[12]) <= 0.3
    frame = read_rgb(VIDEO)[62]
    r = search_frame(lib, Image.fromarray(frame), Config())
    assert r.hits[0].video == "arcade.mp4" and abs(r.hits[0].best_time - 62 / 25) <= 0.3


def test_update_indexes_only_the_new_video(library, folder, tmp_path, monkeypatch):
    d, _ = folder
    out, _, _ = library
    lib_copy = tmp_path / "library"
    shutil.copytree(out, lib_copy)
    new = tmp_path / "videos"
    shutil.copytree(d, new)
    from rvs.video.synth import pan, shapes, write_video

    write_video(new / "new.mp4", [pan(shapes(9), (0.4, 0.5, 0.6), (0.6, 0.5, 0.6), 30, "shapes 9")], size=(320, 180))
    calls: list[str] = []
    real = indexer.index_video
    monkeypatch.setattr(indexer, "index_video", lambda path, *a, **k: (calls.append(Path(path).name), real(path, *a, **k))[1])
    s = indexer.index_folder(new, lib_copy, Config(), update=True, log_line=lambda _: None, progress=False)
    assert calls == ["broken.mp4", "new.mp4"]  # the corrupt one is tried again, nothing else
    assert s["indexed"] == 1 and s["kept"] == 3 and s["videos"] == 4
    (new / "powell.mp4").unlink()
    s = indexer.index_folder(new, lib_copy, Config(), update=True, log_line=lambda _: None, progress=False)
    assert s["removed"] == ["powell.mp4"] and s["videos"] == 3
    assert indexer.remove_videos(lib_copy, ["new.mp4"]) == ["new.mp4"]
    assert [v.name for v in store.load(lib_copy).videos] == ["arcade.mp4", "sub/shapes.mp4"]


def test_damaged_library_is_refused_in_one_line(library, tmp_path):
    out, _, _ = library
    bad = tmp_path / "library"
    shutil.copytree(out, bad)
    np.save(bad / "vectors.npy", np.zeros((3, 5), np.float32))
    with pytest.raises(IndexError_, match="disagree with its manifest") as e:
        store.load(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(IndexError_, match="no video library"):
        store.load(tmp_path / "nothing")


def test_cli_index_search_list(folder, tmp_path):
    d, _ = folder
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RVS_VIDEO_LIBRARY": str(tmp_path / "lib"), "RVS_CACHE_DIR": os.environ.get("RVS_CACHE_DIR", str(Config().cache_dir))}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "rvs", "videos", *args], capture_output=True, text=True, env=env, timeout=600)

    p = cli("index", str(d))
    assert p.returncode == 0, p.stderr
    assert "3 videos" in p.stdout and "1 skipped" in p.stdout
    assert sum("broken.mp4" in line for line in (p.stdout + p.stderr).splitlines()) == 1 and "Traceback" not in p.stderr
    p = cli("search", str(LFW / "Colin_Powell" / "Colin_Powell_0002.jpg"), "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert [h["video"] for h in r["hits"]] == ["powell.mp4"] and r["hits"][0]["segments"][0]["start"] >= 1.8
    p = cli("search", str(LFW / "George_W_Bush" / "George_W_Bush_0001.jpg"))
    assert p.returncode == 0 and "not found in any video" in p.stdout
    p = cli("list")
    assert p.returncode == 0 and "powell.mp4" in p.stdout and "sub/shapes.mp4" in p.stdout
    p = cli("remove", "nope.mp4")
    assert p.returncode != 0 and "not in the library: nope.mp4" in p.stderr and "Traceback" not in p.stderr


def test_app_searches_the_library(library, tmp_path):
    """With RVS_VIDEO_LIBRARY set, the page offers "search the video library": hits name the
    video, its time and the decision; a damaged library is not offered and the app still starts."""
    from gradio_client import Client, handle_file

    import app
    from rvs.app.service import Service
    from tests.test_app import free_port

    out, _, _ = library
    svc = Service(Config(video_library=str(out)), None, None, problem="no gallery in this test")
    assert svc.video_library is not None and len(svc.video_library.videos) == 3
    demo = app.build_demo(svc)
    port = free_port()
    app.launch(demo, svc, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        tiles, summary, data = client.predict(
            handle_file(str(LFW / "Colin_Powell" / "Colin_Powell_0002.jpg")), "This person, in every video", api_name="/search_library"
        )
        assert "powell.mp4" in summary and [h["video"] for h in data["hits"]] == ["powell.mp4"]
        assert tiles and tiles[0]["caption"].startswith("powell.mp4 · ") and "same person" in tiles[0]["caption"]
        _, summary, data = client.predict(handle_file(str(LFW / "George_W_Bush" / "George_W_Bush_0001.jpg")), "This person, in every video", api_name="/search_library")
        assert data["hits"] == [] and "Not found in any of the 3 videos" in summary
    finally:
        demo.close()
    bad = tmp_path / "library"
    shutil.copytree(out, bad)
    (bad / "vector_refs.npy").write_bytes(b"not numpy")
    assert Service(Config(video_library=str(bad)), None, None, problem="x").video_library is None


def test_ray_index_and_milvus_search_agree(library, folder, tmp_path):
    """Beyond one machine: one Ray Data task per video (a local Ray here) builds the same library,
    and the Milvus backend (Milvus Lite here) answers as exact search does."""
    import dataclasses

    d, _ = folder
    small = tmp_path / "videos"
    small.mkdir()
    shutil.copy(d / "powell.mp4", small / "powell.mp4")
    shutil.copytree(d / "sub", small / "sub")
    s = indexer.index_folder(small, tmp_path / "ray-lib", Config(), ray="", log_line=lambda _: None, progress=False)
    assert s["indexed"] == 2 and s["skipped"] == {}
    ray_lib = store.load(tmp_path / "ray-lib")
    out, _, _ = library
    ref = store.load(out)
    powell = next(i for i, v in enumerate(ref.videos) if v.name == "powell.mp4")
    mine = next(i for i, v in enumerate(ray_lib.videos) if v.name == "powell.mp4")
    assert np.allclose(ray_lib.tracks(mine).vectors, ref.tracks(powell).vectors, atol=1e-4)
    query = LFW / "Colin_Powell" / "Colin_Powell_0002.jpg"
    exact = search_person(ref, query, Config(search_backend="exact"))
    lib_m = store.load(out)
    try:
        milvus = search_person(lib_m, query, dataclasses.replace(Config(), search_backend="milvus", milvus_uri=str(tmp_path / "m.db")))
    finally:
        lib_m.close()
    assert [h.to_dict() for h in milvus.hits] == [h.to_dict() for h in exact.hits]
