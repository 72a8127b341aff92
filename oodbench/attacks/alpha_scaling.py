"""α-scaling (Hein et al. 2019, Theorem 3.1 and Table 2): how far must noise be scaled up
before a ReLU network is 99.9% confident on it?

Theorem 3.1: for almost every x, the confidence of a ReLU network on α·x tends to 1 as α → ∞
(far along any ray the network is affine, and one logit grows fastest). Table 2, first row,
measures this on uniform noise: for each noise image x, the smallest α ≥ 1 with
confidence(α·x) ≥ 99.9%, reported as the median over the trials. Its second row (appendix B)
projects α·x back to the image box, clamp(α·x, 0, 1), and reports the share of predictions
above 95% confidence there.

α·x is **not a valid image**: it leaves [0, 1]^d for any α > 1 (unless x = 0). The model is
evaluated on it directly, exactly as in the paper; normalisation layers inside the model see the
unbounded input. Only ``confidence_projected`` is measured on valid images.

Use it on a uniform-noise probe (the paper's setting); ``n`` is the number of trials::

    - name: α-scaling
      dataset: uniform-noise
      n: 10000
      attack: {name: alpha-scaling}

The search, batched over images: confidence at α = 1; then α = growth^k (k = 1, 2, …, capped at
``alpha_max``) until the threshold is reached; then bisection in log-space between the last α
below and the first α at or above the threshold, until their ratio is at most 1 + ``rtol``. The
reported ``alpha`` is the upper end (confidence ≥ threshold there) and ``alpha_lower`` the lower
end (confidence < threshold, NaN when α = 1 already suffices). The search finds the first
crossing on the geometric grid; the confidence along a ray need not be monotone, so an earlier
crossing between two grid points can be missed (it is the paper's construction, not a global
minimiser). A point that does not reach the threshold even at ``alpha_max`` gets α = inf; its
projected confidence is then measured at clamp(alpha_max·x, 0, 1). A confidence that is NaN
(logits overflowing at huge α) counts as below the threshold.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from oodbench.attacks.base import Attack, AttackContext, AttackSpec, merge_options
from oodbench.core.registry import attacks
from oodbench.core.rows import RowKind

OPTION_DEFAULTS: dict[str, Any] = {"threshold": 0.999, "alpha_max": 1e20, "overconfident": 0.95,
                                   "growth": 2.0, "rtol": 1e-3}
_UNUSED_FIELDS = ("threat", "objective", "optimizer", "steps", "step_size", "restarts",
                  "random_start", "momentum")


def scale(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """α·x per image (``alpha`` float64 of shape (N,)), in the images' dtype."""
    return x * alpha.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))


def confidence(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Maximal softmax probability, computed in float64 from the model's logits."""
    with torch.no_grad():
        return F.softmax(model(x).double(), dim=1).max(dim=1).values


def _options(spec: AttackSpec) -> dict[str, float]:
    opts = merge_options("alpha-scaling", spec.options, OPTION_DEFAULTS)
    for key, value in opts.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"alpha-scaling: option {key} must be a number, got {value!r}")
    if not 0 < opts["threshold"] < 1 or not 0 < opts["overconfident"] < 1:
        raise ValueError("alpha-scaling: threshold and overconfident must lie in (0, 1)")
    if not (opts["alpha_max"] > 1 and math.isfinite(opts["alpha_max"])):
        raise ValueError(f"alpha-scaling: alpha_max must be finite and > 1, got {opts['alpha_max']}")
    if opts["growth"] <= 1 or opts["rtol"] <= 0:
        raise ValueError("alpha-scaling: growth must be > 1 and rtol > 0")
    return {k: float(v) for k, v in opts.items()}


