"""Tests of oodbench.metrics: numbers checked against scikit-learn, brute force or by hand."""

from __future__ import annotations

import ast
import doctest
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

import oodbench.metrics as M
from oodbench.metrics import (
    SCOPES,
    Metric,
    MetricInput,
    UndefinedMetricWarning,
    aupr_in,
    aupr_out,
    auroc,
    auroc_conservative,
    compute_metrics,
    confidence,
    expected_calibration_error,
    fit_temperature,
    fpr_at_tpr,
    mean_max_confidence,
    predictions,
    softmax,
    test_error,
)
from oodbench.core.rows import MetricScope, RowKind
from oodbench.core.registry import UnknownNameError
from oodbench.core.registry import metrics as metric_registry

BUILTIN_METRICS = {
    "test-error": ("in", False),
    "ece": ("in", False),
    "ece-ts": ("in", False),
    "mmc": ("both", False),
    "auroc": ("probe", True),
    "auroc-conservative": ("probe", True),
    "aupr-in": ("probe", True),
    "aupr-out": ("probe", True),
    "fpr95": ("probe", False),
}


def tied_scores(seed: int, n_in: int = 300, n_out: int = 200, decimals: int = 2):
    """In/out confidences with many ties (rounded), in-dist shifted up so AUROC is non-trivial."""
    rng = np.random.default_rng(seed)
    cin = np.round(rng.beta(5, 2, n_in), decimals)
    cout = np.round(rng.beta(2, 3, n_out), decimals)
    return cin, cout


def toy_input(seed: int = 0, n: int = 60, m: int = 40, k: int = 5, out: bool = True) -> MetricInput:
    rng = np.random.default_rng(seed)
    in_logits = 3 * rng.normal(size=(n, k))
    labels = (in_logits + rng.gumbel(size=(n, k))).argmax(axis=1)
    out_logits = rng.normal(size=(m, k)) if out else None
    return MetricInput(in_logits, labels, out_logits, seed=seed)


# ------------------------------------------------------------------------------------------------
# softmax / confidence / predictions / test_error / MMC
# ------------------------------------------------------------------------------------------------


def test_softmax_matches_naive_and_is_stable():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(7, 4))
    naive = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax(z), naive, rtol=1e-12)
    naive_t = np.exp(z / 2.5) / np.exp(z / 2.5).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax(z, temperature=2.5), naive_t, rtol=1e-12)
    big = softmax([[1000.0, 999.0], [-1000.0, -1000.0]])
    assert np.all(np.isfinite(big))
    p = 1 / (1 + np.exp(-1))
    np.testing.assert_allclose(big, [[p, 1 - p], [0.5, 0.5]])


def test_confidence_and_predictions():
    z = np.array([[0.0, np.log(3.0), 0.0], [5.0, 1.0, 1.0], [2.0, 2.0, 0.0]])
    np.testing.assert_allclose(confidence(z), softmax(z).max(axis=1), rtol=1e-12)
    assert confidence(z)[0] == pytest.approx(3 / 5)
    assert predictions(z).tolist() == [1, 0, 0]
    # temperature sharpens (T<1) or flattens (T>1), never changes the argmax
    assert np.all(confidence(z, temperature=0.5) >= confidence(z))
    assert np.all(confidence(z, temperature=2.0) <= confidence(z))
    assert confidence(np.zeros((0, 3))).shape == (0,)


def test_test_error_and_mmc():
    assert test_error([0, 1, 2, 3, 4], [0, 1, 0, 3, 0]) == pytest.approx(0.4)
    assert test_error(np.array([1, 1]), np.array([1, 1])) == 0.0
    assert isinstance(test_error([1], [0]), float)
    assert mean_max_confidence([0.2, 0.4, 0.9]) == pytest.approx(0.5)
    assert isinstance(mean_max_confidence(np.array([0.5])), float)


