"""The Gradio demo end to end: the app runs in-process on 127.0.0.1 and is driven with gradio_client.

A small gallery (10 LFW people x images 3-5) is built through the service's own starter path
(`--gallery FOLDER`), so the starter build is tested too without indexing 900 images. The cache
directory is a temporary one whose `weights/` links to the real weights cache, so the converted
weights are reused and nothing else touches the developer's cache.
"""

from __future__ import annotations

import socket
import struct
import zlib
from pathlib import Path

import pytest
from conftest import GALLERY_PEOPLE, LFW, VIDEO, lfw_image, requires_data

from rvs.config import Config, default_cache_dir

# Gradio's queue uses pandas options that pandas 3 deprecates: not ours to fix.
GRADIO_WARNINGS = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]
pytestmark = [requires_data, *GRADIO_WARNINGS]

APP_PEOPLE = GALLERY_PEOPLE[:10]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cache(root: Path) -> Path:
    """A cache dir under `root` sharing the real converted weights (read-mostly, keyed by sha256)."""
    cache = root / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    real = default_cache_dir() / "weights"
    real.mkdir(parents=True, exist_ok=True)
    if not (cache / "weights").exists():
        (cache / "weights").symlink_to(real, target_is_directory=True)
    return cache


def small_gallery(root: Path, people: list[str], nums: tuple[int, ...] = (3, 4, 5)) -> Path:
    """Folder-per-person links to real LFW photos (never copies)."""
    for name in people:
        (root / name).mkdir(parents=True, exist_ok=True)
        for num in nums:
            src = lfw_image(name, num)
            dst = root / name / src.name
            if src.is_file() and not dst.exists():
                dst.symlink_to(src)
    return root


def start_app(service, port: int | None = None):
    """Launch the demo in this process; returns (demo, url). The caller closes it."""
    import app

    demo = app.build_demo(service)
    port = port or free_port()
    app.launch(demo, service, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def app_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("app")


@pytest.fixture(scope="module")
def service(app_root):
    from rvs.app.startup import load_service

    cache = make_cache(app_root)
    gallery = small_gallery(app_root / "gallery", APP_PEOPLE)
    cfg = Config(cache_dir=cache, index_dir=cache / "index" / "none")
    return load_service(cfg, gallery=gallery, warm=False, progress=False)


@pytest.fixture(scope="module")
def server(service):
    demo, url = start_app(service)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    # download_files=False: outputs stay server paths; the tests read captions and JSON.
    return Client(server, verbose=False, download_files=False)


def search(client, path, face="1 (largest)", k=10):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), face, k, api_name="/search_image")


def served_image(value):
    """A Gradio image output (download_files=False: a dict with the server's file path) as a PIL image."""
    from PIL import Image

    path = value.get("path") if isinstance(value, dict) else value
    assert path and Path(path).is_file(), value
    return Image.open(path)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height with (almost) no pixel data: how a decompression
    bomb looks to a reader that trusts the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------------------------------------
# Service (no server)


def test_starter_gallery_built_from_folder(service, app_root):
    from rvs.gallery.starter import starter_selection

    assert service.engine is not None and service.problem is None
    idx = service.index
    assert set(idx.meta["identity"]) == set(APP_PEOPLE)
    assert 25 <= len(idx) <= 30  # a few LFW photos may have no detectable main face
    assert Path(idx.extra["source_folder"]) == (app_root / "gallery").resolve()
    assert "starter gallery" in service.description and "10 identities" in service.description
    # Saved under the cache and reused on the next start (same selection and model).
    assert (service.artifacts.index_dir / "manifest.json").is_file()
    sel = starter_selection(app_root / "gallery", people=3, per_person=2)
    assert len(sel) == 3 and all(len(paths) == 2 for _, paths in sel)
    # Thumbnails come from the source photos, cropped to the face.
    thumb = service.thumbnail(0)
    assert thumb.size == (192, 192)


