"""The registered detectors: their contract (every detector, picked up from the registry), a peer
check of each score against pytorch-ood 0.4.0, and a peer check of the rank metrics against
``pytorch_ood.metrics.OODMetrics``.

Conventions: oodbench scores are in-distribution scores (higher = in-distribution); pytorch-ood
returns outlier scores (higher = OOD), so a plain sign flip is the baseline map, and every other
map (a constant factor, a log) is stated next to the detector it applies to.

Everything runs on tiny models (a small LeNet on 8×8 inputs, a 12-16-8-K tanh MLP) and a few
hundred random points, single-threaded in a few seconds.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from oodbench.detectors import FitData, Outputs, build_detector
from oodbench.metrics import MetricInput, compute_metrics, fpr_at_tpr
from oodbench.models.architectures.lenet import LeNet
from oodbench.models.features import head_layer, logits_and_features
from oodbench.core.registry import detectors

CPU = torch.device("cpu")
N_FIT, N_TEST, N_CLASSES = 240, 24, 4

#: Every registered detector at collection time: a new detector file (or plugin) is tested too.
NAMES = detectors.names()


# ------------------------------------------------------------------------------------------------
# Shared set-up: a small LeNet, random [0, 1] inputs, a balanced label set for the fit
# ------------------------------------------------------------------------------------------------


def fit_data(model: nn.Module, x_fit: torch.Tensor) -> FitData:
    """The fit inputs as the planner builds them: model outputs in float64, balanced labels
    (every class occurs: Mahalanobis and RMD need a mean per class)."""
    with torch.no_grad():
        logits, features = logits_and_features(model, x_fit)
    head = head_layer(model)
    return FitData(logits=logits.double().numpy(),
                   labels=np.arange(len(x_fit)) % logits.shape[1],
                   features=features.double().numpy(),
                   head_weight=head.weight.detach().double().numpy(),
                   head_bias=head.bias.detach().double().numpy())


class Setup:
    """A model, its fit data, test inputs and every registered detector fitted once."""

    def __init__(self, model: nn.Module, x_fit: torch.Tensor, x: torch.Tensor):
        self.model, self.x = model.eval(), x
        self.data = fit_data(model, x_fit)
        self.dets = {name: build_detector(name) for name in NAMES}
        self.fits = {name: det.fit(self.data) if det.needs_fit else None
                     for name, det in self.dets.items()}

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        return self.dets[name].fit_tensors(self.fits[name], CPU)


def small_lenet(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return LeNet(num_classes=N_CLASSES, image_size=8, hidden=16).to(dtype)


@pytest.fixture(scope="module")
def lenet32() -> Setup:
    """float32, like every model the benchmark runs."""
    gen = torch.Generator().manual_seed(1)
    x_fit = torch.rand(N_FIT, 1, 8, 8, generator=gen)
    x = torch.rand(N_TEST, 1, 8, 8, generator=gen)
    return Setup(small_lenet(torch.float32), x_fit, x)


@pytest.fixture(scope="module")
def lenet64() -> Setup:
    """The same network in float64, for finite differences."""
    gen = torch.Generator().manual_seed(1)
    x_fit = torch.rand(N_FIT, 1, 8, 8, generator=gen, dtype=torch.float64)
    x = torch.rand(N_TEST, 1, 8, 8, generator=gen, dtype=torch.float64)
    return Setup(small_lenet(torch.float64), x_fit, x)


def as64(out: Outputs) -> Outputs:
    """The engine's view of one forward pass: the same outputs in float64."""
    return Outputs(out.logits.double(), None if out.features is None else out.features.double())


def engine_score(s: Setup, name: str, x: torch.Tensor) -> torch.Tensor:
    """What the attack engine computes: the float64 score through ``forward`` (with autograd)."""
    det = s.dets[name]
    return det.score(as64(det.forward(s.model, x)), s.tensors(name))


# ------------------------------------------------------------------------------------------------
# 1. The contract, for every registered detector
# ------------------------------------------------------------------------------------------------


