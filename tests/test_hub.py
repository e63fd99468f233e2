"""rvs.hub.client against a fake Hugging Face Hub on 127.0.0.1 (tests/hubserver.py): push, pull, pin,
tamper, missing repo, unreachable Hub, offline cache, and the model card.

The real huggingface_hub client does all HTTP; only the server is fake. Weights are a real
InceptionResnetV1 state dict in float16 (the shape checks of rvs.models.weights pass; half the bytes),
indexes are real `FaceIndex` folders of random unit vectors.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ConnectionCounter
from hubserver import FakeHub, hub_client_env

from rvs.config import Config
from rvs.errors import IndexError_, RvsError, WeightsError
from rvs.fileio import sha256_file
from rvs.gallery.store import FaceIndex
from rvs.hub.artifacts import RVS_JSON, verify_artifact_folder
from rvs.hub.client import resolve_artifacts
from rvs.hub.modelcard import parse_front_matter, render_model_card
from rvs.hub.publish import export_artifacts, push_artifacts

MODEL_ID = "test-facenet-fp16"
TOKEN = "hf_test_write_token"
REPO = "tester/faces"
# Connections an unreachable Hub may see before rvs gives up (measured: 1); a retry loop or
# one request per file would exceed it.
MAX_ATTEMPTS = 2


# ---------------------------------------------------------------------------------------------
# fixtures


def make_weights(path: Path) -> Path:
    """A facenet-pytorch InceptionResnetV1 state dict (fp16) + sidecar naming its model id."""
    import torch
    from facenet_pytorch import InceptionResnetV1
    from safetensors.torch import save_file

    with torch.device("meta"):  # shapes only; no 27M-parameter init
        ref = InceptionResnetV1(pretrained=None, classify=False).state_dict()
    # Constant values: only the bytes' transport is under test, and randn over 27M values is
    # seconds of CPU on a shared machine.
    state = {k: torch.full(v.shape, 0.01 if v.is_floating_point() else 0, dtype=torch.float16 if v.is_floating_point() else v.dtype) for k, v in ref.items()}
    save_file(state, str(path))
    (path.with_name(path.name + ".json")).write_text(json.dumps({"model_id": MODEL_ID, "sha256": sha256_file(path)}))
    return path


def make_index(out: Path, n: int, seed: int, model_id: str = MODEL_ID) -> Path:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 512)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    meta = {
        "identity": [f"person_{i % 7}" for i in range(n)],
        "path": [f"person_{i % 7}/img_{i:04d}.jpg" for i in range(n)],
        "box": [[0.0, 0.0, 100.0, 100.0]] * n,
        "prob": [0.99] * n,
    }
    FaceIndex(emb, meta, model_id, n_trees=4, search_k=1000).save(out)
    return out


def free_port() -> int:
    """A port nothing listens on (bound, then closed): connections to it are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hub():
    with FakeHub(token=TOKEN) as h:
        yield h


@pytest.fixture(scope="module")
def pushed(hub, tmp_path_factory):
    """REPO with two commits: gallery A (30 faces, pushed by the CLI) then gallery B (45 faces,
    pushed with push_artifacts). Returns what the tests need to know about them."""
    tmp = tmp_path_factory.mktemp("pushed")
    weights = make_weights(tmp / "w.safetensors")
    idx_a, idx_b = make_index(tmp / "index-a", 30, seed=1), make_index(tmp / "index-b", 45, seed=2)
    (tmp / "eval.json").write_text(json.dumps({"LFW 10-fold accuracy": 0.9905, "threshold": 1.1, "folds": [1, 2]}))
    with pytest.MonkeyPatch.context() as mp:
        hub_client_env(mp, tmp, hub.endpoint)
        mp.setenv("RVS_CACHE", str(tmp / "rvs-cache"))
        mp.setenv("HF_TOKEN", TOKEN)
        from rvs.cli import main

        t0 = time.perf_counter()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(["push", "--repo", REPO, "--index", str(idx_a), "--weights", str(weights), "--eval-json", str(tmp / "eval.json")])
        assert rc == 0, out.getvalue()
        t_cli = time.perf_counter() - t0
        sha_a = hub.repos[REPO].refs["main"]

        cfg = Config(cache_dir=tmp / "rvs-cache")
        folder_b = export_artifacts(tmp / "art-b", str(weights), idx_b, cfg, {"repo_id": REPO, "gallery_description": "Gallery B."})
        info = push_artifacts(folder_b, REPO, commit_message="gallery B")
        sha_b = info.oid
    return {"weights": weights, "sha_a": sha_a, "sha_b": sha_b, "cli_out": out.getvalue(), "folder_b": folder_b, "index_a": idx_a, "t_cli": t_cli}


