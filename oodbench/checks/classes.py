"""``too-few-classes``: the model has fewer classes than the attack needs."""

from __future__ import annotations

from typing import Optional

from oodbench.checks.base import AttackInputs, Check
from oodbench.core.cost import Cost
from oodbench.core.registry import checks


@checks.register("too-few-classes")
class TooFewClasses(Check):
    """Fewer classes than the attack needs (a targeted attack, APGD-DLR's third logit, …)."""

    code = "too-few-classes"
    scope = "attack"
    meaning = ("the model has fewer classes than the attack needs (any attack on one class, a "
               "targeted attack on one, APGD-DLR on < 3, APGD-T on < 4): the attack cannot do "
               "what its row claims")

    def cost(self, spec, settings) -> Cost:
        return Cost()

    def run(self, inputs: AttackInputs) -> Optional[str]:
        needed, why = inputs.attack.min_classes(inputs.spec)
        if inputs.n_classes >= needed:
            return None
        return (f"{inputs.spec.name} needs at least {needed} classes, the model has "
                f"{inputs.n_classes} ({why})")