def test_starter_reused_and_rebuilt_when_its_recipe_changes(service, tmp_path, monkeypatch):
    """A starter gallery is reused when nothing that shapes its faces changed, and rebuilt when
    the margin, its units or the minimum face probability did (the digest once held only the
    folder, model id and detector id, so a changed crop setting silently reused the old one)."""
    import dataclasses

    import rvs.gallery.build
    from rvs.faces.detect import FaceDetector
    from rvs.gallery.starter import build_starter

    folder = small_gallery(tmp_path / "g", APP_PEOPLE[:3], nums=(3, 4))
    cfg = Config(cache_dir=make_cache(tmp_path))
    embedder = service.engine.embedder
    builds: list[Path] = []
    real = rvs.gallery.build.build_index

    def counting(folder, *a, **k):
        builds.append(folder)
        return real(folder, *a, **k)

    monkeypatch.setattr(rvs.gallery.build, "build_index", counting)

    def starter(**changes):
        c = dataclasses.replace(cfg, **changes)
        return build_starter(folder, c, FaceDetector(c), embedder, people=0, per_person=0, progress=False)

    index, out = starter()
    assert len(builds) == 1 and len(index) == 6 and index.extra["recipe"]["margin"] == 32
    created = (out / "manifest.json").read_bytes()
    again, out2 = starter()
    assert len(builds) == 1, "an unchanged starter gallery must be reused"
    assert out2 == out and (out / "manifest.json").read_bytes() == created and again.extra["starter_digest"] == index.extra["starter_digest"]
    for n, (field, value) in enumerate({"margin": 44, "margin_units": "image", "min_face_prob": 0.99}.items(), start=2):
        rebuilt, out3 = starter(**{field: value})
        assert len(builds) == n, f"changing {field} must rebuild the starter gallery"
        assert out3 == out and rebuilt.extra["recipe"][field] == value
        assert rebuilt.extra["starter_digest"] != index.extra["starter_digest"]
    starter(min_face_prob=0.99)
    assert len(builds) == 4  # and the rebuilt one is reused in turn


def test_service_falls_back_to_local_index_when_hub_unreachable(service, app_root, monkeypatch, tmp_path, capsys):
    """RVS_HUB_REPO on an endpoint nobody listens on: the app comes up offline on the local index
    (here the starter index built above). A branch name instead of a commit gets one warning line."""
    from hubserver import hub_client_env

    from rvs.app.startup import load_service

    dead = f"http://127.0.0.1:{free_port()}"
    hub_client_env(monkeypatch, tmp_path, dead, timeout=2)
    local = service.artifacts.index_dir  # the starter index built above, as a local index
    cfg = Config(cache_dir=make_cache(app_root), index_dir=local, hub_repo="rvs-demo/lfw-gallery", hub_revision="main")
    capsys.readouterr()
    svc = load_service(cfg, warm=False, progress=False)
    assert svc.engine is not None, svc.problem
    assert svc.artifacts.origin.startswith("local:")
    assert any("rvs-demo/lfw-gallery" in n and "offline fallback" in n for n in svc.notes), svc.notes
    assert len(svc.index) == len(service.index)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "RVS_HUB_REVISION" in line]
    assert len(warnings) == 1 and "'main' is a branch or tag, not a commit" in warnings[0] and "pin a 40-hex commit" in warnings[0]


def test_local_index_cut_otherwise_is_not_used(service, app_root, tmp_path, capsys):
    """The app started with another margin than its local index was built with: the index is
    refused with a note saying why (not searched with incomparable vectors)."""
    from rvs.app.startup import load_service

    local = service.artifacts.index_dir
    cfg = Config(cache_dir=make_cache(app_root), index_dir=local, data_dir=tmp_path / "no-data", margin=44)
    svc = load_service(cfg, warm=False, progress=False)
    assert svc.engine is None and "no gallery" in svc.problem
    assert any("another embedding recipe" in n and "margin 32 px of the crop vs 44 px of the crop" in n for n in svc.notes), svc.notes
    assert "RVS_HUB_REVISION" not in capsys.readouterr().err  # no Hub repo, no warning


