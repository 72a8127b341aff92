"""Square attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): score-based random search.

A black-box attack: it only *evaluates* the score, never differentiates it, so gradient masking
cannot stop it. Each iteration changes a random square window of the current perturbation
(Linf: the window is set to ±ε per channel; L2: mass is moved from a second window into the
first, shaped as the paper's pseudo-Gaussian blocks) and keeps the candidate if its score is
higher; the window's size shrinks on the paper's schedule (:func:`p_selection`). The initial
perturbation is the paper's: vertical stripes of ±ε (Linf), a grid of pseudo-Gaussian blocks of
L2 norm ε (L2). Every candidate is projected onto the ball ∩ [0,1]^d of the threat model.

Here it *maximises* a score (the trust check ``black-box-beats-white-box`` runs it on the
detector's own score, beside the gradient attack on the same ball). As in the attack engine,
each point draws its randomness from its own stream (:func:`oodbench.attacks.engine.point_generators`,
with a stream number of its own) and is evaluated in fixed-shape chunks, so a point's result
depends only on the point, its index and the seed. A point stops once its score exceeds its
``stop_above`` (the check only needs to know that some query beats the gradient attack).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from oodbench.attacks.engine import point_generators
from oodbench.attacks.threats import ThreatModel

SQUARE_STREAM = 1_000_003
"""The ``restart`` number of Square's per-point random streams (the engine's restarts count
from 0, so the streams never coincide)."""

P_INIT = {"Linf": 0.05, "L2": 0.1}
"""The paper's initial share of pixels changed per step."""


def p_selection(p_init: float, it: int, n_iters: int) -> float:
    """The paper's schedule: the share of pixels changed halves at fixed fractions of the budget
    (given for 10,000 iterations, rescaled to ``n_iters``)."""
    it = int(it / n_iters * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32),
                       (4000, 64), (6000, 128), (8000, 256), (10000, 512)):
        if it <= bound:
            return p_init / div
    return p_init / 512


def _rectangle(x: int, y: int) -> np.ndarray:
    delta = np.zeros((x, y))
    if x == 0 or y == 0:
        return delta
    xc, yc = x // 2 + 1, y // 2 + 1
    c0, c1 = xc - 1, yc - 1
    for k in range(max(xc, yc)):
        delta[max(c0, 0):min(c0 + 2 * k + 1, x), max(0, c1):min(c1 + 2 * k + 1, y)] += 1.0 / (k + 1) ** 2
        c0, c1 = c0 - 1, c1 - 1
    return delta / np.sqrt((delta ** 2).sum())


def pseudo_gaussian(s: int) -> torch.Tensor:
    """The paper's (s, s) update block: two pseudo-Gaussian halves of opposite sign, unit norm."""
    delta = np.zeros((s, s))
    delta[:s // 2] = _rectangle(s // 2, s)
    delta[s // 2:] = -_rectangle(s - s // 2, s)
    norm = np.sqrt((delta ** 2).sum())
    return torch.from_numpy(delta / (norm if norm > 0 else 1.0))


def _window_mask(top: torch.Tensor, left: torch.Tensor, s: int, h: int, w: int) -> torch.Tensor:
    """(n, 1, h, w) masks of the s×s windows with corners ``top``, ``left``."""
    rows, cols = torch.arange(h, device=top.device), torch.arange(w, device=top.device)
    in_h = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + s)
    in_w = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + s)
    return (in_h[:, :, None] & in_w[:, None, :])[:, None]


