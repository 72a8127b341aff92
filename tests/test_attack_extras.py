"""AutoAttack robust accuracy, α-scaling and visual counterfactuals on the trained digits model."""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from oodbench.attacks import AttackContext, AttackSpec
from oodbench.attacks.alpha_scaling import confidence, scale
from oodbench.attacks.autoattack import state_file
from oodbench.attacks.counterfactuals import INDEX_FILE, grid_size
from oodbench.data import load_dataset
from oodbench.data.base import DataRequest
from oodbench.core.registry import attacks

NEW_ATTACKS = ("autoattack", "alpha-scaling", "counterfactuals")
FAST_AA = {"version": "custom", "attacks": ["apgd-ce"]}


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: intra-op threads only add contention on a shared 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(digits_weights, tmp_path_factory):
    from oodbench.models import load_model

    root = tmp_path_factory.mktemp("data")
    model = load_model({"name": "d", "adapter": "safetensors", "arch": "digits-net",
                        "arch_options": {"num_classes": 5}, "path": str(digits_weights)})
    digits = load_dataset("digits", DataRequest(root=root, split="test",
                                                options={"classes": [0, 1, 2, 3, 4]}))
    noise = load_dataset("uniform-noise", DataRequest(root=root, n=100, reference=digits))
    with torch.no_grad():
        in_logits = model(digits.images).numpy()
    return model, digits, noise, in_logits


def context(name, setup, *, images=None, labels=None, artifact_dir=None, model=None,
            label="digits / test", **spec_fields):
    net, digits, noise, in_logits = setup
    attack = attacks.get(name)()
    spec = attack.resolve(AttackSpec(name=name, **spec_fields), "digits")
    if images is None:
        images, labels = ((noise.images, None) if attack.source == "probe"
                          else (digits.images, digits.labels))
    ctx = AttackContext(model=model or net, images=images, labels=labels, spec=spec,
                        in_logits=in_logits, device=torch.device("cpu"), batch_size=128,
                        artifact_dir=artifact_dir, label=label)
    return attack, ctx


# ---------------------------------------------------------------------------------------------
# Registration, resolve, numeric arrays


@pytest.mark.parametrize("name", NEW_ATTACKS)
def test_registered_resolves_and_returns_numeric_arrays(name, setup, tmp_path):
    assert name in attacks.names()
    attack = attacks.get(name)()
    resolved = attack.resolve(AttackSpec(name=name), "digits")
    assert resolved.name == name and resolved.options  # paper defaults filled in
    assert attack.resolve(resolved, "digits") == resolved  # idempotent
    quick = {"autoattack": dict(options=FAST_AA),
             "alpha-scaling": {},
             "counterfactuals": dict(steps=5, options={"n_images": 2, "radii": [0.5, 1.0]})}[name]
    _, digits, noise, _ = setup
    images, labels = ((noise.images[:20], None) if attack.source == "probe"
                      else (digits.images[:20], digits.labels[:20]))
    attack, ctx = context(name, setup, images=images, labels=labels, artifact_dir=tmp_path, **quick)
    arrays = attack.run(ctx)
    assert arrays
    for key, value in arrays.items():
        assert isinstance(value, np.ndarray), key
        assert value.dtype.kind in "biuf", (key, value.dtype)
    if attack.row == "in":
        assert arrays["logits"].shape == (20, 5) and arrays["labels"].shape == (20,)
    else:
        values = attack.summarize(arrays)
        assert values and all(isinstance(v, float) for v in values.values())


def test_class_attributes():
    assert (attacks.get("autoattack").source, attacks.get("autoattack").row) == ("in-distribution", "in")
    assert (attacks.get("alpha-scaling").source, attacks.get("alpha-scaling").row) == ("probe", "summary")
    assert (attacks.get("counterfactuals").source,
            attacks.get("counterfactuals").row) == ("in-distribution", "summary")


def test_defaults():
    aa = attacks.get("autoattack")().resolve(AttackSpec(name="autoattack"), "cifar10")
    assert aa.threat.norm == "Linf" and aa.threat.eps == pytest.approx(8 / 255)
    assert aa.options["version"] == "standard"
    # options merge key by key with the defaults
    aa = attacks.get("autoattack")().resolve(
        AttackSpec(name="autoattack", options={"chunk_size": 7}), "cifar10")
    assert aa.options["version"] == "standard" and aa.options["chunk_size"] == 7
    al = attacks.get("alpha-scaling")().resolve(AttackSpec(name="alpha-scaling"), "mnist")
    assert al.options["threshold"] == 0.999 and al.options["overconfident"] == 0.95
    cf = attacks.get("counterfactuals")().resolve(
        AttackSpec(name="counterfactuals", options={"steps": 30, "radii": [2, 0.5]}), "cifar10")
    assert cf.steps == 30 and cf.optimizer == "apgd" and cf.objective == "targeted-conf"
    assert cf.options["radii"] == [0.5, 2.0] and cf.options["norm"] == "L2"
    assert "steps" not in cf.options
    cf = attacks.get("counterfactuals")().resolve(AttackSpec(name="counterfactuals"), "cifar10")
    assert cf.options["radii"] == [0.5, 1.0, 2.0, 3.0] and cf.steps == 100
    assert cf.options["n_images"] == 8 and cf.options["targets"] == "all"


