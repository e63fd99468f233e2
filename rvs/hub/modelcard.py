"""The model card (`README.md`) of an rvs artifact repo on the Hugging Face Hub.

The Hub reads the YAML front matter (licence, tags, datasets, pipeline tag) for search and the
repo page; the body says what the weights are, what the gallery is, how to use them with rvs,
and, prominently, what they must not be used for. Evaluation numbers are never invented here:
they are passed in (e.g. from `python -m rvs eval --json`) or the card says there are none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

CASIA_MODEL_ID = "facenet-casia-webface-20180408-102900"  # mirrors rvs.models.weights, without importing torch


@dataclass
class CardInfo:
    """What the card says about one artifact folder. Only `repo_id` and `model_id` are required;
    `export_artifacts` fills `model_id`, `gallery_size`, `n_identities` and `embedding_dim` itself.

    evaluation: metric name -> value, e.g. {"LFW 10-fold verification accuracy": "0.9905 ± 0.004"}.
    fine_tuned_from / training: set for a fine-tuned model (what it started from, how it was trained).
    """

    repo_id: str = "OWNER/REPO"
    model_id: str = ""
    weights_source: str = ""
    fine_tuned_from: str = ""
    training: str = ""
    evaluation: dict[str, Any] = field(default_factory=dict)
    evaluation_notes: str = ""
    gallery_description: str = ""
    gallery_size: int = 0
    n_identities: int = 0
    embedding_dim: int = 0  # the gallery's vector size (export_artifacts fills it in)
    match_threshold: float | None = None
    model_name: str = "facenet"  # the gallery's embedder (rvs.faces.embedders): facenet | sface | fused

    @classmethod
    def from_mapping(cls, info: CardInfo | Mapping[str, Any] | None, **defaults: Any) -> CardInfo:
        """A CardInfo from a dict (unknown keys are refused, so a typo does not vanish silently)."""
        if isinstance(info, CardInfo):
            data = {k: v for k, v in vars(info).items() if v not in ("", 0, None, {})}
        else:
            data = dict(info or {})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown model card fields {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**{**defaults, **data})


def evaluation_table(data: Mapping[str, Any]) -> dict[str, Any]:
    """Model-card metrics from an evaluation JSON: the output of `python -m rvs eval --json`
    (verification + retrieval, flattened into named rows) or any {metric: value} object. Nested
    values that are not recognised (per-fold lists, ...) stay out of the card's table."""
    out: dict[str, Any] = {}
    v = data.get("verification")
    if isinstance(v, Mapping) and "accuracy_mean" in v:
        proto = f"LFW {data.get('pairs_file', 'pairs.txt')} {len(v.get('fold_accuracies', [])) or 10}-fold"
        setting = ", ".join(
            x
            for x in (
                "flip TTA" if data.get("flip") else "",
                f"margin {data['margin']} px of the {data.get('margin_units', 'crop')}" if "margin" in data else "",
                data.get("distance", ""),
            )
            if x
        )
        out[f"{proto} verification accuracy"] = f"{v['accuracy_mean']:.4f} ± {v['accuracy_std']:.4f}"
        out["ROC AUC"] = v.get("roc_auc")
        for far, tar in (v.get("tar_at_far") or {}).items():
            out[f"TAR @ FAR={far}"] = tar
        out["best threshold (all pairs)"] = v.get("best_threshold")
        if setting:
            out["evaluation setting"] = setting
        r = data.get("retrieval")
        if isinstance(r, Mapping) and "rank1" in r:
            who = f"{r.get('people_file', 'View 1 test people')}, {r.get('queries', '?')} leave-one-out queries"
            out[f"rank-1 ({who})"] = r["rank1"]
            out[f"mAP ({who})"] = r.get("mAP")
        if data.get("model_id"):
            out["evaluated model"] = data["model_id"]
    else:
        out = {str(k): val for k, val in data.items() if isinstance(val, (int, float, str)) and not isinstance(val, bool)}
    return {k: val for k, val in out.items() if val is not None}


def front_matter(info: CardInfo) -> dict[str, Any]:
    """The card's YAML metadata, as the Hub's model-card schema names it."""
    return {
        # The rvs code is MIT. The weights carry the terms of their training data (see the card body):
        # the Hub's single `license` field cannot say both, so the body is explicit about it.
        "license": "mit",
        "library_name": "pytorch",
        "pipeline_tag": "image-feature-extraction",
        "tags": ["face-recognition", "facenet", "reverse-image-search", "inception-resnet-v1", "rvs", "annoy"],
        "datasets": ["lfw"],
    }


