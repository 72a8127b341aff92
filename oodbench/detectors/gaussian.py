"""Class-conditional Gaussians on penultimate features: Mahalanobis and its relative variant.

``mahalanobis`` (Lee, Lee, Lee, Shin, NeurIPS 2018) fits one mean per class and a shared
covariance; the score is ``-½ min_c (f - μ_c)ᵀ Σ⁻¹ (f - μ_c)``, on the penultimate layer and
without the paper's input preprocessing or layer ensemble (as OpenOOD and pytorch-ood do by
default). ``rmd`` (Ren et al. 2021) subtracts the distance under one background Gaussian of all
training features, ``-min_c (d_c(f) - d_0(f))``. Both are quadratic forms: differentiable, so
the attack is exact.

The covariance is the maximum-likelihood one (divided by N, as scikit-learn's
``EmpiricalCovariance`` the paper used) plus ``ridge`` · I: ReLU features have dead units, whose
covariance is singular.
"""

from __future__ import annotations

from typing import ClassVar, Mapping, Optional

import numpy as np
import torch
from pydantic import Field

from oodbench.detectors.base import Detector, FitData, Need, Outputs, Params, soft_minimum
from oodbench.core.registry import detectors


class GaussianParams(Params):
    ridge: float = Field(1e-6, ge=0, le=1e6, description="added to the covariance's diagonal")


def _precision(centered: np.ndarray, n: int, ridge: float) -> np.ndarray:
    cov = centered.T @ centered / n + ridge * np.eye(centered.shape[1])
    return np.linalg.pinv(cov, hermitian=True)


def class_gaussians(features: np.ndarray, labels: np.ndarray, n_classes: int,
                    ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Class means (K, D) and the precision (D, D) of the shared covariance."""
    means = np.zeros((n_classes, features.shape[1]))
    centered = np.empty_like(features)
    for c in range(n_classes):
        rows = labels == c
        if not rows.any():
            raise ValueError(f"class {c} has no training point in the fit; raise `fit.n` or fit "
                             "on a split that holds every class")
        means[c] = features[rows].mean(axis=0)
        centered[rows] = features[rows] - means[c]
    return means, _precision(centered, len(features), ridge)


def whitening(precision: torch.Tensor) -> torch.Tensor:
    """L with L Lᵀ = precision (from its eigen-decomposition: the precision may be singular)."""
    values, vectors = torch.linalg.eigh(precision)
    return vectors * values.clamp_min(0.0).sqrt()


def squared_distances(f: torch.Tensor, means_white: torch.Tensor, white: torch.Tensor) -> torch.Tensor:
    """(N, K) squared Mahalanobis distances of the rows of ``f`` to each mean, as squared
    Euclidean distances after whitening: one (N, D) x (D, D) product per call instead of one
    per class, and no cancellation of large quadratic terms."""
    diff = (f @ white)[:, None, :] - means_white[None, :, :]
    return (diff * diff).sum(dim=2)


class _Gaussian(Detector):
    needs = frozenset({Need.LOGITS, Need.FEATURES, Need.FIT})
    Params = GaussianParams
    surrogate = "softmin over classes"
    #: minus the score is this times the minimum over classes of :meth:`class_terms`
    scale: ClassVar[float] = 1.0

    def class_terms(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(N, K): the per-class quantity whose minimum is minus the score."""
        raise NotImplementedError

    def surrogate_score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return -self.scale * soft_minimum(self.class_terms(out, fit))

    def score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return -self.scale * self.class_terms(out, fit).min(dim=1).values

    def fit_tensors(self, fit: Optional[Mapping[str, np.ndarray]],
                    device: torch.device) -> dict[str, torch.Tensor]:
        t = super().fit_tensors(fit, device)
        out = {"white": whitening(t["precision"])}
        out["means_white"] = t["means"] @ out["white"]
        if "background_precision" in t:
            out["background_white"] = whitening(t["background_precision"])
            out["background_mean_white"] = t["background_mean"] @ out["background_white"]
        return out


@detectors.register("mahalanobis")
class Mahalanobis(_Gaussian):
    """−½ the squared Mahalanobis distance to the closest class mean, shared covariance (Lee et al. 2018)."""

    name = "mahalanobis"
    paper = ("Lee, Lee, Lee, Shin: A Simple Unified Framework for Detecting Out-of-Distribution "
             "Samples and Adversarial Attacks, NeurIPS 2018")

    def fit(self, data: FitData) -> dict[str, np.ndarray]:
        assert data.features is not None
        means, precision = class_gaussians(data.features, data.labels, data.logits.shape[1],
                                           self.params.ridge)
        return {"means": means, "precision": precision}

    scale: ClassVar[float] = 0.5

    def class_terms(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        assert out.features is not None
        return squared_distances(out.features.to(fit["white"].dtype), fit["means_white"], fit["white"])


@detectors.register("rmd")
class RelativeMahalanobis(_Gaussian):
    """−min over classes of (class distance − background distance) (Ren et al. 2021)."""

    name = "rmd"
    paper = "Ren et al.: A Simple Fix to Mahalanobis Distance for Improving Near-OOD Detection, 2021"

    def fit(self, data: FitData) -> dict[str, np.ndarray]:
        assert data.features is not None
        means, precision = class_gaussians(data.features, data.labels, data.logits.shape[1],
                                           self.params.ridge)
        mean0 = data.features.mean(axis=0)
        precision0 = _precision(data.features - mean0, len(data.features), self.params.ridge)
        return {"means": means, "precision": precision, "background_mean": mean0[None, :],
                "background_precision": precision0}

    def class_terms(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        assert out.features is not None
        f = out.features.to(fit["white"].dtype)
        d = squared_distances(f, fit["means_white"], fit["white"])
        d0 = squared_distances(f, fit["background_mean_white"], fit["background_white"])
        return d - d0