def _place(block: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(n, 1, h, w) images that hold ``block`` (n, s, s) at the given corners, zero elsewhere."""
    n, s = block.shape[0], block.shape[1]
    out = torch.zeros(n, 1, h, w, dtype=block.dtype, device=block.device)
    ar = torch.arange(s, device=block.device)
    rows = (top[:, None] + ar)[:, :, None].expand(n, s, s)
    cols = (left[:, None] + ar)[:, None, :].expand(n, s, s)
    out[torch.arange(n, device=block.device)[:, None, None], 0, rows, cols] = block
    return out


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def square_attack(score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  threat: ThreatModel, *, queries: int, seed: int, indices: Sequence[int],
                  p_init: Optional[float] = None,
                  stop_above: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maximise ``score`` (rows of an (n, C, H, W) batch in [0, 1] → (n,) float64, higher is
    better) over the ball of ``threat`` around each point of ``x``, with ``queries`` iterations.

    Returns the best points, their scores, and the score evaluations each point used (its
    initial point included). ``indices``: the points' global indices (their random streams).
    ``stop_above``: per point, stop once the best score exceeds it. Linf and L2 only."""
    if threat.norm not in ("Linf", "L2"):
        raise ValueError(f"Square is defined for Linf and L2 balls, not {threat.norm}")
    n, c, h, w = x.shape
    eps, dev = threat.eps, x.device
    p_init = P_INIT[threat.norm] if p_init is None else p_init
    gens = point_generators(seed, indices, SQUARE_STREAM)
    linf = threat.norm == "Linf"
    # every random number a point will use, drawn from its own stream up front
    n_blocks = (h // max(h // 5, 1)) * (w // max(w // 5, 1))
    init = torch.stack([torch.rand(c * w if linf else c * n_blocks, generator=g) for g in gens]).to(dev)
    draws = torch.stack([torch.rand(queries, 5 + c, generator=g) for g in gens]).to(dev)

    x = x.double()
    if linf:  # vertical stripes of ±ε, one sign per (channel, column)
        signs = (init.view(n, c, 1, w) < 0.5).double() * 2 - 1
        x_best = threat.project(x + eps * signs, x)
    else:  # a grid of pseudo-Gaussian blocks with random signs, scaled to norm ε
        s0 = max(h // 5, 1)
        block = pseudo_gaussian(s0).to(dev)
        delta = torch.zeros_like(x)
        signs = (init.view(n, n_blocks, c) < 0.5).double() * 2 - 1
        sp_h, sp_w, k = (h - s0 * (h // s0)) // 2, (w - s0 * (w // s0)) // 2, 0
        for i in range(h // s0):
            for j in range(w // s0):
                top, left = sp_h + i * s0, sp_w + j * s0
                if top + s0 <= h and left + s0 <= w:
                    delta[:, :, top:top + s0, left:left + s0] += block * signs[:, k, :, None, None]
                k += 1
        x_best = threat.project(x + delta / _flat_norm(delta).clamp_min(1e-12) * eps, x)
    best = score(x_best.float()).double()
    used = torch.ones(n, dtype=torch.long, device=dev)
    goal = None if stop_above is None else stop_above.to(dev).double()

    for it in range(queries):
        active = torch.ones(n, dtype=torch.bool, device=dev) if goal is None else best <= goal
        idx = active.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        u, xa, xb = draws[idx, it], x[idx], x_best[idx]
        p = p_selection(p_init, it, queries)
        if linf:
            s = min(max(int(round(math.sqrt(p * h * w))), 1), min(h, w))
            top = (u[:, 0] * (h - s + 1)).long().clamp_max(h - s)
            left = (u[:, 1] * (w - s + 1)).long().clamp_max(w - s)
            mask = _window_mask(top, left, s, h, w)
            sign = (u[:, 5:] < 0.5).double() * 2 - 1
            cand = torch.where(mask, xa + eps * sign[:, :, None, None], xb)
        else:
            s = max(int(round(math.sqrt(p * h * w))), 3)
            s = min(s + (s % 2 == 0), min(h, w))
            top = (u[:, 0] * (h - s + 1)).long().clamp_max(h - s)
            left = (u[:, 1] * (w - s + 1)).long().clamp_max(w - s)
            top2 = (u[:, 2] * (h - s + 1)).long().clamp_max(h - s)
            left2 = (u[:, 3] * (w - s + 1)).long().clamp_max(w - s)
            m1 = _window_mask(top, left, s, h, w).double()
            m2 = _window_mask(top2, left2, s, h, w).double()
            delta = xb - xa
            norm_w1 = (delta * m1).pow(2).sum((2, 3), keepdim=True).sqrt()
            norm_img = _flat_norm(delta)
            norm_both = (delta * torch.maximum(m1, m2)).pow(2).sum((2, 3), keepdim=True).sqrt()
            g = pseudo_gaussian(s).to(dev)
            blocks = torch.where((u[:, 4] > 0.5)[:, None, None], g.T[None], g[None])
            sign = (u[:, 5:] < 0.5).double() * 2 - 1
            new = _place(blocks, top, left, h, w) * sign[:, :, None, None]
            new = new + delta * m1 / (1e-10 + norm_w1)
            new = new * m1  # the block lives in window 1 only
            budget = ((eps ** 2 - norm_img ** 2).clamp_min(0) / c + norm_both ** 2).sqrt()
            new = new / (new * m1).pow(2).sum((2, 3), keepdim=True).sqrt().clamp_min(1e-12) * budget
            delta = delta * (1 - m2)
            delta = delta * (1 - m1) + new
            cand = xa + delta / _flat_norm(delta).clamp_min(1e-12) * eps
        cand = threat.project(cand, xa)
        value = score(cand.float()).double()
        used[idx] += 1
        better = value > best[idx]
        if better.any():
            sel = idx[better]
            x_best[sel], best[sel] = cand[better], value[better]
    return x_best.float(), best, used


__all__ = ["P_INIT", "SQUARE_STREAM", "p_selection", "pseudo_gaussian", "square_attack"]
