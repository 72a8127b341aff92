"""ViM (Wang, Li, Feng, Zhang, CVPR 2022): a virtual logit from the feature residual.

Features are centred at ``u = -W⁺b`` (W, b: the classifier's last layer); the principal subspace
of dimension ``dim`` is fitted on training features, and the norm of the residual outside it,
scaled by ``α = mean max-logit / mean residual norm`` over the fit data, is the virtual logit.
The in-distribution score is ``logsumexp(z) - α ‖(f - u) P⊥‖``, monotone in the paper's
virtual-class probability. A norm and a logsumexp: differentiable, the attack is exact.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import torch
from pydantic import Field

from oodbench.detectors.base import Detector, FitData, Need, Outputs, Params
from oodbench.core.registry import detectors


class ViMParams(Params):
    dim: Optional[int] = Field(None, ge=1, description="dimension of the principal subspace "
                               "(default: 1000 for ≥ 2048 features, 512 for ≥ 768, else half)")


def default_dim(n_features: int) -> int:
    """The paper's choice by feature width (Wang et al. 2022, Sec. 4)."""
    if n_features >= 2048:
        return 1000
    if n_features >= 768:
        return 512
    return max(n_features // 2, 1)


@detectors.register("vim")
class ViM(Detector):
    """Energy minus a virtual logit from the feature residual off the principal subspace (Wang et al. 2022)."""

    name = "vim"
    needs = frozenset({Need.LOGITS, Need.FEATURES, Need.FIT})
    paper = "Wang, Li, Feng, Zhang: ViM: Out-Of-Distribution with Virtual-logit Matching, CVPR 2022"
    Params = ViMParams

    def fit(self, data: FitData) -> dict[str, np.ndarray]:
        assert data.features is not None and data.head_weight is not None and data.head_bias is not None
        n_features = data.features.shape[1]
        dim = self.params.dim or default_dim(n_features)
        if dim >= n_features:
            raise ValueError(f"vim: dim = {dim} must be below the {n_features} feature dimensions")
        u = -np.linalg.pinv(data.head_weight) @ data.head_bias
        x = data.features - u
        _, vectors = np.linalg.eigh(x.T @ x / len(x))       # ascending eigenvalues
        residual = vectors[:, : n_features - dim]             # the smallest n - dim directions
        alpha = data.logits.max(axis=1).mean() / np.linalg.norm(x @ residual, axis=1).mean()
        return {"origin": u[None, :], "residual": residual, "alpha": np.asarray(alpha)}

    def score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        assert out.features is not None
        f = out.features.to(fit["residual"].dtype)
        virtual = fit["alpha"] * ((f - fit["origin"]) @ fit["residual"]).norm(dim=1)
        return torch.logsumexp(out.logits.to(f.dtype), dim=1) - virtual
