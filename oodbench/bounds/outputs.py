"""Bounds of a model's logits over a ball, and upper bounds of the logit scores built on them.

The last linear layer is elided as in GOOD (Bitterwolf et al. 2020) and CROWN-IBP: the
difference of two logits ``z_j − z_k = (W_j − W_k)·f + b_j − b_k`` is bounded through the row
``W_j − W_k`` applied to the box of the penultimate features ``f``, which is much tighter than
subtracting two independently bounded logits (the box of ``f`` is shared).

From the logit box and the difference bounds ``U[j, k] >= z_j − z_k``:

- **msp** (log-confidence, :func:`oodbench.scores.msp_score`): ``log p_max = max_k −log(Σ_j
  exp(z_j − z_k))`` and ``z_j − z_k >= −U[k, j]``, so ``max_k −log1p(Σ_{j≠k} exp(−U[k, j]))``
  bounds it from above (the argmax class k of the score is one of the k's maximised over);
- **energy** ``T·logsumexp(z/T)``: increasing in every logit, so bounded by the upper logits, and
  also by ``z_k + T·log Σ_j exp((z_j − z_k)/T)`` for any k; the smaller of the two;
- **max-logit**: ``max_j z_j <= max_j upper_j`` and ``<= upper_k + max_j U[j, k]``; the smaller.

All in float64 with a small outward margin for the rounding of the float32 model these bounds
describe (:data:`ROUNDING_MARGIN`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from oodbench.bounds.ibp import Box, HeadSplit, propagate

ROUNDING_MARGIN = 1e-4
"""Outward margin ``m·(1 + |v|)`` added to every logit bound ``v``: the float32 model's own
rounding (its logits differ from the exact function by far less on the zoo's models) must not
put a computed score above a certified bound."""


@dataclass(frozen=True)
class OutputBounds:
    """Bounds of a model's outputs over a set of inputs (rows = points).

    ``logits``: elementwise box (N, K); ``diff_upper[n, j, k] >= z_j − z_k`` (0 on the
    diagonal); ``features``/``head``: the box of the last layer's input and that layer, when the
    model ends in a linear layer (feature detectors re-bound the head from them)."""

    logits: Box
    diff_upper: torch.Tensor
    features: Optional[Box] = None
    head: Optional[nn.Linear] = None


def head_bounds(features: Box, weight: torch.Tensor,
                bias: Optional[torch.Tensor]) -> tuple[Box, torch.Tensor]:
    """The logit box and the elided difference bounds ``U[n, j, k]`` of ``f @ W.T + b`` for
    every ``f`` in the ``features`` box (in the box's dtype)."""
    dtype = features.lower.dtype
    w = weight.to(dtype)
    b = torch.zeros(w.shape[0], dtype=dtype, device=w.device) if bias is None else bias.to(dtype)
    mid, rad = features.center.flatten(1), features.radius.flatten(1)
    logit_mid, logit_rad = mid @ w.T + b, rad @ w.abs().T
    diff_w = w[:, None, :] - w[None, :, :]                       # (K, K, D): W_j − W_k
    diff_b = b[:, None] - b[None, :]
    upper = (torch.einsum("nd,jkd->njk", mid, diff_w) + diff_b
             + torch.einsum("nd,jkd->njk", rad, diff_w.abs()))
    return Box(logit_mid - logit_rad, logit_mid + logit_rad), upper


def _widen(value: torch.Tensor, margin: float, sign: float) -> torch.Tensor:
    return value + sign * margin * (1 + value.abs()) if margin else value


def output_bounds(model: nn.Module, box: Box, *, margin: float = ROUNDING_MARGIN) -> OutputBounds:
    """:class:`OutputBounds` of ``model`` over ``box`` (the last layer elided where the model ends
    in a linear layer; otherwise the differences are bounded from the logit box alone)."""
    split = propagate(model, box, split_head=True)
    features: Optional[Box] = None
    head: Optional[nn.Linear] = None
    if isinstance(split, HeadSplit):
        features, head = split.features, split.head
        logits, diff = head_bounds(features, head.weight, head.bias)
    else:
        logits = split
        diff = logits.upper[:, :, None] - logits.lower[:, None, :]
        k = diff.shape[1]
        diff = diff * (1 - torch.eye(k, dtype=diff.dtype, device=diff.device))
    return widened(logits, diff, margin, features=features, head=head)


def widened(logits: Box, diff_upper: torch.Tensor, margin: float = ROUNDING_MARGIN, *,
            features: Optional[Box] = None, head: Optional[nn.Linear] = None) -> OutputBounds:
    """:class:`OutputBounds` with every bound moved outwards by ``margin·(1 + |v|)`` (the
    diagonal of the differences stays 0)."""
    eye = torch.eye(diff_upper.shape[1], dtype=torch.bool, device=diff_upper.device)
    diff = torch.where(eye, torch.zeros_like(diff_upper), _widen(diff_upper, margin, 1.0))
    box = Box(_widen(logits.lower, margin, -1.0), _widen(logits.upper, margin, 1.0))
    return OutputBounds(box, diff, features, head)


def msp_upper(diff_upper: torch.Tensor) -> torch.Tensor:
    """Upper bound of the log-confidence ``max_k log p_k`` from the difference bounds."""
    k = diff_upper.shape[1]
    eye = torch.eye(k, dtype=torch.bool, device=diff_upper.device)
    # row k: the lower bounds −U[k, j] of z_j − z_k over the other classes j
    lower_diffs = (-diff_upper).masked_fill(eye, float("-inf"))
    # softplus above its threshold returns x < log1p(e^x): the bound only moves up (stays sound)
    per_class = -F.softplus(torch.logsumexp(lower_diffs, dim=2))
    return per_class.max(dim=1).values.clamp(max=0.0)


def energy_upper(bounds: OutputBounds, temperature: float = 1.0) -> torch.Tensor:
    """Upper bound of ``T·logsumexp(z/T)``."""
    t = temperature
    direct = t * torch.logsumexp(bounds.logits.upper / t, dim=1)
    # z_k + T·log Σ_j exp((z_j − z_k)/T) for each k; U[:, j, k] bounds z_j − z_k
    via_k = bounds.logits.upper + t * torch.logsumexp(bounds.diff_upper / t, dim=1)
    return torch.minimum(direct, via_k.min(dim=1).values)


def max_logit_upper(bounds: OutputBounds) -> torch.Tensor:
    """Upper bound of ``max_j z_j``."""
    direct = bounds.logits.upper.max(dim=1).values
    via_k = bounds.logits.upper + bounds.diff_upper.max(dim=1).values
    return torch.minimum(direct, via_k.min(dim=1).values)