# ------------------------------------------------------------------------------------------------
# detection metrics vs sklearn / brute force (with ties)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [1, 2])
def test_ranking_metrics_match_sklearn_with_ties(seed, decimals):
    cin, cout = tied_scores(seed, decimals=decimals)
    assert len(np.unique(np.r_[cin, cout])) < cin.size + cout.size  # there really are ties
    y = np.r_[np.ones(cin.size), np.zeros(cout.size)]
    s = np.r_[cin, cout]
    assert auroc(cin, cout) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert aupr_in(cin, cout) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert aupr_out(cin, cout) == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_and_conservative_match_pairwise_brute_force(seed):
    cin, cout = tied_scores(seed, n_in=120, n_out=90, decimals=1)
    greater = (cin[:, None] > cout[None, :]).mean()
    ties = (cin[:, None] == cout[None, :]).mean()
    assert ties > 0
    assert auroc_conservative(cin, cout) == pytest.approx(greater, abs=1e-12)
    assert auroc(cin, cout) == pytest.approx(greater + 0.5 * ties, abs=1e-12)


def test_saturated_model_fails_conservative_auroc_only():
    ones_in, ones_out = np.ones(50), np.ones(30)
    assert auroc(ones_in, ones_out) == 0.5
    assert auroc_conservative(ones_in, ones_out) == 0.0
    assert fpr_at_tpr(ones_in, ones_out) == 1.0
    # Without ties both AUROCs agree; perfect and inverted separation.
    assert auroc([0.9, 0.8], [0.1, 0.2]) == auroc_conservative([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auroc([0.1], [0.9]) == auroc_conservative([0.1], [0.9]) == 0.0


def test_aupr_hand_computed():
    # Ranking (desc): out 0.95, in 0.9, in 0.8, out 0.7.
    assert aupr_in([0.9, 0.8], [0.7, 0.95]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert aupr_out([0.9, 0.8], [0.7, 0.95]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 4)
    assert aupr_in([0.9, 0.8], [0.1]) == 1.0
    assert aupr_out([0.9, 0.8], [0.1]) == 1.0


# ------------------------------------------------------------------------------------------------
# FPR at TPR
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conf_in", "conf_out", "tpr", "expected"),
    [
        # 20 in-dist scores 0.05..1.00: 19 (95%) are >= 0.10, so threshold 0.10.
        (np.arange(1, 21) / 20, [0.05, 0.10, 0.09, 0.5], 0.95, 0.5),
        # 100 scores 0.01..1.00: 95 are >= 0.06.
        (np.arange(1, 101) / 100, [0.05, 0.06, 0.07, 0.01], 0.95, 0.5),
        # 10 scores: 95% needs all 10, so threshold = the minimum 0.1 (np.quantile "higher"
        # would pick 0.2 and accept only 9 of 10 in-dist samples).
        (np.arange(1, 11) / 10, [0.05, 0.1, 0.2], 0.95, 2 / 3),
        # 0.07 * 100 is 7.000000000000001 in floats: k must still be 7, threshold 0.94.
        (np.arange(1, 101) / 100, [0.93, 0.94, 0.95], 0.07, 2 / 3),
        # tpr=1: threshold = minimum in-dist confidence.
        ([0.3, 0.6, 0.9], [0.29, 0.3, 1.0], 1.0, 2 / 3),
        # Ties at the threshold: OOD equal to it counts as accepted.
        ([0.5, 0.5, 0.5, 0.9], [0.5, 0.4], 0.5, 0.5),
    ],
)
def test_fpr_at_tpr_hand_computed(conf_in, conf_out, tpr, expected):
    assert fpr_at_tpr(conf_in, conf_out, tpr=tpr) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tpr", [0.95, 0.8, 0.5])
def test_fpr_at_tpr_is_best_fpr_with_guaranteed_tpr(seed, tpr):
    cin, cout = tied_scores(seed, n_in=57, n_out=41)
    # Brute force: among thresholds accepting at least `tpr` of in-dist, the smallest FPR.
    valid = [t for t in np.unique(cin) if np.mean(cin >= t) >= tpr - 1e-12]
    expected = min(np.mean(cout >= t) for t in valid)
    assert fpr_at_tpr(cin, cout, tpr=tpr) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------
# calibration
# ------------------------------------------------------------------------------------------------


def test_ece_hand_computed_with_bin_edges():
    # n_bins=10: bin0 = [0, 0.1] gets 0.0 and 0.1 (acc .5, conf .05); 0.3 is in (0.2, 0.3]
    # (acc 1, conf .3); 0.35 in (0.3, 0.4] (acc 0, conf .35).
    ece = expected_calibration_error([0.0, 0.1, 0.3, 0.35], [0, 1, 1, 0], n_bins=10)
    assert ece == pytest.approx((2 * 0.45 + 0.7 + 0.35) / 4)
    # Perfectly calibrated bin, and maximally wrong confident predictions (default 15 bins).
    assert expected_calibration_error([0.8] * 5, [1, 1, 1, 1, 0]) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 1.0], [False, False]) == pytest.approx(1.0)
    # 15 bins: 0.5 is in (7/15, 8/15], 0.6 in (8/15, 9/15] -> separate bins.
    ece15 = expected_calibration_error([0.5, 0.6], [1, 0])
    assert ece15 == pytest.approx(0.5 * 0.5 + 0.5 * 0.6)


