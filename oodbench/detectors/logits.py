"""Detectors that read the logits only: their clean rows are re-scored from stored logits
without running any model, and each is differentiable, so the adaptive attack is exact."""

from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np
import torch
from pydantic import Field

from oodbench.bounds import OutputBounds, energy_upper, max_logit_upper, msp_upper
from oodbench.detectors.base import Detector, Outputs, Params
from oodbench.core.registry import detectors
from oodbench.scores import MSP_CEILING, msp_score, other_mass
from oodbench.core.arrays import ArrayKey


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log softmax that stays exact for the top class of a confident model: its log-probability
    is ``-log1p(sum_{j != k} exp(z_j - z_k))`` (as in :func:`oodbench.scores.msp_score`), not
    ``z_k - logsumexp(z)``, which rounds to 0 once the margin exceeds ~37 and would tie and
    zero the gradients of every confident point."""
    top = logits.max(dim=1, keepdim=True).values
    return logits - top - other_mass(logits).log1p()


LOG_HALF = -math.log(2.0)


def temperature_field(default: float, what: str) -> float:
    return Field(default, gt=0, le=1e6, description=what)


@detectors.register("msp")
class MSP(Detector):
    """Maximum softmax probability (Hendrycks & Gimpel 2017), as float64 log-confidence."""

    name = "msp"
    ceiling = MSP_CEILING
    certified = "IBP, last layer elided (GOOD)"
    paper = "Hendrycks & Gimpel, A Baseline for Detecting Misclassified and OOD Examples, ICLR 2017"

    def score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return log_probs(out.logits).max(dim=1).values

    def scores(self, arrays: Mapping[str, np.ndarray],
               fit: Optional[Mapping[str, np.ndarray]] = None) -> np.ndarray:
        # The benchmark's score since its first release: numbers stay bit-identical.
        return msp_score(arrays[ArrayKey.LOGITS.value])

    def score_upper(self, bounds: OutputBounds, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return msp_upper(bounds.diff_upper)


@detectors.register("max-logit")
class MaxLogit(Detector):
    """Largest logit (Hendrycks et al., Scaling OOD detection to real-world settings, ICML 2022)."""

    name = "max-logit"
    certified = "IBP, last layer elided"
    paper = "Hendrycks et al., Scaling Out-of-Distribution Detection for Real-World Settings, ICML 2022"

    def score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return out.logits.max(dim=1).values

    def score_upper(self, bounds: OutputBounds, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return max_logit_upper(bounds)


class EnergyParams(Params):
    temperature: float = temperature_field(1.0, "T in T·logsumexp(z/T)")


@detectors.register("energy")
class Energy(Detector):
    """Negative free energy T·logsumexp(z/T) (Liu et al., NeurIPS 2020; T = 1)."""

    name = "energy"
    certified = "IBP, last layer elided"
    paper = "Liu, Wang, Owens, Li: Energy-based Out-of-distribution Detection, NeurIPS 2020"
    Params = EnergyParams

    def score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        t = self.params.temperature
        return t * torch.logsumexp(out.logits / t, dim=1)

    def score_upper(self, bounds: OutputBounds, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return energy_upper(bounds, self.params.temperature)


@detectors.register("entropy")
class Entropy(Detector):
    """Negative entropy of the softmax, sum_i p_i log p_i (higher = more peaked)."""

    name = "entropy"
    paper = "Shannon entropy of the predictive distribution (used as a baseline in OpenOOD)"

    def score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        logp = log_probs(out.logits)
        return (logp.exp() * logp).sum(dim=1)


class GENParams(Params):
    gamma: float = Field(0.1, gt=0, le=100, description="exponent γ of the generalised entropy")
    top: int = Field(100, ge=1, description="M: sum over the M largest probabilities")


@detectors.register("gen")
class GEN(Detector):
    """Negative generalised entropy -sum_top-M p^γ (1-p)^γ (Liu et al., CVPR 2023; γ 0.1, M 100)."""

    name = "gen"
    paper = "Liu, Lochman, Zach: GEN: Pushing the Limits of Softmax-Based OOD Detection, CVPR 2023"
    Params = GENParams

    def score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        gamma = self.params.gamma
        logp = log_probs(out.logits)
        m = min(self.params.top, logp.shape[1])
        top = logp.topk(m, dim=1).values
        # log(1 - p) without cancellation: for the top class 1 - p = S / (1 + S) with S the sum
        # of the other exp-margins; for the others p <= 1/2 and log1p(-p) is exact.
        rest = other_mass(out.logits).clamp_min(torch.finfo(out.logits.dtype).tiny)
        log_not_top = rest.log() - rest.log1p()
        # above log 1/2 a class is the top one (only one probability can exceed 1/2)
        log_not = torch.where(top >= LOG_HALF, log_not_top.expand_as(top),
                              torch.log1p(-top.exp().clamp_max(0.5)))
        return -(gamma * (top + log_not)).exp().sum(dim=1)