def search_alpha(model: torch.nn.Module, x: torch.Tensor, *, threshold: float, alpha_max: float,
                 growth: float, rtol: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image of the batch ``x``: (alpha, alpha_lower, confidence at alpha), float64 on CPU.

    ``alpha`` is inf (and the confidence that at ``alpha_max``) where the threshold is never
    reached; ``alpha_lower`` is NaN where α = 1 already reaches it.
    """
    n = len(x)
    conf = confidence(model, x).cpu()
    hi = torch.ones(n, dtype=torch.float64)
    lo = torch.full((n,), math.nan, dtype=torch.float64)
    conf_hi = conf.clone()
    found = conf >= threshold
    # Geometric phase: lo = last α below the threshold, hi = first α at or above it.
    searching = ~found
    lo[searching] = 1.0
    current = torch.ones(n, dtype=torch.float64)
    while searching.any():
        idx = searching.nonzero().squeeze(1)
        nxt = torch.clamp(current[idx] * growth, max=alpha_max)
        c = confidence(model, scale(x[idx], nxt)).cpu()
        hit = c >= threshold
        current[idx] = nxt
        hi[idx[hit]], conf_hi[idx[hit]] = nxt[hit], c[hit]
        found[idx[hit]] = True
        lo[idx[~hit]] = nxt[~hit]
        conf_hi[idx[~hit]] = c[~hit]  # the confidence at the largest α tried so far
        searching[idx] = ~hit & (nxt < alpha_max)
    never = ~found
    hi[never] = math.inf
    # Bisection (geometric mean) on the bracket [lo, hi] of every point that has one.
    bracket = found & ~torch.isnan(lo)
    while True:
        active = bracket & (hi > lo * (1 + rtol))
        if not active.any():
            break
        idx = active.nonzero().squeeze(1)
        mid = torch.sqrt(lo[idx] * hi[idx])
        c = confidence(model, scale(x[idx], mid)).cpu()
        up = c >= threshold
        hi[idx[up]], conf_hi[idx[up]] = mid[up], c[up]
        lo[idx[~up]] = mid[~up]
    return hi, lo, conf_hi


@attacks.register("alpha-scaling")
class AlphaScaling(Attack):
    """Smallest α ≥ 1 giving 99.9% confidence on α·x for uniform noise x (Hein et al. Table 2).

    Run it on a ``uniform-noise`` probe: its ``n`` is the number of trials.

    Options: ``threshold`` (0.999), ``alpha_max`` (1e20; points that never reach the threshold
    get α = inf), ``overconfident`` (0.95: threshold for the projected share), ``growth`` (2.0,
    the factor of the geometric search) and ``rtol`` (1e-3, relative width of the final
    bisection bracket). α·x leaves the image box; the model is evaluated on it directly.

    Returns ``alpha`` (N, float64), ``alpha_lower`` (N, float64: the bracket's lower end, NaN
    where α = 1), ``confidence_scaled`` (N: confidence at α·x, or at alpha_max·x for α = inf),
    ``confidence_projected`` (N: confidence at clamp(α·x, 0, 1)) and ``overconfident`` (N, bool:
    ``confidence_projected`` > 0.95). Summary: ``median-alpha`` and ``overconfident-share``.
    """

    source = "probe"
    row = RowKind.SUMMARY

    def defaults(self, in_dataset: str) -> dict[str, Any]:
        return {"options": dict(OPTION_DEFAULTS)}

    def resolve(self, spec: AttackSpec, in_dataset: str) -> AttackSpec:
        for name in _UNUSED_FIELDS:
            if getattr(spec, name) is not None:
                raise ValueError(f"alpha-scaling: `{name}` does not apply (no threat model or "
                                 "optimiser: the input is only scaled); remove it")
        opts = _options(spec)
        return super().resolve(spec, in_dataset).model_copy(update={"options": opts})

    def run(self, ctx: AttackContext) -> dict[str, np.ndarray]:
        opts = _options(ctx.spec)
        model = ctx.model.eval()
        parts: list[tuple[torch.Tensor, ...]] = []
        for s in tqdm(range(0, len(ctx.images), ctx.batch_size), desc=ctx.label,
                      disable=not ctx.progress, leave=False):
            x = ctx.images[s:s + ctx.batch_size].to(ctx.device)
            alpha, lower, conf = search_alpha(model, x, threshold=opts["threshold"],
                                              alpha_max=opts["alpha_max"], growth=opts["growth"],
                                              rtol=opts["rtol"])
            reach = torch.where(torch.isinf(alpha), torch.full_like(alpha, opts["alpha_max"]), alpha)
            projected = confidence(model, scale(x, reach).clamp(0, 1)).cpu()
            parts.append((alpha, lower, conf, projected))
        alpha, lower, conf, projected = (torch.cat(t).numpy() for t in zip(*parts))
        return {"alpha": alpha.astype(np.float64), "alpha_lower": lower.astype(np.float64),
                "confidence_scaled": conf.astype(np.float64),
                "confidence_projected": projected.astype(np.float64),
                "overconfident": projected > opts["overconfident"]}

    def summarize(self, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        alpha = np.asarray(arrays["alpha"], dtype=np.float64)
        over = np.asarray(arrays["overconfident"], dtype=np.float64)
        return {"median-alpha": float(np.median(alpha)) if alpha.size else math.nan,
                "overconfident-share": float(over.mean()) if over.size else math.nan}