@pytest.mark.parametrize("name, fields, match", [
    ("autoattack", {"threat": {"norm": "L1", "eps": 5.0}}, "Linf and L2"),
    ("autoattack", {"options": {"version": "custom"}}, "options.attacks"),
    ("autoattack", {"options": {"version": "custom", "attacks": ["pgd"]}}, "options.attacks"),
    ("autoattack", {"options": {"attacks": ["apgd-ce"]}}, "only to version 'custom'"),
    ("autoattack", {"options": {"verison": "custom"}}, "unknown option"),
    ("autoattack", {"steps": 10}, "does not apply"),
    ("alpha-scaling", {"threat": {"norm": "Linf", "eps": 0.1}}, "does not apply"),
    ("alpha-scaling", {"options": {"threshold": 1.5}}, "threshold"),
    ("alpha-scaling", {"options": {"alpha": 3}}, "unknown option"),
    ("counterfactuals", {"threat": {"norm": "L2", "eps": 1.0}}, "options.radii"),
    ("counterfactuals", {"options": {"radii": [-1]}}, "positive"),
    ("counterfactuals", {"options": {"targets": "some"}}, "targets"),
    ("counterfactuals", {"objective": "ce"}, "targeted-conf"),
])
def test_bad_specs_are_refused(name, fields, match):
    with pytest.raises(ValueError, match=match):
        attacks.get(name)().resolve(AttackSpec(name=name, **fields), "digits")


# ---------------------------------------------------------------------------------------------
# AutoAttack


def test_autoattack_robust_accuracy_matches_pyautoattack(setup, tmp_path):
    from pyautoattack import AutoAttack

    model, digits, _, in_logits = setup
    x, y = digits.images[:100], digits.labels[:100]
    eps = 0.1
    attack, ctx = context("autoattack", setup, images=x, labels=y, artifact_dir=tmp_path,
                          threat={"norm": "Linf", "eps": eps},
                          options={**FAST_AA, "save_adversarial": True})
    out = attack.run(ctx)
    clean_acc = float((in_logits[:100].argmax(1) == y.numpy()).mean())
    robust_acc = float((out["logits"].argmax(1) == out["labels"]).mean())
    assert np.array_equal(out["labels"], y.numpy())
    assert 0.0 <= robust_acc < clean_acc
    assert clean_acc - robust_acc > 0.1  # eps 0.1 breaks a good share of the digits

    # The returned logits are the model's logits on AutoAttack's adversarial images.
    with np.load(state_file(tmp_path, ctx.label, ctx.seed)) as f:
        x_adv = torch.from_numpy(f["x_adv"])
        assert f["done"].all()
    assert (x_adv - x).abs().flatten(1).max(1).values.max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        direct = model(x_adv).numpy()
    np.testing.assert_allclose(out["logits"], direct, rtol=1e-5, atol=1e-5)
    assert (direct.argmax(1) == y.numpy()).mean() == robust_acc

    # Cross-check with pyautoattack called directly (same seed, one batch).
    aa = AutoAttack(model, norm="Linf", eps=eps, version="custom", attacks=["apgd-ce"], seed=0)
    _, y_adv = aa.run_standard_evaluation(x, y, batch_size=128)
    assert np.array_equal((y_adv == y).numpy(), out["logits"].argmax(1) == y.numpy())