def test_service_pulls_weights_and_gallery_from_the_hub(service, app_root, monkeypatch, tmp_path, capsys):
    """The Spaces set-up: RVS_HUB_REPO at a pinned commit, served by a local fake Hub."""
    from hubserver import FakeHub, hub_client_env

    from rvs.app.startup import load_service
    from rvs.hub.publish import export_artifacts

    cfg = Config(cache_dir=make_cache(app_root), index_dir=tmp_path / "unused")
    folder = export_artifacts(tmp_path / "art", None, service.artifacts.index_dir, cfg, {"repo_id": "rvs-demo/lfw-gallery"})
    with FakeHub() as hub:
        hub.create_repo("rvs-demo/lfw-gallery")
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        sha = hub.commit("rvs-demo/lfw-gallery", files, "demo gallery")
        hub_client_env(monkeypatch, tmp_path, hub.endpoint)
        svc = load_service(
            Config(cache_dir=cfg.cache_dir, index_dir=tmp_path / "unused", hub_repo="rvs-demo/lfw-gallery", hub_revision=sha),
            warm=False,
            progress=False,
        )
    assert svc.engine is not None, svc.problem
    assert "RVS_HUB_REVISION" not in capsys.readouterr().err  # pinned to a commit: no warning
    assert f"rvs-demo/lfw-gallery@{sha} (commit {sha[:7]})" in svc.description
    assert svc.config.weights.endswith("model.safetensors") and svc.notes == []
    ans = svc.search_image(lfw_image("Colin_Powell", 1), k=5)
    assert ans.data["results"][0]["identification"]["identity"] == "Colin_Powell"
    assert ans.matches[0][1].startswith("Colin Powell · ")


def test_service_without_any_gallery_reports_it(tmp_path, app_root):
    from rvs.app.startup import load_service
    from rvs.errors import IndexError_

    cfg = Config(cache_dir=make_cache(app_root), index_dir=tmp_path / "no-index", data_dir=tmp_path / "no-data")
    svc = load_service(cfg, warm=False, progress=False)
    assert svc.engine is None
    assert "no gallery" in svc.problem and "--gallery" in svc.problem
    with pytest.raises(IndexError_, match="no gallery"):
        svc.search_image(lfw_image("Colin_Powell", 1))


# ---------------------------------------------------------------------------------------------
# Through the running app


def test_image_search_names_the_person(client):
    annotated, gallery, summary, data, face = search(client, lfw_image("Colin_Powell", 1), k=10)
    # Colin_Powell_0001 is not in the gallery (it holds 0003-0005): a true probe.
    assert data["results"][0]["identification"]["identity"] == "Colin_Powell"
    assert "Colin Powell" in summary and "probability" in summary and "No match in this gallery" not in summary
    assert len(gallery) == 10
    assert gallery[0]["caption"].startswith("Colin Powell · match ")
    # The strength people read: the 1:1 same-person probability of that distance (in the JSON too).
    m0 = data["results"][0]["matches"][0]
    assert m0["same_person_probability"] >= 0.95 and gallery[0]["caption"].endswith(("%", ">99%"))
    assert float(gallery[0]["caption"].split("match ")[1].strip("<>%")) >= 95 and m0["distance"] < 1.0
    assert data["results"][0]["matches"][0]["gallery_path"].startswith("Colin_Powell/")
    # The annotated query: the 250x250 probe enlarged to 512 px with its face boxed (not blank).
    shown = served_image(annotated)
    assert shown.size == (512, 512) and len(set(shown.convert("RGB").getdata())) > 1000
    assert face["value"] == "1 (largest)"


def test_unknown_person_gets_no_confident_match(client):
    # Someone with a single LFW photo, so certainly not among the 10 gallery people.
    stranger = next(d for d in sorted(LFW.iterdir()) if d.is_dir() and d.name not in APP_PEOPLE and len(list(d.iterdir())) == 1)
    _, gallery, summary, data, _ = search(client, next(stranger.iterdir()), k=5)
    assert data["results"][0]["identification"]["identity"] is None
    assert "No match in this gallery" in summary and "look-alikes, not matches" in summary
    assert all(g["caption"].startswith("look-alike: ") for g in gallery)
    assert len(gallery) == 5


@pytest.mark.parametrize("who", ["paul_rudd", "kate_siegel", "shea_whigham"])
def test_people_not_in_lfw_are_not_named_through_the_api(client, who):
    from conftest import PHOTOS

    _, gallery, summary, data, _ = search(client, PHOTOS / who / "1.jpg", k=5)
    assert data["results"][0]["identification"]["identity"] is None
    assert summary.startswith(("### No match in this gallery", "### Possibly ")) and "look-alikes, not matches" in summary
    assert gallery and all(g["caption"].startswith("look-alike: ") for g in gallery)