def test_registry_holds_the_documented_detectors():
    # the parametrised tests below run over NAMES; this pins the built-in ones being there
    assert {"msp", "max-logit", "energy", "entropy", "gen", "odin", "mahalanobis", "rmd", "knn",
            "vim", "react"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_scores_are_float64_finite_one_per_point(lenet32, name):
    s = lenet32
    det = s.dets[name]
    with torch.no_grad():
        arrays = det.forward(s.model, s.x).arrays()
    assert arrays["logits"].dtype == np.float32 and arrays["logits"].shape == (N_TEST, N_CLASSES)
    assert ("features" in arrays) == det.needs_features
    scores = det.scores(arrays, s.fits[name])
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float64
    assert scores.shape == (N_TEST,)
    assert np.all(np.isfinite(scores))
    # a score that ranks nothing (constant) would make every metric 0.5
    assert np.unique(scores).size > N_TEST // 2


@pytest.mark.parametrize("name", NAMES)
def test_stored_scores_equal_the_engine_score(lenet32, name):
    """The scorer (``scores`` of the stored float32 arrays) and the attack engine (``score`` of
    the same forward pass in float64) agree to 1e-9."""
    s = lenet32
    det = s.dets[name]
    with torch.no_grad():
        out = det.forward(s.model, s.x)
    stored = det.scores(out.arrays(), s.fits[name])
    # the same outputs (one forward pass: a float32 model's rows depend on the batch size),
    # scored in float64 with autograd on, in two chunks of other sizes than the stored array
    x = s.x.clone().requires_grad_(True)
    out, fit, cut = as64(det.forward(s.model, x)), s.tensors(name), 7
    rows = [slice(0, cut), slice(cut, None)]
    engine = torch.cat([det.score(Outputs(out.logits[r], None if out.features is None
                                          else out.features[r]), fit) for r in rows])
    assert engine.dtype == torch.float64 and engine.requires_grad == det.exact_gradient
    np.testing.assert_allclose(engine.detach().numpy(), stored, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("name", NAMES)
def test_input_gradient_is_finite_nonzero_and_matches_finite_differences(lenet64, name):
    s = lenet64
    x = s.x.clone().requires_grad_(True)
    score = engine_score(s, name, x)
    (grad,) = torch.autograd.grad(score.sum(), x)
    assert torch.isfinite(grad).all()
    per_point = grad.flatten(1).abs().amax(dim=1)
    assert (per_point > 0).float().mean() >= 0.75, per_point  # not zero for most points
    # the score's own derivative along a random direction (central difference, float64; the
    # step is far too small to cross a ReLU / argmax / clip / top-k kink at these points)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    h = 1e-6
    with torch.no_grad():
        diff = (engine_score(s, name, s.x + h * v) - engine_score(s, name, s.x - h * v)) / (2 * h)
    directional = (grad * v).flatten(1).sum(dim=1)
    np.testing.assert_allclose(directional.numpy(), diff.numpy(), rtol=1e-4,
                               atol=1e-6 * float(diff.abs().max()))


@pytest.mark.parametrize("name", NAMES)
def test_params_validate(name):
    cls = detectors.get(name)
    with pytest.raises(ValidationError, match="no_such_param"):
        build_detector(name, {"no_such_param": 1})
    det = build_detector(name)
    for field in type(det.params).model_fields:
        with pytest.raises(ValidationError, match=field):
            build_detector(name, {field: "not a number"})
    # the identity is the name plus every parameter, and rebuilds the same detector
    ident = det.identity()
    assert ident["name"] == name == cls.name
    rebuilt = build_detector(name, {k: v for k, v in ident.items() if k != "name"})
    assert rebuilt.identity() == ident
    assert "\n" not in cls.describe() and "needs:" in cls.describe()


@pytest.mark.parametrize("name", NAMES)
def test_needs_are_honoured(lenet32, name):
    s = lenet32
    det = s.dets[name]
    if det.needs_fit:
        fit = s.fits[name]
        assert fit and all(isinstance(v, np.ndarray) for v in fit.values())
    else:
        with pytest.raises(NotImplementedError):
            det.fit(s.data)
    if det.needs_features:
        with torch.no_grad():
            logits = s.model(s.x).numpy()
        with pytest.raises(ValueError, match="features"):
            det.scores({"logits": logits}, s.fits[name])


def test_gaussian_ridge_and_knn_k_are_validated(lenet32):
    with pytest.raises(ValidationError):
        build_detector("mahalanobis", {"ridge": -1.0})
    with pytest.raises(ValueError, match="k = 500"):
        build_detector("knn", {"k": 500}).fit(lenet32.data)
    with pytest.raises(ValueError, match="dim"):
        build_detector("vim", {"dim": 16}).fit(lenet32.data)   # 16 features


@pytest.mark.parametrize("name", NAMES)
def test_forward_works_under_inference_mode(lenet32, name):
    """oodbench's forward pass runs under ``torch.inference_mode()``; a detector's forward (ODIN
    takes a gradient step in it) gives the same outputs there as under ``no_grad``."""
    s = lenet32
    det = s.dets[name]
    with torch.no_grad():
        expected = det.forward(s.model, s.x).arrays()
    with torch.inference_mode():
        got = det.forward(s.model, s.x.clone()).arrays()
    assert got.keys() == expected.keys()
    for key in got:
        np.testing.assert_array_equal(got[key], expected[key])


def test_knn_bank_point_is_its_own_nearest_neighbour(lenet32):
    """The bank is stored in float32 and made unit length again in float64: a training point's
    distance to itself (k = 1) is float32 rounding of the direction (~1e-7), not of the norm
    (sqrt(2 - 2·|b|²) ~ 3e-4 without the renormalisation)."""
    s = lenet32
    det = build_detector("knn", {"k": 1})
    fit = det.fit(s.data)
    assert fit["bank"].dtype == np.float32
    scores = det.scores({"logits": s.data.logits, "features": s.data.features}, fit)
    assert np.all(scores <= 0) and np.all(scores > -1e-6), scores.min()


# ------------------------------------------------------------------------------------------------
# The attack direction: one signed-gradient ascent step raises the score
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["energy", "knn"])
def test_one_signed_gradient_step_raises_the_score(lenet32, name):
    """x + 0.01·sign(∇ score) raises the score of most points, x - 0.01·sign(∇) lowers it, and a
    random-sign step of the same size does neither (about half go up). For knn a few points
    are not raised: the k-th neighbour's distance is an order statistic, and a step of
    L2 norm 0.08 can bring other bank points past the k-th one (the gradient itself is checked
    against finite differences above)."""
    s = lenet32
    x = s.x.clone().requires_grad_(True)
    before = engine_score(s, name, x)
    (grad,) = torch.autograd.grad(before.sum(), x)
    random_sign = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        up = engine_score(s, name, s.x + 0.01 * grad.sign())
        down = engine_score(s, name, s.x - 0.01 * grad.sign())
        random = engine_score(s, name, s.x + 0.01 * random_sign)
    before = before.detach()
    assert (up > before).float().mean() >= 0.75
    assert (down < before).float().mean() >= 0.75
    assert 0.2 <= (random > before).float().mean() <= 0.8
    gain = float((up - before).mean())
    assert gain > 0 and gain > 20 * abs(float((random - before).mean()))


# ------------------------------------------------------------------------------------------------
# 2. Peer check against pytorch-ood 0.4.0
# ------------------------------------------------------------------------------------------------


class Peer:
    """A tiny tanh MLP (12 → 16 → 8 → K) in float64, its fit data and test inputs.

    Tanh features have no dead units and, with the weights scaled ×4, a centred covariance
    whose condition number is ~300 (ViM in pytorch-ood runs in float32: with the default
    initialisation the condition number is ~1e4 and float32 eigh alone is off by ~2e-5)."""

    K, D, IN = 5, 8, 12

    def __init__(self):
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(self.IN, 16), nn.Tanh(), nn.Linear(16, self.D),
                                   nn.Tanh(), nn.Linear(self.D, self.K))
        with torch.no_grad():
            self.model[0].weight.mul_(4.0)
            self.model[2].weight.mul_(4.0)
        self.model = self.model.double().eval()
        self.head = self.model[-1]
        gen = torch.Generator().manual_seed(1)
        x_fit = torch.rand(N_FIT, self.IN, generator=gen, dtype=torch.float64)
        self.x = torch.rand(N_TEST, self.IN, generator=gen, dtype=torch.float64)
        self.data = fit_data(self.model, x_fit)
        self.labels = torch.as_tensor(self.data.labels)
        self.fit_features = torch.as_tensor(self.data.features)
        with torch.no_grad():
            self.logits, self.features = logits_and_features(self.model, self.x)

    def ours(self, name: str, params: dict[str, Any] | None = None) -> np.ndarray:
        """oodbench's clean score of the test inputs (``forward`` then the stored-array path)."""
        det = build_detector(name, params)
        fit = det.fit(self.data) if det.needs_fit else None
        with torch.no_grad():
            out = det.forward(self.model, self.x)
        arrays = {"logits": out.logits.numpy()}
        if out.features is not None:
            arrays["features"] = out.features.numpy()
        return det.scores(arrays, fit)