@pytest.mark.parametrize("seed", range(3))
def test_ece_matches_loop_over_bins(seed):
    rng = np.random.default_rng(seed)
    conf = np.round(rng.uniform(0, 1, 500), 2)  # round so that some values sit on bin edges
    conf[:3] = [0.0, 1.0, 0.2]
    correct = rng.uniform(size=500) < conf
    n = 15
    total = 0.0
    for i in range(n):
        lo, hi = i / n, (i + 1) / n
        in_bin = ((conf > lo) | ((i == 0) & (conf == 0))) & (conf <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    assert expected_calibration_error(conf, correct) == pytest.approx(total, abs=1e-12)


def _calibrated_at_half(seed: int, n: int = 3000, k: int = 10):
    """Logits z calibrated by construction (labels drawn from softmax(z)); the model outputs z/2."""
    rng = np.random.default_rng(seed)
    z = 3 * rng.normal(size=(n, k))
    labels = (z + rng.gumbel(size=(n, k))).argmax(axis=1)  # Gumbel-max: label ~ softmax(z)
    return 0.5 * z, labels


def test_fit_temperature_recovers_known_temperature():
    logits, labels = _calibrated_at_half(seed=1)
    t = fit_temperature(logits, labels)
    assert 0.4 < t < 0.625  # true value 0.5
    assert t in M.DEFAULT_TEMPERATURE_GRID
    correct = predictions(logits) == labels
    before = expected_calibration_error(confidence(logits), correct)
    after = expected_calibration_error(confidence(logits, temperature=t), correct)
    assert after < 0.5 * before


def test_fit_temperature_ties_pick_smallest_and_custom_grid():
    # One correct sample with a logit gap of 100: T=1 and T=2 both give confidence exactly 1.0
    # in float64 (ECE 0), T=3 gives 1 - 3e-15; the smaller of the tied minimisers wins.
    logits, labels = np.array([[100.0, 0.0]]), np.array([0])
    assert fit_temperature(logits, labels, grid=[2.0, 1.0, 3.0]) == 1.0
    t = fit_temperature(*_calibrated_at_half(seed=2, n=800), grid=[0.1, 0.5, 2.0])
    assert t == 0.5


# ------------------------------------------------------------------------------------------------
# input validation and undefined results
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [auroc, auroc_conservative, aupr_in, aupr_out, fpr_at_tpr])
def test_two_sample_validation_names_the_argument(fn):
    with pytest.raises(ValueError, match="conf_in is empty"):
        fn([], [0.5])
    with pytest.raises(ValueError, match="conf_in contains NaN"):
        fn([0.5, np.nan], [0.5])
    with pytest.raises(ValueError, match="conf_out contains NaN"):
        fn([0.5], [np.inf])
    with pytest.raises(ValueError, match="conf_out must be 1-D"):
        fn([0.5], [[0.5, 0.4]])
    with pytest.raises(ValueError, match="conf_in must be 1-D"):
        fn(0.5, [0.5])
    with pytest.raises(ValueError, match="conf_in must be an array of numbers"):
        fn(["a"], [0.5])


@pytest.mark.parametrize("fn", [auroc, auroc_conservative, aupr_in, aupr_out, fpr_at_tpr])
def test_empty_ood_set_warns_and_returns_nan(fn):
    with pytest.warns(UndefinedMetricWarning, match="empty OOD set"):
        value = fn([0.5, 0.7], [])
    assert isinstance(value, float) and math.isnan(value)


