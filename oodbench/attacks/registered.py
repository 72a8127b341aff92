"""The papers' attacks as registered suite probes, all running on the one engine.

- ``adversarial-noise`` (Hein et al. 2019, Sec. 5): PGD maximising the log-confidence around
  noise images, Linf ε = 0.3, 200 iterations, step 0.0075.
- ``adversarial-samples`` (Hein et al. 2019, Table 1): PGD on the cross-entropy of in-distribution
  test points, 80 iterations, Linf ε 0.3 / step 0.0075 for MNIST-like grey data, ε 0.1 / step
  0.0025 otherwise (grey: the data set declares one channel); the confidences of the *misclassified* adversarial points are the OOD scores.
- ``worst-case`` (Augustin et al. 2020, Sec. 5): APGD maximising the confidence around any OOD
  probe, L2 ε = 1.0, 100 iterations; reported as worst-case AUROC / FPR@95 / MMC.
- ``in-distribution-attack`` (the in-distribution side of ATD, NeurIPS 2022, and AROS, ICLR
  2025): PGD *lowering* the detector's score around in-distribution test points; its row ranks
  the attacked in-distribution points against the OOD points of the probe named by ``versus``
  (clean, or attacked: "both attacked").

``adversarial-noise``, ``worst-case`` and ``in-distribution-attack`` attack each detector of the
suite on its own score (the detector's engine head); with ``msp`` the first two run exactly as
they always did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from oodbench.attacks.base import Attack, AttackContext, AttackSpec, GradientObjective, grey_data
from oodbench.attacks.engine import AttackConfig, LogitsHead, run_attack
from oodbench.attacks.ensemble import run_ensemble
from oodbench.attacks.members import gradient_steps, members_of
from oodbench.core.arrays import ArrayKey
from oodbench.core.cost import Cost
from oodbench.core.detectors import DEFAULT_DETECTOR
from oodbench.core.rows import RowKind, TableKind
from oodbench.core.registry import attacks

class EngineAttack(Attack):
    """An attack that is one call of the engine; subclasses set defaults and post-processing."""

    select = "confidence"
    shardable = True

    def estimate_cost(self, spec: AttackSpec, n_points: int) -> Cost:
        """Every restart's steps on every point, plus a no-gradient pass for the start and the
        last iterate of each restart."""
        members = members_of(spec.version, spec.members)
        if members:  # the clean pass, then every member on every point at most
            return sum((Cost(forward=n_points * (m.steps + 2 if m.name == "square" else 2),
                             gradient=n_points * gradient_steps(m)) for m in members),
                       Cost(forward=n_points))
        steps, restarts = spec.steps or 100, spec.restarts or 1
        return Cost(forward=n_points * (1 + restarts), gradient=n_points * steps * restarts)

    def config(self, spec: AttackSpec) -> AttackConfig:
        assert spec.threat is not None
        # no objective: a detector's head ascends the detector's own score instead
        return AttackConfig(threat=spec.threat, objective=spec.objective or "max-log-conf",
                            optimizer=spec.optimizer or "pgd", steps=spec.steps or 100,
                            step_size=spec.step_size, restarts=spec.restarts or 1,
                            random_start=True if spec.random_start is None else spec.random_start,
                            momentum=spec.momentum or 0.0,
                            select=self.select)

    def target(self, ctx: AttackContext) -> torch.Tensor | None:
        return None

    def min_classes(self, spec: AttackSpec) -> tuple[int, str]:
        if spec.objective == "targeted-conf":
            return 2, "a targeted attack needs a class other than the point's own"
        return super().min_classes(spec)

    def gradient_objective(self, ctx: AttackContext) -> GradientObjective:
        config = self.config(ctx.spec)
        head = ctx.head if ctx.head is not None else LogitsHead(config)
        return GradientObjective(head, self.target(ctx), config)

    def run(self, ctx: AttackContext) -> dict[str, np.ndarray]:
        members = members_of(ctx.spec.version, ctx.spec.members)
        if members:
            return self._run_ensemble(ctx, members)
        result = run_attack(ctx.model, ctx.images, self.config(ctx.spec), target=self.target(ctx),
                            stop_above=ctx.stop_above, batch_size=ctx.batch_size, device=ctx.device,
                            seed=ctx.seed, progress=ctx.progress, desc=ctx.label,
                            on_progress=ctx.on_progress, head=ctx.head,
                            **({} if ctx.indices is None else {"indices": ctx.indices}))
        out = {ArrayKey.LOGITS.value: result.logits.numpy(),
               ArrayKey.STOPPED_EARLY.value: result.stopped_early.numpy(),
               ArrayKey.GRADIENT_EVALUATIONS.value: np.array(result.gradient_evaluations)}
        if result.features is not None:
            out[ArrayKey.FEATURES.value] = result.features.numpy()
        if ctx.labels is not None:
            out[ArrayKey.LABELS.value] = ctx.labels.numpy()
        return out

    def _run_ensemble(self, ctx: AttackContext, members: tuple) -> dict[str, np.ndarray]:
        config = self.config(ctx.spec)
        result = run_ensemble(ctx.model, ctx.images, members, config,
                              ctx.head if ctx.head is not None else LogitsHead(config),
                              target=self.target(ctx), stop_above=ctx.stop_above,
                              batch_size=ctx.batch_size, device=ctx.device, seed=ctx.seed,
                              indices=ctx.indices, on_progress=ctx.on_progress)
        out = {ArrayKey.LOGITS.value: result.logits.numpy(),
               ArrayKey.STOPPED_EARLY.value: result.stopped_early.numpy(),
               ArrayKey.GRADIENT_EVALUATIONS.value: np.array(result.gradient_evaluations),
               ArrayKey.MEMBER.value: result.member.numpy(),
               ArrayKey.MEMBER_SCORES.value: result.member_scores.numpy()}
        if result.features is not None:
            out[ArrayKey.FEATURES.value] = result.features.numpy()
        if ctx.labels is not None:
            out[ArrayKey.LABELS.value] = ctx.labels.numpy()
        return out


@attacks.register("adversarial-noise")
class AdversarialNoise(EngineAttack):
    """PGD maximising confidence around noise images (Linf 0.3, 200 steps of 0.0075)."""

    supports_early_stop = True
    detector_aware = True
    black_box_checked = True
    has_versions = True

    def defaults(self, in_dataset: str) -> dict[str, Any]:
        return {"threat": {"norm": "Linf", "eps": 0.3}, "objective": "max-log-conf",
                "optimizer": "pgd", "steps": 200, "step_size": 0.0075, "restarts": 1,
                "random_start": True}


@attacks.register("worst-case")
class WorstCase(EngineAttack):
    """APGD maximising confidence around OOD points (RATIO: L2 ε=1.0, 100 steps)."""

    table_kind = TableKind.WORST_CASE  # its AUROC is the worst-case AUROC of RATIO's tables
    supports_early_stop = True
    detector_aware = True
    black_box_checked = True
    has_versions = True

    def defaults(self, in_dataset: str) -> dict[str, Any]:
        return {"threat": {"norm": "L2", "eps": 1.0}, "objective": "max-log-conf",
                "optimizer": "apgd", "steps": 100, "restarts": 1, "random_start": True}


@attacks.register("adversarial-samples")
class AdversarialSamples(EngineAttack):
    """PGD on cross-entropy of test points; misclassified ones are scored as OOD (80 steps)."""

    source = "in-distribution"
    select = "objective"

    def defaults(self, in_dataset: str) -> dict[str, Any]:
        eps, step = (0.3, 0.0075) if grey_data(in_dataset) else (0.1, 0.0025)
        return {"threat": {"norm": "Linf", "eps": eps}, "objective": "ce", "optimizer": "pgd",
                "steps": 80, "step_size": step, "restarts": 1, "random_start": True}

    def target(self, ctx: AttackContext) -> torch.Tensor | None:
        if ctx.labels is None:
            raise ValueError("adversarial-samples needs labelled in-distribution points")
        return ctx.labels

    def run(self, ctx: AttackContext) -> dict[str, np.ndarray]:
        out = super().run(ctx)
        out[ArrayKey.MASK.value] = out[ArrayKey.LOGITS.value].argmax(1) != out[ArrayKey.LABELS.value]
        return out


@attacks.register("in-distribution-attack")
class InDistributionAttack(EngineAttack):
    """PGD lowering the detector's score around in-distribution test points (Linf, 100 steps)."""

    source = "in-distribution"
    row = RowKind.IN_ATTACKED
    detector_aware = True
    lowers_score = True
    has_versions = True
    select = "objective"

    def defaults(self, in_dataset: str) -> dict[str, Any]:
        # ATD / AROS attack both sides in the same ball: 8/255 on colour images; grey digits
        # take the larger 0.1 (their noise attacks use 0.3).
        eps = 0.1 if grey_data(in_dataset) else 8 / 255
        return {"threat": {"norm": "Linf", "eps": eps}, "objective": None, "optimizer": "pgd",
                "steps": 100, "step_size": 2.5 * eps / 100, "restarts": 1, "random_start": True}

    def _with_head(self, ctx: AttackContext) -> AttackContext:
        if ctx.head is None:  # called without a detector: lower the msp score
            from dataclasses import replace

            from oodbench.detectors import build_detector
            from oodbench.detectors.attack import detector_head

            ctx = replace(ctx, head=detector_head(build_detector(DEFAULT_DETECTOR), None, ctx.device, lower=True))
        return ctx

    def gradient_objective(self, ctx: AttackContext) -> GradientObjective:
        return super().gradient_objective(self._with_head(ctx))

    def run(self, ctx: AttackContext) -> dict[str, np.ndarray]:
        return super().run(self._with_head(ctx))
