"""ODIN (Liang, Li, Srikant, ICLR 2018): temperature scaling plus one input-gradient step.

The input is moved by ``eps`` along the sign of the gradient that *raises* the temperature-scaled
log-confidence, ``x̃ = x + eps · sign(∇ₓ log S_ŷ(x; T))``, and the score is the log of the
maximum softmax probability of ``f(x̃) / T``. The step needs the model at scoring time, so ODIN's
clean rows come from their own forward jobs (the preprocessed logits are stored), not from the
shared logits.

Attacking it is exact almost everywhere: ``sign`` is piecewise constant, so ``x̃`` moves with
``x`` with an identity Jacobian and the gradient of the score at ``x`` is the model's gradient at
``x̃`` — the engine differentiates through the preprocessing with no special case. The step is
taken in the model's input space ([0, 1] pixels, before the model's normalisation). The original
code steps on normalised inputs with the signed gradient divided by the normalisation std, i.e.
``eps / std`` in normalised units, which is exactly ``eps`` in pixels: ``eps`` here is the
paper's value as is (as pytorch-ood's ``norm_std`` makes it), not to be divided by the std.

oodbench's forward pass (:mod:`oodbench.pipeline.execute.forward`) runs under ``torch.inference_mode()``;
the gradient step leaves it for its own probe, so ODIN works there as under ``torch.no_grad()``.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from oodbench.detectors.base import Detector, Need, Outputs, Params
from oodbench.detectors.logits import log_probs
from oodbench.core.registry import detectors


class ODINParams(Params):
    temperature: float = Field(1000.0, gt=0, le=1e6, description="T of the softmax")
    eps: float = Field(0.0014, ge=0, le=1, description="size of the input step (in [0, 1] pixels)")


@detectors.register("odin")
class ODIN(Detector):
    """Temperature-scaled MSP after one input-gradient step (Liang et al. 2018; T 1000, ε 0.0014)."""

    name = "odin"
    needs = frozenset({Need.LOGITS, Need.MODEL})
    paper = "Liang, Li, Srikant: Enhancing the Reliability of OOD Image Detection in Neural Networks, ICLR 2018"
    Params = ODINParams

    def forward(self, model: nn.Module, x: torch.Tensor) -> Outputs:
        t, eps = self.params.temperature, self.params.eps
        if eps == 0:
            return Outputs(model(x))
        # inference mode would record no graph (and an inference tensor cannot require grad):
        # the probe is a normal tensor, cloned outside it
        with torch.inference_mode(False), torch.enable_grad():
            probe = x.detach().clone().requires_grad_(True)
            logits = model(probe) / t
            # the cross-entropy on the predicted class is -log S_ŷ(x; T); its gradient's sign
            loss = F.cross_entropy(logits, logits.argmax(dim=1), reduction="sum")
            (grad,) = torch.autograd.grad(loss, probe)
        return Outputs(model(x - eps * grad.sign()))

    def score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return log_probs(out.logits / self.params.temperature).max(dim=1).values