def test_other_validation_errors():
    with pytest.raises(ValueError, match=r"inconsistent lengths \(labels: 2, predictions: 3\)"):
        test_error([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="labels is empty"):
        test_error([], [])
    with pytest.raises(ValueError, match="conf must lie in"):
        expected_calibration_error([1.2], [1])
    with pytest.raises(ValueError, match="correct must contain only 0/1"):
        expected_calibration_error([0.5], [2])
    with pytest.raises(ValueError, match="inconsistent lengths"):
        expected_calibration_error([0.5, 0.6], [1])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.5], [1], n_bins=0)
    with pytest.raises(ValueError, match="tpr must be in"):
        fpr_at_tpr([0.5], [0.5], tpr=0.0)
    with pytest.raises(ValueError, match="temperature"):
        softmax([[1.0, 2.0]], temperature=0)
    with pytest.raises(ValueError, match="logits must be 2-D"):
        confidence([1.0, 2.0])
    with pytest.raises(ValueError, match="logits contains NaN"):
        predictions([[1.0, np.nan]])
    with pytest.raises(ValueError, match=r"labels must be integer class indices in \[0, 2\)"):
        fit_temperature([[1.0, 2.0]], [2])
    with pytest.raises(ValueError, match="labels has 2 entries"):
        fit_temperature([[1.0, 2.0]], [0, 1])
    with pytest.raises(ValueError, match="grid must contain only positive"):
        fit_temperature([[1.0, 2.0]], [1], grid=[0.0, 1.0])
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(mean_max_confidence([]))


# ------------------------------------------------------------------------------------------------
# registered metrics
# ------------------------------------------------------------------------------------------------


def test_builtin_metrics_registered_with_metadata():
    names = set(metric_registry.names())
    assert set(BUILTIN_METRICS) <= names
    for name, (scope, higher) in BUILTIN_METRICS.items():
        meta = metric_registry.meta(name)
        assert (meta["scope"], meta["higher_is_better"]) == (scope, higher), name
        assert metric_registry.entry(name).doc  # shown by `oodbench list metrics`


@pytest.mark.parametrize("name", metric_registry.names())
def test_every_registered_metric_smoke(name):
    meta = metric_registry.meta(name)
    assert meta.get("scope") in SCOPES
    assert isinstance(meta.get("higher_is_better"), bool)
    metric = metric_registry.get(name)
    assert isinstance(metric, Metric)
    assert (metric.name, metric.scope, metric.higher_is_better) == (
        name,
        meta["scope"],
        meta["higher_is_better"],
    )
    assert metric.doc
    inp = toy_input()
    rows = {"in": ["in"], "probe": ["probe"], "both": ["in", "probe"]}[metric.scope]
    for row in rows:
        values = compute_metrics([name], inp, row=row)
        assert list(values) == [name]
        assert isinstance(values[name], float) and math.isfinite(values[name])
    other = {"in": "probe", "probe": "in", "both": None}[metric.scope]
    if other:
        assert compute_metrics([name], inp, row=other) == {}


def test_compute_metrics_values_match_functions():
    inp = toy_input(seed=3)
    cin, cout = confidence(inp.in_logits), confidence(inp.out_logits)
    correct = predictions(inp.in_logits) == inp.in_labels
    in_row = compute_metrics(list(BUILTIN_METRICS), inp, row="in")
    assert list(in_row) == ["test-error", "ece", "ece-ts", "mmc"]
    assert in_row["test-error"] == pytest.approx(1 - correct.mean())
    assert in_row["ece"] == pytest.approx(expected_calibration_error(cin, correct))
    assert in_row["mmc"] == pytest.approx(cin.mean())
    probe = compute_metrics(list(BUILTIN_METRICS), inp, row="probe")
    assert list(probe) == ["mmc", "auroc", "auroc-conservative", "aupr-in", "aupr-out", "fpr95"]
    sin, sout = M.msp_score(inp.in_logits), M.msp_score(inp.out_logits)  # what rank metrics rank
    assert probe == pytest.approx(
        {
            "mmc": cout.mean(),
            "auroc": auroc(sin, sout),
            "auroc-conservative": auroc_conservative(sin, sout),
            "aupr-in": aupr_in(sin, sout),
            "aupr-out": aupr_out(sin, sout),
            "fpr95": fpr_at_tpr(sin, sout, tpr=0.95),
        }
    )