@pytest.fixture(scope="module")
def peer() -> Peer:
    p = Peer()
    probs = p.logits.softmax(dim=1)
    # pytorch-ood clamps probabilities to [1e-7, 1 - 1e-7] (entropy, GEN): keep clear of that
    assert float(probs.min()) > 1e-5 and float(probs.max()) < 1 - 1e-5
    return p


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _msp(p: Peer, P: Any) -> tuple[np.ndarray, np.ndarray]:
    # oodbench: log max softmax; pytorch-ood: -max softmax  →  ours = log(-theirs)
    return p.ours("msp"), np.log(-P.MaxSoftmax(None).predict_logits(p.logits).numpy())


def _max_logit(p: Peer, P: Any):
    return p.ours("max-logit"), -P.MaxLogit(None).predict_logits(p.logits).numpy()


def _energy(p: Peer, P: Any):
    return p.ours("energy"), -P.EnergyBased(None).predict_logits(p.logits).numpy()


def _energy_t(p: Peer, P: Any):
    return (p.ours("energy", {"temperature": 3.0}),
            -P.EnergyBased(None, t=3.0).predict_logits(p.logits).numpy())


def _entropy(p: Peer, P: Any):
    # oodbench: sum p log p (negative entropy); pytorch-ood: the entropy
    return p.ours("entropy"), -P.Entropy(None).predict_logits(p.logits).numpy()


