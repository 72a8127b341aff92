"""``randomised-forward``: repeated forward passes on the same inputs disagree."""

from __future__ import annotations

from typing import Optional

from oodbench.checks.base import Check, ModelInputs, close
from oodbench.checks.calls import outputs
from oodbench.core.cost import Cost
from oodbench.core.registry import checks


@checks.register("randomised-forward")
class RandomisedForward(Check):
    """Two forward passes (eval mode, no gradient) on the same points disagree beyond float noise."""

    code = "randomised-forward"
    scope = "model"
    meaning = ("repeated forward passes on the same inputs disagree (dropout or noise at test "
               "time): one gradient is one sample, so attacks must average over the "
               "randomness (EOT) before their numbers mean anything")

    def cost(self, spec, settings) -> Cost:
        return Cost(forward=2 * settings.n)

    def run(self, inputs: ModelInputs) -> Optional[str]:
        model = inputs.model.eval()
        x = inputs.images.to(inputs.device)
        first, second = outputs(model, x), outputs(model, x)
        differ = ~close(first, second)
        if not differ.any():
            return None
        gap = float((first - second).abs().max())
        moved = int((first.argmax(1) != second.argmax(1)).sum())
        return (f"two forward passes on the same {len(x)} in-distribution points differ on "
                f"{int(differ.sum())} of them (by up to {gap:.3g} in output units; {moved} change "
                "their predicted class)")
