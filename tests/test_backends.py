"""Search backends (exact / Annoy / Milvus Lite) on one real gallery, incremental galleries,
`gallery list|remove`, `search FOLDER`, and the embedding stage on a local Ray."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import GALLERY_PEOPLE, PHOTOS, lfw_image

from rvs.config import Config
from rvs.gallery.store import FaceIndex


@pytest.fixture(scope="module")
def probes(built_index, detector, embedder) -> np.ndarray:
    """Real query embeddings: photos 1-2 of the gallery people (not in the gallery)."""
    from rvs.gallery.embedding import detect_embed
    from rvs.gallery.photos import Photo

    photos = [Photo(f"{n}/{i}", n, lfw_image(n, i)) for n in GALLERY_PEOPLE for i in (1, 2)]
    res, _, _ = detect_embed(photos, detector.config, detector, embedder, progress=False)
    return np.stack([r.embeddings[0] for r in res if len(r.embeddings)])


def _copy(index: FaceIndex, backend: str) -> FaceIndex:
    return FaceIndex(index.embeddings.copy(), {k: list(v) for k, v in index.meta.items()}, index.model_id).configure(Config(search_backend=backend))


def test_three_backends_same_neighbours(built_index, probes, tmp_path):
    """Exact, Annoy and Milvus Lite return the same top-10 identities and distances, in the same shape."""
    index = built_index[0]
    out = {}
    for b in ("exact", "annoy", "milvus"):
        ix = _copy(index, b)
        ix.save(tmp_path / b)
        assert ix.backend_name == b
        ids, d = ix.search(probes, 10)
        assert ids.shape == d.shape == (len(probes), 10) and ids.dtype == np.int64 and d.dtype == np.float32
        out[b] = ([[ix.meta["identity"][i] for i in row] for row in ids], d)
        ix.close_backend()
    for b in ("annoy", "milvus"):
        assert out[b][0] == out["exact"][0], b
        np.testing.assert_allclose(out[b][1], out["exact"][1], atol=1e-4)
    # and the rank-1 identity is right for most probes (real faces, real gallery)
    truth = [n for n in GALLERY_PEOPLE for _ in (1, 2)][: len(probes)]
    assert np.mean([row[0] == t for row, t in zip(out["exact"][0], truth)]) > 0.8


def test_backend_in_manifest_and_auto(built_index, tmp_path):
    index = built_index[0]
    ix = _copy(index, "auto")
    ix.save(tmp_path / "a")
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["search_backend"]["backend"] == "auto" and m["search_backend"]["now"] == "exact"
    loaded = FaceIndex.load(tmp_path / "a")
    assert loaded.backend_name == "exact"
    loaded.search_settings["exact_max"] = 10  # auto above exact_max: Annoy
    assert loaded.backend_name == "annoy"
    assert loaded.search(index.embeddings[:3], 5)[0][:, 0].tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        Config(search_backend="faiss")


def test_milvus_grows_shrinks_and_is_reused(built_index, tmp_path):
    """Milvus follows add/remove without a rebuild, keeps its store across save/load, and
    rebuilds it when its local record does not name the embeddings being loaded."""
    from rvs.gallery.backends import MilvusBackend

    index = built_index[0]
    ix = _copy(index, "milvus")
    d = tmp_path / "m"
    ix.save(d)
    ix.remove([0, 5, 7])
    ix.add(index.embeddings[[0]], {k: [v[0]] for k, v in index.meta.items()})
    q = index.embeddings[[0, 5, 9]]
    ids, _ = ix.search(q, 5)
    ref, _ = ix.search(q, 5, exact=True)
    assert ids.tolist() == ref.tolist()
    assert ids[0, 0] == len(ix) - 1  # the re-added face, at the end
    assert ix._backend.count() == len(ix)
    ix.save(d)
    ix.close_backend()
    loaded = FaceIndex.load(d)
    be = loaded.backend()
    assert isinstance(be, MilvusBackend) and be.count() == len(loaded)
    assert loaded.search(q, 5)[0].tolist() == ref.tolist()
    assert be.adopt_state(d, loaded.manifest["files"]["embeddings.npy"]["sha256"], len(loaded))
    assert not be.adopt_state(d, "0" * 64, len(loaded))  # another gallery's record: not trusted
    loaded.close_backend()


@pytest.fixture
def milvus_server(tmp_path):
    """A Milvus server on 127.0.0.1: milvus-lite's server binary answering gRPC on a TCP port, the
    protocol of a Milvus standalone server or cluster (none can be installed here). Stopped by the test."""
    import socket
    import time

    from milvus_lite.server import Server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = Server(str(tmp_path / "server.db"), address=f"127.0.0.1:{port}")
    assert srv.init() and srv.start(), "milvus-lite's server binary did not start"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Milvus server never listened"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.stop()


def test_milvus_server_by_uri(built_index, probes, milvus_server, tmp_path, monkeypatch):
    """The Milvus backend against a server by URI (the path beyond one machine): the vectors live on
    the server, not in the index folder; answers equal exact search before and after add/remove; a
    loaded index reaches the server only through this machine's RVS_MILVUS_URI, never its manifest."""
    from rvs.gallery.backends import MilvusBackend

    index = built_index[0]
    ix = FaceIndex(index.embeddings.copy(), {k: list(v) for k, v in index.meta.items()}, index.model_id)
    ix.configure(Config(search_backend="milvus", milvus_uri=milvus_server))
    d = tmp_path / "s"
    ix.save(d)
    assert not (d / "milvus.db").exists()  # nothing local: the server holds the collection
    be = ix.backend()
    assert isinstance(be, MilvusBackend) and not be.is_lite and be.count() == len(ix)
    ids, dist = ix.search(probes, 10)
    ref, ref_d = ix.search(probes, 10, exact=True)
    assert ids.tolist() == ref.tolist()
    np.testing.assert_allclose(dist, ref_d, atol=1e-4)
    ix.remove([0, 3])
    ix.add(index.embeddings[[0]], {k: [v[0]] for k, v in index.meta.items()})
    assert be.count() == len(ix)
    assert ix.search(index.embeddings[[0, 3]], 5)[0].tolist() == ix.search(index.embeddings[[0, 3]], 5, exact=True)[0].tolist()
    ix.save(d)
    ix.close_backend()

    monkeypatch.setenv("RVS_MILVUS_URI", milvus_server)
    loaded = FaceIndex.load(d)
    lb = loaded.backend()
    assert isinstance(lb, MilvusBackend) and lb.uri == milvus_server and lb.count() == len(loaded)
    assert loaded.search(probes, 10)[0].tolist() == loaded.search(probes, 10, exact=True)[0].tolist()
    loaded.close_backend()
    monkeypatch.delenv("RVS_MILVUS_URI")
    local = FaceIndex.load(d)  # the manifest's server is not followed: a local store instead
    assert local.backend().is_lite and Path(local.backend().uri).parent == d
    local.close_backend()