def _gen(p: Peer, P: Any):
    # oodbench sums the M = min(100, K) terms, pytorch-ood averages them (M=None: all K classes)
    # and returns the sum itself as outlier score  →  ours = -K · theirs
    return p.ours("gen"), -p.K * P.GEN(None, gamma=0.1).predict_logits(p.logits).numpy()


def _gen_top3(p: Peer, P: Any):
    # top-M with M = 3 < K, γ = 0.5: ours = -3 · theirs
    return (p.ours("gen", {"top": 3, "gamma": 0.5}),
            -3 * P.GEN(None, gamma=0.5, M=3).predict_logits(p.logits).numpy())


def _odin(eps: float, t: float) -> Callable[[Peer, Any], tuple[np.ndarray, np.ndarray]]:
    def run(p: Peer, P: Any):
        # the full model goes to pytorch-ood, which perturbs x itself; it returns -max softmax
        # of f(x̃)/T, oodbench its log  →  ours = log(-theirs)
        theirs = P.ODIN(p.model, eps=eps, temperature=t).predict(p.x).numpy()
        ours = p.ours("odin", {"eps": eps, "temperature": t})
        # the perturbation must matter at these settings, or the check would not test it
        unperturbed = p.ours("odin", {"eps": 0.0, "temperature": t})
        assert np.all(ours - unperturbed > 1e-9 * np.abs(ours))   # it raises the confidence
        return ours, np.log(-theirs)
    return run


def _odin_normalised(p: Peer, P: Any):
    """ODIN on a model that normalises its [0, 1] input itself (as every oodbench model does):
    oodbench steps by eps in pixels; pytorch-ood gets the inner model, the normalised input and
    ``norm_std``, with which its eps "refers to the unnormalized input scale" (the original
    code's convention). Without ``norm_std`` the two differ (checked), so eps is not eps/std."""
    gen = torch.Generator().manual_seed(4)
    mean = torch.rand(p.IN, generator=gen, dtype=torch.float64)
    std = 0.1 + 0.5 * torch.rand(p.IN, generator=gen, dtype=torch.float64)

    class Normalise(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x - mean) / std

    pixels = nn.Sequential(Normalise(), p.model)
    params = {"eps": 0.02, "temperature": 10.0}
    det = build_detector("odin", params)
    with torch.no_grad():
        ours = det.scores({"logits": det.forward(pixels, p.x).logits.numpy()})
    normalised = (p.x - mean) / std
    theirs = P.ODIN(p.model, eps=0.02, temperature=10.0, norm_std=std.tolist()).predict(normalised)
    plain = P.ODIN(p.model, eps=0.02, temperature=10.0).predict(normalised)
    assert np.max(np.abs(np.log(-plain.numpy()) / ours - 1)) > 1e-5
    return ours, np.log(-theirs.numpy())