def test_ece_ts_uses_seeded_half_split():
    logits, labels = _calibrated_at_half(seed=4, n=1000)
    inp = MetricInput(logits, labels, seed=7)
    perm = np.random.default_rng(7).permutation(1000)
    fit, ev = perm[:500], perm[500:]
    t = fit_temperature(logits[fit], labels[fit])
    expected = expected_calibration_error(
        confidence(logits[ev], temperature=t), predictions(logits[ev]) == labels[ev]
    )
    got = compute_metrics(["ece-ts"], inp, row="in")["ece-ts"]
    assert got == pytest.approx(expected)
    assert got < compute_metrics(["ece"], inp, row="in")["ece"]
    again = MetricInput(logits, labels, seed=7)
    assert compute_metrics(["ece-ts"], again, row="in")["ece-ts"] == got  # deterministic
    tiny = MetricInput(logits[:1], labels[:1])
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(compute_metrics(["ece-ts"], tiny, row="in")["ece-ts"])


def test_compute_metrics_errors_and_empty_probe():
    inp = toy_input()
    with pytest.raises(UnknownNameError, match="aurocc"):
        compute_metrics(["auroc", "aurocc"], inp, row="probe")
    with pytest.raises(ValueError, match="row must be"):
        compute_metrics(["auroc"], inp, row="out")
    with pytest.raises(ValueError, match="out_logits"):
        compute_metrics(["auroc"], toy_input(out=False), row="probe")
    empty = MetricInput(inp.in_logits, inp.in_labels, np.zeros((0, 5)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = compute_metrics(["mmc", "auroc", "fpr95"], empty, row="probe")
    assert all(math.isnan(v) for v in values.values())
    assert sum(issubclass(w.category, UndefinedMetricWarning) for w in caught) == 3


def test_metric_input_validation():
    with pytest.raises(ValueError, match="out_logits has 3 classes but in_logits has 2"):
        MetricInput(np.zeros((2, 2)), np.array([0, 1]), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="in_labels has 1 entries"):
        MetricInput(np.zeros((2, 2)), np.array([0]))
    with pytest.raises(ValueError, match="scope must be one of"):
        Metric("x", lambda inp: 0.0, "everywhere", True)


# ------------------------------------------------------------------------------------------------
# module hygiene
# ------------------------------------------------------------------------------------------------


def test_doctests():
    result = doctest.testmod(M, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10
    assert result.failed == 0


def test_imports_only_registry_from_oodbench():
    # The registry imports this module lazily on first lookup; importing other oodbench modules
    # here could create an import cycle. oodbench.scores imports nothing from oodbench, and
    # oodbench.core is the bottom layer (it imports nothing else of the package): a metric's
    # scope is stated in the row kinds defined there (core.rows.MetricScope).
    tree = ast.parse(Path(M.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {m for m in imported if m.split(".")[0] == "oodbench"}
    assert ours == {"oodbench.core.registry", "oodbench.core.rows", "oodbench.scores"}


def test_metric_scopes_are_the_row_kinds_they_cover():
    """One vocabulary: a scope is the set of row kinds a metric has a value on; an attacked
    in-distribution row holds a probe row's metrics, a summary row none."""
    assert MetricScope.IN.rows == {RowKind.IN_DISTRIBUTION}
    assert MetricScope.PROBE.rows == {RowKind.OOD, RowKind.IN_ATTACKED}
    assert MetricScope.BOTH.rows == MetricScope.IN.rows | MetricScope.PROBE.rows
    assert not any(scope.covers(RowKind.SUMMARY) for scope in MetricScope)
    names = list(BUILTIN_METRICS)
    on_in = [n for n, (scope, _) in BUILTIN_METRICS.items() if scope in ("in", "both")]
    on_probe = [n for n, (scope, _) in BUILTIN_METRICS.items() if scope in ("probe", "both")]
    assert M.row_metric_names(names, RowKind.IN_DISTRIBUTION) == M.row_metric_names(names, "in") == on_in
    for kind in (RowKind.OOD, RowKind.IN_ATTACKED, "probe"):
        assert M.row_metric_names(names, kind) == on_probe
    assert M.row_metric_names(names, RowKind.SUMMARY) == []
    inp = toy_input()
    assert list(compute_metrics(names, inp, row=RowKind.IN_ATTACKED)) == on_probe
    assert compute_metrics(names, inp, row=RowKind.OOD) == compute_metrics(names, inp, row="probe")
    assert compute_metrics(names, inp, row=RowKind.IN_DISTRIBUTION) == compute_metrics(names, inp, row="in")


def test_register_takes_a_scope_or_its_old_string(monkeypatch):
    """Plugins written before :class:`MetricScope` pass ``scope="in"`` etc.; both spellings
    register the same metric, and a scope that is neither is refused by name."""
    metric_registry.names()  # discover the built-ins before copying the entries
    monkeypatch.setattr(metric_registry, "_entries", dict(metric_registry._entries))

    def mean_in_conf(inp):
        """Mean confidence on the in-distribution set."""
        return float(inp.in_conf.mean())

    M.register("test-conf-old", scope="in", higher_is_better=False)(mean_in_conf)
    M.register("test-conf-new", scope=MetricScope.IN, higher_is_better=False)(mean_in_conf)
    for name in ("test-conf-old", "test-conf-new"):
        assert metric_registry.get(name).scope is MetricScope.IN
        assert metric_registry.meta(name)["scope"] is MetricScope.IN
    inp = toy_input()
    expected = mean_max_confidence(confidence(inp.in_logits))
    got = compute_metrics(["test-conf-old", "test-conf-new", "auroc"], inp, row=RowKind.IN_DISTRIBUTION)
    assert got == {"test-conf-old": pytest.approx(expected), "test-conf-new": pytest.approx(expected)}
    with pytest.raises(ValueError, match=r"scope must be one of \('in', 'probe', 'both'\), got 'out'"):
        M.register("test-conf-bad", scope="out", higher_is_better=False)(mean_in_conf)
    assert "test-conf-bad" not in metric_registry


# ------------------------------------------------------------------------------------------------
# the rank score and the exactness of every settled_above rule (the attacks' early stop)
# ------------------------------------------------------------------------------------------------


def _two_class(margins) -> np.ndarray:
    """Logits [m, 0]: msp_score = -log(1 + e^-m), strictly increasing in the margin m."""
    m = np.asarray(margins, dtype=np.float64)
    return np.stack([m, np.zeros_like(m)], axis=1)


def test_registered_rank_metrics_resolve_saturated_confidences():
    """Margins above ~37 all have float64 confidence 1.0; the registered metrics rank them by
    the log-confidence, as scikit-learn does on M.msp_score, not on the tied confidences."""
    rng = np.random.default_rng(0)
    in_m, out_m = rng.uniform(40, 60, 200), rng.uniform(38, 50, 100)
    inp = MetricInput(_two_class(in_m), np.zeros(200, dtype=int), _two_class(out_m))
    assert (confidence(inp.in_logits) == 1.0).all()
    y = np.r_[np.ones(200), np.zeros(100)]
    s = np.r_[M.msp_score(inp.in_logits), M.msp_score(inp.out_logits)]
    got = compute_metrics(["auroc", "aupr-in", "aupr-out", "mmc"], inp, row="probe")
    assert got["auroc"] == pytest.approx(roc_auc_score(y, s)) == pytest.approx(np.mean(
        in_m[:, None] > out_m[None, :]))
    assert got["aupr-in"] == pytest.approx(average_precision_score(y, s))
    assert got["aupr-out"] == pytest.approx(average_precision_score(1 - y, -s))
    assert 0.6 < got["auroc"] < 0.99  # tied confidences would give far less
    assert roc_auc_score(y, np.r_[confidence(inp.in_logits), confidence(inp.out_logits)]) == 0.5
    assert got["mmc"] == pytest.approx(confidence(inp.out_logits).mean())  # MMC: the probability


def _stop_rules() -> list[str]:
    return [n for n in metric_registry.names()
            if getattr(metric_registry.get(n), "settled_above", None) is not None]


def _stopped_and_full(seed: int, level_of) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Adversarial (in, stopped, full) margin triples: ties in-distribution (many at its maximum
    and at the 5% quantile), OOD points tied with each other, with the level and with
    in-distribution points, and a full attack that raises every point above the level onto
    ties (with each other, with in-distribution points above the level, at the ceiling) or
    apart. ``level_of(in_margins)`` gives the rule's level in msp_score units."""
    rng = np.random.default_rng(seed)
    grid = np.array([2.0, 5.0, 10.0, 38.0, 40.0, 45.0])  # 38+: float64 confidence 1.0
    in_m = np.r_[rng.choice(grid, 37), np.full(3, 45.0)]
    level = level_of(in_m)
    in_s = M.msp_score(_two_class(in_m))
    out = np.r_[rng.choice(np.r_[grid, 1.0, 50.0, 60.0], 25), 0.0, 0.5]
    above = M.msp_score(_two_class(out)) > level
    assert above.any() and not above.all()
    raised = {
        "all tied": np.full(above.sum(), 70.0),
        "ceiling": np.full(above.sum(), 800.0),
        "onto in-distribution": rng.choice(in_m[in_s > level], above.sum()) if (in_s > level).any()
        else np.full(above.sum(), 70.0),
        "apart": out[above] + rng.uniform(0.5, 30, above.sum()),
        "partly": np.where(rng.random(above.sum()) < 0.5, out[above], 60.0),
    }
    cases = []
    for new in raised.values():
        full = out.copy()
        full[above] = np.maximum(out[above], new)  # an attack can only raise the best score
        cases.append((in_m, out, full))
    return cases


def _rule_level(name: str):
    rule = metric_registry.get(name).settled_above
    return lambda in_m: rule(M.msp_score(_two_class(in_m)))


def _metric_of(name: str, in_m: np.ndarray, out_m: np.ndarray) -> float:
    inp = MetricInput(_two_class(in_m), np.zeros(len(in_m), dtype=int), _two_class(out_m))
    return compute_metrics([name], inp, row="probe")[name]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("name", _stop_rules())
def test_settled_above_is_exact_for_every_registered_metric_with_a_rule(name, seed):
    """Raising points already above a metric's level, by any amounts, onto or off ties, leaves
    the metric exactly as it is: what the full attack gets equals the early-stopped one."""
    for in_m, stopped, full in _stopped_and_full(seed, _rule_level(name)):
        assert _metric_of(name, in_m, stopped) == _metric_of(name, in_m, full)


def test_the_exactness_check_catches_an_inexact_rule():
    """The same check applied to AUPR-out with the rule AUROC uses (above every in-distribution
    score) finds cases where the full and the stopped attack differ."""
    level_of = lambda in_m: float(M.msp_score(_two_class(in_m)).max())  # noqa: E731
    differ = [_metric_of("aupr-out", i, s) != _metric_of("aupr-out", i, f)
              for seed in range(8) for i, s, f in _stopped_and_full(seed, level_of)]
    assert any(differ)


def test_aupr_out_has_no_early_stop():
    """5 in-distribution points, 3 OOD: one below them, two above. The full attack saturates
    the two (tied at the ceiling), a stopped one leaves them apart: AP-out 0.5833 vs 0.5536."""
    conf_in = [0.5, 0.6, 0.7, 0.8, 0.9]
    full, stopped = [0.1, 1.0, 1.0], [0.1, 0.95, 0.99]
    y = np.r_[np.zeros(5), np.ones(3)]
    assert aupr_out(conf_in, full) == pytest.approx(1 / 3 + 2 / 3 * 3 / 8)  # 0.5833
    assert aupr_out(conf_in, stopped) == pytest.approx(1 / 3 + 1 / 3 * 2 / 7 + 1 / 3 * 3 / 8)  # 0.5536
    assert aupr_out(conf_in, full) == pytest.approx(average_precision_score(y, -np.r_[conf_in, full]))
    assert metric_registry.get("aupr-out").settled_above is None
    assert not M.early_stop_is_exact(["auroc", "aupr-out"])
    assert M.settled_above(["auroc", "aupr-out"], np.log(conf_in)) is None
    assert M.settled_above(["auroc", "aupr-in", "auroc-conservative"], np.log(conf_in)) == np.log(0.9)


def test_mmc_is_settled_where_the_float64_confidence_is_one():
    # margin m, two classes: score -e^-m; settled for m >= 38.2 (e^-m < 2^-55), conf 1.0 there
    z = _two_class([36.0, 37.0, 38.0, 38.2, 40.0, 100.0])
    s, level = M.msp_score(z), metric_registry.get("mmc").settled_above(np.zeros(1))
    assert level == M.MMC_SETTLED == -(2.0 ** -55)
    assert (s > level).tolist() == [False, False, False, True, True, True]
    assert (confidence(z)[s > level] == 1.0).all() and confidence(z)[0] < 1.0
    assert M.settled_above(["mmc", "fpr95"], np.log([0.2, 0.5])) == level
