"""``softmax-output``: the model returns probabilities (or log-probabilities), not logits."""

from __future__ import annotations

from typing import Optional

import torch

from oodbench.checks.base import Check, ModelInputs
from oodbench.checks.calls import outputs
from oodbench.core.registry import checks

_TOL = 1e-4


@checks.register("softmax-output")
class SoftmaxOutput(Check):
    """Every output row is non-negative and sums to 1 (or is ≤ 0 with logsumexp 0)."""

    code = "softmax-output"
    scope = "model"
    meaning = ("the model returns probabilities (or log-probabilities) instead of logits: the "
               "benchmark applies a softmax again, which squashes confidences towards uniform, "
               "and a saturated softmax has vanishing gradients")

    def run(self, inputs: ModelInputs) -> Optional[str]:
        out = outputs(inputs.model.eval(), inputs.images.to(inputs.device))
        if out.shape[1] < 2:
            return None  # one output is a constant under any softmax: too-few-classes says so
        n = len(out)
        sums = out.sum(1)
        if bool(((out >= -_TOL).all(1) & ((sums - 1).abs() <= _TOL)).all()):
            return (f"all {n} checked rows are non-negative and sum to 1 (largest |sum − 1| "
                    f"{float((sums - 1).abs().max()):.1e}): the outputs are probabilities")
        lse = torch.logsumexp(out, 1)
        if bool(((out <= _TOL).all(1) & (lse.abs() <= _TOL)).all()):
            return (f"all {n} checked rows are ≤ 0 with logsumexp 0 (largest |logsumexp| "
                    f"{float(lse.abs().max()):.1e}): the outputs are log-probabilities")
        return None