def _mahalanobis(p: Peer, P: Any):
    # pytorch-ood's covariance is Σ' = S + 1e-6·I with S the within-class scatter (not divided by
    # N); oodbench's is S/N + ridge·I. With ridge = 1e-6/N, Σ' = N·Σ, so its squared distances
    # are 1/N of ours; both take half the smallest: ours = -N · theirs. pytorch-ood builds the
    # means and covariance with torch.zeros in the default dtype: float64 here (in float32 its
    # inverse is off by ~1e-6 on this model, ~1e-4 for RMD's background covariance).
    n = N_FIT
    with default_dtype(torch.float64):
        det = P.Mahalanobis(None).fit_features(p.fit_features, p.labels)
        theirs = det.predict_features(p.features).numpy()
    return p.ours("mahalanobis", {"ridge": 1e-6 / n}), -n * theirs


def _rmd(p: Peer, P: Any):
    # both covariances (class-shared and background) as for Mahalanobis: ours = -N · theirs
    n = N_FIT
    with default_dtype(torch.float64):
        det = P.RMD(None).fit_features(p.fit_features, p.labels)
        theirs = det.predict_features(p.features).numpy()
    return p.ours("rmd", {"ridge": 1e-6 / n}), -n * theirs


def _knn(k: int) -> Callable[[Peer, Any], tuple[np.ndarray, np.ndarray]]:
    def run(p: Peer, P: Any):
        det = P.KNN(None, k=k).fit_features(p.fit_features, p.labels)
        return p.ours("knn", {"k": k}), -det.predict_features(p.features).numpy()
    return run


def _vim(p: Peer, P: Any):
    # pytorch-ood's d is oodbench's dim (the principal subspace); both score
    # logsumexp(z) - α‖residual‖ (pytorch-ood negated). pytorch-ood runs in float32.
    det = P.ViM(None, d=4, w=p.head.weight, b=p.head.bias).fit_features(p.fit_features, p.labels)
    return p.ours("vim", {"dim": 4}), -det.predict_features(p.features).double().numpy()


def _react(p: Peer, P: Any):
    # pytorch-ood's percentile is a fraction (0.9), oodbench's a percentage (90); the head is
    # the model's last layer; the detector is the energy (negated)
    det = P.ReAct(backbone=None, head=p.head, percentile=0.9).fit_feature_maps(p.fit_features,
                                                                              p.labels)
    with torch.no_grad():
        theirs = det.predict_feature_maps(p.features).numpy()
    ours = p.ours("react", {"percentile": 90.0})
    # the clip must bite on these inputs, or this is the energy check again
    assert np.max(np.abs(ours - p.ours("energy"))) > 1e-3
    return ours, -theirs


#: name → (comparison, relative tolerance). float64 on both sides unless noted: pytorch-ood's ViM
#: casts to float32 and oodbench's KNN bank is stored in float32 (both ~1e-7 relative).
PEERS: dict[str, tuple[str, Callable[[Peer, Any], tuple[np.ndarray, np.ndarray]], float]] = {
    "msp": ("msp", _msp, 1e-12),
    "max-logit": ("max-logit", _max_logit, 1e-12),
    "energy": ("energy", _energy, 1e-12),
    "energy-t3": ("energy", _energy_t, 1e-12),
    "entropy": ("entropy", _entropy, 1e-12),
    "gen": ("gen", _gen, 1e-12),
    "gen-top3-gamma0.5": ("gen", _gen_top3, 1e-12),
    "odin": ("odin", _odin(0.0014, 1000.0), 1e-12),
    "odin-eps0.02-t10": ("odin", _odin(0.02, 10.0), 1e-12),
    "odin-normalised-model": ("odin", _odin_normalised, 1e-12),
    "mahalanobis": ("mahalanobis", _mahalanobis, 1e-9),
    "rmd": ("rmd", _rmd, 1e-9),
    "knn": ("knn", _knn(50), 1e-5),
    "knn-k5": ("knn", _knn(5), 1e-5),
    "vim": ("vim", _vim, 1e-5),
    "react": ("react", _react, 1e-12),
}


def test_every_detector_pytorch_ood_has_is_checked():
    # pytorch-ood 0.4.0 has MaxSoftmax, MaxLogit, EnergyBased, Entropy, GEN, ODIN, Mahalanobis,
    # RMD, KNN, ViM, ReAct: each of their oodbench counterparts is registered and compared
    counterparts = {"msp", "max-logit", "energy", "entropy", "gen", "odin", "mahalanobis", "rmd",
                    "knn", "vim", "react"}
    assert {name for name, _, _ in PEERS.values()} == counterparts
    assert counterparts <= set(NAMES)


