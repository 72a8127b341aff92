"""ReAct (Sun, Guo, Li, NeurIPS 2021): clip the penultimate activations, then score the energy.

The clip level is the ``percentile`` of every activation of the in-distribution training
features (the paper's 90th); the fit also stores the classifier's last layer, so a row is
re-scored from stored features without the model. The clip's gradient is zero above the level,
which is the score's own gradient (exact), though it hides those units from a gradient attack.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from pydantic import Field

from oodbench.bounds import OutputBounds, energy_upper, head_bounds, widened
from oodbench.detectors.base import Detector, FitData, Need, Outputs, Params, soft_minimum
from oodbench.core.registry import detectors


class ReActParams(Params):
    percentile: float = Field(90.0, gt=0, le=100, description="clip level: this percentile of "
                              "the training activations")
    temperature: float = Field(1.0, gt=0, le=1e6, description="T of the energy score")


@detectors.register("react")
class ReAct(Detector):
    """Energy of the logits recomputed from clipped penultimate features (Sun et al. 2021; p 90)."""

    name = "react"
    needs = frozenset({Need.LOGITS, Need.FEATURES, Need.FIT})
    paper = "Sun, Guo, Li: ReAct: Out-of-distribution Detection With Rectified Activations, NeurIPS 2021"
    Params = ReActParams
    surrogate = "energy of softly clipped features"
    certified = "IBP of the clipped feature box through the fitted head, elided"

    def fit(self, data: FitData) -> dict[str, np.ndarray]:
        assert data.features is not None and data.head_weight is not None and data.head_bias is not None
        level = np.percentile(data.features.ravel(), self.params.percentile)
        return {"clip": np.asarray(level, dtype=np.float64), "weight": data.head_weight,
                "bias": data.head_bias}

    def _energy(self, clipped: torch.Tensor, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        logits = clipped @ fit["weight"].T + fit["bias"]
        t = self.params.temperature
        return t * torch.logsumexp(logits / t, dim=1)

    def score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        assert out.features is not None
        return self._energy(out.features.to(fit["weight"].dtype).clamp(max=fit["clip"]), fit)

    def surrogate_score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # min(f, clip) has no gradient above the clip; its soft version lets the attack see
        # the units it would otherwise hide
        assert out.features is not None
        f = out.features.to(fit["weight"].dtype)
        clip = fit["clip"].expand_as(f)
        return self._energy(soft_minimum(torch.stack([f, clip], dim=-1), dim=-1), fit)

    def score_upper(self, bounds: OutputBounds, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if bounds.features is None:
            raise ValueError("react's certified bound needs the box of the penultimate features: "
                             "the model must end in a linear layer")
        dtype = bounds.features.lower.dtype
        clip = fit["clip"].to(dtype)
        # the clip min(f, c) is monotone: clip both ends of the feature box
        clipped = bounds.features.map(lambda f: f.flatten(1).clamp(max=clip))
        logits, diff = head_bounds(clipped, fit["weight"], fit["bias"])
        return energy_upper(widened(logits, diff), self.params.temperature)
