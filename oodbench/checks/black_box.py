"""``black-box-beats-white-box``: a score-based black-box attack does better than the gradient
attack on the same points.

Square (:mod:`oodbench.attacks.square`; Andriushchenko et al. 2020) runs in the gradient
attack's ball, on the score that picks the gradient attack's reported point (the detector's own
score; the msp log-confidence for msp), on the first ``black_box_check.n`` points the gradient
attack did not stop early on (a point stopped early is settled for every metric asked). A
gradient attack whose gradients are informative should find at least what random search finds.

**The rule is the row's, not a single point's** — the usual form of the gradient-masking test
"a black-box attack must not be more successful than a white-box one" (Carlini et al. 2019,
Athalye et al. 2018): the check flags when Square's points alone give a *lower AUROC* against the
model's clean in-distribution scores than the gradient attack's stored points, on the same
points. Square beating the gradient attack on *some* point happens on honest models too (a local
method stuck on a few points): on the quickstart's digits model, Square with 300 queries finds a
higher score than the 200 PGD steps of ``adversarial-noise`` on 4 of 50 points for msp and 9 of
50 for energy (by up to 3.5 in energy), while over the 50 points the gradient attack's AUROC
(0.019 msp, 0.042 energy) is well below Square's (0.12, 0.09); flagging that would flag every
model. The detail reports the per-point count too. Square stops on a point once its score is
above every in-distribution score (a higher one cannot lower the AUROC further).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from oodbench.checks.base import AttackInputs, Check
from oodbench.core.cost import Cost
from oodbench.core.registry import checks

RTOL = 1e-6
"""A Square score counts as higher than a stored one only above ``stored + RTOL · max(1,
|stored|)`` (far above the engine-vs-scorer rounding of :data:`oodbench.scores.SCORE_RTOL`)."""

AUROC_ATOL = 1e-9
"""Square's AUROC must be below the stored one by more than this (ties and rounding)."""


def above(stored: np.ndarray) -> np.ndarray:
    return stored + RTOL * np.maximum(1.0, np.abs(stored))


@checks.register("black-box-beats-white-box")
class BlackBoxBeatsWhiteBox(Check):
    """Square, on the same ball and score, gives a lower AUROC than the gradient attack's points."""

    code = "black-box-beats-white-box"
    scope = "attack"
    meaning = ("a score-based black-box attack (Square) on the same ball, score and points did "
               "better than the gradient attack (a lower AUROC against the clean in-distribution "
               "scores): the gradients mislead the attack, so its row overstates robustness")

    def applies(self, attack, spec, settings) -> bool:
        return (attack is not None and attack.black_box_checked and settings.black_box_check is not None
                and spec is not None and spec.threat is not None and spec.threat.norm in ("Linf", "L2"))

    def cost(self, spec, settings) -> Cost:
        bb = settings.black_box_check
        return Cost() if bb is None else Cost(forward=bb.n * (bb.queries + 1))

    def run(self, inputs: AttackInputs) -> Optional[str]:
        from oodbench.attacks.engine import _Evaluator
        from oodbench.attacks.square import square_attack
        from oodbench.metrics import auroc

        bb, settings = inputs.black_box, inputs.settings.black_box_check
        if bb is None or settings is None or len(bb.images) == 0:
            return None
        head = bb.objective.head
        evaluate = _Evaluator(inputs.model.eval(), head)

        def score(x: torch.Tensor) -> torch.Tensor:
            out, _, _ = evaluate(x, None, grad=False)
            return head.select(out, None)

        threat = bb.objective.config.threat
        stored = np.asarray(bb.stored_scores, dtype=np.float64)
        in_scores = np.asarray(bb.in_scores, dtype=np.float64)
        settled = torch.full((len(stored),), float(above(in_scores.max()[None])[0]), dtype=torch.float64)
        _, found_t, _ = square_attack(score, bb.images.to(inputs.device), threat,
                                      queries=settings.queries, seed=inputs.seed,
                                      indices=bb.indices.tolist(), p_init=settings.p_init,
                                      stop_above=settled)
        found = found_t.cpu().numpy()
        white, black = auroc(in_scores, stored), auroc(in_scores, found)
        beaten = found > above(stored)
        if not black < white - AUROC_ATOL:
            return None
        gain = found - stored
        worst = int(np.argmax(gain))
        return (f"Square ({threat}, {settings.queries} queries) on {len(found)} points of "
                f"{inputs.spec.name}, on the {inputs.score_name} score: AUROC {black:.3f} against "
                f"{white:.3f} for the gradient attack's stored points; it found a higher score on "
                f"{int(beaten.sum())} of them (largest gain {gain[worst]:.3g}, point "
                f"{int(bb.indices[worst])}: {found[worst]:.4g} against {stored[worst]:.4g})")