@pytest.fixture
def env(hub, monkeypatch, tmp_path):
    """huggingface_hub pointed at the fake Hub, with an empty cache and no token."""
    hub_client_env(monkeypatch, tmp_path, hub.endpoint)
    return tmp_path


def hub_config(tmp_path: Path, revision: str = "main", repo: str = REPO) -> Config:
    return Config(hub_repo=repo, hub_revision=revision, cache_dir=tmp_path / "rvs-cache", index_dir=tmp_path / "unused")


# ---------------------------------------------------------------------------------------------
# tests


def test_push_then_pull_into_empty_cache(hub, pushed, env):
    assert pushed["sha_a"] != pushed["sha_b"]
    assert f"pushed {REPO}@main (commit {pushed['sha_a'][:7]})" in pushed["cli_out"]
    files = hub.files(REPO)
    for name in (RVS_JSON, "README.md", "model.json", "model.safetensors", "model.safetensors.json", "index/manifest.json"):
        assert name in files
    # Nothing the Space does not use, nothing of the build machine.
    assert "index/index.ann" not in files and b"source_folder" not in files["index/manifest.json"]
    assert files["model.safetensors"] == (pushed["folder_b"] / "model.safetensors").read_bytes()

    t0 = time.perf_counter()
    arts = resolve_artifacts(hub_config(env))
    t_pull = time.perf_counter() - t0
    assert arts.commit == pushed["sha_b"] and not arts.offline
    assert arts.model_id == MODEL_ID and arts.gallery_size == 45 and arts.n_identities == 7
    assert str(env / "rvs-cache" / "hub") in str(arts.index_dir)
    assert f"{REPO}@main (commit {pushed['sha_b'][:7]})" in arts.describe()

    idx = FaceIndex.load(arts.index_dir, expect_model_id=arts.model_id)
    ids, dists = idx.search(idx.embeddings[:3], k=1)
    assert ids[:, 0].tolist() == [0, 1, 2] and np.allclose(dists[:, 0], 0, atol=1e-3)

    # The embedder loads the pulled weights through rvs.models.weights and gets the index's model id.
    from rvs.models.weights import load_weights

    cfg = arts.apply(hub_config(env))
    assert load_weights(cfg.weights, cfg).model_id == MODEL_ID
    assert hub.unhandled == []
    print(f"cli push {pushed['t_cli']:.2f}s, pull {t_pull:.2f}s")


def test_pinned_revision_gets_first_gallery(pushed, env):
    arts = resolve_artifacts(hub_config(env, revision=pushed["sha_a"]))
    assert arts.commit == pushed["sha_a"] and arts.gallery_size == 30
    assert len(FaceIndex.load(arts.index_dir, expect_model_id=MODEL_ID)) == 30
    # ...while main, in the same cache, is the second one.
    assert resolve_artifacts(hub_config(env)).gallery_size == 45


def test_tampered_file_is_refused(hub, pushed, env):
    good = hub.files(REPO)["index/embeddings.npy"]
    bad = bytearray(good)
    bad[-8:] = bytes(255 - b for b in bad[-8:])  # same length: only the checksum can tell
    hub.tampered[(REPO, "index/embeddings.npy")] = bytes(bad)
    n = len(hub.requests)
    try:
        with pytest.raises(IndexError_, match=r"index/embeddings\.npy fails its sha256 check.*tampered"):
            resolve_artifacts(hub_config(env))
        # Refused after a second, forced download (a damaged cache would have been repaired by it).
        assert sum(m == "GET" and p.endswith("/index/embeddings.npy") for m, p in hub.requests[n:]) == 2
    finally:
        del hub.tampered[(REPO, "index/embeddings.npy")]
    # Once the server is honest again, the damaged cache heals itself (forced re-download).
    assert resolve_artifacts(hub_config(env)).gallery_size == 45


