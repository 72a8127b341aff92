"""Certified bounds (oodbench.bounds, the `certified` attack, the bracket check).

Soundness is tested the only way a bound can be: the outputs of many points of the ball (random
points, corners, and the points a PGD attack finds) never leave the computed box, for every
supported layer type and for residual networks with BatchNorm in eval mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from oodbench.attacks.base import AttackContext, AttackSpec
from oodbench.attacks.engine import AttackConfig, run_attack
from oodbench.bounds import (Box, UnsupportedLayerError, energy_upper, input_box,
                             max_logit_upper, msp_upper, output_bounds, propagate)
from oodbench.detectors import build_detector
from oodbench.detectors.attack import detector_head
from oodbench.detectors.base import Outputs
from oodbench.models.architectures.resnet import BasicBlock as OodbenchBlock
from oodbench.models.normalize import Normalize
from oodbench.core.registry import architectures, attacks
from oodbench.pipeline.score.bracket import BracketViolation, Side, check_sides
from oodbench.scores import msp_score

from conftest import SUITE_HEADER  # noqa: E402

N_POINTS = 1000


def _randomise_batchnorm(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """BatchNorm with non-trivial running statistics and affine parameters (negative scales
    too), in eval mode."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen, dtype=torch.float64))
            m.running_var.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.2)
            with torch.no_grad():
                m.weight.copy_(torch.randn(c, generator=gen, dtype=torch.float64))
                m.bias.copy_(torch.randn(c, generator=gen, dtype=torch.float64))
    return model.eval()


