"""Training: the papers' losses on hand-built cases, the methods' effect on confidence, resumable
checkpoints, a smoke run of every registered method, and the shipped recipes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from oodbench.attacks import AttackConfig, ThreatModel, run_attack
from oodbench.data import DataRequest, load_dataset
from oodbench.core.registry import UnknownNameError, architectures, attacks, objectives, trainers
from oodbench.train import Recipe, RecipeError, load_recipe, train_from_recipe
from oodbench.train import losses
from oodbench.train.checkpoint import load_checkpoint
from oodbench.train.data import augment, cutout_boxes, step_seed
from oodbench.train.recipe import Augment, Schedule, TrainAttack

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The digits nets are tiny: one thread is as fast, and much faster when other processes
    share the cores (two threads per process oversubscribe them and spin)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


RECIPES = sorted((Path(__file__).parent.parent / "model_zoo" / "recipes").glob("*.yaml"))
DIGITS_0_4 = {"dataset": "digits", "options": {"classes": [0, 1, 2, 3, 4]}}
DIGITS_5_9 = {"dataset": "digits", "options": {"classes": [5, 6, 7, 8, 9]}}


# ------------------------------------------------------------------------------------------------
# 1. losses on a hand-built case: a linear model with set weights, expected values from numpy
# ------------------------------------------------------------------------------------------------


def _linear(weight, bias) -> nn.Module:
    """Images (N, 1, 1, 2) → logits W·x + b."""
    lin = nn.Linear(2, len(weight))
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        lin.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return nn.Sequential(nn.Flatten(), lin)


def _img(points) -> torch.Tensor:
    return torch.tensor(points, dtype=torch.float32).view(-1, 1, 1, 2)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def _np_ce(w, b, x, y) -> float:
    ls = _log_softmax(np.asarray(x, float) @ np.asarray(w, float).T + np.asarray(b, float))
    return float(-ls[np.arange(len(y)), y].mean())


def _np_out(w, b, x, kind) -> float:
    z = np.asarray(x, float) @ np.asarray(w, float).T + np.asarray(b, float)
    if kind == "logit-spread":  # GOOD's log(1 + s²/2) of the spread s = max z − min z
        return float(np.log1p((z.max(1) - z.min(1)) ** 2 / 2).mean())
    ls = _log_softmax(z)
    return float(ls.max(1).mean() if kind == "max-log-conf" else (-ls.mean(1)).mean())


W3, B3 = [[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]], [0.0, 0.1, -0.2]
X_IN, Y_IN = [[0.2, 0.7], [0.9, 0.1]], [1, 0]
X_OUT = [[0.5, 0.5], [0.3, 0.8], [0.0, 1.0]]


def test_out_losses_and_logit_margin_by_hand():
    z = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    # max log-softmax: 2 − log(e² + 1 + e⁻¹); uniform logits: −log 3
    lse = math.log(math.exp(2) + 1 + math.exp(-1))
    torch.testing.assert_close(losses.max_log_confidence(z), torch.tensor([2 - lse, -math.log(3)]))
    # CE to uniform: lse − mean(z) = lse − 1/3; uniform logits: log 3 (its minimum)
    torch.testing.assert_close(losses.cross_entropy_uniform(z), torch.tensor([lse - 1 / 3, math.log(3)]))
    # logit margin max_{i≠y} z_i − z_y
    margin = objectives.get("logit-margin")(z, torch.tensor([0, 2]))
    torch.testing.assert_close(margin, torch.tensor([0.0 - 2.0, 0.0]))
    with pytest.raises(ValueError, match="target"):
        objectives.get("logit-margin")(z, None)
    # the out-losses are the attack objectives of the same name: inner max = outer min quantity
    for kind in losses.OUT_LOSSES:
        torch.testing.assert_close(losses.out_loss(z, kind), objectives.get(kind)(z, None))


def test_cross_entropy_and_ceda_and_oe_by_hand():
    model = _linear(W3, B3)
    x_in, y_in, x_out = _img(X_IN), torch.tensor(Y_IN), _img(X_OUT)
    ce = _np_ce(W3, B3, X_IN, Y_IN)
    out = losses.cross_entropy_loss(model, x_in, y_in)
    assert float(out.loss.detach()) == pytest.approx(ce, abs=1e-6)
    assert out.logits_in.shape == (2, 3)
    for kind in losses.OUT_LOSSES:
        res = losses.ceda_loss(model, x_in, y_in, x_out, lam=0.5, out_loss_kind=kind)
        expected = ce + 0.5 * _np_out(W3, B3, X_OUT, kind)
        assert float(res.loss.detach()) == pytest.approx(expected, abs=1e-6)
        assert float(res.parts["in"]) == pytest.approx(ce, abs=1e-6)
        assert float(res.parts["out"]) == pytest.approx(_np_out(W3, B3, X_OUT, kind), abs=1e-6)
    # OE = CEDA with the cross-entropy to the uniform distribution by default
    oe = losses.oe_loss(model, x_in, y_in, x_out, lam=2.0)
    assert float(oe.loss.detach()) == pytest.approx(ce + 2.0 * _np_out(W3, B3, X_OUT, "ce-uniform"), abs=1e-6)


# Two classes: every objective is monotone in the margin d = f0 − f1 = 3·x0 − 2·x1 + 0.5, so the
# worst point of a ball is known in closed form (Linf: a corner; L2: along ±(3, −2)/√13).
W2, B2 = [[2.0, -1.0], [-1.0, 1.0]], [0.5, 0.0]
U = np.array([3.0, -2.0]) / math.sqrt(13.0)


def _pgd(norm, eps, steps=10, objective=None):
    kw = {"objective": objective} if objective else {}
    return AttackConfig(threat=ThreatModel(norm=norm, eps=eps), steps=steps, step_size=eps / 4,
                        random_start=False, **kw)


def test_acet_by_hand():
    model = _linear(W2, B2)
    x_in, y_in = [[0.4, 0.5], [0.7, 0.3]], [0, 1]
    x_out = [[0.6, 0.2], [0.1, 0.9]]  # d = 1.9 > 0 and d = −1.0 < 0 on their whole 0.1-balls
    worst = [[0.7, 0.1], [0.0, 1.0]]  # |d| grows: x ± 0.1·sign(3, −2), the second on the box edge
    for kind in losses.OUT_LOSSES:
        res = losses.acet_loss(model, _img(x_in), torch.tensor(y_in), _img(x_out),
                               attack=_pgd("Linf", 0.1, objective=kind), lam=1.0,
                               out_loss_kind=kind, seed=0)
        expected = _np_ce(W2, B2, x_in, y_in) + _np_out(W2, B2, worst, kind)
        assert float(res.loss.detach()) == pytest.approx(expected, abs=1e-5), kind
    # more than a clean CEDA loss: the attack found worse points
    ceda = losses.ceda_loss(model, _img(x_in), torch.tensor(y_in), _img(x_out))
    assert float(res.loss.detach()) > float(ceda.loss.detach())


@pytest.mark.parametrize("inner", ["ce", "logit-margin"])
def test_adversarial_training_by_hand(inner):
    model = _linear(W2, B2)
    x, y = [[0.4, 0.5], [0.7, 0.3]], [0, 1]
    worst = [[0.3, 0.6], [0.8, 0.2]]  # label 0: decrease d; label 1: increase d (Linf 0.1 corner)
    res = losses.at_loss(model, _img(x), torch.tensor(y), attack=_pgd("Linf", 0.1, objective=inner))
    assert float(res.loss.detach()) == pytest.approx(_np_ce(W2, B2, worst, y), abs=1e-5)
    assert float(res.loss.detach()) > _np_ce(W2, B2, x, y)


def test_ratio_by_hand():
    model = _linear(W2, B2)
    x_in, y_in = np.array([[0.4, 0.5], [0.7, 0.3]]), [0, 1]
    x_out = np.array([[0.5, 0.5], [0.4, 0.6]])  # d = 1.0 and 0.5: the L2 maximiser of |d| is +u
    in_worst = x_in + 0.1 * np.array([-U, U])   # L2 ε_i = 0.1, against the label's margin
    out_worst = x_out + 0.2 * np.array([U, U])  # L2 ε_o = 0.2, away from the uniform prediction
    res = losses.ratio_loss(model, _img(x_in.tolist()), torch.tensor(y_in), _img(x_out.tolist()),
                            in_attack=_pgd("L2", 0.1, objective="logit-margin"),
                            out_attack=_pgd("L2", 0.2, objective="ce-uniform"), lam=0.5, seed=3)
    expected = _np_ce(W2, B2, in_worst, y_in) + 0.5 * _np_out(W2, B2, out_worst, "ce-uniform")
    assert float(res.loss.detach()) == pytest.approx(expected, abs=1e-5)


def test_batchnorm_follows_the_joint_batch_and_attacks_leave_it_alone():
    """Attacks run in eval mode (running statistics, no update), the model goes back to train
    mode, and the training forward pass normalises [in; out] together (one BN update)."""
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(2, momentum=0.1)
    model = nn.Sequential(nn.Flatten(), bn, nn.Linear(2, 3)).train()
    x_in, y_in, x_out = _img(X_IN), torch.tensor(Y_IN), _img(X_OUT)
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    x_adv = losses.adversarial_points(model, x_out, _pgd("Linf", 0.1, objective="max-log-conf"))
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]
    assert not x_adv.requires_grad and x_adv.shape == x_out.shape

    losses.ceda_loss(model, x_in, y_in, x_out)
    joint = torch.cat([x_in, x_out]).flatten(1)
    torch.testing.assert_close(bn.running_mean, 0.1 * joint.mean(0))
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * joint.var(0, unbiased=True))
    assert int(bn.num_batches_tracked) == 1


# ------------------------------------------------------------------------------------------------
# 2. the methods do what the papers say: CEDA lowers the noise MMC, ACET the adversarial-noise MMC
# ------------------------------------------------------------------------------------------------


def _digits_recipe(tmp: Path, method: str, **kw) -> Recipe:
    base = dict(name=f"digits-{method}", method=method, arch="digits-net",
                arch_options={"num_classes": 5}, dataset=DIGITS_0_4, epochs=10, batch_size=64,
                lr=3e-3, device="cpu", seed=0, evaluate={"noise_n": 0},
                output=str(tmp / f"{method}.safetensors"))
    base.update(kw)
    return Recipe(**base)


def _load_digits_net(path: Path) -> nn.Module:
    net = architectures.get("digits-net")(num_classes=5)
    net.load_state_dict(load_file(str(path)))
    return net.eval()


@pytest.fixture(scope="module")
def digits_test():
    return load_dataset("digits", DataRequest(root=Path("."), split="test", options=DIGITS_0_4["options"]))


@pytest.mark.slow
def test_acet_beats_ceda_beats_plain_on_noise(tmp_path, digits_test):
    acet_attack = {"threat": {"norm": "Linf", "eps": 0.3}, "steps": 10, "step_size": 0.075}
    models, cards = {}, {}
    for method in ("plain", "ceda", "acet"):
        extra = {"out_attack": acet_attack} if method == "acet" else {}
        cards[method] = train_from_recipe(_digits_recipe(tmp_path, method, **extra), progress=False)
        models[method] = _load_digits_net(tmp_path / f"{method}.safetensors")

    noise = load_dataset("smoothed-noise", DataRequest(root=Path("."), n=200, seed=1,
                                                       reference=digits_test)).images
    # the registered adversarial-noise attack with its paper settings (Linf 0.3, 200 × 0.0075)
    attack = attacks.get("adversarial-noise")()
    from oodbench.attacks.base import AttackSpec

    config = attack.config(attack.resolve(AttackSpec(name="adversarial-noise", version="paper"), "digits"))
    assert (config.threat.eps, config.steps, config.step_size) == (0.3, 200, 0.0075)
    mmc, adv_mmc = {}, {}
    for method, model in models.items():
        with torch.no_grad():
            mmc[method] = float(torch.softmax(model(noise), 1).max(1).values.mean())
        adv_mmc[method] = float(run_attack(model, noise, config, seed=0).confidence.mean())
    print("noise MMC", mmc, "adversarial noise MMC", adv_mmc)
    # CEDA: noise MMC far below plain's (plain ≈ 0.74, CEDA ≈ 0.22, 0.2 = uniform over 5 classes)
    assert mmc["ceda"] < 0.35 < 0.6 < mmc["plain"]
    # ACET: adversarial noise MMC far below CEDA's (plain ≈ 1.0, CEDA ≈ 0.6-0.9, ACET ≈ 0.2-0.3)
    assert adv_mmc["acet"] < 0.4 < adv_mmc["ceda"] - 0.15
    assert adv_mmc["plain"] > 0.95
    # all three still classify digits
    for method, card in cards.items():
        assert card["metrics"]["test_error"] < (0.3 if method == "acet" else 0.1), method


# ------------------------------------------------------------------------------------------------
# 3. resumable checkpoints
# ------------------------------------------------------------------------------------------------


def test_resume_gives_the_uninterrupted_result(tmp_path):
    """ACET (noise + attacks + augmentation + lr drops): 2 epochs, stop, resume to 4 == 4 straight."""
    kw = dict(epochs=4, dataset={**DIGITS_0_4, "n": 256}, augment={"crop_padding": 1, "hflip": True},
              out_attack={"threat": {"norm": "Linf", "eps": 0.3}, "steps": 3},
              schedule={"per": "step"})
    straight = train_from_recipe(_digits_recipe(tmp_path, "acet", **kw, output=str(tmp_path / "a.safetensors")),
                                 progress=False)
    recipe = _digits_recipe(tmp_path, "acet", **kw, output=str(tmp_path / "b.safetensors"))
    stopped = train_from_recipe(recipe, progress=False, stop_after=2)
    assert stopped["status"] == "stopped" and stopped["epoch"] == 2 and stopped["step"] == 8
    assert not (tmp_path / "b.safetensors").exists()

    # the checkpoint holds only tensors and plain data: it loads with weights_only=True
    ckpt_file = Path(stopped["checkpoint"])
    state = torch.load(ckpt_file, weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 8 and set(state["model"]) == set(
        load_file(str(tmp_path / "a.safetensors")))
    assert load_checkpoint(ckpt_file)["step"] == 8

    again = train_from_recipe(recipe, progress=False, stop_after=1)  # already past: no training
    assert again["status"] == "stopped" and again["step"] == 8
    resumed = train_from_recipe(recipe, progress=False)
    assert resumed["status"] == "complete" and resumed["training"]["steps"] == 16
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    assert resumed["history"] == straight["history"]
    assert resumed["metrics"] == straight["metrics"]
    assert not ckpt_file.exists()  # removed after a completed run (keep_checkpoint=False)


def test_resume_refuses_a_checkpoint_of_another_recipe(tmp_path):
    recipe = _digits_recipe(tmp_path, "plain", epochs=3, dataset={**DIGITS_0_4, "n": 128})
    out = train_from_recipe(recipe, progress=False, stop_after=1)
    changed = _digits_recipe(tmp_path, "plain", epochs=3, lr=1e-3, dataset={**DIGITS_0_4, "n": 128})
    with pytest.raises(RecipeError, match="another recipe"):
        train_from_recipe(changed, progress=False)
    with pytest.raises(FileNotFoundError):
        train_from_recipe(changed, progress=False, resume=True,
                          checkpoint=tmp_path / "missing.ckpt.pt")
    done = train_from_recipe(changed, progress=False, resume=False)  # --restart
    assert done["status"] == "complete" and done["training"]["steps"] == 6
    assert out["status"] == "stopped"


# ------------------------------------------------------------------------------------------------
# 4. every registered method runs (one step) and writes weights + a model card
# ------------------------------------------------------------------------------------------------


def _smoke_settings(method: str) -> dict:
    cls = trainers.get(method)
    kw: dict = {}
    if cls.out != "none" and cls.default_out is None:  # needs a real data set: digits 5-9
        kw["out_distribution"] = {**DIGITS_5_9, "n": 64, "lambda": 0.5}
    small = {"threat": {"norm": "L2", "eps": 0.5}, "steps": 2}
    if cls.uses_in_attack:
        kw["in_attack"] = small
    if cls.uses_out_attack:
        kw["out_attack"] = small
    return kw


@pytest.mark.parametrize("method", trainers.names())
def test_every_method_smoke(tmp_path, method):
    recipe = _digits_recipe(tmp_path, method, epochs=1, batch_size=32, dataset={**DIGITS_0_4, "n": 32},
                            evaluate={"noise_n": 50}, **_smoke_settings(method))
    card = train_from_recipe(recipe, progress=False)
    weights = tmp_path / f"{method}.safetensors"
    assert card["status"] == "complete" and card["training"]["steps"] == 1
    assert card["method"] == method and card["recipe"]["method"] == method
    written = yaml.safe_load(weights.with_suffix(".yaml").read_text())
    assert written["sha256"] == card["sha256"] and written["training"]["method"] == method
    assert set(written["metrics"]) >= {"test_error", "test_mmc", "smoothed_noise_mmc",
                                       "uniform_noise_auroc", "train_loss", "train_accuracy"}
    assert all(math.isfinite(v) for v in written["metrics"].values())
    _load_digits_net(weights)  # the weights fit the architecture (safetensors, no code)
    assert Recipe(**written["recipe"]).dump() == recipe.dump()  # the card's recipe is a recipe
    if trainers.get(method).out != "none":
        assert written["training"]["lambda"] == recipe.out_distribution.lam
        assert written["training"]["batch"]["out"] == math.ceil(recipe.out_distribution.lam * 32)


def test_methods_fill_in_paper_defaults():
    acet = _digits_recipe(Path("."), "acet")
    assert acet.out_distribution.dataset == "smoothed-noise"
    assert acet.out_distribution.loss == "max-log-conf" and acet.out_distribution.lam == 1.0
    assert (acet.out_attack.threat.norm, acet.out_attack.threat.eps) == ("Linf", 0.3)
    assert (acet.out_attack.steps, acet.out_attack.step_size) == (40, 0.0075)
    assert acet.out_attack.objective == "max-log-conf"
    ratio = _digits_recipe(Path("."), "ratio", out_distribution=DIGITS_5_9)
    assert ratio.out_distribution.loss == "ce-uniform"
    assert (ratio.in_attack.threat.norm, ratio.in_attack.objective, ratio.in_attack.steps) == ("L2", "logit-margin", 7)
    assert (ratio.out_attack.threat.eps, ratio.out_attack.objective) == (1.0, "ce-uniform")
    assert [ratio.out_attack.steps_after(k) for k in range(5)] == [20, 25, 30, 35, 40]
    at = _digits_recipe(Path("."), "at", in_attack={"threat": {"norm": "Linf", "eps": 0.1}, "steps": 3})
    assert at.in_attack.objective == "ce"
    # resolving is idempotent: the dumped recipe validates to the same recipe
    assert Recipe(**acet.model_dump(by_alias=True)).dump() == acet.dump()


@pytest.mark.parametrize("kw, message", [
    ({"method": "plain", "out_distribution": {"dataset": "smoothed-noise"}}, "uses no out-distribution"),
    ({"method": "ceda", "in_attack": {"threat": {"norm": "L2", "eps": 0.5}, "steps": 2}}, "runs no in attack"),
    ({"method": "oe", "out_distribution": {"dataset": "smoothed-noise"}}, "real out-distribution"),
    ({"method": "oe"}, "needs `out_distribution`"),
    ({"method": "at"}, "needs `in_attack`"),
    ({"method": "acet", "out_distribution": {"dataset": "uniform-noise", "lambda": 0}}, "greater than 0"),
    ({"method": "acet-x"}, "Did you mean 'acet'"),
    ({"method": "plain", "schedule": {"milestones": [0.5], "epochs": [3]}}, "not both"),
])
def test_recipe_validation_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        _digits_recipe(Path("."), **kw)


def test_trainers_are_registered_with_docs():
    assert set(trainers.names()) >= {"plain", "ceda", "acet", "oe", "at", "ratio"}
    assert all(entry.doc for entry in trainers)
    with pytest.raises(UnknownNameError):
        trainers.get("madry")


# ------------------------------------------------------------------------------------------------
# 5. loop pieces: schedule, augmentation, seeds
# ------------------------------------------------------------------------------------------------


def test_schedule_points_and_attack_growth():
    assert Schedule().points(100, 10) == [50, 75, 90]
    assert Schedule(per="step").points(3, 62) == [93, 140, 167]
    assert Schedule(epochs=[100, 150, 200]).points(220, 390) == [100, 150, 200]
    spec = TrainAttack(threat={"norm": "L2", "eps": 1.0}, steps=20, steps_increase=5, max_steps=30)
    assert [spec.steps_after(k) for k in range(4)] == [20, 25, 30, 30]


def test_learning_rate_drops_per_step(tmp_path):
    recipe = _digits_recipe(tmp_path, "plain", epochs=2, batch_size=64, dataset={**DIGITS_0_4, "n": 256},
                            schedule={"per": "step", "milestones": [0.5, 0.75]})
    card = train_from_recipe(recipe, progress=False)
    assert card["training"]["lr_milestones"]["at"] == [4, 6]
    assert [h["lr"] for h in card["history"]] == [pytest.approx(3e-3), pytest.approx(3e-5)]


def test_augment_crop_and_flip():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) / 32
    assert augment(x, Augment(), torch.Generator().manual_seed(0)) is x
    out = augment(x, Augment(crop_padding=2, hflip=True), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    # every output is a (possibly flipped) shifted window of the zero-padded input
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy:dy + 4, dx:dx + 4] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    again = augment(x, Augment(crop_padding=2, hflip=True), torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_augment_crop_pads_with_fill():
    x = torch.full((64, 3, 4, 4), 0.5)
    fill = [0.1, 0.2, 0.3]
    out = augment(x, Augment(crop_padding=2, fill=fill), torch.Generator().manual_seed(0))
    values = {tuple(out[i, :, r, c].tolist()) for i in range(64) for r in range(4) for c in range(4)}
    assert values == {(0.5, 0.5, 0.5), tuple(torch.tensor(fill).tolist())}  # exact, no arithmetic
    with pytest.raises(ValueError, match="fill"):
        Augment(fill=[0.1, 1.5, 0.0])
    with pytest.raises(ValueError, match="fill"):
        Augment(fill=[0.1, 0.2])
    with pytest.raises(ValueError, match="3 values for 1-channel"):
        augment(x[:, :1], Augment(crop_padding=1, fill=fill), torch.Generator())


def test_cutout_zeroes_one_square_per_image():
    x = torch.rand(200, 3, 32, 32) * 0.9 + 0.1  # no zeros of its own
    out = augment(x, Augment(cutout=16), torch.Generator().manual_seed(0))
    boxes = cutout_boxes(200, 32, 32, 16, torch.Generator().manual_seed(0))  # the same draws
    assert out.dtype == torch.float32 and 0 <= float(out.min()) and float(out.max()) <= 1
    full = 0
    for img, src, (y0, y1, x0, x1) in zip(out, x, boxes.tolist()):
        zero = img == 0
        assert torch.equal(zero, zero[:1].expand_as(zero))  # every channel
        expected = torch.zeros(32, 32, dtype=torch.bool)
        expected[y0:y1, x0:x1] = True
        assert torch.equal(zero[0], expected)
        assert torch.equal(img[:, ~expected], src[:, ~expected])  # the rest untouched
        # a 16-square centred on a uniform pixel, clipped only at the border
        assert (y1 - y0 == 16 or y0 == 0 or y1 == 32) and (x1 - x0 == 16 or x0 == 0 or x1 == 32)
        assert 8 <= y1 - y0 <= 16 and 8 <= x1 - x0 <= 16
        full += (y1 - y0) * (x1 - x0) == 256
    assert 25 < full < 100  # (17/32)² ≈ 28 % of the centres leave a full square


def test_autoaugment_is_seeded_by_the_step_alone():
    x = torch.randint(0, 256, (16, 3, 32, 32)).float() / 255
    spec = Augment(autoaugment="cifar10")
    rng_before = torch.get_rng_state()
    out = augment(x, spec, torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    torch.rand(5)  # global RNG use in between changes nothing
    assert torch.equal(out, augment(x, spec, torch.Generator().manual_seed(3)))
    assert not torch.equal(out, augment(x, spec, torch.Generator().manual_seed(4)))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert not torch.equal(out, x) and sum(not torch.equal(a, b) for a, b in zip(out, x)) >= 4
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    assert torch.equal(out * 255, (out * 255).round())  # still k/255 values
    both = augment(x, Augment(autoaugment="cifar10", cutout=16, crop_padding=4, hflip=True),
                   torch.Generator().manual_seed(3))
    assert both.shape == x.shape and 0 <= float(both.min()) and float(both.max()) <= 1
    assert not Augment().enabled and Augment(cutout=16).enabled and spec.enabled


def test_step_seeds_are_distinct_and_stable():
    seeds = {step_seed(0, s, k) for s in range(50) for k in ("out", "attack", "augment")}
    assert len(seeds) == 150
    assert step_seed(0, 7, "out") == step_seed(0, 7, "out") != step_seed(1, 7, "out")


# ------------------------------------------------------------------------------------------------
# 6. the shipped recipes load and validate; the CLI trains
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_validate(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.method in trainers
    assert recipe.output.endswith(".safetensors")
    assert Recipe(**recipe.model_dump(by_alias=True)).dump() == recipe.dump()


def test_hein2019_mnist_recipes_follow_the_paper():
    for method in ("plain", "ceda", "acet"):
        full = load_recipe(RECIPES[0].parent / f"hein2019-mnist-{method}.yaml")
        cpu = load_recipe(RECIPES[0].parent / f"hein2019-mnist-{method}-cpu.yaml")
        assert (full.arch, full.optimizer, full.lr, full.weight_decay, full.epochs) == ("lenet", "adam", 1e-3, 5e-4, 100)
        assert cpu.method == full.method == method and cpu.epochs < full.epochs
        if method != "plain":
            assert (full.out_distribution.lam, full.out_distribution.loss) == (1.0, "max-log-conf")
            assert full.out_distribution.dataset == cpu.out_distribution.dataset == "smoothed-noise"
        if method == "acet":
            a = full.out_attack
            assert (a.threat.norm, a.threat.eps, a.steps, a.step_size) == ("Linf", 0.3, 40, 0.0075)


def test_augustin2020_recipes_follow_the_paper():
    """App. B.1: AutoAugment's CIFAR-10 policy with Cutout (16) on CIFAR-10, 80M Tiny Images as
    the out-distribution, read from the original file (never held in memory)."""
    for path in RECIPES:
        if not path.stem.startswith("augustin2020-cifar10"):
            continue
        recipe = load_recipe(path)
        a = recipe.augment
        assert (a.crop_padding, a.hflip, a.autoaugment, a.cutout) == (4, True, "cifar10", 16), path
        assert "image folder" not in path.read_text().lower()
        if recipe.out_distribution is not None:
            out = recipe.out_distribution
            assert (out.dataset, out.n, out.loss, out.lam) == ("tiny-images", None, "ce-uniform", 1.0)
        # App. B: PGD on l2-normalised steps of 0.1 with momentum 0.9 for every inner maximisation
        method = trainers.get(recipe.method)(recipe)
        for part in ("in_attack", "out_attack"):
            attack = getattr(recipe, part)
            if attack is not None:
                assert (attack.threat.norm, attack.step_size, attack.momentum) == ("L2", 0.1, 0.9), path
                assert method.attack_config(part, lr_drops=0).momentum == 0.9  # reaches the engine


def test_cli_train_stop_and_resume(tmp_path):
    from click.testing import CliRunner

    from oodbench.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "cli-ceda", "method": "ceda", "arch": "digits-net", "arch_options": {"num_classes": 5},
        "dataset": {**DIGITS_0_4, "n": 64}, "epochs": 2, "batch_size": 64, "device": "cpu",
        "evaluate": {"noise_n": 20}, "output": "out/w.safetensors"}))
    runner = CliRunner()
    first = runner.invoke(main, ["train", str(recipe), "-q", "--stop-after", "1"])
    assert first.exit_code == 0, first.output
    assert "stopped after epoch 1" in first.output and (tmp_path / "out" / "w.ckpt.pt").exists()
    second = runner.invoke(main, ["train", str(recipe), "-q"])
    assert second.exit_code == 0, second.output
    assert "test_error:" in second.output and (tmp_path / "out" / "w.yaml").exists()
    card = yaml.safe_load((tmp_path / "out" / "w.yaml").read_text())
    assert card["training"]["steps"] == 2 and [h["epoch"] for h in card["history"]] == [1, 2]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmethod: cedaa\narch: digits-net\ndataset: {dataset: digits}\noutput: w.safetensors\n")
    result = runner.invoke(main, ["train", str(bad)])
    assert result.exit_code == 2 and "Did you mean 'ceda'" in result.output


@pytest.mark.slow
def test_amp_path_runs_on_the_cpu_with_bfloat16(tmp_path):
    """`amp: bfloat16` runs the autocast path of CUDA training on the CPU: an ACET training
    (inner attack under autocast too) still learns, records its precision, and its weights
    differ from the float32 run with the same seed (autocast was really active)."""
    kw = dict(out_attack={"threat": {"norm": "Linf", "eps": 0.3}, "steps": 3})  # 10 epochs
    fp32 = train_from_recipe(_digits_recipe(tmp_path, "acet", **kw, amp=True,
                                            output=str(tmp_path / "fp32.safetensors")), progress=False)
    bf16 = train_from_recipe(_digits_recipe(tmp_path, "acet", **kw, amp="bfloat16",
                                            output=str(tmp_path / "bf16.safetensors")), progress=False)
    assert fp32["trained_with"]["amp"] is None and bf16["trained_with"]["amp"] == "bfloat16"
    assert bf16["metrics"]["test_error"] < 0.3, bf16["metrics"]
    assert abs(bf16["metrics"]["test_error"] - fp32["metrics"]["test_error"]) < 0.1
    a, b = load_file(str(tmp_path / "fp32.safetensors")), load_file(str(tmp_path / "bf16.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError):
        Recipe(**{**_digits_recipe(tmp_path, "plain").dump(), "amp": "float8"})


# ------------------------------------------------------------------------------------------------
# GOOD: the certified out-loss
# ------------------------------------------------------------------------------------------------


def test_good_loss_by_hand():
    """On a linear model the interval bound of z_j − z_k over the box is exact:
    (W_j − W_k)·c + |W_j − W_k|·r with c, r the centre and radius of the box (∩ [0, 1])."""
    model = _linear(W3, B3)
    w, b = np.asarray(W3), np.asarray(B3)
    x_out, eps = np.asarray(X_OUT), 0.2
    lo, hi = np.clip(x_out - eps, 0, 1), np.clip(x_out + eps, 0, 1)
    c, r = (lo + hi) / 2, (hi - lo) / 2
    dw, db = w[:, None, :] - w[None, :, :], b[:, None] - b[None, :]
    upper = np.einsum("nd,jkd->njk", c, dw) + db + np.einsum("nd,jkd->njk", r, np.abs(dw))
    spread = upper.reshape(len(x_out), -1).max(1)
    expected_out = np.log1p(spread ** 2 / 2).mean()
    out = losses.good_loss(model, _img(X_IN), torch.tensor(Y_IN), _img(X_OUT), eps=eps, lam=0.5)
    assert float(out.parts["out"]) == pytest.approx(expected_out, rel=1e-5)
    assert out.loss.item() == pytest.approx(_np_ce(W3, B3, X_IN, Y_IN) + 0.5 * expected_out, rel=1e-5)
    # the log-confidence bound (max-log-conf): max_k −log Σ_j exp(−U[k, j])
    conf = (-np.log(np.exp(-upper).sum(2))).max(1)
    out = losses.good_loss(model, _img(X_IN), torch.tensor(Y_IN), _img(X_OUT), eps=eps,
                           out_loss_kind="max-log-conf")
    assert float(out.parts["out"]) == pytest.approx(conf.mean(), rel=1e-5)
    # quantile 1/3: only the sample with the lowest bound is trained on it, the others clean
    out = losses.good_loss(model, _img(X_IN), torch.tensor(Y_IN), _img(X_OUT), eps=eps,
                           quantile=1 / 3, out_loss_kind="max-log-conf")
    clean = _log_softmax(x_out @ w.T + b).max(1)
    lowest = conf.argmin()
    mixed = np.where(np.arange(3) == lowest, conf, clean).mean()
    assert float(out.parts["out"]) == pytest.approx(mixed, rel=1e-5)
    # ε = 0: CEDA with the same out-loss
    zero = losses.good_loss(model, _img(X_IN), torch.tensor(Y_IN), _img(X_OUT), eps=0.0)
    ceda = losses.ceda_loss(model, _img(X_IN), torch.tensor(Y_IN), _img(X_OUT),
                            out_loss_kind="logit-spread")
    assert float(zero.loss) == pytest.approx(float(ceda.loss), rel=1e-6)


def test_good_epsilon_ramp_and_defaults():
    recipe = _digits_recipe(Path("."), "good")
    assert recipe.out_distribution.dataset == "uniform-noise"
    assert recipe.out_distribution.loss == "logit-spread"
    bound = recipe.out_bound
    assert (bound.threat.norm, bound.threat.eps, bound.ramp) == ("Linf", 0.3, (0.1, 0.5))
    assert [bound.eps_at(p) for p in (0.0, 0.1, 0.3, 0.5, 0.9)] == pytest.approx(
        [0.0, 0.0, 0.15, 0.3, 0.3])
    with pytest.raises(ValueError, match="out_bound"):
        _digits_recipe(Path("."), "ceda", out_bound={"threat": {"norm": "Linf", "eps": 0.3}})
    with pytest.raises(ValueError, match="Linf"):
        _digits_recipe(Path("."), "good", out_bound={"threat": {"norm": "L2", "eps": 0.3}})


@pytest.mark.slow
def test_good_lowers_the_certified_bound_on_noise(tmp_path, digits_test):
    """A few epochs of GOOD on digits bring the certified confidence bound on uniform noise at
    Linf 0.1 far below the plain model's (which is vacuous: 1)."""
    from oodbench.bounds import input_box, msp_upper, output_bounds

    bound = {"threat": {"norm": "Linf", "eps": 0.1}, "ramp": [0.0, 0.5]}
    models = {}
    for method in ("plain", "good"):
        extra = {"out_bound": bound} if method == "good" else {}
        train_from_recipe(_digits_recipe(tmp_path, method, epochs=6, **extra), progress=False)
        models[method] = _load_digits_net(tmp_path / f"{method}.safetensors")
    noise = load_dataset("uniform-noise", DataRequest(root=Path("."), n=100, seed=1,
                                                      reference=digits_test)).images
    conf = {}
    with torch.no_grad():
        for method, model in models.items():
            b = output_bounds(model, input_box(noise.double(), 0.1))
            conf[method] = float(msp_upper(b.diff_upper).exp().mean())
    print("certified MMC on uniform noise", conf)
    assert conf["plain"] > 0.9 and conf["good"] < 0.5