# ---------------------------------------------------------------------------------------------
# Incremental galleries


class CountingEmbedder:
    """The session embedder, counting the faces it embeds."""

    def __init__(self, inner):
        self._inner, self.faces = inner, 0

    def embed_inputs(self, inputs):
        self.faces += len(next(iter(inputs.values())))
        return self._inner.embed_inputs(inputs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _link(src: Path, root: Path, person: str) -> Path:
    (root / person).mkdir(parents=True, exist_ok=True)
    dst = root / person / src.name
    dst.symlink_to(src)
    return dst


def test_incremental_update(gallery_dir, built_index, config, detector, embedder, tmp_path):
    from rvs.gallery.build import build_index, remove_from_gallery

    root, out = tmp_path / "photos", tmp_path / "index"
    shutil.copytree(gallery_dir, root, symlinks=True)
    shutil.copytree(config.index_dir, out)
    base = FaceIndex.load(out)
    assert base.sources and len(base.sources) >= len(base)
    counting = CountingEmbedder(embedder)

    # Add two photos: only they are embedded.
    new = [_link(lfw_image("Colin_Powell", 6), root, "Colin_Powell"), _link(lfw_image("Tony_Blair", 6), root, "Tony_Blair")]
    ix, s = build_index(root, out, config, detector=detector, embedder=counting, progress=False, update=True)
    assert counting.faces == 2 and s["update"]["embedded_images"] == 2 and s["update"]["dropped_faces"] == 0
    assert len(ix) == len(base) + 2 and "Colin_Powell/Colin_Powell_0006.jpg" in ix.meta["path"]
    assert ix.extra["open_set"]["created"] and FaceIndex.load(out).sources == ix.sources

    # Unchanged folder: nothing embedded. A renamed photo: reused, not embedded.
    counting.faces = 0
    new[1].rename(new[1].with_name("Tony_Blair_9999.jpg"))
    ix, s = build_index(root, out, config, detector=detector, embedder=counting, progress=False, update=True)
    assert counting.faces == 0 and s["update"]["moved_images"] == 1
    assert "Tony_Blair/Tony_Blair_9999.jpg" in ix.meta["path"] and "Tony_Blair/Tony_Blair_0006.jpg" not in ix.meta["path"]

    # A deleted photo is gone.
    new[0].unlink()
    ix, s = build_index(root, out, config, detector=detector, embedder=counting, progress=False, update=True)
    assert counting.faces == 0 and "Colin_Powell/Colin_Powell_0006.jpg" not in ix.meta["path"]
    assert "Colin_Powell/Colin_Powell_0006.jpg" not in ix.sources

    # A removed person is gone, the gallery recalibrated, and the next update keeps them out.
    before = ix.extra["open_set"]
    r = remove_from_gallery(ix, "Tony_Blair", config)
    assert r["kind"] == "person" and r["faces_removed"] == 4
    assert "Tony_Blair" not in ix.meta["identity"] and ix.extra["open_set"] is not before
    ix.save(out)
    ix, s = build_index(root, out, config, detector=detector, embedder=counting, progress=False, update=True)
    assert counting.faces == 0 and "Tony_Blair" not in ix.meta["identity"]
    assert len(ix) == len(base) - 3  # 3 of Tony Blair's photos in the base gallery (+1 added, then removed)


def test_gallery_cli_list_remove(index_copy, capsys):
    from rvs.cli import main

    assert main(["gallery", "list", "--index", str(index_copy), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["identities"]["Colin_Powell"] == 3 and info["backend"] == "exact"
    assert main(["gallery", "remove", "Colin_Powell/Colin_Powell_0003.jpg", "--index", str(index_copy)]) == 0
    assert main(["gallery", "remove", "Hugo_Chavez", "--index", str(index_copy)]) == 0
    assert "removed person Hugo_Chavez: 3 face(s)" in capsys.readouterr().out
    ix = FaceIndex.load(index_copy)
    assert ix.meta["identity"].count("Colin_Powell") == 2 and "Hugo_Chavez" not in ix.meta["identity"]
    assert ix.extra["excluded"] == {"people": ["Hugo_Chavez"], "photos": ["Colin_Powell/Colin_Powell_0003.jpg"]}
    assert main(["gallery", "remove", "Nobody_At_All", "--index", str(index_copy)]) == 2


def test_search_folder_one_row_per_face(index_copy, engine, tmp_path):
    from rvs.cli import main

    folder = tmp_path / "q"
    folder.mkdir()
    srcs = [lfw_image("Colin_Powell", 1), lfw_image("Serena_Williams", 1)]
    if (PHOTOS / "multiface.jpg").is_file():
        srcs.append(PHOTOS / "multiface.jpg")
    for s in srcs:
        (folder / s.name).symlink_to(s)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    expected = sum(len(engine.search(s).faces) for s in srcs)
    for out, read in (("r.csv", lambda p: list(csv.DictReader(open(p)))), ("r.jsonl", lambda p: [json.loads(x) for x in open(p)])):
        assert main(["search", str(folder), "--index", str(index_copy), "--out", str(tmp_path / out)]) == 0
        rows = read(tmp_path / out)
        faces = [r for r in rows if not r["error"]]
        assert len(faces) == expected and len(rows) == expected + 1
        assert {r["image"] for r in rows} == {s.name for s in srcs} | {"broken.jpg"}
        colin = [r for r in faces if r["image"] == "Colin_Powell_0001.jpg"]
        assert len(colin) == 1 and colin[0]["top_identity"] == "Colin_Powell"


def test_ray_embedding_stage_matches_single_process(config, detector, embedder):
    """The Ray Data path (a local Ray) gives the same faces as the in-process path."""
    pytest.importorskip("ray", reason="ray is pinned in requirements-dev.txt (make install)")
    from rvs.gallery.distributed import ray_detect_embed
    from rvs.gallery.embedding import detect_embed
    from rvs.gallery.photos import Photo

    photos = [Photo(f"{n}/{i}", n, str(lfw_image(n, i))) for n in GALLERY_PEOPLE[:3] for i in (1, 2)]
    photos.append(Photo("missing", "x", "/nonexistent/photo.jpg"))
    local, _, _ = detect_embed(photos, config, detector, embedder, progress=False)
    remote, _, _ = ray_detect_embed(photos, config, "", progress=False, batch_size=4, actors=1)
    assert [r.key for r in remote] == [p.key for p in photos]
    for a, b in zip(local[:-1], remote[:-1]):
        assert len(a.embeddings) == len(b.embeddings) == 1
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.5)
        assert float(a.embeddings[0] @ b.embeddings[0]) > 0.999
    assert remote[-1].error and local[-1].error
