"""Image search on real faces: the right person comes first, strangers stay apart."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import GALLERY_PEOPLE, PHOTOS, lfw_image, requires_data
from PIL import Image

from rvs.errors import IndexError_, NoFaceError
from rvs.faces.embed import Embedder
from rvs.faces.embedders import embed_faces, match_threshold
from rvs.gallery.store import FaceIndex
from rvs.imageio import load_image

pytestmark = requires_data


def test_gallery_summary(built_index):
    index, summary = built_index
    assert summary["images"] == len(index) + summary["images_without_face"]
    assert summary["failures"] == 0
    assert index.n_identities > 100
    assert summary["images_without_face"] <= 2


@pytest.mark.parametrize("num", [1, 2])
def test_same_person_ranks_first(engine, num):
    """A photo that is not in the gallery finds its person at rank 1 among 130+ identities."""
    correct = []
    for name in GALLERY_PEOPLE:
        res = engine.search(lfw_image(name, num), k=5, faces="largest")
        correct.append(res.faces[0].matches[0].identity == name)
    # Measured: 20/20 for both probe sets; allow one miss so a single hard photo (profile,
    # sunglasses) does not make the suite flaky across BLAS builds.
    assert sum(correct) >= len(correct) - 1, [n for n, ok in zip(GALLERY_PEOPLE, correct) if not ok]


def test_identification_names_the_person(engine):
    res = engine.search(lfw_image("Colin_Powell", 1), k=10)
    ident = res.faces[0].identification
    assert ident.identity == "Colin_Powell" and ident.probability > ident.threshold
    assert res.faces[0].matches[0].distance < match_threshold(engine.config)


def test_stranger_is_not_named(engine):
    """Someone not in this gallery (Angelina Jolie's LFW photos are not in it) gets no name."""
    assert "Angelina_Jolie" not in engine.index.meta["identity"]
    res = engine.search(PHOTOS / "angelina_jolie" / "1.jpg", k=10)
    assert res.faces[0].identification.identity is None


@pytest.fixture(scope="module")
def photo_embeddings(detector, embedder) -> dict[str, np.ndarray]:
    out = {}
    for d in sorted(p for p in PHOTOS.iterdir() if p.is_dir()):
        faces = detector.detect_one(load_image(d / "1.jpg"))
        assert len(faces) == 1, d.name
        out[d.name] = embed_faces(embedder, faces[:1])[0]
    return out


# Angelina Jolie and Kate Siegel are the models' one confusion among the four (FaceNet and SFace): their distance is
# below the LFW-calibrated threshold (1.15) and even the FAR=1e-3 point (1.06). Kept visible as a
# strict xfail, so a better model that separates them turns this into a failure to update.
KNOWN_CONFUSED = {("angelina_jolie", "kate_siegel")}


@pytest.mark.parametrize(
    "a,b",
    [
        pytest.param(a, b, marks=pytest.mark.xfail(strict=True, reason="known look-alike confusion (the CASIA FaceNet and SFace alike)"))
        if (a, b) in KNOWN_CONFUSED
        else (a, b)
        for a, b in itertools.combinations(["angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham"], 2)
    ],
)
def test_photos_are_each_others_strangers(photo_embeddings, config, a, b):
    assert np.linalg.norm(photo_embeddings[a] - photo_embeddings[b]) > match_threshold(config)


def test_same_person_closer_than_strangers(detector, embedder):
    imgs = [lfw_image("George_W_Bush", 1), lfw_image("George_W_Bush", 2), lfw_image("Colin_Powell", 1), lfw_image("Tony_Blair", 1)]
    faces = detector.detect([load_image(p) for p in imgs])
    emb = embed_faces(embedder, [f[0] for f in faces])
    same = np.linalg.norm(emb[0] - emb[1])
    assert same < np.linalg.norm(emb[0] - emb[2]) and same < np.linalg.norm(emb[0] - emb[3])
    assert same < 1.0


def test_gallery_photo_as_query_finds_itself_exactly(engine, built_index, gallery_dir):
    """A gallery photo (detected in a batch while indexing) searched on its own finds its own
    entry at distance ~0: batch and single-image detection give the same boxes, so the gallery
    and the queries are embedded the same way."""
    index, _ = built_index
    for i in (0, len(index) // 2, len(index) - 1):
        path = gallery_dir / index.meta["path"][i]
        res = engine.search(path, k=1, faces="all")
        dists = [fr.matches[0].distance for fr in res.faces if fr.matches[0].item == i]
        assert dists and min(dists) < 0.02, (index.meta["path"][i], [fr.matches[0].to_dict() for fr in res.faces])


def test_multiface_photo_yields_many_faces(engine):
    res = engine.search(PHOTOS / "multiface.jpg", k=3)
    assert res.n_faces_detected >= 6
    assert len(res.faces) == res.n_faces_detected
    # largest first, each with its own results
    areas = [f.face.area for f in res.faces]
    assert areas == sorted(areas, reverse=True)
    assert all(len(f.matches) == 3 for f in res.faces)


def test_pick_one_face(engine):
    res = engine.search(PHOTOS / "multiface.jpg", k=3, faces=2)
    assert [f.face_number for f in res.faces] == [2]


def test_no_face_is_a_clear_error(engine):
    blank = np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (200, 1))
    with pytest.raises(NoFaceError, match="no face"):
        engine.search(blank)


def test_index_round_trip(built_index, config):
    index, _ = built_index
    loaded = FaceIndex.load(config.index_dir, expect_model_id=index.model_id)
    assert len(loaded) == len(index) and loaded.meta == {k: list(v) for k, v in index.meta.items()}
    q = index.embeddings[[0, 7, 42]]
    np.testing.assert_array_equal(loaded.search(q, 5)[0], index.search(q, 5, exact=True)[0])
    assert loaded.manifest["n_items"] == len(index)
    assert loaded.extra["source_folder"]


def test_corrupted_index_is_refused(index_copy):
    meta = index_copy / "meta.json"
    data = bytearray(meta.read_bytes())
    data[len(data) // 2] ^= 0x01
    meta.write_bytes(bytes(data))
    with pytest.raises(IndexError_, match="sha256"):
        FaceIndex.load(index_copy)


def test_truncated_index_is_refused(index_copy):
    emb = index_copy / "embeddings.npy"
    emb.write_bytes(emb.read_bytes()[:-1000])
    with pytest.raises(IndexError_, match="truncated"):
        FaceIndex.load(index_copy)


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexError_, match="python -m rvs index"):
        FaceIndex.load(tmp_path / "nope")


def test_wrong_model_is_refused(index_copy):
    with pytest.raises(IndexError_, match="rebuild"):
        FaceIndex.load(index_copy, expect_model_id="some-other-model")


@requires_data
def test_crop_margin_units(detector, config):
    """Both crop geometries on a real face: "crop" units keep the face at (160 - 2*16)/160 of the
    crop whatever the photo's scale; "image" units (Sandberg's alignment) add a fixed 32 photo
    pixels, so the face's share grows with its size. Either way the crop is of the same person."""
    from rvs.faces.detect import crop_face

    img = load_image(lfw_image("Colin_Powell", 1))
    face = detector.detect([img])[0][0]
    w = face.box[2] - face.box[0]
    big = img.resize((img.width * 2, img.height * 2), Image.BILINEAR)
    rel = [crop_face(im, face.box * s, 160, 32, "crop") for im, s in ((img, 1), (big, 2))]
    absu = [crop_face(im, face.box * s, 160, 32, "image") for im, s in ((img, 1), (big, 2))]
    # Scale-invariant geometry: the two relative crops show the same region.
    assert np.abs(rel[0].astype(float) - rel[1].astype(float)).mean() < 8
    # Fixed photo pixels: on the doubled photo the same 32 px margin is half as wide relative to the face.
    assert np.abs(absu[0].astype(float) - absu[1].astype(float)).mean() > 15
    expect = np.asarray(img.crop((int(face.box[0] - 16), int(face.box[1] - 16), int(face.box[2] + 16), int(face.box[3] + 16))).resize((160, 160), Image.BILINEAR))
    assert np.array_equal(absu[0], expect) and w > 32
    e = Embedder(config).embed(np.stack([rel[0], absu[0]]))  # FaceNet reads these margin crops
    assert np.linalg.norm(e[0] - e[1]) < 0.6
    with pytest.raises(ValueError, match="margin_units"):
        crop_face(img, face.box, 160, 32, "inches")