@pytest.mark.parametrize("case", list(PEERS))
def test_clean_score_equals_pytorch_ood(peer, case):
    import pytorch_ood.detector as P  # a test dependency: never skipped
    _, compare, rtol = PEERS[case]
    ours, theirs = compare(peer, P)
    assert ours.shape == theirs.shape == (N_TEST,)
    assert np.all(np.isfinite(theirs))
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=0)
    # and the ranking (what the metrics see) is the same
    np.testing.assert_array_equal(np.argsort(ours), np.argsort(theirs))


# ------------------------------------------------------------------------------------------------
# 3. The rank metrics against pytorch-ood's OODMetrics
# ------------------------------------------------------------------------------------------------


def _metric_input(score_in: np.ndarray, score_out: np.ndarray) -> MetricInput:
    k = 3   # the logits only carry shapes here: the rank metrics read the scores
    return MetricInput(np.zeros((score_in.size, k)), np.zeros(score_in.size, dtype=int),
                       np.zeros((score_out.size, k)), in_scores=score_in, out_scores=score_out)


def _pytorch_ood_metrics(score_in: np.ndarray, score_out: np.ndarray) -> dict[str, float]:
    from pytorch_ood.metrics import OODMetrics

    # pytorch-ood: OOD targets < 0, outlier scores = -ours
    scores = torch.as_tensor(-np.concatenate([score_in, score_out]))
    labels = torch.as_tensor(np.r_[np.zeros(score_in.size), -np.ones(score_out.size)]).long()
    return OODMetrics().update(scores, labels).compute()


@pytest.mark.parametrize("n_in,n_out,shift", [(200, 120, 1.0), (57, 301, 0.3), (40, 40, -0.5)])
def test_metrics_equal_pytorch_ood(n_in, n_out, shift):
    from pytorch_ood.metrics.functional import pr_curve

    rng = np.random.default_rng(n_in + n_out)
    score_in = rng.normal(shift, 1.0, n_in)
    score_out = rng.normal(0.0, 1.0, n_out)
    assert np.unique(np.r_[score_in, score_out]).size == n_in + n_out   # no ties
    ours = compute_metrics(["auroc", "aupr-in", "aupr-out", "fpr95-ood"],
                           _metric_input(score_in, score_out), row="probe")
    theirs = _pytorch_ood_metrics(score_in, score_out)
    assert ours["auroc"] == pytest.approx(theirs["AUROC"], rel=1e-12, abs=0)
    assert ours["fpr95-ood"] == pytest.approx(theirs["FPR95TPR"], rel=1e-12, abs=0)
    # AUPR: the same precision-recall curve, integrated differently. oodbench's is the
    # step-wise average precision sum_k (R_k - R_{k-1}) P_k (sklearn's average_precision_score);
    # pytorch-ood's is the trapezoid through the curve's points, ending at (recall 0,
    # precision 1) (sklearn's auc(recall, precision)). Both are checked on pytorch-ood's curve.
    labels = torch.as_tensor(np.r_[np.zeros(n_in), -np.ones(n_out)]).long()
    outlier = torch.as_tensor(-np.r_[score_in, score_out])
    for key, positive in (("aupr-in", "id"), ("aupr-out", "ood")):
        precision, recall, _ = (t.numpy() for t in pr_curve(outlier, labels, positive=positive))
        step = float(np.sum((recall[:-1] - recall[1:]) * precision[:-1]))
        trapezoid = float(np.sum((recall[:-1] - recall[1:]) * (precision[:-1] + precision[1:]) / 2))
        assert ours[key] == pytest.approx(step, rel=1e-12, abs=0)
        assert theirs[key.upper()] == pytest.approx(trapezoid, rel=1e-12, abs=0)
        # the two rules differ, by half the precision drops weighted by the recall steps
        assert abs(ours[key] - theirs[key.upper()]) > 1e-6


def test_auroc_and_fpr95_ood_equal_pytorch_ood_with_ties():
    """Both count a tied (in, OOD) pair half in AUROC, and flag the points tied with the
    FPR95 threshold (against the detector)."""
    rng = np.random.default_rng(5)
    score_in = np.round(rng.normal(0.5, 1.0, 150), 1)
    score_out = np.round(rng.normal(0.0, 1.0, 90), 1)
    assert np.unique(np.r_[score_in, score_out]).size < 60          # many ties
    ours = compute_metrics(["auroc", "fpr95-ood"], _metric_input(score_in, score_out), row="probe")
    theirs = _pytorch_ood_metrics(score_in, score_out)
    assert ours["auroc"] == pytest.approx(theirs["AUROC"], rel=1e-12, abs=0)
    assert ours["fpr95-ood"] == pytest.approx(theirs["FPR95TPR"], rel=1e-12, abs=0)