def test_autoattack_resumes_from_its_state_file(setup, tmp_path, monkeypatch):
    import pyautoattack

    _, digits, _, _ = setup
    x, y = digits.images[:20], digits.labels[:20]
    fields = dict(threat={"norm": "Linf", "eps": 0.15}, options={**FAST_AA, "chunk_size": 10})
    original = pyautoattack.AutoAttack.run_standard_evaluation
    calls = {"n": 0, "kill_at": None}

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        if calls["kill_at"] is not None and calls["n"] >= calls["kill_at"]:
            raise KeyboardInterrupt("killed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", counting)

    # Reference: one uninterrupted run.
    attack, ref_ctx = context("autoattack", setup, images=x, labels=y,
                              artifact_dir=tmp_path / "ref", **fields)
    reference = attack.run(ref_ctx)
    assert calls["n"] == 2

    # Killed during the second chunk: the first one is in the state file.
    attack, ctx = context("autoattack", setup, images=x, labels=y,
                          artifact_dir=tmp_path / "run", **fields)
    calls.update(n=0, kill_at=2)
    with pytest.raises(KeyboardInterrupt):
        attack.run(ctx)
    path = state_file(tmp_path / "run", ctx.label, ctx.seed)
    with np.load(path) as f:
        assert f["done"].tolist() == [True, False]

    # Started again: only the missing chunk is attacked, and the result is the uninterrupted one.
    calls.update(n=0, kill_at=None)
    resumed = attack.run(ctx)
    assert calls["n"] == 1
    np.testing.assert_array_equal(resumed["logits"], reference["logits"])
    np.testing.assert_array_equal(resumed["labels"], reference["labels"])

    # A finished state file: nothing is attacked again.
    calls.update(n=0)
    start = time.perf_counter()
    again = attack.run(ctx)
    assert calls["n"] == 0 and time.perf_counter() - start < 1.0
    np.testing.assert_array_equal(again["logits"], reference["logits"])

    # Other points (or eps, seed, model...): the stale file is not reused.
    calls.update(n=0)
    attack.run(AttackContext(**{**ctx.__dict__, "images": digits.images[20:40],
                                "labels": digits.labels[20:40]}))
    assert calls["n"] == 2


def test_autoattack_without_pyautoattack(setup, monkeypatch):
    attack, ctx = context("autoattack", setup, options=FAST_AA)
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    with pytest.raises(ImportError, match=r"pip install 'oodbench\[autoattack\]'"):
        attack.run(ctx)


@pytest.mark.slow
def test_autoattack_standard_version(setup, tmp_path):
    """The full standard version (APGD-CE, APGD-T, FAB-T, Square) with 5 classes: the targeted
    attacks use the 4 other classes (pyautoattack's 9 targets would index out of range)."""
    _, digits, _, in_logits = setup
    x, y = digits.images[:10], digits.labels[:10]
    threat = {"norm": "L2", "eps": 0.5}  # some points survive APGD-CE, so all four attacks run
    attack, ctx = context("autoattack", setup, images=x, labels=y, artifact_dir=tmp_path,
                          threat=threat)
    out = attack.run(ctx)
    clean_acc = float((in_logits[:10].argmax(1) == y.numpy()).mean())
    robust_acc = float((out["logits"].argmax(1) == y.numpy()).mean())
    assert 0.0 < robust_acc < clean_acc
    _, fast_ctx = context("autoattack", setup, images=x, labels=y, artifact_dir=tmp_path / "fast",
                          threat=threat, options=FAST_AA)
    fast = attack.run(fast_ctx)
    assert robust_acc <= float((fast["logits"].argmax(1) == y.numpy()).mean())


# ---------------------------------------------------------------------------------------------
# α-scaling