def test_bad_uploads_give_clear_errors_and_the_app_keeps_serving(client, tmp_path):
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    with pytest.raises(AppError, match=r"notes\.txt: not an image"):
        search(client, text)

    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(lfw_image("Tony_Blair", 1).read_bytes()[:3000])
    with pytest.raises(AppError, match=r"cut\.jpg: corrupt or truncated image"):
        search(client, truncated)

    bomb = png_header_only(tmp_path / "huge.png", 30000, 30000)
    with pytest.raises(AppError, match=r"huge\.png: image too large \(30000x30000"):
        search(client, bomb)

    # The server still answers a good query.
    _, _, _, data, _ = search(client, lfw_image("Colin_Powell", 2), k=5)
    assert data["results"][0]["identification"]["identity"] == "Colin_Powell"


def test_no_face_gives_a_clear_message(client, tmp_path):
    from PIL import Image

    # A photo crop without a face: the sky-and-wall corner of an LFW image, enlarged.
    blank = tmp_path / "wall.png"
    Image.open(lfw_image("George_W_Bush", 1)).crop((0, 0, 50, 50)).resize((300, 300)).save(blank)
    _, gallery, summary, data, _ = search(client, blank)
    assert summary.startswith("**No face found in the image") and summary.lower().count("no face found") == 1
    assert "no face found in the image" in data["error"]
    assert gallery == []


def test_face_picker_lists_every_face(client, service):
    from gradio_client import handle_file

    multi = Path(service.config.data_dir) / "photos" / "multiface.jpg"
    if not multi.is_file():
        pytest.skip("multiface.jpg not in the shared data")
    _, face = client.predict(handle_file(str(multi)), api_name="/detect_faces")
    choices = [c[0] if isinstance(c, (list, tuple)) else c for c in face["choices"]]
    assert choices[0] == "1 (largest)" and choices[-1] == "all" and len(choices) >= 4
    # Asking for a face that does not exist is a clear error, not a crash.
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="face 99 does not exist"):
        search(client, multi, face="99")