def _model_section(info: CardInfo) -> str:
    from rvs.faces.embedders import get_spec

    facenet_dim = get_spec("facenet").dim
    if info.fine_tuned_from or info.training:
        base = info.fine_tuned_from or "an Inception-ResNet-v1 FaceNet checkpoint"
        lines = [
            f"A face-embedding model fine-tuned by rvs from {base}.",
            "",
            f"- Training: {info.training or 'not recorded'}",
        ]
    elif info.model_id.split("+")[0] == CASIA_MODEL_ID or not info.model_id:
        lines = [
            "David Sandberg's FaceNet model **20180408-102900**: an Inception-ResNet-v1 trained on",
            "CASIA-WebFace (reported LFW accuracy 99.05%), converted by rvs from the frozen TensorFlow",
            "graph (batch norm folded into the convolutions) to facenet-pytorch's `InceptionResnetV1`",
            "and stored as safetensors. Every tensor of the graph is mapped by name and checked",
            "(`rvs.models.weights.convert_tf_graph`), so the conversion is reproducible.",
        ]
    else:
        lines = [f"An Inception-ResNet-v1 face-embedding model (`{info.model_id}`)."]
    lines += [
        "",
        f"- Model id (recorded in index manifests): `{info.model_id or CASIA_MODEL_ID}`",
        f"- Architecture: facenet-pytorch `InceptionResnetV1(classify=False)`, {facenet_dim}-d embeddings",
        "- Input: 160x160 RGB face crops from MTCNN (32 px margin), pixels standardised as (x - 127.5) / 128",
        "- Output: L2-normalised embeddings; rvs compares them by Euclidean distance (0 = same, 2 = opposite)",
    ]
    if "+center-" in info.model_id:
        lines.append(
            "- Centring: the tensor `embedding_center` in the weights file (the mean embedding of a reference "
            "population) is subtracted from the network's unit output, which is then normalised again"
        )
    if info.weights_source:
        lines.append(f"- Converted from: `{info.weights_source}`")
    lines += [
        "",
        "**Licences.** The rvs code is MIT-licensed (the `license` field above), and so is Sandberg's",
        "facenet repository, which released the original model. The weights were learned from",
        "CASIA-WebFace, which is distributed for non-commercial research use only: treat them as",
        "research-only unless you have cleared that yourself.",
    ]
    return "\n".join(lines)


def _embedders_section(info: CardInfo) -> str:
    """Which embedder built the gallery, and the facts of both models shipped (from their
    definitions in rvs.faces.embedders: a fact lives in one place)."""
    from rvs.faces.embedders import get_spec

    gallery = get_spec(info.model_name)
    role = {
        "facenet": "`model.safetensors` (FaceNet) embeds every face.",
        "sface": "SFace (`face_recognition_sface_2021dec.onnx`) embeds every face; `model.safetensors` (FaceNet) is the "
        "fallback rvs uses when the SFace file is refused (with a starter gallery of its own).",
        "fused": "both embed every face: the vector is FaceNet's and SFace's unit vectors concatenated with weights, "
        "so its cosine is a weighted mean of theirs.",
    }[gallery.name]
    lines = [f"The gallery was built with **{gallery.title}** (`{info.model_name}`, {gallery.dim}-d): {role}", ""]
    lines += ["| Model | Architecture | Training data | Licence |", "|---|---|---|---|"]
    for name in ("facenet", "sface"):
        s = get_spec(name)
        lines.append(f"| {s.title} | {s.architecture} | {s.training_data} | {s.licence} |")
    lines += [
        "",
        "SFace is OpenCV Zoo's `face_recognition_sface_2021dec.onnx` (Zhong et al., 2021), checked by size and",
        "sha256 before use; it reads 112x112 faces aligned from MTCNN's five landmarks.",
    ]
    return "\n".join(lines)


def _evaluation_section(info: CardInfo) -> str:
    if not info.evaluation:
        return (
            "No evaluation numbers were attached to this upload. Measure them with "
            "`python -m rvs eval` (LFW 10-fold verification) before relying on the model."
        )
    rows = ["| Metric | Value |", "|---|---|"]
    for name, value in info.evaluation.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        rows.append(f"| {str(name).replace('|', '/')} | {text.replace('|', '/')} |")
    out = "\n".join(rows)
    if info.evaluation_notes:
        out += "\n\n" + info.evaluation_notes
    return out


