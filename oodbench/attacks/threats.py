"""Threat models: the set of inputs an attacker may reach from a point x.

A threat model is an lp ball of radius ``eps`` around x intersected with the image box [0,1]^d,
written in suites as ``{norm: Linf, eps: 0.3}``. :meth:`ThreatModel.project` maps any candidate
into that set, so every attack output is feasible by construction (tests check it for all norms).
"""

from __future__ import annotations

from typing import Literal, Sequence, Union

import torch
from pydantic import BaseModel, ConfigDict, field_validator

from oodbench.core.validation import PositiveFloat

Norm = Literal["Linf", "L2", "L1"]


def _flat_norm(delta: torch.Tensor, p: float) -> torch.Tensor:
    """Per-sample lp norm of a batch, shaped (N, 1, 1, 1) for broadcasting."""
    return delta.flatten(1).norm(p=p, dim=1).view(-1, *([1] * (delta.dim() - 1)))


def _project_l1_ball(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean projection of each sample onto the L1 ball (sort-based, Duchi et al. 2008).

    Soft-thresholding keeps signs and only shrinks magnitudes, so a delta that was inside the
    box stays inside it: box clipping followed by this projection is feasible for both sets.
    """
    flat = delta.flatten(1)
    abs_ = flat.abs()
    outside = abs_.sum(1) > eps
    if not outside.any():
        return delta
    sorted_, _ = abs_[outside].sort(dim=1, descending=True)
    cumsum = sorted_.cumsum(1)
    ks = torch.arange(1, flat.shape[1] + 1, device=delta.device, dtype=delta.dtype)
    cond = sorted_ - (cumsum - eps) / ks > 0
    rho = cond.float().cumsum(1).argmax(1)  # last index where cond holds
    theta = (cumsum.gather(1, rho[:, None]) - eps) / (rho[:, None] + 1).to(delta.dtype)
    out = flat.clone()
    out[outside] = flat[outside].sign() * (abs_[outside] - theta).clamp_min(0)
    return out.view_as(delta)


MIN_EPS = 1 / 255 / 1000
"""The smallest radius a suite may ask for: a thousandth of one 8-bit grey level. Below it a
ball changes no stored image and next to nothing in float32 (whose spacing near 1 is 6e-8), so
the attack cannot move any score — yet it still runs its full budget, for minutes, as no point
ever crosses an early-stop threshold. Such an ``eps`` (``1e-300``) is a typo, not an experiment."""


class ThreatModel(BaseModel):
    """An lp ball of radius ``eps`` (in [0,1] pixel units) intersected with the image box."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    norm: Norm
    eps: PositiveFloat

    @field_validator("eps")
    @classmethod
    def _not_vanishing(cls, v: float) -> float:
        if v < MIN_EPS:
            raise ValueError(f"{v:g} is below {MIN_EPS:.3g} (1/255/1000, a thousandth of a grey "
                             "level): a ball that small changes no image, so the attack would run "
                             "its whole budget for nothing; check the value (8/255 is 0.0314)")
        return v

    def __str__(self) -> str:
        return f"{self.norm} ε={self.eps:g}"

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A point of ball(x, eps) ∩ [0,1]^d: clip to the box, then pull into the ball.

        For Linf this is the exact projection. For L2/L1, clipping first and then scaling
        (L2) or soft-thresholding (L1) the perturbation keeps the box constraint (x and x+δ
        in the box imply x+tδ in the box for t∈[0,1]); it is the feasible map APGD uses.
        """
        delta = x_adv.clamp(0, 1) - x
        if self.norm == "Linf":
            delta = delta.clamp(-self.eps, self.eps)
        elif self.norm == "L2":
            norms = _flat_norm(delta, 2)
            delta = delta * torch.where(norms > self.eps, self.eps / norms.clamp_min(1e-12),
                                        torch.ones_like(norms))
        else:
            delta = _project_l1_ball(delta, self.eps)
        return (x + delta).clamp(0, 1)

    def contains(self, x_adv: torch.Tensor, x: torch.Tensor, *, tol: float = 1e-5) -> torch.Tensor:
        """Per-sample bool: inside the ball (up to ``tol``) and the box."""
        p = {"Linf": float("inf"), "L2": 2.0, "L1": 1.0}[self.norm]
        in_ball = _flat_norm(x_adv - x, p).flatten() <= self.eps * (1 + tol) + tol
        in_box = ((x_adv >= -tol) & (x_adv <= 1 + tol)).flatten(1).all(1)
        return in_ball & in_box

    def random_start(self, x: torch.Tensor,
                     generator: Union[torch.Generator, Sequence[torch.Generator]]) -> torch.Tensor:
        """x + s·u with u uniform in the ball's bounding cube (Linf: [-ε, ε]^d) and one
        s ~ U[0,1] per image, as the papers' code starts PGD; then projected.

        ``generator``: one CPU generator for the whole batch, or one per image (the engine's
        per-point streams: each image draws its u, then its s, from its own generator, so its
        start does not depend on which other images share the batch)."""
        if isinstance(generator, torch.Generator):
            u = torch.rand(x.shape, generator=generator, device="cpu")
            s = torch.rand(x.shape[0], generator=generator, device="cpu")
        else:
            if len(generator) != len(x):
                raise ValueError(f"{len(generator)} generators for {len(x)} images")
            draws = [(torch.rand(x.shape[1:], generator=g), torch.rand(1, generator=g))
                     for g in generator]
            u = torch.stack([d[0] for d in draws]) if draws else torch.empty(x.shape)
            s = torch.cat([d[1] for d in draws]) if draws else torch.empty(0)
        u = u.to(x.device) * 2 - 1
        s = s.to(x.device).view(-1, *([1] * (x.dim() - 1)))
        if self.norm == "Linf":
            delta = self.eps * u
        else:  # a random direction scaled to a random radius inside the ball
            p = 2.0 if self.norm == "L2" else 1.0
            delta = self.eps * u / _flat_norm(u, p).clamp_min(1e-12)
        return self.project(x + s * delta, x)

    def steepest_step(self, grad: torch.Tensor, step: float,
                      x_adv: torch.Tensor | None = None) -> torch.Tensor:
        """The ascent step of length ``step`` in this norm: sign (Linf), normalised (L2),
        or a sparse step on the top 1% coordinates by |grad| (L1, as in SLIDE).

        For L1, given the current point ``x_adv``, coordinates on a face of the box whose
        gradient points out of it are left out of the top 1%: the projection would clip that
        step away, and an attack whose largest gradient sits there would stall forever."""
        if self.norm == "Linf":
            return step * grad.sign()
        if self.norm == "L2":
            return step * grad / _flat_norm(grad, 2).clamp_min(1e-12)
        flat = grad.flatten(1)
        if x_adv is not None:
            xf = x_adv.flatten(1)
            flat = flat.masked_fill(((xf >= 1) & (flat > 0)) | ((xf <= 0) & (flat < 0)), 0.0)
        k = max(1, int(0.01 * flat.shape[1]))
        thresh = flat.abs().topk(k, dim=1).values[:, -1:]
        sparse = torch.where(flat.abs() >= thresh, flat.sign(), torch.zeros_like(flat))
        sparse = sparse / sparse.abs().sum(1, keepdim=True).clamp_min(1)
        return step * sparse.view_as(grad)