@pytest.mark.skipif(not VIDEO.is_file(), reason="sample video not in the shared data")
def test_video_search_finds_the_frame(client, service, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    examples = {mode: q for _, q, mode in service.video_examples()}
    frames, plot, table, summary, data = client.predict(
        handle_file(str(VIDEO)), handle_file(str(examples["frame"])), "frame", api_name="/search_video"
    )
    # The still was taken at 2.00 s: the best moment is that frame, read as the same frame.
    assert data["moments"] and abs(data["moments"][0]["time"] - 2.0) <= 0.08, summary
    assert data["moments"][0]["reading"] == "same frame"
    assert frames[0]["caption"].startswith("00:02.0") and "same frame" in frames[0]["caption"]  # the table's format
    assert table["headers"] == ["time", "reading", "score"]  # three columns: a phone shows them without scrolling
    assert table["data"][0][0].startswith("00:02.0") and table["data"][0][1] == "same frame"
    assert abs(data["seek_times"][0] - 2.0) <= 0.08  # where a click on that row moves the player
    assert "Best moment 00:02.0" in summary
    # The plot is a Vega-Lite chart the browser draws: every sampled frame's score, the moment marked where it is.
    import json

    assert plot["type"] == "altair"
    layers = {layer["mark"]["type"]: layer["data"]["values"] for layer in json.loads(plot["plot"])["layer"]}
    assert len(layers["line"]) >= 100 and abs(layers["point"][0]["t"] - 2.0) <= 0.08 and layers["point"][0]["time"].startswith("00:02.0")
    # Derived features of an uploaded video are not kept.
    assert not any((Path(service.config.cache_dir) / "video").glob("*/frames-*"))

    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(AppError, match=r"clip\.mp4: .*(cannot be opened|cannot be decoded|no frame)"):
        client.predict(handle_file(str(fake)), handle_file(str(examples["frame"])), "frame", api_name="/search_video")


# ---------------------------------------------------------------------------------------------
# Pieces


def test_placeholder_when_gallery_photos_are_not_here(service):
    """A gallery pulled from the Hub holds embeddings, not photos: tiles show the name instead."""
    from rvs.app.service import Service

    hub_like = Service(service.config, service.engine, service.artifacts)
    hub_like.source_folder = None
    tile = hub_like.thumbnail(0)
    assert tile.size == (192, 192)
    assert tile.getpixel((2, 2)) == (44, 48, 56)  # the placeholder's background, not a photo
    # Index paths cannot escape the source folder.
    assert service.gallery_image_path("../../etc/passwd") is None
    assert service.gallery_image_path("/etc/passwd") is None


def test_face_picker_values_and_drawing():
    import math

    import numpy as np
    from PIL import Image

    from rvs.app.answers import face_choices, parse_face
    from rvs.app.chart import similarity_chart
    from rvs.app.draw import draw_faces, face_at, format_time
    from rvs.errors import BadInputError

    assert face_choices(1) == ["1 (largest)"]
    assert face_choices(3) == ["1 (largest)", "2", "3", "all"]
    assert [parse_face(v) for v in ("1 (largest)", "2", "all", "largest", None, 4)] == [1, 2, "all", 1, 1, 4]
    with pytest.raises(BadInputError):
        parse_face("the tall one")
    assert format_time(2.04) == "00:02.04" and format_time(3725.5) == "1:02:05.50" and format_time(math.nan) == "--:--"

    img = Image.new("RGB", (250, 250), (90, 90, 90))
    out = draw_faces(img, [[60, 50, 180, 200]], [np.array([[90, 100], [150, 100], [120, 130], [95, 160], [145, 160]])])
    assert out.size == (512, 512)  # small photos are enlarged so labels stay legible
    assert out.getpixel((round(60 * 512 / 250), 300)) != (90, 90, 90)  # the box's left edge
    # A tap on the drawn picture: the face under it (the smaller of two nested boxes), a near miss
    # counts, a tap far from every face does not.
    boxes = [[0, 0, 100, 100], [40, 40, 60, 60], [300, 0, 350, 50]]
    assert face_at(boxes, 50, 50) == 1 and face_at(boxes, 10, 10) == 0 and face_at(boxes, 360, 60) == 2 and face_at(boxes, 200, 300) is None
    # The similarity chart: scoreless samples left out, a one-sample segment still visible, times on the player's clock.
    spec = similarity_chart([(0.0, 0.2), (0.5, math.nan), (1.0, 0.99), (1.5, 0.3)], [(1.0, 1.0)], [(1.0, 0.99, "same frame")], threshold=0.98, duration=60.0)
    layers = {layer["mark"]["type"]: layer["data"]["values"] for layer in spec["layer"]}
    assert [v["t"] for v in layers["line"]] == [0.0, 1.0, 1.5] and layers["line"][1]["time"] == "00:01.00"
    band = layers["rect"][0]
    assert band["end"] - band["start"] >= 60.0 / 150 - 1e-9 and band["start"] < 1.0 < band["end"]
    assert layers["rule"][0]["y"] == 0.98 and layers["point"][0]["what"] == "same frame"


def test_app_answers_while_the_gallery_is_prepared(service):
    """app.py listens at once: until the gallery is ready, image search says so in one line, the
    header says what is being prepared, and the loaded Service is then swapped in."""
    from rvs.app.service import Service
    from rvs.errors import IndexError_

    early = Service.preparing(service.config)
    assert early.loading and "Preparing the gallery" in early.status_markdown()
    with pytest.raises(IndexError_, match="still being prepared"):
        early.search_image(lfw_image("Colin_Powell", 2))
    early.adopt(service)
    assert not early.loading and "Preparing" not in early.status_markdown()
    # The Service runs its own start-up: a load that fails leaves one line, not "preparing" forever.
    failing = Service.preparing(service.config)

    def boom():
        raise RuntimeError("disk on fire")

    failing.prepare_in_background(boom).join(timeout=10)
    assert not failing.loading and failing.problem == "the gallery could not be prepared (see the server log)"
    ans = early.search_image(lfw_image("Colin_Powell", 2), k=3)
    assert ans.data["results"][0]["identification"]["identity"] == "Colin_Powell"



def test_the_page_never_shows_a_server_path():
    """A gallery that cannot load is explained on the page without this server's folders (the
    log keeps them): the header, About and error lines name the folder, not its path."""
    from rvs.app.answers import hide_paths
    from rvs.app.service import Service

    problem = "no gallery: no index at /root/.cache/rvs/index/lfw and no photos at /srv/data/lfw/images_deepfunneled"
    svc = Service(Config(), None, None, notes=["index /tmp/x/index unusable (bad manifest)"], problem=problem)
    shown = svc.status_markdown() + svc.about_markdown()
    assert "/root" not in shown and "/srv" not in shown and "/tmp" not in shown and "images_deepfunneled" in shown
    assert hide_paths("holiday.jpg: not an image (1/2 read)") == "holiday.jpg: not an image (1/2 read)"
    assert hide_paths("http://127.0.0.1:7860/?result=abc") == "http://127.0.0.1:7860/?result=abc"
