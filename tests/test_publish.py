"""The training package's publish path on real faces, headless, as a user runs it:
train (a few steps) -> exported encoder -> `python -m rvs index` with it -> `python -m rvs push`
to a Hub (the fake one on 127.0.0.1) -> pull into an empty cache -> search finds the right people.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from conftest import GALLERY_PEOPLE, lfw_image, requires_data
from hubserver import FakeHub, hub_client_env

from rvs.config import Config

pytestmark = requires_data

TOKEN = "hf_publish_token"
REPO = "tester/finetuned"
PEOPLE = GALLERY_PEOPLE[:8]
TRAIN_PEOPLE = {"Aaron_Sorkin": 2, "Abdel_Nasser_Assidi": 2, "Abdoulaye_Wade": 4}  # View 1 train people


def cli(*args: str) -> str:
    from rvs.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(list(args))
    assert rc == 0, out.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def exported(config, tmp_path_factory):
    """An improved-model export from a 2-step run (top blocks, View 1 train people)."""
    from rvs.train import data as data_mod
    from rvs.train import loop
    from rvs.train.config import TrainConfig

    tmp = tmp_path_factory.mktemp("ft")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "read_split_people", lambda which, cfg, n=0, seed=0: TRAIN_PEOPLE if which == "train" else data_mod.read_split_people(which, cfg))
        cfg = TrainConfig.from_sources("improved", None, [f"out_dir={tmp}/run", "batch_size=2", "max_steps=2", "train_from=repeat_3", "eval_at_end=false"])
        res = loop.train(cfg, config, progress=False)
    return res.export


def test_train_index_push_pull_search(config, exported, tmp_path, monkeypatch):
    from rvs.gallery.search import SearchEngine
    from rvs.hub.client import resolve_artifacts
    from rvs.models.weights import load_weights

    gallery = tmp_path / "gallery"
    for name in PEOPLE:
        (gallery / name).mkdir(parents=True)
        for num in (3, 4, 5):
            (gallery / name / lfw_image(name, num).name).symlink_to(lfw_image(name, num))
    weights = exported["path"]
    centred_id = load_weights(weights, config).embedding_id()
    assert centred_id.startswith(exported["model_id"] + "+center-")
    # Its evaluation, as the model card will show it (20 View 1 test pairs: a quick check).
    pairs = (config.data_dir / "lfw" / "pairsDevTest.txt").read_text().splitlines()
    (tmp_path / "pairs.txt").write_text("\n".join(["10", *pairs[1:11], *pairs[501:511]]) + "\n")
    cli("eval", "--weights", weights, "--pairs", str(tmp_path / "pairs.txt"), "--no-retrieval", "--json", str(tmp_path / "eval.json"), "--quiet")
    acc = json.loads((tmp_path / "eval.json").read_text())["verification"]["accuracy_mean"]

    with FakeHub(token=TOKEN) as hub:
        hub_client_env(monkeypatch, tmp_path, hub.endpoint)
        monkeypatch.setenv("RVS_CACHE", str(tmp_path / "push-cache"))
        summary = json.loads(cli("--model", "facenet", "index", str(gallery), "--out", str(tmp_path / "index"), "--weights", weights, "--json"))
        assert summary["faces_indexed"] == 3 * len(PEOPLE)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        out = cli("push", "--repo", REPO, "--index", str(tmp_path / "index"), "--weights", weights, "--eval-json", str(tmp_path / "eval.json"))
        assert f"pushed {REPO}@main" in out
        assert hub.unhandled == []

        # A fresh machine: empty caches, no token, only the repo id.
        monkeypatch.delenv("HF_TOKEN")
        hub_client_env(monkeypatch, tmp_path / "fresh", hub.endpoint)
        cfg = Config(hub_repo=REPO, cache_dir=tmp_path / "fresh" / "rvs-cache", index_dir=tmp_path / "unused")
        arts = resolve_artifacts(cfg)
        assert arts.model_id == centred_id and arts.gallery_size == 3 * len(PEOPLE)
        card = (arts.index_dir.parent / "README.md").read_text()
        assert exported["model_id"] in card
        assert f"| LFW pairs.txt 10-fold verification accuracy | {acc:.4f} ± " in card
        assert f"| evaluated model | {centred_id}@" in card

    engine = SearchEngine.from_index_dir(arts.index_dir, arts.apply(cfg))
    right = 0
    for name in PEOPLE:  # images 1 and 2 are not in the gallery
        res = engine.search(lfw_image(name, 1), k=5, faces="largest")
        right += res.faces[0].matches[0].identity == name
        # 24 photos of a fine-tuned model with no shipped reference set: too few to calibrate
        # open-set identification, so the honest answer names no one.
        assert res.faces[0].identification.identity is None
    assert right >= len(PEOPLE) - 1, f"{right}/{len(PEOPLE)} probes found at rank 1"
    assert "no open-set calibration" in engine.calibration_problem
    # The pulled model embeds exactly like the exported file.
    x = np.random.default_rng(0).integers(0, 255, (1, 160, 160, 3), dtype=np.uint8)
    from rvs.faces.embed import Embedder

    a = Embedder(arts.apply(cfg)).embed(x)
    b = Embedder(Config(weights=weights, cache_dir=tmp_path / "c")).embed(x)
    assert np.allclose(a, b, atol=1e-5)
