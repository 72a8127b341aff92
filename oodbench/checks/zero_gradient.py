"""``zero-gradient``: the attack's objective has a zero gradient at its start for many points."""

from __future__ import annotations

from typing import Optional

import torch

from oodbench.checks.base import AttackInputs, Check
from oodbench.core.cost import Cost
from oodbench.core.registry import checks


def start_points(inputs: AttackInputs) -> torch.Tensor:
    """Where the gradient attack starts on each checked point: the engine's first random start
    (the same per-point stream), or the clean point without a random start."""
    from oodbench.attacks.engine import point_generators

    assert inputs.objective is not None
    config = inputs.objective.config
    x = inputs.images.to(inputs.device)
    if not config.random_start:
        return x
    gens = point_generators(inputs.seed, inputs.indices.tolist(), 0)
    return config.threat.random_start(x, gens)


@checks.register("zero-gradient")
class ZeroGradient(Check):
    """A large share of points has an all-zero (or non-finite) gradient where the attack starts."""

    code = "zero-gradient"
    scope = "attack"
    meaning = ("the gradient of the attack's objective (the detector's score for detector-aware "
               "attacks) is zero or not finite at the start point for a large share of points: "
               "a gradient attack cannot move, so its row shows the model's clean behaviour, "
               "not a robust one")

    def applies(self, attack, spec, settings) -> bool:
        from oodbench.attacks.base import Attack

        # only attacks that expose a gradient objective (α-scaling, e.g., has none)
        return attack is not None and type(attack).gradient_objective is not Attack.gradient_objective

    def cost(self, spec, settings) -> Cost:
        return Cost(forward=settings.n, gradient=settings.n)

    def run(self, inputs: AttackInputs) -> Optional[str]:
        from oodbench.attacks.engine import _Evaluator

        if inputs.objective is None or len(inputs.images) == 0:
            return None
        head, target = inputs.objective.head, inputs.objective.target
        target = None if target is None else target.to(inputs.device)
        x = start_points(inputs)
        evaluate = _Evaluator(inputs.model.eval(), head)
        out, _, grad = evaluate(x, target, grad=True)
        flat = grad.flatten(1)
        bad = ~torch.isfinite(flat).all(1) | (flat.abs().amax(1) == 0)
        # a point at the score's ceiling is finished: its zero gradient is the score's own
        if head.ceiling is not None:
            bad &= head.select(out, target) < head.ceiling
        n, k = len(x), int(bad.sum())
        if k == 0 or k < inputs.settings.zero_gradient_share * n:
            return None
        nonfinite = int((~torch.isfinite(flat).all(1)).sum())
        what = f"{inputs.score_name} score" if inputs.attack.detector_aware else "objective"
        return (f"{k} of {n} checked points ({100 * k / n:.0f}%) have a zero"
                + (f" or non-finite ({nonfinite})" if nonfinite else "")
                + f" gradient of the attack's {what} at its start point")
