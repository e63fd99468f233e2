"""The command line: real runs in a subprocess; bad input is one line and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import PHOTOS, lfw_image, requires_data
from PIL import Image

from rvs.config import PROJECT_ROOT

pytestmark = requires_data


def rvs(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rvs", *args], capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)


def assert_one_line_error(p: subprocess.CompletedProcess, needle: str) -> None:
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], p.stderr


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.jpg").write_text("not a picture")
    data = lfw_image("Colin_Powell", 1).read_bytes()
    (d / "cut.jpg").write_bytes(data[: len(data) // 3])
    Image.new("1", (20000, 20000)).save(d / "huge.png")
    Image.fromarray(np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (200, 1))).save(d / "blank.png")
    return d


@pytest.mark.parametrize(
    "name,needle",
    [("missing.jpg", "not found"), ("notes.jpg", "not an image"), ("cut.jpg", "corrupt or truncated"), ("huge.png", "too large")],
)
def test_bad_image_is_one_line(bad_inputs, name, needle, built_index, config):
    assert_one_line_error(rvs("search", str(bad_inputs / name), "--index", str(config.index_dir)), needle)


def test_no_face_is_one_line(bad_inputs, built_index, config):
    assert_one_line_error(rvs("search", str(bad_inputs / "blank.png"), "--index", str(config.index_dir)), "no face")


def test_missing_index_is_one_line(tmp_path):
    assert_one_line_error(rvs("search", str(PHOTOS / "paul_rudd" / "1.jpg"), "--index", str(tmp_path / "none")), "python -m rvs index")


def test_search_json(built_index, config):
    p = rvs("search", str(lfw_image("Tony_Blair", 2)), "--index", str(config.index_dir), "-k", "5", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    face = out["results"][0]
    assert face["matches"][0]["identity"] == "Tony_Blair"
    assert face["identification"]["identity"] == "Tony_Blair"
    assert face["identification"]["probability"] > face["identification"]["threshold"]
    assert len(face["matches"]) == 5
    assert [m["distance"] for m in face["matches"]] == sorted(m["distance"] for m in face["matches"])


def test_index_command(tmp_path):
    src = tmp_path / "people"
    for name in ("Hugo_Chavez", "Serena_Williams"):
        (src / name).mkdir(parents=True)
        for n in (1, 2):
            (src / name / f"{name}_{n:04d}.jpg").symlink_to(lfw_image(name, n))
    (src / "Hugo_Chavez" / "broken.jpg").write_text("garbage")
    p = rvs("index", str(src), "--out", str(tmp_path / "ix"), "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["images"] == 5 and s["faces_indexed"] == 4 and s["failures"] == 1 and s["identities"] == 2
    q = rvs("search", str(lfw_image("Serena_Williams", 3)), "--index", str(tmp_path / "ix"), "-k", "2")
    assert q.returncode == 0 and "Serena Williams (" in q.stdout.splitlines()[2]
