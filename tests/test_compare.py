"""Same person? (rvs.faces.compare, rvs.faces.verification, `python -m rvs compare`, the app's
"Same person?" tab): calibrated 1:1 answers on real LFW faces."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from rvs.config import PROJECT_ROOT, Config, default_data_dir
from rvs.errors import BadInputError, NoFaceError
from rvs.faces.embedders import REGISTRY, config_for_model_id, create_embedder
from rvs.faces.verification import calibration_file, load_calibration

LFW = default_data_dir() / "lfw" / "images_deepfunneled"
POWELL_1, POWELL_2 = (LFW / "Colin_Powell" / f"Colin_Powell_000{i}.jpg" for i in (1, 2))
BUSH = LFW / "George_W_Bush" / "George_W_Bush_0001.jpg"

pytestmark = pytest.mark.skipif(not POWELL_1.exists(), reason="LFW missing")


@pytest.fixture(scope="module")
def models():
    from rvs.faces.detect import FaceDetector

    cfg = Config()
    return FaceDetector(cfg), create_embedder(cfg), cfg


def test_every_model_ships_a_held_out_calibration():
    """Each registered model has its 1:1 calibration; on held-out LFW folds "same person" let
    through at most 1% of different-person pairs and the probability is calibrated."""
    import dataclasses

    for name in REGISTRY:
        cfg = dataclasses.replace(Config(), model=name)
        model_id = create_embedder(cfg).model_id if name != "facenet" else create_embedder(config_for_model_id(cfg, "facenet")).model_id
        cal = load_calibration(model_id)
        assert cal is not None, f"no {calibration_file(model_id)}"
        assert cal.pairs == 6000 and cal.far_at_same <= 0.01 and cal.frr_at_different <= 0.01 and cal.ece <= 0.03, cal
        assert cal.same_threshold < cal.different_threshold
        assert cal.probability(cal.same_threshold) >= 0.949 and cal.probability(cal.different_threshold) <= 0.051


def test_same_person_different_people_and_bad_input(models, tmp_path):
    from rvs.faces.compare import compare_faces

    det, emb, cfg = models
    same = compare_faces(POWELL_1, POWELL_2, det, emb, cfg)
    assert same.verdict.answer == "same person" and same.verdict.probability >= 0.95 and same.numbers == (1, 1)
    diff = compare_faces(POWELL_1, BUSH, det, emb, cfg)
    assert diff.verdict.answer == "different people" and diff.verdict.probability <= 0.05
    assert diff.to_dict()["calibration"]["lfw_false_accept_rate"] <= 0.01
    flat = tmp_path / "sky.png"
    Image.new("RGB", (200, 200), (120, 160, 220)).save(flat)
    with pytest.raises(NoFaceError, match="photo 2: no face found"):
        compare_faces(POWELL_1, flat, det, emb, cfg)
    with pytest.raises(BadInputError, match=r"photo 1: face 9 does not exist \(the photo has 1 face"):
        compare_faces(POWELL_1, POWELL_2, det, emb, cfg, face_a=9)


def test_cli_compare(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    p = subprocess.run([sys.executable, "-m", "rvs", "compare", str(POWELL_1), str(POWELL_2)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and p.stdout.startswith("Same person: "), p.stdout + p.stderr
    p = subprocess.run([sys.executable, "-m", "rvs", "compare", str(POWELL_1), str(BUSH), "--json"], capture_output=True, text=True, env=env, timeout=300)
    d = json.loads(p.stdout)
    assert d["answer"] == "different people" and d["distance"] > d["calibration"]["different_threshold"]
    p = subprocess.run([sys.executable, "-m", "rvs", "compare", str(POWELL_1), str(tmp_path / "nope.jpg")], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "nope.jpg" in p.stderr


def test_app_same_person_tab():
    """The "Same person?" tab and its /compare API: the calibrated answer first, the two faces
    side by side; a missing photo leaves one line in the answer area (not an error pill)."""
    from gradio_client import Client, handle_file

    import app
    from rvs.app.service import Service
    from tests.test_app import free_port

    svc = Service(Config(), None, None, problem="no gallery in this test")
    demo = app.build_demo(svc)
    port = free_port()
    app.launch(demo, svc, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        pair, md, data = client.predict(handle_file(str(POWELL_1)), handle_file(str(POWELL_2)), api_name="/compare")
        assert md.startswith("## Same person: ") and data["answer"] == "same person"
        assert Image.open(pair["path"]).size == (656, 320)
        pair, md, data = client.predict(handle_file(str(POWELL_1)), None, api_name="/compare")
        assert pair is None and md == "**upload two photos to compare**" and "error" in data
        # An API user picks a face of a group photo by its number (the page does it with a tap).
        group = default_data_dir() / "photos" / "multiface.jpg"
        pair, md, data = client.predict(handle_file(str(group)), handle_file(str(POWELL_1)), "2", "main", api_name="/compare")
        assert data["faces"][0]["face"] == 2 and data["faces"][0]["faces_found"] >= 3 and "face 2 of" in md
        assert data["answer"] == "different people"
    finally:
        demo.close()
