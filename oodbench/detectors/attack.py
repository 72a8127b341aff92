"""The attack engine's head for a detector: ascend (or descend) the detector's own score.

An adaptive attack on a detector must optimise what the detector computes, through everything it
computes: ODIN's input step, the penultimate features, the fitted statistics. The head calls
:meth:`Detector.forward` (so the features and ODIN's preprocessing are in the autograd graph),
ascends ``sign · score`` in float64 and judges iterates by the same number, which is what the
scorer later computes from the stored outputs. ``sign = -1`` lowers the score: the
in-distribution side of the attack (ATD, AROS).
"""

from __future__ import annotations

from copy import copy
from typing import Mapping, Optional

import numpy as np
import torch
from torch import nn

from oodbench.core.detectors import DEFAULT_DETECTOR
from oodbench.core.protocols import AttackTraits
from oodbench.detectors.base import Detector, Outputs


class DetectorHead:
    """:class:`oodbench.attacks.engine.Head` for ``detector`` fitted with ``fit`` (its fit job's
    arrays), on ``device``."""

    def __init__(self, detector: Detector, fit: Optional[Mapping[str, np.ndarray]],
                 device: torch.device, *, sign: float = 1.0):
        if sign not in (1.0, -1.0):
            raise ValueError("sign must be +1 (raise the score) or -1 (lower it)")
        self.detector, self.sign = detector, sign
        #: ascend the declared surrogate (always, for a score without a useful gradient)
        self.surrogate = not detector.exact_gradient
        self.fit = detector.fit_tensors(fit, device)
        # a bounded score can be beaten no further at its maximum; lowering has no such point
        self.ceiling = detector.ceiling if sign > 0 else None

    def forward(self, model: nn.Module, x: torch.Tensor) -> Outputs:
        return self.detector.forward(model, x)

    def _score(self, out: Outputs, surrogate: bool = False) -> torch.Tensor:
        as64 = Outputs(out.logits.double(), None if out.features is None else out.features.double())
        score = self.detector.surrogate_score if surrogate else self.detector.score
        return self.sign * score(as64, self.fit)

    def objective(self, out: Outputs, target: Optional[torch.Tensor]) -> torch.Tensor:
        # a score whose gradient is not its own (zero, or undefined) is ascended through its
        # documented surrogate; the selection below still uses the score itself
        return self._score(out, surrogate=self.surrogate)

    def select(self, out: Outputs, target: Optional[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return self._score(out)

    def with_surrogate(self) -> "DetectorHead":
        """The same head ascending the detector's smooth surrogate (iterates still judged by
        the score); the ensemble's ``apgd-surrogate`` member."""
        if not self.detector.surrogate:
            raise ValueError(f"detector {self.detector.name!r} declares no smooth surrogate")
        head = copy(self)
        head.surrogate = True
        return head

    def stop_threshold(self, level: float) -> float:
        if self.sign < 0:
            raise ValueError("the early stop is defined for raising a score only")
        return self.detector.stop_threshold(level)


def detector_head(detector: Detector, fit: Optional[Mapping[str, np.ndarray]],
                  device: torch.device, *, lower: bool = False) -> DetectorHead:
    return DetectorHead(detector, fit, device, sign=-1.0 if lower else 1.0)


def uses_head(detector: Detector, attack: AttackTraits) -> bool:
    """Whether an attack job runs on the detector's own head (and so is the detector's alone):
    a detector-aware attack on any detector but msp, or any score-lowering attack. An msp attack
    keeps the engine's logit objective, so its key and arrays are what they always were."""
    return attack.detector_aware and (detector.name != DEFAULT_DETECTOR or attack.lowers_score)


def scores_row(detector: Detector, attack: Optional[AttackTraits]) -> bool:
    """Whether a probe row exists for this detector: every clean probe, every detector-aware
    attack that has one for it (``certified``: the detectors it can bound); an attack that ignores the detector only for detectors that can score its stored
    logits (not features, not ODIN's preprocessing of points it never saw)."""
    if attack is not None and not attack.has_row_for(detector):
        return False
    if attack is None or attack.detector_aware:
        return True
    return not (detector.needs_features or detector.needs_model)