def test_fpr95_conventions_by_hand():
    """in = 0.05, 0.10, ..., 1.00 (20 points); OOD = 0.01, 0.02, 0.03, 0.5.

    fpr95 (in-distribution positive): the threshold keeping 95% (19) of the in-distribution
    points is 0.10; OOD points >= 0.10 are accepted: only 0.5, so 1/4.
    fpr95-ood (OOD positive, flagged when the score is <= the threshold): detecting 95% of 4
    OOD points means ceil(3.8) = 4, all of them, so the threshold is 0.5; in-distribution
    points <= 0.5 are false positives: 0.05 ... 0.50, 10 of 20, so 1/2."""
    score_in = np.arange(1, 21) / 20
    score_out = np.array([0.01, 0.02, 0.03, 0.5])
    got = compute_metrics(["fpr95", "fpr95-ood"], _metric_input(score_in, score_out), row="probe")
    assert got == {"fpr95": 0.25, "fpr95-ood": 0.5}
    assert _pytorch_ood_metrics(score_in, score_out)["FPR95TPR"] == 0.5


def test_fpr95_ood_is_decided_by_the_hardest_ood_points():
    """OOD = 0.00, 0.01, ..., 0.17, 0.80, 0.90 (20 points); in = 0.10, 0.11, ..., 0.29 (20).

    fpr95: the threshold keeping 19 of the 20 in-distribution points is 0.11; OOD points >= 0.11
    are 0.11 ... 0.17 (7) and 0.80, 0.90: 9 of 20 = 0.45.
    fpr95-ood: 19 of the 20 OOD points must be flagged (score <= threshold), so only the 0.90
    one may be missed and the threshold is 0.80; every in-distribution point is <= 0.80 and is
    flagged too: 20 of 20 = 1.0. Two in-like OOD points ruin the OOD-positive FPR, not the other."""
    score_out = np.r_[np.arange(18), 80, 90] / 100
    score_in = (10 + np.arange(20)) / 100
    got = compute_metrics(["fpr95", "fpr95-ood"], _metric_input(score_in, score_out), row="probe")
    assert got == {"fpr95": 0.45, "fpr95-ood": 1.0}
    # fpr95-ood is fpr_at_tpr with the roles swapped and the scores negated
    assert got["fpr95-ood"] == fpr_at_tpr(-score_out, -score_in, tpr=0.95)
    assert _pytorch_ood_metrics(score_in, score_out)["FPR95TPR"] == 1.0


@pytest.mark.parametrize("round_to", [None, 1])
def test_trapezoid_aupr_equals_pytorch_ood(round_to):
    """``aupr-in-trapezoid`` / ``aupr-out-trapezoid`` are pytorch-ood's (and OpenOOD's) AUPR-IN /
    AUPR-OUT, with and without ties; scikit-learn's auc(recall, precision) agrees."""
    from sklearn.metrics import auc, precision_recall_curve

    rng = np.random.default_rng(11)
    score_in, score_out = rng.normal(0.7, 1.0, 130), rng.normal(0.0, 1.0, 70)
    if round_to is not None:
        score_in, score_out = np.round(score_in, round_to), np.round(score_out, round_to)
    ours = compute_metrics(["aupr-in-trapezoid", "aupr-out-trapezoid"],
                           _metric_input(score_in, score_out), row="probe")
    theirs = _pytorch_ood_metrics(score_in, score_out)
    assert ours["aupr-in-trapezoid"] == pytest.approx(theirs["AUPR-IN"], rel=1e-12, abs=0)
    assert ours["aupr-out-trapezoid"] == pytest.approx(theirs["AUPR-OUT"], rel=1e-12, abs=0)
    labels = np.r_[np.ones(score_in.size), np.zeros(score_out.size)]
    precision, recall, _ = precision_recall_curve(labels, np.r_[score_in, score_out])
    assert ours["aupr-in-trapezoid"] == pytest.approx(auc(recall, precision), rel=1e-12, abs=0)
