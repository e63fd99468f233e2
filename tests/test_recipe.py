"""The embedding recipe (rvs.faces.recipe): it changes with everything that changes a face's vector, keys
the caches and memos, and a gallery made otherwise is refused when a query meets it."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from conftest import GALLERY_PEOPLE, lfw_image, requires_data

from rvs.config import Config
from rvs.errors import IndexError_
from rvs.faces.recipe import QUERY_COMPATIBLE, check_index_recipe, embedding_recipe, recipe_differences, recipe_digest

MODEL = "facenet-casia-webface-20180408-102900+center-1234abcd"

# Every field that changes how a face is found, cut or embedded, with another value.
CHANGES = {
    "margin": 44,
    "margin_units": "image",
    "face_size": 182,
    "min_face_size": 40,
    "detect_thresholds": (0.6, 0.7, 0.8),
    "min_face_prob": 0.9,
    "detect_max_side": 960,
}


def recipe(**changes) -> dict:
    return embedding_recipe(dataclasses.replace(Config(), **changes), MODEL, "fp32")


def test_recipe_changes_with_every_setting_that_shapes_a_vector():
    base = recipe()
    assert recipe_digest(base) == recipe_digest(recipe())  # stable
    assert recipe_digest(base) == recipe_digest(dict(reversed(list(base.items()))))  # order-free
    for field, value in CHANGES.items():
        other = recipe(**{field: value})
        assert recipe_digest(other) != recipe_digest(base), field
    assert recipe_digest(embedding_recipe(Config(), MODEL, "bf16")) != recipe_digest(base)
    assert recipe_digest(embedding_recipe(Config(), "facenet-casia-webface-20180408-102900", "fp32")) != recipe_digest(base)  # no centre
    # Settings that do not change a vector do not change the recipe.
    assert recipe(detect_batch_size=4, k=5, n_trees=10, video_face_fps=1.0) == base


def test_query_check_refuses_with_one_line_and_accepts_old_indexes():
    base = recipe()
    check_index_recipe(base, recipe())
    check_index_recipe(None, base)  # an index from before recipes: its model id was checked already
    # bf16 vs fp32 (cosine > 0.9999) and the kept-face probability do not make vectors incomparable.
    check_index_recipe(embedding_recipe(Config(), MODEL, "bf16"), base)
    check_index_recipe(recipe(min_face_prob=0.9), base)
    assert QUERY_COMPATIBLE == {"precision", "min_face_prob"}
    for field, value in CHANGES.items():
        if field in QUERY_COMPATIBLE:
            continue
        with pytest.raises(IndexError_, match=f"{field} ") as e:
            check_index_recipe(recipe(**{field: value}), base, "the gallery at /x")
        assert "\n" not in str(e.value) and str(e.value).startswith("the gallery at /x was built with another embedding recipe")
    with pytest.raises(IndexError_, match=r"margin 44 px of the crop vs 32 px of the crop"):
        check_index_recipe(recipe(margin=44), base)
    with pytest.raises(IndexError_, match="model_id"):
        check_index_recipe(embedding_recipe(Config(), "other-model", "fp32"), base)
    with pytest.raises(IndexError_, match="malformed"):
        check_index_recipe("margin=32", base)
    assert recipe_differences(recipe(margin=44, margin_units="image"), base) == ["margin", "margin_units"]


def test_video_face_memos_and_cache_key_follow_the_recipe():
    """Face mode's model memos and the face cache entry change with every setting of the recipe
    (margin_units, centring and precision were left out before), the frame detector and tracker."""
    from rvs.video.faces import _params, model_keys

    c = Config()
    base = model_keys(c)
    for field, value in CHANGES.items():
        assert model_keys(dataclasses.replace(c, **{field: value}))["query"] != base["query"], field
    assert model_keys(dataclasses.replace(c, k=3)) == base
    for field, value in {"center_embeddings": False, "embed_precision": "fp32", "weights": "vggface2", "device": "cuda"}.items():
        assert model_keys(dataclasses.replace(c, **{field: value}))["embedder"] != base["embedder"], field
    for field, value in {"video_detector": "mtcnn", "video_yunet_side": 480, "video_face_max_side": 720}.items():
        assert model_keys(dataclasses.replace(c, **{field: value}))["frames"] != base["frames"], field
    frames = SimpleNamespace(settings=lambda: {"detector": "yunet-2023mar"})
    models = SimpleNamespace(frame_detector=frames, embedder=SimpleNamespace(model_id=MODEL, bf16=False))
    key = _params(c, models)
    assert key["recipe"]["detect_max_side"] == c.video_face_max_side  # video frames' own detection size
    for field, value in {k: v for k, v in CHANGES.items() if k not in ("detect_max_side", "min_face_size")}.items():
        assert _params(dataclasses.replace(c, **{field: value}), models) != key, field
    for field, value in {"video_face_max_side": 720, "video_track_iou": 0.5, "video_track_chunk_s": 2.0, "video_face_fps": 1.0}.items():
        assert _params(dataclasses.replace(c, **{field: value}), models) != key, field
    other = SimpleNamespace(frame_detector=SimpleNamespace(settings=lambda: {"detector": "mtcnn"}), embedder=models.embedder)
    assert _params(c, other) != key
    assert _params(c, SimpleNamespace(frame_detector=frames, embedder=SimpleNamespace(model_id=MODEL, bf16=True))) != key
    assert _params(c, SimpleNamespace(frame_detector=frames, embedder=SimpleNamespace(model_id="other", bf16=False))) != key


# ---------------------------------------------------------------------------------------------
# Real galleries


@pytest.fixture(scope="module")
def wide_margin_index(tmp_path_factory, embedder):
    """A small gallery cut with a 44 px margin instead of 32."""
    from rvs.faces.detect import FaceDetector
    from rvs.gallery.build import build_index

    root = tmp_path_factory.mktemp("wide")
    for name in GALLERY_PEOPLE[:4]:
        (root / name).mkdir()
        for num in (3, 4):
            (root / name / f"{name}_{num:04d}.jpg").symlink_to(lfw_image(name, num))
    cfg = Config(margin=44)
    index, _ = build_index(root, None, cfg, detector=FaceDetector(cfg), embedder=embedder, progress=False)
    return index


@requires_data
def test_gallery_cut_otherwise_is_refused(wide_margin_index, config, detector, embedder):
    from rvs.gallery.search import SearchEngine

    index = wide_margin_index
    assert index.extra["recipe"]["margin"] == 44 and index.extra["crop"]["margin"] == 44
    assert index.model_id == embedder.model_id  # same model: the model id alone would let it through
    with pytest.raises(IndexError_, match=r"another embedding recipe .*margin 44 px of the crop vs 32 px of the crop") as e:
        SearchEngine(index, config, detector=detector, embedder=embedder)
    assert "\n" not in str(e.value)
    # Searched with the settings it was built with, it is accepted.
    from rvs.faces.detect import FaceDetector

    wide = Config(margin=44)
    engine = SearchEngine(index, wide, detector=FaceDetector(wide), embedder=embedder)
    assert engine.search(lfw_image(GALLERY_PEOPLE[0], 3), k=1).faces[0].matches[0].distance < 0.02
    # An index from before recipes is accepted on its model id (old galleries keep working).
    old = dataclasses.replace(index, extra={k: v for k, v in index.extra.items() if k != "recipe"})
    SearchEngine(old, config, detector=detector, embedder=embedder)


@requires_data
def test_cli_search_refuses_a_gallery_cut_otherwise(wide_margin_index, tmp_path, capsys):
    from rvs.cli import main

    wide_margin_index.save(tmp_path / "wide")
    assert main(["search", str(lfw_image(GALLERY_PEOPLE[0], 1)), "--index", str(tmp_path / "wide")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "margin 44 px of the crop vs 32 px of the crop" in err[0], err
