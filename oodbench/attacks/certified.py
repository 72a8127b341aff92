"""``certified``: per point, a certified upper bound of the detector's score over the threat ball.

An attack reports the best point it found, so its AUROC is an *upper* bound of the true
worst-case AUROC. This row is the other side: interval bound propagation
(:mod:`oodbench.bounds`, the last layer elided as in GOOD) bounds every logit difference over
the whole Linf ball ∩ [0, 1] around each point, and the detector turns those bounds into an
upper bound of its score (:meth:`oodbench.detectors.Detector.score_upper`). Scored like any
attacked row, its AUROC / FPR@95 are guaranteed (GOOD's GAUC): no input of the ball can do
worse. Ties count against the detector with ``auroc-conservative`` and ``fpr95``.

Only detectors that declare a bound (``oodbench list detectors``: ``certified: ...``) get a row.
The row stores the bounds as ``score_upper`` and the upper bounds of the logits as ``logits``
(so confidence metrics such as MMC are not reported for it: see
:func:`oodbench.pipeline.score.rows.score_row`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from oodbench.attacks.base import Attack, AttackContext, AttackSpec, grey_data
from oodbench.bounds import input_box, output_bounds
from oodbench.detectors import DEFAULT_DETECTOR, Detector, build_detector
from oodbench.core.cost import Cost
from oodbench.core.registry import attacks
from oodbench.core.arrays import ArrayKey

#: Settings of a gradient attack that mean nothing for a bound.
_ENGINE_FIELDS = ("objective", "optimizer", "steps", "step_size", "restarts", "random_start",
                  "momentum")

BOUND_PASSES = 3
"""Forward-pass equivalents per point: the centre and the radius through every layer, plus the
elided last layer for every pair of classes (small next to the convolutions)."""


@attacks.register("certified")
class Certified(Attack):
    """Certified upper bound of the detector's score over the Linf ball (IBP, last layer elided)."""

    detector_aware = True
    shardable = True
    certifies = True

    def defaults(self, in_dataset: str) -> dict[str, Any]:
        return {"threat": {"norm": "Linf", "eps": 0.3 if grey_data(in_dataset) else 8 / 255}}

    def resolve(self, spec: AttackSpec, in_dataset: str) -> AttackSpec:
        given = [f for f in _ENGINE_FIELDS if getattr(spec, f) is not None]
        if given:
            raise ValueError(f"attack 'certified' computes bounds, it runs no optimiser: remove "
                             f"{', '.join(given)} (it takes only `threat`)")
        resolved = super().resolve(spec, in_dataset)
        assert resolved.threat is not None
        if resolved.threat.norm != "Linf":
            raise ValueError(f"attack 'certified' bounds Linf balls only, got threat norm "
                             f"{resolved.threat.norm}; use {{norm: Linf, eps: ...}}")
        return resolved

    def has_row_for(self, detector: Detector) -> bool:
        return bool(detector.certified)

    def estimate_cost(self, spec: AttackSpec, n_points: int) -> Cost:
        return Cost(forward=BOUND_PASSES * n_points)

    def run(self, ctx: AttackContext) -> dict[str, np.ndarray]:
        assert ctx.spec.threat is not None
        detector = ctx.head.detector if ctx.head is not None else build_detector(DEFAULT_DETECTOR)
        fit = ctx.head.fit if ctx.head is not None else {}
        eps = float(ctx.spec.threat.eps)
        uppers, logits = [], []
        with torch.no_grad():
            for start in range(0, len(ctx.images), ctx.batch_size):
                x = ctx.images[start:start + ctx.batch_size].to(ctx.device, torch.float64)
                bounds = output_bounds(ctx.model, input_box(x, eps))
                uppers.append(detector.score_upper(bounds, fit).cpu())
                logits.append(bounds.logits.upper.float().cpu())
                if ctx.on_progress is not None:
                    ctx.on_progress(0)
        n_classes = ctx.in_logits.shape[1]
        out = {ArrayKey.SCORE_UPPER.value: (torch.cat(uppers).numpy() if uppers
                                            else np.zeros(0)),
               ArrayKey.LOGITS.value: (torch.cat(logits).numpy() if logits
                                       else np.zeros((0, n_classes), np.float32))}
        if ctx.labels is not None:
            out[ArrayKey.LABELS.value] = ctx.labels.numpy()
        return out
