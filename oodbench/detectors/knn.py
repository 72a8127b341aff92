"""Deep nearest neighbours (Sun, Ming, Zhu, Li, ICML 2022): minus the distance from the
normalised penultimate feature to its k-th nearest normalised training feature.

The fit stores the normalised training features (the bank). Distances are computed in float64
as ``sqrt(2 - 2 z·b)`` on unit vectors, clamped at zero; the k-th smallest is differentiable
almost everywhere (the gradient of the one selected distance), so the attack is exact.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import torch
from pydantic import Field

from oodbench.detectors.base import Detector, FitData, Need, Outputs, Params
from oodbench.core.registry import detectors


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


class KNNParams(Params):
    k: int = Field(50, ge=1, le=100_000, description="which neighbour's distance is the score")


@detectors.register("knn")
class KNN(Detector):
    """−distance to the k-th nearest normalised training feature (Sun et al. 2022; k 50)."""

    name = "knn"
    needs = frozenset({Need.LOGITS, Need.FEATURES, Need.FIT})
    paper = "Sun, Ming, Zhu, Li: Out-of-Distribution Detection with Deep Nearest Neighbors, ICML 2022"
    Params = KNNParams
    surrogate = "minus the mean distance to the k nearest"

    def fit(self, data: FitData) -> dict[str, np.ndarray]:
        assert data.features is not None
        if len(data.features) < self.params.k:
            raise ValueError(f"knn: k = {self.params.k} needs at least that many training points, "
                             f"the fit has {len(data.features)}; lower k or raise `fit.n`")
        bank = unit_rows(torch.as_tensor(data.features, dtype=torch.float64)).numpy()
        return {"bank": bank.astype(np.float32)}

    def fit_tensors(self, fit: Optional[Mapping[str, np.ndarray]],
                    device: torch.device) -> dict[str, torch.Tensor]:
        # stored as float32 (half the size); unit length again in float64, or 2 - 2 z·b would
        # be off by the float32 rounding of |b|^2 (~1e-7, i.e. 3e-4 in a small distance)
        tensors = super().fit_tensors(fit, device)
        return {**tensors, "bank": unit_rows(tensors["bank"])}

    def _nearest(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(N, k) squared distances to the k nearest bank features, ascending."""
        assert out.features is not None
        bank = fit["bank"]
        z = unit_rows(out.features.to(bank.dtype))
        squared = (2.0 - 2.0 * z @ bank.T).clamp_min(0.0)
        return squared.topk(self.params.k, dim=1, largest=False).values

    def score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return -self._nearest(out, fit)[:, -1].clamp_min(1e-30).sqrt()

    def surrogate_score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # the k-th distance moves only one neighbour; the mean pulls the whole neighbourhood
        return -self._nearest(out, fit).clamp_min(1e-30).sqrt().mean(dim=1)