def _points_of_box(box: Box, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` points of the box for each of its rows: uniform ones and corners (where IBP's
    ReLU/max-pool bounds are attained most often)."""
    lo, hi = box.lower[:1], box.upper[:1]
    u = torch.rand((n,) + lo.shape[1:], generator=gen, dtype=lo.dtype)
    corners = torch.rand((n,) + lo.shape[1:], generator=gen, dtype=lo.dtype) < 0.5
    u[n // 2:] = corners[n // 2:].to(lo.dtype)
    return lo + u * (hi - lo)


class Residual(nn.Module):
    """x + f(x) through functional relu and a view: the functional forms of the layers."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn(self.conv(F.relu(x))))


def _tiny_torchvision_resnet() -> nn.Module:
    down = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
        torchvision.models.resnet.BasicBlock(4, 4),
        torchvision.models.resnet.BasicBlock(4, 8, stride=2, downsample=down),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))


def _tiny_oodbench_resnet() -> nn.Module:
    return nn.Sequential(
        Normalize([0.5], [0.25]), nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        OodbenchBlock(4, 4), OodbenchBlock(4, 8, stride=2), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(8 * 2 * 2, 5))


LAYERS = {
    "linear": lambda: nn.Sequential(nn.Flatten(), nn.Linear(36, 7)),
    "conv2d": lambda: nn.Conv2d(1, 3, 3, stride=2, padding=1),
    "relu": lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU()),
    "batchnorm2d": lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)),
    "batchnorm1d": lambda: nn.Sequential(nn.Flatten(), nn.Linear(36, 6), nn.BatchNorm1d(6)),
    "maxpool2d": lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.MaxPool2d(2)),
    "avgpool2d": lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.AvgPool2d(2)),
    "adaptive-avgpool": lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveAvgPool2d(1)),
    "adaptive-maxpool": lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveMaxPool2d(2)),
    "flatten": lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(32, 3)),
    "normalize": lambda: nn.Sequential(Normalize([0.3], [0.2]), nn.Conv2d(1, 2, 3)),
    "residual": lambda: Residual(1),
    "lenet": lambda: architectures.get("lenet")(image_size=8, hidden=16),
    "resnet-torchvision": _tiny_torchvision_resnet,
    "resnet-oodbench": _tiny_oodbench_resnet,
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_bounds_contain_the_outputs_of_points_of_the_ball(name):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = _randomise_batchnorm(LAYERS[name]().double(), gen)
    size = 8 if name.startswith(("lenet", "resnet")) else 6
    x = torch.rand(1, 1, size, size, generator=gen, dtype=torch.float64)
    box = input_box(x, 0.1)
    bounds = propagate(model, box)
    points = _points_of_box(box, N_POINTS, gen)
    with torch.no_grad():
        out = model(points)
    assert out.shape[1:] == bounds.lower.shape[1:]
    tol = 1e-9
    assert bool((out >= bounds.lower - tol).all()) and bool((out <= bounds.upper + tol).all())
    # and the box is not vacuous: its width is finite and its centre's output lies inside
    assert torch.isfinite(bounds.upper - bounds.lower).all()


@pytest.mark.parametrize("name", ["lenet", "resnet-torchvision", "resnet-oodbench"])
def test_elided_differences_and_score_bounds_hold_at_points_of_the_ball(name):
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model = _randomise_batchnorm(LAYERS[name]().double(), gen)
    x = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    bounds = output_bounds(model, input_box(x, 0.05))
    points = _points_of_box(input_box(x, 0.05), N_POINTS, gen)
    with torch.no_grad():
        z = model(points)
    diffs = z[:, :, None] - z[:, None, :]                       # z_j − z_k
    assert bool((diffs <= bounds.diff_upper + 1e-9).all())
    # the elided bound is never looser than the difference of the logit box
    naive = bounds.logits.upper[:, :, None] - bounds.logits.lower[:, None, :]
    assert bool((bounds.diff_upper <= naive + 1e-9).all())
    with torch.no_grad():
        assert float(msp_upper(bounds.diff_upper)) >= float(msp_score(z).max())
        assert float(energy_upper(bounds)) >= float(torch.logsumexp(z, 1).max())
        assert float(max_logit_upper(bounds)) >= float(z.max())


def test_zero_radius_gives_the_clean_outputs_and_scores():
    torch.manual_seed(2)
    gen = torch.Generator().manual_seed(2)
    model = _randomise_batchnorm(_tiny_oodbench_resnet().double(), gen)
    x = torch.rand(6, 1, 8, 8, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        z = model(x)
        exact = output_bounds(model, input_box(x, 0.0), margin=0.0)
        widened = output_bounds(model, input_box(x, 0.0))
    torch.testing.assert_close(exact.logits.lower, z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(exact.logits.upper, z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(msp_upper(exact.diff_upper), msp_score(z), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(energy_upper(exact), torch.logsumexp(z, 1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(max_logit_upper(exact), z.max(1).values, rtol=1e-10, atol=1e-12)
    # the rounding margin moves every bound up by little: 1e-4 (1 + |z|) per logit
    assert bool((msp_upper(widened.diff_upper) >= msp_score(z)).all())
    assert float((msp_upper(widened.diff_upper) - msp_score(z)).max()) < 1e-2


@pytest.mark.slow
def test_resnet18_of_the_zoo_is_bounded_and_exact_at_zero_radius():
    gen = torch.Generator().manual_seed(3)
    model = _randomise_batchnorm(architectures.get("resnet18")().double(), gen)
    x = torch.rand(2, 3, 32, 32, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        z = model(x)
        exact = output_bounds(model, input_box(x, 0.0), margin=0.0)
        loose = output_bounds(model, input_box(x, 1 / 255))
    torch.testing.assert_close(exact.logits.upper, z, rtol=1e-9, atol=1e-9)
    assert bool((loose.logits.upper >= z).all()) and bool((loose.logits.lower <= z).all())


class _Sigmoidal(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.fc(x.flatten(1)))


class _Branching(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: not a fixed graph of layers
            return x
        return -x


@pytest.mark.parametrize("model, names", [
    (_Sigmoidal(), ["Sigmoid", "act"]),
    (nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.GELU()), ["GELU"]),
    (nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).train().append(nn.Dropout()), ["Dropout"]),
    (nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)).train(), ["BatchNorm2d", "eval"]),
    (_Branching(), ["_Branching", "traced"]),
])
def test_an_unsupported_layer_is_a_clear_error_naming_it(model, names):
    x = torch.rand(2, 1, 2, 2)
    with pytest.raises(UnsupportedLayerError) as err:
        propagate(model, input_box(x, 0.1))
    for name in names:
        assert name in str(err.value)
    assert "certified bounds" in str(err.value)


# ---------------------------------------------------------------- the `certified` attack


def _certify(model, images, detector_name, eps=0.3, fit=None):
    det = build_detector(detector_name)
    head = None if detector_name == "msp" else detector_head(det, fit, torch.device("cpu"))
    ctx = AttackContext(model=model, images=images, labels=None,
                        spec=AttackSpec(name="certified", threat={"norm": "Linf", "eps": eps}),
                        in_logits=np.zeros((1, 5), np.float32), device=torch.device("cpu"),
                        batch_size=16, head=head)
    return attacks.get("certified")().run(ctx)


@pytest.mark.parametrize("detector_name", ["msp", "max-logit", "energy"])
def test_certified_score_bound_is_above_random_points_and_a_pgd_attack(detector_name):
    torch.manual_seed(4)
    model = architectures.get("lenet")(num_classes=5, image_size=8, hidden=16).eval()
    gen = torch.Generator().manual_seed(4)
    images = torch.rand(6, 1, 8, 8, generator=gen)
    eps = 0.1
    arrays = _certify(model, images, detector_name, eps)
    upper = arrays["score_upper"]
    det = build_detector(detector_name)
    # random points of each ball
    for i in range(len(images)):
        pts = _points_of_box(input_box(images[i:i + 1].double(), eps), 100, gen).float()
        with torch.no_grad():
            scores = det.score(Outputs(model(pts).double()), {})
        assert float(scores.max()) <= upper[i]
    # a PGD attack on the detector's own score on the same points
    config = AttackConfig(threat={"norm": "Linf", "eps": eps}, objective="max-log-conf",
                          steps=30, step_size=eps / 10)
    head = detector_head(det, None, torch.device("cpu"))
    attacked = run_attack(model, images, config, head=head, seed=0)
    with torch.no_grad():
        found = det.score(Outputs(attacked.logits.double()), {}).numpy()
        clean = det.score(Outputs(model(images).double()), {}).numpy()
    assert (found <= upper).all()
    assert (found >= clean - 1e-6).all() and (found > clean + 1e-3).any()  # the attack moved
    # the bound is honest, not vacuous, on this small ball: within reach of the attack
    assert np.isfinite(upper).all()


def test_certified_refuses_optimiser_settings_and_other_norms():
    attack = attacks.get("certified")()
    with pytest.raises(ValueError, match="remove steps"):
        attack.resolve(AttackSpec(name="certified", steps=10), "mnist")
    with pytest.raises(ValueError, match="Linf"):
        attack.resolve(AttackSpec(name="certified", threat={"norm": "L2", "eps": 0.5}), "mnist")
    resolved = attack.resolve(AttackSpec(name="certified"), "mnist")
    assert resolved.threat.norm == "Linf" and resolved.threat.eps == 0.3
    assert attack.has_row_for(build_detector("msp")) and attack.has_row_for(build_detector("react"))
    assert not attack.has_row_for(build_detector("knn"))
    assert not attack.has_row_for(build_detector("entropy"))


def test_react_bound_holds_at_points_of_the_ball():
    torch.manual_seed(5)
    gen = torch.Generator().manual_seed(5)
    model = architectures.get("lenet")(num_classes=5, image_size=8, hidden=16).eval()
    det = build_detector("react")
    head = model.fc2
    fit = {"clip": np.asarray(0.3), "weight": head.weight.detach().double().numpy(),
           "bias": head.bias.detach().double().numpy()}
    images = torch.rand(4, 1, 8, 8, generator=gen)
    upper = _certify(model, images, "react", 0.1, fit)["score_upper"]
    from oodbench.models.features import logits_and_features

    fit_t = det.fit_tensors(fit, torch.device("cpu"))
    for i in range(len(images)):
        pts = _points_of_box(input_box(images[i:i + 1].double(), 0.1), 300, gen).float()
        with torch.no_grad():
            logits, feats = logits_and_features(model, pts)
            scores = det.score(Outputs(logits.double(), feats.double()), fit_t)
        assert float(scores.max()) <= upper[i]


# ---------------------------------------------------------------- the bracket


def test_bracket_order_passes_and_a_violated_row_raises():
    clean = Side("Noise", "clean", np.array([-2.0, -1.0, -0.5]))
    attacked = Side("Adv. noise", "attacked", np.array([-1.0, -0.2, -0.5]), "Linf", 0.3)
    certified = Side("Certified", "certified", np.array([-0.5, 0.0, -0.1]), "Linf", 0.3)
    assert check_sides([clean, attacked, certified]) == 3
    # an attack in a larger ball is not bounded by the certificate (only clean <= it is checked)
    wide = Side("Adv. noise L2", "attacked", np.array([0.0, 0.0, 0.0]), "L2", 1.0)
    assert check_sides([clean, wide, certified]) == 2
    broken = Side("Certified", "certified", np.array([-0.5, -0.3, -0.1]), "Linf", 0.3)
    with pytest.raises(BracketViolation, match=r"attacked row 'Adv. noise' scores above the "
                       r"certified row 'Certified' at 1 of 3 points \(first: point 1"):
        check_sides([clean, attacked, broken], where="LeNet · msp")
    lost_start = Side("Adv. noise", "attacked", np.array([-2.5, -0.2, -0.5]), "Linf", 0.3)
    with pytest.raises(BracketViolation, match="clean row 'Noise' scores above the attacked"):
        check_sides([clean, lost_start])
    # float noise between two passes over the same point is no violation
    noisy = Side("Adv. noise", "attacked", clean.scores * (1 + 1e-9), "Linf", 0.3)
    assert check_sides([clean, noisy]) == 1
    assert math.isclose(float(noisy.scores[0]), -2.0, rel_tol=1e-8)


# ---------------------------------------------------------------- in a run


CERTIFIED_SUITE = "name: certified\n" + SUITE_HEADER + """\
detectors: [msp, max-logit, energy, entropy]
probes:
  - {{name: uniform, dataset: uniform-noise, n: 40}}
  - {{name: adv. uniform, dataset: uniform-noise, n: 40, attack: {{name: adversarial-noise, steps: 10, step_size: 0.03}}}}
  - {{name: certified, dataset: uniform-noise, n: 40, attack: {{name: certified, threat: {{norm: Linf, eps: 0.3}}}}}}
metrics: [test-error, auroc, auroc-conservative, fpr95, mmc]
checks: {{enabled: false}}
"""


@pytest.mark.slow
def test_a_run_brackets_every_row_and_a_violated_row_raises(write_suite, tmp_path):
    from oodbench.pipeline.run import plan_suite, run_suite
    from oodbench.pipeline.score.bracket import check_table
    from oodbench.pipeline.score.table import TableScorer
    from oodbench.pipeline.store import ResultStore
    from oodbench.pipeline.suite import load_suite

    suite = load_suite(write_suite(CERTIFIED_SUITE))
    result = run_suite(suite, output=tmp_path / "r.db", progress=False)
    m = result.metrics
    values = {(d, p, k): v for d, p, k, v in zip(m["detector"], m["probe"], m["metric"], m["value"])}
    for det in ("msp", "max-logit", "energy"):
        clean, attacked = values[(det, "uniform", "auroc")], values[(det, "adv. uniform", "auroc")]
        certified = values[(det, "certified", "auroc-conservative")]
        assert certified <= values[(det, "adv. uniform", "auroc-conservative")] <= attacked <= clean
        assert math.isnan(values[(det, "certified", "mmc")])  # a bound is not a confidence
    assert ("entropy", "certified", "auroc") not in values  # entropy declares no bound
    # the same table with one certified bound pushed below the attacked score: a bug, raised
    plan = plan_suite(suite, output=tmp_path / "r.db")
    with ResultStore(tmp_path / "r.db") as store:
        scorer = TableScorer(store, suite.metrics, suite.seed)
        assert check_table(scorer, plan.table) == 3 * 3 + 1  # 3 pairs per bounded detector + entropy
        row = next(r for r in plan.table if r.label == "certified" and r.detector == "energy")

        class Tampered(TableScorer):
            def arrays(self, key):
                arrays = super().arrays(key)
                if key != row.points:
                    return arrays
                bounds = np.array(arrays["score_upper"])
                bounds[7] = -1e3
                return {**arrays, "score_upper": bounds}

        with pytest.raises(BracketViolation, match="energy.*point 7"):
            check_table(Tampered(store, suite.metrics, suite.seed), plan.table)