def _gallery_section(info: CardInfo) -> str:
    desc = info.gallery_description or "A gallery index built with `python -m rvs index`."
    return "\n".join(
        [
            desc,
            "",
            f"- {info.gallery_size:,} face embeddings of {info.n_identities:,} identities, in `index/`",
            "- `index/index.ann`: Annoy forest (angular metric); `index/embeddings.npy`: the exact embeddings",
            "  (loaded with `allow_pickle=False`); `index/meta.json`: identity, source image path, face box,",
            "  detection probability per face; `index/manifest.json`: counts, settings and sha256 of each file.",
            "- The photos themselves are not included: `meta.json` only names them.",
        ]
    )


def render_model_card(info: CardInfo | Mapping[str, Any]) -> str:
    """The full README.md: YAML front matter, then the card body in Markdown."""
    info = CardInfo.from_mapping(info)
    meta = yaml.safe_dump(front_matter(info), sort_keys=False, allow_unicode=True).strip()
    threshold = (
        f"Two faces count as the same person below a distance of {info.match_threshold:.2f} (calibrated on LFW pairs)."
        if info.match_threshold is not None
        else "The match threshold is `Config.match_threshold` (calibrated on LFW pairs by `python -m rvs eval`)."
    )
    body = f"""# rvs face embeddings + gallery index: `{info.repo_id}`

Artifacts for rvs, a reverse face search: detect faces with MTCNN, embed them with
Inception-ResNet-v1, and look them up in an Annoy index of a gallery.

## Models

{_embedders_section(info)}

### FaceNet weights (`model.safetensors`)

{_model_section(info)}

## Intended use

- Research, teaching and demos of face retrieval: "which gallery photos show a face like this one?"
- Searching a gallery that you are entitled to search, of people who agreed to be in it.
- {threshold} Results are ranked candidates for a person to check, never an identification.

## Limitations and ethics

- **LFW is a research benchmark, not a deployment test.** It holds photos of public figures
  scraped from news sites, mostly white, male adults, in good light and near-frontal poses.
  Accuracy on LFW is no evidence of fitness for commercial use or for 1:N identification
  against large galleries, where false matches grow with gallery size, and it says nothing
  about accuracy on groups under-represented in the data. Error rates are likely higher and
  uneven for children, older people, women, darker skin tones and low-quality or off-angle
  images; this has not been measured for this model.
- **No surveillance.** Do not use these artifacts to identify, track or profile people without
  their informed consent, in law enforcement, border control, employment, housing, credit or
  any decision with legal or similarly significant effects. Face recognition is regulated
  (e.g. biometric data under the GDPR, the EU AI Act, BIPA in Illinois); check the law where
  you use it.
- **Training data consent.** CASIA-WebFace was scraped from the web (photos of about 10,000
  celebrities) without asking the people pictured; the weights inherit that problem and the
  dataset's non-commercial terms.
- The gallery index contains biometric templates of the people in it. Publishing it is a
  decision about their data: only publish galleries of public benchmark data or of people who
  agreed to it.

## Evaluation

{_evaluation_section(info)}

## Gallery

{_gallery_section(info)}

## Files

| File | What |
|---|---|
| `model.safetensors` | InceptionResnetV1 state dict (safetensors: loading it cannot run code) |
| `model.safetensors.json` | model id + sha256, read by `rvs.models.weights` when the file is loaded |
| `model.json` | model id, sha256, source, embedding size and normalisation |
| `index/` | the gallery index (see above) |
| `rvs.json` | sha256 and size of every file; rvs refuses a download that does not match it |

## How to use with rvs

```bash
# rvs pulls, verifies and caches this repo (pin a commit sha for reproducibility)
export RVS_HUB_REPO={info.repo_id}
export RVS_HUB_REVISION=main
python app.py
```

```python
from rvs.config import Config
from rvs.hub.client import resolve_artifacts

artifacts = resolve_artifacts(Config(hub_repo="{info.repo_id}", hub_revision="main"))
print(artifacts.describe())
config = artifacts.apply(Config())  # weights + index_dir of the pulled snapshot
```

Publish your own with `python -m rvs push --repo OWNER/NAME --index DIR`.
"""
    return f"---\n{meta}\n---\n\n{body}"


def parse_front_matter(text: str) -> dict[str, Any]:
    """The YAML metadata of a card (safe_load: plain data only); {} when there is none."""
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        return {}
    data = yaml.safe_load(text[4:end])
    return data if isinstance(data, dict) else {}
