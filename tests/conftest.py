"""Shared fixtures: real data from ../shared/data, one detector/embedder per test session.

Tests that need the real data (or the browser) skip without it on a developer's machine. Under
RVS_REQUIRE_DATA=1 (set by .ci/run) every skip is a failure instead: CI must not go green
because ../shared/data or Chromium is missing and most of the suite silently did not run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rvs.config import Config, default_data_dir

DATA = default_data_dir()
LFW = DATA / "lfw" / "images_deepfunneled"
PHOTOS = DATA / "photos"
VIDEO = DATA / "videos" / "arcade_faces.mp4"

# LFW people with many images: probes are images 1-2, the gallery holds images 3-5.
GALLERY_PEOPLE = [
    "George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder",
    "Ariel_Sharon", "Hugo_Chavez", "Junichiro_Koizumi", "Jean_Chretien", "John_Ashcroft",
    "Serena_Williams", "Jacques_Chirac", "Vladimir_Putin", "Luiz_Inacio_Lula_da_Silva", "Gloria_Macapagal_Arroyo",
    "Jennifer_Capriati", "Lleyton_Hewitt", "Laura_Bush", "Arnold_Schwarzenegger", "Alejandro_Toledo",
]


def lfw_image(name: str, num: int) -> Path:
    return LFW / name / f"{name}_{num:04d}.jpg"


requires_data = pytest.mark.skipif(not LFW.is_dir(), reason=f"real data not found at {DATA}")

REQUIRE_ALL = os.environ.get("RVS_REQUIRE_DATA", "").strip().lower() not in ("", "0", "false", "no")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under RVS_REQUIRE_DATA=1 a skipped test (missing data, video, browser, playwright) fails.
    Expected failures (xfail) stay what they are."""
    outcome = yield
    rep = outcome.get_result()
    if REQUIRE_ALL and rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) and len(rep.longrepr) == 3 else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"{reason.removeprefix('Skipped: ')}: a skip is a failure under RVS_REQUIRE_DATA=1 (CI runs every test)"


@pytest.fixture(scope="session")
def config(tmp_path_factory) -> Config:
    # Real weights cache (conversion runs once per machine); everything else in a tmp dir.
    return Config(index_dir=tmp_path_factory.mktemp("index") / "gallery")


@pytest.fixture(scope="session")
def detector(config):
    from rvs.faces.detect import FaceDetector

    return FaceDetector(config)


@pytest.fixture(scope="session")
def embedder(config):
    """The default model (Config.model), as the app and the CLI use it."""
    from rvs.faces.embedders import create_embedder

    return create_embedder(config)


@pytest.fixture(scope="session")
def gallery_dir(tmp_path_factory) -> Path:
    """A folder-per-person gallery of real LFW photos (links, not copies of the data)."""
    if not LFW.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    root = tmp_path_factory.mktemp("gallery_src")
    for name in GALLERY_PEOPLE:
        (root / name).mkdir()
        for num in (3, 4, 5):
            src = lfw_image(name, num)
            (root / name / src.name).symlink_to(src)
    # Distractors: one image each of many other people.
    for d in sorted(p for p in LFW.iterdir() if p.is_dir())[:120]:
        if d.name in GALLERY_PEOPLE:
            continue
        (root / d.name).mkdir()
        src = sorted(d.iterdir())[0]
        (root / d.name / src.name).symlink_to(src)
    return root


@pytest.fixture(scope="session")
def built_index(gallery_dir, config, detector, embedder):
    from rvs.gallery.build import build_index

    index, summary = build_index(gallery_dir, config.index_dir, config, detector=detector, embedder=embedder, progress=False)
    return index, summary


@pytest.fixture(scope="session")
def engine(built_index, config, detector, embedder):
    from rvs.gallery.search import SearchEngine

    return SearchEngine(built_index[0], config, detector=detector, embedder=embedder)


@pytest.fixture
def index_copy(built_index, config, tmp_path) -> Path:
    dst = tmp_path / "ix"
    shutil.copytree(config.index_dir, dst)
    return dst


class ConnectionCounter:
    """A TCP endpoint on 127.0.0.1 that accepts connections, counts them and closes them at once:
    an unreachable server (or proxy) whose connection attempts can be counted. `url` to point
    clients at. Tests assert on attempts (no retry storm), not on wall-clock time."""

    def __init__(self):
        import socket
        import threading

        self.count = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.count += 1
            conn.close()

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