class ConstantLogits(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits.expand(len(x), -1) + 0 * x.flatten(1)[:, :1]


def test_alpha_scaling_finds_the_threshold_crossing(setup):
    model, _, noise, _ = setup
    attack, ctx = context("alpha-scaling", setup)
    out = attack.run(ctx)
    opts = ctx.spec.options
    thr, rtol = opts["threshold"], opts["rtol"]
    alpha, lower = out["alpha"], out["alpha_lower"]
    x = noise.images
    assert alpha.shape == (100,) and alpha.dtype == np.float64
    assert np.all(alpha >= 1)
    finite = np.isfinite(alpha)
    assert finite.all()  # the plain model reaches 99.9% on every noise image (Theorem 3.1)

    at_alpha = confidence(model, scale(x, torch.from_numpy(alpha))).numpy()
    assert np.all(at_alpha >= thr)
    np.testing.assert_allclose(out["confidence_scaled"], at_alpha, rtol=0, atol=1e-9)

    above_one = alpha > 1
    assert above_one.sum() > 50
    below = confidence(model, scale(x, torch.from_numpy(alpha / (1 + rtol)))).numpy()
    assert np.all(below[above_one] < thr)  # minimal up to the bisection tolerance
    at_lower = confidence(model, scale(x, torch.from_numpy(np.nan_to_num(lower, nan=1.0)))).numpy()
    assert np.all(at_lower[above_one] < thr)
    assert np.all(alpha[above_one] <= lower[above_one] * (1 + rtol) * (1 + 1e-12))
    assert np.all(np.isnan(lower[~above_one]))
    clean = confidence(model, x).numpy()
    assert np.all(clean[~above_one] >= thr)

    # Projection back to the box, computed independently.
    projected = confidence(model, (x * torch.from_numpy(alpha).float().view(-1, 1, 1, 1)).clamp(0, 1))
    np.testing.assert_allclose(out["confidence_projected"], projected.numpy(), rtol=0, atol=1e-9)
    assert np.array_equal(out["overconfident"], projected.numpy() > 0.95)
    values = attack.summarize(out)
    assert values["median-alpha"] == pytest.approx(float(np.median(alpha)))
    assert values["overconfident-share"] == pytest.approx(float((projected.numpy() > 0.95).mean()))
    assert 1 < values["median-alpha"] < 1e4


def test_alpha_scaling_unreachable_threshold_gives_inf(setup):
    _, _, noise, _ = setup
    attack, ctx = context("alpha-scaling", setup, model=ConstantLogits([0.0] * 5),
                          options={"alpha_max": 1e6})
    out = attack.run(ctx)
    assert np.all(np.isinf(out["alpha"]))
    assert np.all(out["alpha_lower"] == 1e6)
    np.testing.assert_allclose(out["confidence_projected"], 0.2)
    assert not out["overconfident"].any()
    values = attack.summarize(out)
    assert values == {"median-alpha": math.inf, "overconfident-share": 0.0}

    # Mixed finite / infinite trials: numpy's median orders inf last.
    mixed = {"alpha": np.array([2.0, 4.0, np.inf]), "overconfident": np.array([True, False, False])}
    assert attack.summarize(mixed) == {"median-alpha": 4.0, "overconfident-share": pytest.approx(1 / 3)}

    # A model that is already 99.9% confident: α = 1, no lower bracket end.
    attack, ctx = context("alpha-scaling", setup, model=ConstantLogits([20.0, 0, 0, 0, 0]))
    out = attack.run(ctx)
    assert np.all(out["alpha"] == 1.0) and np.all(np.isnan(out["alpha_lower"]))
    assert out["overconfident"].all() and attack.summarize(out)["median-alpha"] == 1.0


# ---------------------------------------------------------------------------------------------
# Counterfactuals


def test_counterfactuals_confidence_grows_with_radius_and_grids_are_written(setup, tmp_path):
    _, digits, _, _ = setup
    radii = [0.5, 1.0, 2.0, 3.0]
    attack, ctx = context("counterfactuals", setup, artifact_dir=tmp_path, steps=30,
                          options={"n_images": 4, "radii": radii})
    out = attack.run(ctx)
    conf, clean = out["target_confidence"], out["clean_confidence"]
    assert conf.shape == (4, 5, 4) and clean.shape == (4, 5)
    assert np.array_equal(out["targets"], np.arange(5)) and np.array_equal(out["radii"], radii)
    assert np.array_equal(out["labels"], digits.labels[out["indices"]].numpy())

    # Nested balls: per (image, target) and on average, never worse at a larger radius.
    assert np.all(np.diff(conf, axis=2) >= 0)
    means = conf.mean(axis=(0, 1))
    assert np.all(np.diff(means) >= 0) and means[-1] > means[0] + 0.3
    # ... and better than the clean image (the clean point is a candidate of every ball).
    assert np.all(conf[:, :, 0] >= clean - 1e-6)
    assert means[-1] > clean.mean() + 0.5
    other = out["targets"][None, :] != out["labels"][:, None]  # counterfactual classes
    assert conf[:, :, -1][other].mean() > 0.9 > clean[other].mean()

    values = attack.summarize(out)
    assert list(values) == ["target-conf@0.5", "target-conf@1", "target-conf@2", "target-conf@3"]
    np.testing.assert_allclose(list(values.values()), means)

    # PNG grids: one per image, rows = targets, columns = original + radii, 96 px cells + text.
    from PIL import Image

    index = json.loads((tmp_path / INDEX_FILE).read_text())
    files = [tmp_path / entry["file"] for entry in index["images"]]
    assert len(files) == 4 and [e["index"] for e in index["images"]] == out["indices"].tolist()
    expected = (4 + 5 * (96 + 4), 4 + 5 * (96 + 26 + 4))
    assert grid_size(5, 5, 8, 8, 96) == expected
    for path in files:
        with Image.open(path) as im:
            im.load()
            assert im.format == "PNG" and im.size == expected
            # the text strip under the first cell is drawn (not blank)
            strip = np.asarray(im.convert("L"))[4 + 96:4 + 96 + 26, 4:100]
            assert (strip < 128).any()
    np.testing.assert_allclose(index["images"][0]["target_confidence"], conf[0])
