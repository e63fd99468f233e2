"""rvs.train: losses, sampler, config parsing, one real training step, checkpoint resume."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from rvs.errors import RvsError
from rvs.train.config import TrainConfig, apply_overrides
from rvs.train.losses import consistency_loss, contrastive_loss, improved_loss
from tests.conftest import requires_data

# Small real people of the View 1 train split (2-4 images each): a few seconds of MTCNN the
# first time, then read from the shared crop cache.
TINY_PEOPLE = {"Aaron_Sorkin": 2, "Abdel_Nasser_Assidi": 2, "Abdoulaye_Wade": 4}


# ---------------------------------------------------------------------------------------------
# Losses, on hand-computed cases


def test_contrastive_same_person_is_half_squared_distance():
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])  # d = 2
    assert contrastive_loss(e1, e2, torch.tensor([1.0]), margin=1.0).item() == pytest.approx(1.0)
    # Identical embeddings of the same person cost nothing.
    assert contrastive_loss(e1, e1, torch.tensor([1.0])).item() == pytest.approx(0.0)


def test_contrastive_different_people_inside_and_beyond_margin():
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])  # d = 2, sqrt(d) = 1.4142
    # Inside the margin: 0.5 * (2 - sqrt 2)^2 = 0.171573
    assert contrastive_loss(e1, e2, torch.tensor([0.0]), margin=2.0).item() == pytest.approx(0.5 * (2 - math.sqrt(2)) ** 2, rel=1e-6)
    # Beyond the margin: no loss, no gradient.
    assert contrastive_loss(e1, e2, torch.tensor([0.0]), margin=1.0).item() == 0.0
    # Identical embeddings of different people: the full margin^2 / 2, and a finite gradient.
    a = torch.tensor([[0.6, 0.8]], requires_grad=True)
    loss = contrastive_loss(a, a.detach().clone(), torch.tensor([0.0]), margin=1.0)
    assert loss.item() == pytest.approx(0.5, abs=1e-6)
    loss.backward()
    assert torch.isfinite(a.grad).all()


def test_contrastive_is_batch_mean():
    e1 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    e2 = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    t = torch.tensor([1.0, 0.0, 0.0])
    # 1.0 (same, d=2) ; 0.5*(2-sqrt2)^2 (diff, margin 2) ; 0 (diff, dist 3 > 2)
    expect = (1.0 + 0.5 * (2 - math.sqrt(2)) ** 2 + 0.0) / 3
    assert contrastive_loss(e1, e2, t, margin=2.0).item() == pytest.approx(expect, rel=1e-6)


def test_consistency_is_mse_and_total_adds_weighted():
    r = torch.zeros(2, 3, 4, 4)
    x = torch.full((2, 3, 4, 4), 0.5)
    x[0] = -1.0  # errors 1.0 and 0.25 -> mean 0.625
    assert consistency_loss(r, x).item() == pytest.approx(0.625)
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    total, parts = improved_loss(e1, e2, torch.tensor([1.0]), r, x, margin=1.0, consistency_weight=2.0)
    assert total.item() == pytest.approx(1.0 + 2 * 0.625)
    assert parts == {"contrastive": pytest.approx(1.0), "consistency": pytest.approx(0.625)}


# ---------------------------------------------------------------------------------------------
# Config


def test_config_overrides_and_json_sections(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"batch_size": 8, "lr": 0.01, "_comment": "ignored", "baseline": {"image_size": 64}, "improved": {"max_steps": 7}}))
    imp = TrainConfig.from_sources("improved", f, ["lr=3e-4", "lr_milestones=2,4", "flip=false", "train-from=repeat_3"])
    assert (imp.batch_size, imp.lr, imp.max_steps, imp.lr_milestones, imp.flip, imp.train_from) == (8, 3e-4, 7, [2, 4], False, "repeat_3")
    assert imp.image_size == 160
    base = TrainConfig.from_sources("baseline", f, [])
    assert (base.model, base.image_size, base.batch_size, base.max_steps) == ("baseline", 64, 8, 0)
    # The baseline's own defaults (224 px, batch 64) apply when nothing overrides them.
    assert (TrainConfig.from_sources("baseline").image_size, TrainConfig.from_sources("baseline").batch_size) == (224, 64)
    for bad in (["nope=1"], ["lr"], ["batch_size=two"], ["flip=maybe"], ["epochs=1.5"]):
        with pytest.raises(RvsError):
            apply_overrides(TrainConfig(), bad)
    with pytest.raises(RvsError):
        TrainConfig.from_sources("improved", None, ["batch_size=1"])


def test_config_files_in_repo_parse():
    from pathlib import Path

    for f in sorted(Path("train/configs").glob("*.json")):
        for model in ("improved", "baseline"):
            TrainConfig.from_sources(model, f)


def test_lr_schedule_divides_by_ten_at_milestones():
    from rvs.train.loop import lr_factor

    got = [lr_factor(e, [10, 20, 50], 0.1) for e in (0, 9, 10, 19, 20, 49, 50, 99)]
    assert got == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


# ---------------------------------------------------------------------------------------------
# Sampler and splits


def test_pair_sampler_positives_need_two_images():
    labels = np.array([0, 0, 0, 1, 2, 3, 3])  # people 1 and 2 have one image each
    s = PairSamplerForTest(labels)
    for _ in range(50):
        a, b, same = s.sample()
        assert same.tolist() == [1.0] * 4 + [0.0] * 4
        for i, j, t in zip(a, b, same):
            assert i != j
            if t:
                assert labels[i] == labels[j] and labels[i] in (0, 3)
            else:
                assert labels[i] != labels[j]
    # Negatives do use the one-image people.
    seen = set()
    for _ in range(50):
        a, b, same = s.sample()
        seen |= set(labels[a[~same.astype(bool)]]) | set(labels[b[~same.astype(bool)]])
    assert {1, 2} <= seen


def PairSamplerForTest(labels):
    from rvs.train.data import PairSampler

    return PairSampler(labels, batch_size=8, pos_fraction=0.5, seed=0)


def test_pair_sampler_state_roundtrip():
    from rvs.train.data import PairSampler

    s = PairSampler(np.array([0, 0, 1, 1, 2]), 4, seed=3)
    s.sample()
    st = json.loads(json.dumps(s.state()))  # JSON-able for state.json
    nxt = s.sample()
    s2 = PairSampler(np.array([0, 0, 1, 1, 2]), 4, seed=99)
    s2.set_state(st)
    for x, y in zip(nxt, s2.sample()):
        np.testing.assert_array_equal(x, y)


@requires_data
def test_pairs_stay_inside_the_train_split(config):
    from rvs.eval.protocols import people_images
    from rvs.train.data import PairSampler, check_disjoint, read_split_people

    train, test = read_split_people("train", config), read_split_people("test", config)
    check_disjoint(train, test)
    paths, labels, names = people_images(train)
    s = PairSampler(labels, 64, seed=0)
    used = set()
    for _ in range(30):
        a, b, same = s.sample()
        used |= {names[labels[i]] for i in np.concatenate([a, b])}
        for i, j, t in zip(a, b, same):
            assert (labels[i] == labels[j]) == bool(t)
            if t:
                assert train[names[labels[i]]] >= 2
    assert used <= set(train) and not used & set(test)
    with pytest.raises(RvsError):
        check_disjoint(train, {next(iter(train)): 1})
    small = read_split_people("train", config, limit_people=10, seed=1)
    assert len(small) == 10 and set(small) <= set(train) and sum(c >= 2 for c in small.values()) >= 5


def test_augment_keeps_shape_and_is_seeded():
    from rvs.train.data import augment, to_input

    crops = np.random.default_rng(0).integers(0, 256, (4, 160, 160, 3), dtype=np.uint8)
    x = to_input(crops, 160)
    a = augment(x, torch.Generator().manual_seed(1), flip=True, jitter=8)
    b = augment(x, torch.Generator().manual_seed(1), flip=True, jitter=8)
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, x)
    assert to_input(crops, 64).shape == (4, 3, 64, 64)
    # No augmentation -> identity.
    assert torch.equal(augment(x, torch.Generator(), flip=False, jitter=0), x)


# ---------------------------------------------------------------------------------------------
# Real training steps


@pytest.fixture(scope="module")
def tiny_split(config):
    if not config.data_dir.joinpath("lfw").is_dir():
        pytest.skip("real data not found")
    from rvs.train.data import load_split

    return load_split(TINY_PEOPLE, config, progress=False)


@requires_data
def test_one_improved_step_changes_weights_and_lowers_loss(config, tiny_split):
    from rvs.train.loop import improved_step
    from rvs.train.models import build_improved

    torch.manual_seed(0)
    model, init_id = build_improved("casia-webface", config)
    assert init_id.startswith("facenet-casia")
    cfg = TrainConfig(batch_size=4, flip=False, jitter=0, lr=1e-4)
    labels = tiny_split.labels
    # Fixed batch: 2 same-person pairs, 2 different-person pairs.
    ia, ib = np.array([0, 4, 0, 2]), np.array([1, 5, 2, 6])
    same = np.array([1, 1, 0, 0], np.float32)
    assert ((labels[ia] == labels[ib]) == same.astype(bool)).all()
    batch = (tiny_split.crops, (ia, ib, same))
    gen = torch.Generator()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def loss_now() -> float:
        torch.manual_seed(1)  # same dropout mask for the before/after comparison
        model.train()
        with torch.no_grad():
            return float(improved_step(model, batch, cfg, gen, torch.device("cpu"))[0])

    l0 = loss_now()
    torch.manual_seed(1)
    model.train()
    loss, parts = improved_step(model, batch, cfg, gen, torch.device("cpu"))
    assert float(loss.detach()) == pytest.approx(l0, rel=1e-4) and set(parts) == {"contrastive", "consistency"}
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = model.state_dict()
    assert not torch.equal(before["encoder.last_linear.weight"], after["encoder.last_linear.weight"])
    assert not torch.equal(before["decoder.fc.weight"], after["decoder.fc.weight"])
    assert loss_now() < l0


@requires_data
def test_baseline_train_and_resume(config, tiny_split, tmp_path, monkeypatch):
    """train() end to end on a tiny baseline (random init, 32 px), then resume adds steps."""
    from safetensors.torch import load_file

    from rvs.train import data as data_mod
    from rvs.train import loop

    monkeypatch.setattr(loop, "read_split_people", lambda which, cfg, n=0, seed=0: TINY_PEOPLE if which == "train" else data_mod.read_split_people(which, cfg))
    cfg = TrainConfig.from_sources(
        "baseline",
        None,
        [f"out_dir={tmp_path}/run", "image_size=32", "batch_size=4", "max_steps=3", "checkpoint_every=2", "log_every=1",
         "pretrained_imagenet=false", "eval_at_end=false", "jitter=2"],
    )  # fmt: skip
    r1 = loop.train(cfg, config, progress=False)
    assert r1.steps == 3 and len(r1.losses) == 3
    ck = tmp_path / "run" / "checkpoint"
    state = json.loads((ck / "state.json").read_text())
    assert state["step"] == 3
    w3 = load_file(str(ck / "model.safetensors"))

    # A resumed run starts from the saved step and weights (not from scratch).
    cfg.max_steps = 5
    seen = {}
    orig = loop.load_checkpoint

    def spy(*a, **k):
        st = orig(*a, **k)
        model = a[1]
        seen["fc1"] = model.fc1.weight.detach().clone()
        return st

    monkeypatch.setattr(loop, "load_checkpoint", spy)
    r2 = loop.train(cfg, config, progress=False)
    assert r2.steps == 5 and [x["step"] for x in r2.losses] == [4, 5]
    assert torch.equal(seen["fc1"], w3["fc1.weight"])
    assert any("resumed" in n for n in r2.notes)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4, 5]


def test_checkpoint_roundtrip_restores_everything(tmp_path):
    from rvs.train.loop import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)
    for _ in range(3):
        opt.zero_grad()
        m(torch.randn(4, 3)).sum().backward()
        opt.step()
        sched.step()
    gen = torch.Generator().manual_seed(5)
    save_checkpoint(tmp_path, m, opt, sched, gen, 3, {"x": 1}, TrainConfig())
    expect_w, expect_lr, expect_rand = m.weight.detach().clone(), opt.param_groups[0]["lr"], torch.rand(2, generator=gen)

    torch.manual_seed(1)
    m2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(m2.parameters(), 1e-2)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 0.5**s)
    gen2 = torch.Generator()
    st = load_checkpoint(tmp_path / "checkpoint", m2, opt2, sched2, gen2, torch.device("cpu"))
    assert st["step"] == 3 and st["sampler"] == {"x": 1}
    assert torch.equal(m2.weight, expect_w)
    assert opt2.param_groups[0]["lr"] == pytest.approx(expect_lr) and sched2.last_epoch == 3
    assert torch.equal(torch.rand(2, generator=gen2), expect_rand)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


@requires_data
def test_export_loads_with_rvs_weights(config, tmp_path):
    from rvs.faces.embed import build_model
    from rvs.models.weights import load_weights
    from rvs.train.export import export_encoder

    torch.manual_seed(0)
    enc = build_model(None)
    side = export_encoder(enc, tmp_path / "enc.safetensors", {"note": "test"})
    w = load_weights(str(tmp_path / "enc.safetensors"), config)
    assert w.model_id == side["model_id"] and w.model_id.startswith("rvs-improved-") and w.sha256 == side["sha256"]
    assert torch.equal(w.state_dict["last_linear.weight"], enc.state_dict()["last_linear.weight"])
    assert w.center is None and w.embedding_id() == w.model_id

    # With an embedding centre: stored in the same file, applied by the embedder, named in the id.
    from rvs.faces.embed import Embedder
    from rvs.models.weights import center_digest

    c = np.random.default_rng(0).normal(size=512).astype(np.float32) * 0.05
    side_c = export_encoder(enc, tmp_path / "enc_c.safetensors", center=c)
    wc = load_weights(str(tmp_path / "enc_c.safetensors"), config)
    assert np.array_equal(wc.center, c) and side_c["embedding_center_digest"] == center_digest(c)
    assert wc.embedding_id() == f"{side_c['model_id']}+center-{center_digest(c)}"
    x = np.random.default_rng(1).integers(0, 255, (2, 160, 160, 3), dtype=np.uint8)
    cfg32 = dataclasses.replace(config, weights=str(tmp_path / "enc_c.safetensors"), embed_precision="fp32")
    centred = Embedder(cfg32).embed(x)
    raw = Embedder(dataclasses.replace(cfg32, center_embeddings=False)).embed(x)
    expect = (raw - c) / np.linalg.norm(raw - c, axis=1, keepdims=True)
    assert np.allclose(centred, expect, atol=1e-5)


@requires_data
def test_improved_train_mode_keeps_the_pretrained_function(config, tiny_split):
    """With freeze_bn (default), train mode differs from eval mode only by dropout: the folded
    BatchNorms of the default weights must not switch to batch statistics."""
    from rvs.train.data import to_input
    from rvs.train.models import build_improved

    model, _ = build_improved("casia-webface", config)
    model.encoder.dropout.p = 0.0
    x = to_input(tiny_split.crops[:4])
    with torch.no_grad():
        ref = model.eval().encoder(x)
        got = model.train().encoder(x)
    torch.testing.assert_close(got, ref)
    model_bn, _ = build_improved("casia-webface", config, freeze_bn=False)
    model_bn.encoder.dropout.p = 0.0
    with torch.no_grad():
        assert (model_bn.train().encoder(x) - ref).abs().max() > 0.05


@requires_data
def test_improved_run_exports_encoder_with_its_centre(config, tiny_split, tmp_path, monkeypatch):
    """A short improved run exports an encoder that carries its own embedding centre (the mean
    embedding of its training images), so `--weights export.safetensors` embeds like the run scored."""
    from rvs.faces.embed import Embedder
    from rvs.models.weights import load_weights
    from rvs.train import data as data_mod
    from rvs.train import loop

    monkeypatch.setattr(
        loop, "read_split_people", lambda which, cfg, n=0, seed=0: TINY_PEOPLE if which == "train" else data_mod.read_split_people(which, cfg)
    )
    cfg = TrainConfig.from_sources(
        "improved", None, [f"out_dir={tmp_path}/run", "batch_size=2", "max_steps=2", "train_from=repeat_3", "eval_at_end=false"]
    )
    res = loop.train(cfg, config, progress=False)
    path = res.export["path"]
    w = load_weights(path, config)
    assert w.center is not None and res.export["embedding_center_digest"] in w.embedding_id()
    raw = Embedder(dataclasses.replace(config, weights=path, center_embeddings=False)).embed(tiny_split.crops)
    assert np.allclose(w.center, raw.mean(axis=0), atol=2e-2)
    # Centring is what the serving embedder then applies.
    served = Embedder(dataclasses.replace(config, weights=path)).embed(tiny_split.crops[:2])
    expect = raw[:2] - w.center
    assert np.allclose(served, expect / np.linalg.norm(expect, axis=1, keepdims=True), atol=2e-2)