def test_tampered_weights_raise_weights_error(tmp_path, pushed):
    folder = tmp_path / "copy"
    import shutil

    shutil.copytree(pushed["folder_b"], folder)
    with open(folder / "model.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(WeightsError, match="model.safetensors fails its sha256 check"):
        verify_artifact_folder(folder)


def test_missing_repo_and_revision(pushed, env):
    with pytest.raises(RvsError, match=r"'tester/nope' not found"):
        resolve_artifacts(hub_config(env, repo="tester/nope"))
    with pytest.raises(RvsError, match=rf"{REPO} has no revision 'no-such-branch'"):
        resolve_artifacts(hub_config(env, revision="no-such-branch"))


def test_unreachable_hub_without_cache_fails_fast(monkeypatch, tmp_path):
    """A Hub that accepts and drops connections: a clear error after a bounded number of
    attempts (counted, not timed: wall-clock limits flake on a shared 2-core machine)."""
    with ConnectionCounter() as dead:
        hub_client_env(monkeypatch, tmp_path, dead.url)
        with pytest.raises(RvsError, match=rf"cannot reach the Hugging Face Hub at {dead.url} to fetch {REPO}@main .*no complete copy is cached"):
            resolve_artifacts(hub_config(tmp_path))
    assert 1 <= dead.count <= MAX_ATTEMPTS, dead.count


def test_offline_uses_previous_pull(hub, pushed, env, monkeypatch):
    from huggingface_hub import constants

    cfg = hub_config(env)
    first = resolve_artifacts(cfg)
    pinned = resolve_artifacts(hub_config(env, revision=pushed["sha_a"]))

    # HF_HUB_OFFLINE=1: no request at all, the cached snapshot of main is used.
    n = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    arts = resolve_artifacts(cfg)
    assert len(hub.requests) == n
    assert arts.offline and arts.commit == first.commit and arts.gallery_size == 45
    assert resolve_artifacts(hub_config(env, revision=pinned.commit)).gallery_size == 30
    with pytest.raises(RvsError, match="HF_HUB_OFFLINE is set and no complete copy"):
        resolve_artifacts(hub_config(env, revision="0" * 40))

    # Hub unreachable (not offline mode): the automatic fallback to the cache.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with ConnectionCounter() as dead:
        monkeypatch.setenv("HF_ENDPOINT", dead.url)
        arts = resolve_artifacts(cfg)
    assert 1 <= dead.count <= MAX_ATTEMPTS, dead.count
    assert arts.offline and arts.commit == first.commit and "offline" in arts.describe()
    assert FaceIndex.load(arts.index_dir, expect_model_id=MODEL_ID).n_identities == 7


def test_push_to_branch_and_private_repo(hub, pushed, env, monkeypatch):
    folder_a = export_artifacts(env / "art-a", str(pushed["weights"]), pushed["index_a"], Config(cache_dir=env / "c"), {"repo_id": REPO})
    main_before = hub.repos[REPO].refs["main"]
    info = push_artifacts(folder_a, REPO, revision="dev", token=TOKEN)
    assert hub.repos[REPO].refs["dev"] == info.oid and hub.repos[REPO].refs["main"] == main_before
    assert resolve_artifacts(hub_config(env, revision="dev")).gallery_size == 30

    # A private repo reads as "not found" without a token, and works with HF_TOKEN.
    hub.create_repo("tester/secret", private=True)
    hub.commit("tester/secret", {p.relative_to(folder_a).as_posix(): p.read_bytes() for p in folder_a.rglob("*") if p.is_file()})
    with pytest.raises(RvsError, match=r"'tester/secret' not found .*private: set HF_TOKEN"):
        resolve_artifacts(hub_config(env, repo="tester/secret"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert resolve_artifacts(hub_config(env, repo="tester/secret")).gallery_size == 30


def test_export_only_cli(hub, pushed, env, monkeypatch, capsys):
    from rvs.cli import main

    monkeypatch.setenv("RVS_CACHE", str(env / "rvs-cache"))
    n = len(hub.requests)
    out = env / "exported"
    rc = main(["push", "--export-only", str(out), "--index", str(pushed["index_a"]), "--weights", str(pushed["weights"]), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and len(hub.requests) == n  # nothing uploaded
    assert summary["faces"] == 30 and summary["model_id"] == MODEL_ID and summary["folder"] == str(out)
    assert verify_artifact_folder(out).gallery_size == 30
    files = sorted(json.loads((out / RVS_JSON).read_text())["files"])
    core = [
        "README.md", "index/embeddings.npy", "index/manifest.json", "index/meta.json",
        "model.json", "model.safetensors", "model.safetensors.json",
    ]  # fmt: skip
    # Besides the core: face thumbnails (empty here: random vectors have no photos) and the
    # example inputs found on this machine, all checksummed like the rest.
    assert set(core) <= set(files) and {"gallery/thumbs.bin", "gallery/thumbs.npy", "examples/examples.json"} <= set(files)
    assert all(f in core or f.startswith(("gallery/", "examples/", "video-library/")) for f in files), files
    # A small video library with its videos, built with the gallery's model, named inside the folder.
    from rvs.library import store

    arts = verify_artifact_folder(out)
    lib = store.load(arts.video_library)
    assert sorted(v.name for v in lib.videos) == ["arcade_faces.mp4", "celebrities.mp4", "group.mp4"]
    assert lib.model_id == MODEL_ID and all(Path(v.path).is_file() and Path(v.path).is_relative_to(out) for v in lib.videos)
    assert arts.apply(Config()).video_library == str(arts.video_library)
    assert arts.apply(Config(video_library="/mine")).video_library == "/mine"  # the user's own library wins


def test_failed_update_falls_back_to_previous_snapshot(hub, pushed, env):
    # A mirror of the pushed repo, seeded server-side (no upload), so `REPO` stays as it is.
    repo = "tester/mirror"
    hub.create_repo(repo)
    files = {p.relative_to(pushed["folder_b"]).as_posix(): p.read_bytes() for p in pushed["folder_b"].rglob("*") if p.is_file()}
    old = hub.commit(repo, files)
    cfg = hub_config(env, repo=repo)
    assert resolve_artifacts(cfg).commit == old

    new = hub.commit(repo, {"notes.txt": b"new commit"})
    hub.fail[(repo, "model.json")] = 403  # the update breaks half-way through
    try:
        arts = resolve_artifacts(cfg)
    finally:
        del hub.fail[(repo, "model.json")]
    assert arts.commit == old and arts.offline and arts.gallery_size == 45
    ref = env / "rvs-cache" / "hub" / "models--tester--mirror" / "refs" / "main"
    assert ref.read_text() == old  # so an offline run later finds the complete snapshot too
    arts = resolve_artifacts(cfg)
    assert arts.commit == new and not arts.offline


def test_push_without_token_is_refused(pushed, env):
    with pytest.raises(RvsError, match="HF_TOKEN"):
        push_artifacts(pushed["folder_b"], "tester/other")


def test_export_refuses_weights_of_another_model(pushed, tmp_path):
    idx = make_index(tmp_path / "idx", 5, seed=3, model_id="some-other-model")
    with pytest.raises(IndexError_, match="built with model 'some-other-model'"):
        export_artifacts(tmp_path / "out", str(pushed["weights"]), idx, Config(cache_dir=tmp_path / "c"))
    assert not (tmp_path / "out").exists()


def test_local_sources(pushed, tmp_path):
    # An exported artifact folder is self-contained...
    arts = resolve_artifacts(Config(index_dir=pushed["folder_b"], cache_dir=tmp_path))
    assert arts.origin == f"local: {pushed['folder_b']}" and arts.weights_path == pushed["folder_b"] / "model.safetensors"
    # ...a plain index folder takes its weights from config.weights.
    plain = resolve_artifacts(Config(index_dir=pushed["folder_b"] / "index", weights="casia-webface", cache_dir=tmp_path))
    assert plain.weights_spec == "casia-webface" and plain.weights_path is None and plain.gallery_size == 45
    with pytest.raises(IndexError_, match="no index at"):
        resolve_artifacts(Config(index_dir=tmp_path / "missing", cache_dir=tmp_path))


def test_model_card_front_matter(hub, pushed):
    card = hub.files(REPO, pushed["sha_a"])["README.md"].decode()
    meta = parse_front_matter(card)
    assert meta["license"] == "mit"
    assert meta["datasets"] == ["lfw"]
    assert {"face-recognition", "facenet", "reverse-image-search"} <= set(meta["tags"])
    assert meta["pipeline_tag"] and meta["library_name"]
    assert "| LFW 10-fold accuracy | 0.9905 |" in card and "folds" not in card
    for needle in ("CASIA-WebFace", "mostly white", "surveillance", "non-commercial", f"RVS_HUB_REPO={REPO}", "Gallery"):
        assert needle in card
    # The default model is described as what it is.
    casia = render_model_card({"repo_id": "me/x", "model_id": "facenet-casia-webface-20180408-102900", "evaluation": {"acc": 0.99}})
    assert "Sandberg's FaceNet model **20180408-102900**" in casia and "| acc | 0.9900 |" in casia
    # A fine-tuned model and no evaluation numbers.
    text = render_model_card({"repo_id": "me/x", "model_id": "ft-1", "fine_tuned_from": "casia-webface", "training": "ArcFace, 10 epochs"})
    assert parse_front_matter(text)["license"] == "mit"
    assert "fine-tuned by rvs from casia-webface" in text and "No evaluation numbers" in text
    with pytest.raises(ValueError, match="unknown model card fields"):
        render_model_card({"repo": "typo"})


def test_embedding_centre_travels_through_the_hub(hub, env, tmp_path):
    """Weights with an embedding centre: the exported file carries it, the pulled weights give back
    the same centre, and the model ids of weights, model.json, rvs.json and index all agree."""
    import torch
    from safetensors.torch import load_file, save_file

    from rvs.models.weights import CENTER_KEY, center_digest, load_weights

    src = make_weights(tmp_path / "w.safetensors")
    center = np.random.default_rng(3).normal(size=512).astype(np.float32) * 0.05
    state = load_file(str(src))
    save_file({**state, CENTER_KEY: torch.from_numpy(center)}, str(src))
    (src.with_name(src.name + ".json")).write_text(json.dumps({"model_id": MODEL_ID, "sha256": sha256_file(src)}))
    centred_id = f"{MODEL_ID}+center-{center_digest(center)}"
    idx = make_index(tmp_path / "index", 12, seed=5, model_id=centred_id)
    cfg = Config(cache_dir=tmp_path / "c")

    folder = export_artifacts(tmp_path / "art", str(src), idx, cfg, {"repo_id": "tester/centred"})
    model = json.loads((folder / "model.json").read_text())
    assert model["model_id"] == centred_id and model["weights_model_id"] == MODEL_ID and model["center"]
    assert verify_artifact_folder(folder).model_id == centred_id
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_TOKEN", TOKEN)
        push_artifacts(folder, "tester/centred")

    arts = resolve_artifacts(hub_config(env, repo="tester/centred"))
    assert arts.model_id == centred_id
    w = load_weights(arts.weights_spec, arts.apply(hub_config(env, repo="tester/centred")))
    np.testing.assert_array_equal(w.center, center)
    assert w.embedding_id() == centred_id and CENTER_KEY not in w.state_dict
    # The same index exported without centring is refused: it was built with the centre.
    with pytest.raises(IndexError_, match="was built with model"):
        export_artifacts(tmp_path / "art2", str(src), idx, Config(cache_dir=tmp_path / "c", center_embeddings=False))
