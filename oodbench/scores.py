"""The OOD score of the benchmark: the ``msp`` detector (maximum softmax probability) in log
units, computed stably in float64 from the logits. One definition for the attack engine (torch,
on the attack's device) and for every rank metric (numpy).

Why not the confidence itself: on a confident model the float32 softmax is exactly 1.0 for
every margin above ~17 and the float64 one for every margin above ~37, so distinct inputs tie
and an attack that stops at "confidence 1.0" (or picks its iterate by it) ranks below
in-distribution points that are only tied in float. The log-confidence

    log p_max = -log(1 + sum_{j != k} exp(z_j - z_k)),   k = argmax z,

computed with ``log1p`` and the argmax term left out of the sum, orders inputs exactly like the
confidence but keeps resolving margins up to ~745 (where ``exp`` underflows in float64): only
there does it reach its ceiling 0.0, which no input can exceed.

Two backends compute the same formula; their transcendental functions (``exp``, ``log1p``) and
summation order may differ by a few units in the last place, so a score computed on the device
and one computed by numpy from the same stored logits agree only to within
:func:`stop_threshold`'s margin. Decisions that must agree with the metrics (the early stop)
therefore use that margin; decisions internal to the engine (best iterate, ceiling) use the
engine's own score and need none.

This module imports nothing from oodbench (the metrics module depends on it) and imports torch
only when given a tensor.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Union, overload

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["SCORE_DEFINITION", "MSP_CEILING", "SCORE_RTOL", "msp_score", "other_mass",
           "stop_threshold"]

SCORE_DEFINITION = "msp-log-float64-v1"
"""Name of the score definition; part of every attack job's cache key, so results selected or
stopped under another definition are never reused. Change it whenever :func:`msp_score` changes."""

MSP_CEILING = 0.0
"""The largest value :func:`msp_score` can take (log 1): a point there can never be beaten."""

SCORE_RTOL = 1e-9
"""Relative bound on |engine score - numpy score| for the same logits. The worst case is about
(K + 8) * 4 * 2**-53 for K classes (each exp/log1p within 4 ulp, a K-term sum in any order), i.e.
below 1e-10 for K <= 10**5; 1e-9 leaves a wide margin and costs no measurable work."""

_SCORE_ATOL = 2.0 ** -960
"""Absolute part of the bound: below ~1e-289 the exp terms are subnormal and lose relative
precision; the margin then keeps the engine from stopping on scores it cannot resolve."""


@overload
def msp_score(logits: "torch.Tensor") -> "torch.Tensor": ...
@overload
def msp_score(logits: Any) -> np.ndarray: ...


def msp_score(logits: Any) -> Union[np.ndarray, "torch.Tensor"]:
    """Log of the maximum softmax probability per row, in float64, without saturation.

    A torch tensor gives a float64 tensor on its device (for the attack engine); anything else
    is converted to a float64 numpy array (for the metrics). Rows of ``logits`` (N, K) must be
    finite; the input is not validated here (the metrics validate it first).

    Examples
    --------
    >>> import numpy as np
    >>> msp_score([[0.0, 0.0], [0.0, np.log(3.0)]]).round(6).tolist()  # log 0.5, log 0.75
    [-0.693147, -0.287682]
    >>> s = msp_score([[40.0, 0.0], [50.0, 0.0], [800.0, 0.0]])  # float64 softmax: 1.0 for all
    >>> bool(s[0] < s[1] < s[2] == 0.0)
    True
    """
    if type(logits).__module__.split(".")[0] == "torch":
        return _msp_score_torch(logits)
    z = np.asarray(logits, dtype=np.float64)
    if z.shape[0] == 0:
        return np.zeros(0)
    k = z.argmax(axis=1)
    rows = np.arange(z.shape[0])
    e = np.exp(z - z[rows, k][:, None])
    e[rows, k] = 0.0  # the argmax term is exactly 1; adding it and subtracting later loses it all
    return -np.log1p(e.sum(axis=1))


def _msp_score_torch(logits: "torch.Tensor") -> "torch.Tensor":
    """:func:`msp_score` on the tensor's device, in float64 (the same formula as numpy's)."""
    import torch

    return other_mass(logits.detach().to(dtype=torch.float64)).squeeze(1).log1p().neg()


def other_mass(logits: "torch.Tensor") -> "torch.Tensor":
    """S = sum_{j != k} exp(z_j - z_k) per row (k = argmax), shape (N, 1), differentiable: the
    probability mass outside the top class is S / (1 + S), exact even where 1 + S rounds to 1.
    The msp score is -log1p(S); the detectors' exact log-softmax builds on it too."""
    top, k = logits.max(dim=1, keepdim=True)
    return (logits - top).exp().scatter(1, k, 0.0).sum(dim=1, keepdim=True)


def stop_threshold(level: float) -> float:
    """The engine's stop threshold for a metric-side ``level``: an engine score at or above it
    guarantees that the numpy score of the same logits is strictly above ``level``.

    Scores lie in [-log K, 0], so ``level`` is finite. A level this close to the ceiling
    returns ``inf`` (no point ever settles there). The margin is
    :data:`SCORE_RTOL` relative plus a tiny absolute part; it only delays a stop, never makes
    one inexact.
    """
    level = float(level)
    margin = SCORE_RTOL * abs(level) + _SCORE_ATOL
    threshold = level + margin
    return math.inf if threshold >= MSP_CEILING else threshold
