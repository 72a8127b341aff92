"""Tests of oodbench.scores: the msp score against hand-computed values and scipy, its two
backends against each other, and the stop threshold's guarantee that the engine's decision
agrees with the metrics' score."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

import oodbench.scores as S
from oodbench.metrics import confidence
from oodbench.scores import MSP_CEILING, SCORE_RTOL, msp_score, stop_threshold


def _random_logits(seed: int, n: int, k: int, scale: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = scale * rng.normal(size=(n, k))
    z[: n // 4, 0] += scale * 10  # a quarter of the rows with a large margin
    return z.astype(np.float32)


def test_msp_score_is_the_log_confidence_where_float64_resolves_it():
    z = _random_logits(0, 500, 10, 3.0).astype(np.float64)
    ref = log_softmax(z, axis=1).max(axis=1)  # scipy: z - logsumexp(z), an independent formula
    np.testing.assert_allclose(msp_score(z), ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.exp(msp_score(z)), confidence(z), rtol=1e-13)


def test_msp_score_hand_computed():
    # softmax (1, 2, 3)/6: p_max = 1/2; two tied maxima (argmax term left out only once)
    z = np.array([[0.0, math.log(2), math.log(3)], [5.0, 5.0, 0.0]])
    expected = [-math.log(2), -math.log1p(1 + math.exp(-5))]
    np.testing.assert_allclose(msp_score(z), expected, rtol=1e-15)
    assert msp_score(np.zeros((0, 3))).shape == (0,)


@pytest.mark.parametrize("margin", [20.0, 40.0, 100.0, 300.0, 700.0])
def test_msp_score_resolves_margins_where_the_confidence_saturates(margin):
    # two classes, margin m: log p = -log(1 + e^-m) = -e^-m to float64 precision for m >= 20
    z = np.array([[margin, 0.0]])
    assert msp_score(z)[0] == pytest.approx(-math.exp(-margin), rel=1e-15)
    assert msp_score(torch.tensor(z, dtype=torch.float32)).item() == pytest.approx(
        -math.exp(-margin), rel=1e-12)


def test_scores_order_margins_that_tie_in_float32_and_float64():
    margins = np.array([18.0, 40.0, 41.0, 60.0, 200.0, 740.0, 800.0])
    z = np.stack([margins, np.zeros_like(margins)], axis=1)
    c32 = torch.softmax(torch.tensor(z, dtype=torch.float32), 1).max(1).values.numpy()
    assert (c32 == 1.0).all()  # float32: all tied
    assert (confidence(z)[1:] == 1.0).all()  # float64 too, from margin ~37 on
    s = msp_score(z)
    assert (np.diff(s[:-1]) > 0).all()  # the score keeps them apart
    assert s[-2] < MSP_CEILING == s[-1]  # exp underflows only beyond ~745: the ceiling


@pytest.mark.parametrize("k", [2, 10, 100, 1000])
@pytest.mark.parametrize("scale", [0.3, 5.0, 60.0])
def test_torch_and_numpy_backends_agree(k, scale):
    z = _random_logits(k, 400, k, scale)
    s_np = msp_score(z)
    s_t = msp_score(torch.from_numpy(z))
    assert s_t.dtype == torch.float64
    diff = np.abs(s_t.numpy() - s_np)
    # a few ulp in practice; the stop threshold's margin is SCORE_RTOL
    assert (diff <= 1e-3 * SCORE_RTOL * np.abs(s_np) + 1e-300).all(), diff.max()


@pytest.mark.parametrize("seed", range(3))
def test_stop_threshold_never_stops_a_point_the_metrics_do_not_see_above_the_level(seed):
    """Adversarial levels: exactly a point's own numpy score, or the next float below it."""
    z = np.concatenate([_random_logits(seed, 300, 10, 4.0), _random_logits(seed + 9, 300, 10, 40.0)])
    s_np = msp_score(z)
    s_t = msp_score(torch.from_numpy(z)).numpy()
    for level in (s_np, np.nextafter(s_np, -np.inf)):
        thresholds = np.array([stop_threshold(v) for v in level])
        assert (thresholds > level).all()
        stops = s_t >= thresholds
        # the guarantee: an engine stop implies a metric-side score strictly above the level
        assert (s_np[stops] > level[stops]).all()
        assert not stops.any()  # and here the margin is wider than any backend difference
    # far below a point's score, the point does stop (the margin is tiny)
    assert (s_t >= np.array([stop_threshold(v - 1e-6 * abs(v) - 1e-300) for v in s_np])).all()


def test_stop_threshold_at_the_ceiling_never_stops():
    assert stop_threshold(0.0) == math.inf
    assert stop_threshold(-1e-300) == math.inf  # closer to 0 than the scores are resolved
    assert -1e-10 < stop_threshold(-1e-10) < 0.0


def test_scores_module_imports_nothing_from_oodbench_and_no_torch():
    tree = ast.parse(Path(S.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.split(".")[0] == "oodbench"}
    code = "import sys, oodbench.scores as s; s.msp_score([[1.0, 2.0]]); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
