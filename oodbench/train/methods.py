"""The registered training methods (``oodbench list trainers``): one class per method.

A method declares what it needs from a recipe (an out-distribution, attacks on in- and/or
out-distribution points), fills in its papers' defaults when a recipe is validated
(:meth:`Method.resolve`), and turns one batch into a loss (:meth:`Method.loss`) with the pure
functions of :mod:`oodbench.train.losses`. The training loop (:mod:`oodbench.train.loop`) is
the same for all of them.

Adding a method is one decorated class here (or in a plugin)::

    @trainers.register("my-method")
    class MyMethod(Method):
        \"\"\"One-line description.\"\"\"
        def loss(self, model, batch, *, lr_drops, seed): ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

import torch
from torch import nn

from oodbench.attacks.engine import AttackConfig
from oodbench.core.registry import trainers
from oodbench.train import losses

if TYPE_CHECKING:  # pragma: no cover
    from oodbench.train.recipe import Recipe, TrainAttack

# Hein et al. (2019), app. F: ACET with p = ∞, ε = 0.3, 40 PGD steps of 0.0075, λ = 1, noise.
HEIN_OUT = {"dataset": "smoothed-noise", "loss": "max-log-conf", "lambda": 1.0}
HEIN_ACET_ATTACK = {"threat": {"norm": "Linf", "eps": 0.3}, "steps": 40, "step_size": 0.0075}
# Bitterwolf et al. (2020): GOOD on MNIST certifies Linf ε = 0.3 around the out-distribution.
GOOD_OUT = {"dataset": "uniform-noise", "loss": "logit-spread", "lambda": 1.0}
GOOD_BOUND = {"threat": {"norm": "Linf", "eps": 0.3}, "ramp": [0.1, 0.5], "quantile": 1.0}
# Augustin et al. (2020), app. B.1: L2 ε_o = 1.0, 20 (→ 40) steps of 0.1 on the out-distribution;
# L2 ε_i (0.25 or 0.5), 7 steps of 0.1 on the logit margin on the in-distribution.
AUGUSTIN_OUT_ATTACK = {"threat": {"norm": "L2", "eps": 1.0}, "steps": 20, "step_size": 0.1,
                       "steps_increase": 5, "max_steps": 40}
AUGUSTIN_IN_ATTACK = {"threat": {"norm": "L2", "eps": 0.5}, "objective": "logit-margin",
                      "steps": 7, "step_size": 0.1}


@dataclass
class Batch:
    """One training step's data, on the training device."""

    x_in: torch.Tensor
    y_in: torch.Tensor
    x_out: Optional[torch.Tensor] = None
    #: Fraction of training done before this step (GOOD's ε ramp reads it).
    progress: float = 0.0


class Method:
    """Base class of training methods; subclasses set the class attributes and :meth:`loss`."""

    out: ClassVar[Literal["none", "any", "real"]] = "none"
    """Out-distribution: not used, noise or data (``any``), or a real data set only (``real``)."""
    default_out: ClassVar[Optional[dict[str, Any]]] = None
    default_out_loss: ClassVar[str] = "max-log-conf"
    uses_in_attack: ClassVar[bool] = False
    uses_out_attack: ClassVar[bool] = False
    default_in_attack: ClassVar[Optional[dict[str, Any]]] = None
    default_out_attack: ClassVar[Optional[dict[str, Any]]] = None
    uses_out_bound: ClassVar[bool] = False
    default_out_bound: ClassVar[Optional[dict[str, Any]]] = None

    # --- recipe validation ----------------------------------------------------------------------

    @classmethod
    def resolve(cls, recipe: "Recipe") -> None:
        """Check that ``recipe`` gives what this method needs (and nothing it would ignore); fill
        unset settings with the method's defaults. Raises ``ValueError`` naming the field."""
        from oodbench.train.recipe import OutDistribution, TrainAttack, TrainBound

        name = recipe.method
        if cls.out == "none":
            if recipe.out_distribution is not None:
                raise ValueError(f"method {name!r} uses no out-distribution: remove "
                                 "`out_distribution`")
        else:
            if recipe.out_distribution is None:
                if cls.default_out is None:
                    raise ValueError(f"method {name!r} needs `out_distribution` (a registered "
                                     "data set, e.g. an image-folder of 80M Tiny Images)")
                recipe.out_distribution = OutDistribution.model_validate(cls.default_out)
            out = recipe.out_distribution
            if cls.out == "real" and out.synthetic:
                raise ValueError(f"method {name!r} trains on a real out-distribution data set, not "
                                 f"{out.dataset!r} (use `ceda` for noise)")
            if out.loss is None:
                out.loss = cls.default_out_loss  # type: ignore[assignment]
        for part, used, default in (("in_attack", cls.uses_in_attack, cls.default_in_attack),
                                    ("out_attack", cls.uses_out_attack, cls.default_out_attack)):
            given: Optional[TrainAttack] = getattr(recipe, part)
            if not used:
                if given is not None:
                    raise ValueError(f"method {name!r} runs no {part.replace('_', ' ')}: remove "
                                     f"`{part}`")
                continue
            if given is None:
                if default is None:
                    raise ValueError(f"method {name!r} needs `{part}` (threat, steps, step_size)")
                given = TrainAttack.model_validate(default)
                setattr(recipe, part, given)
            if given.objective is None:
                given.objective = (recipe.out_distribution.loss  # type: ignore[union-attr]
                                   if part == "out_attack" else "ce")
        if not cls.uses_out_bound and recipe.out_bound is not None:
            raise ValueError(f"method {name!r} trains on no certified bound: remove `out_bound`")
        if cls.uses_out_bound and recipe.out_bound is None:
            if cls.default_out_bound is None:  # pragma: no cover - every bound method has one
                raise ValueError(f"method {name!r} needs `out_bound` (threat, ramp, quantile)")
            recipe.out_bound = TrainBound.model_validate(cls.default_out_bound)

    # --- training ---------------------------------------------------------------------------------

    def __init__(self, recipe: "Recipe"):
        self.recipe = recipe
        out = recipe.out_distribution
        self.lam = out.lam if out is not None else 0.0
        self.out_loss = out.loss if out is not None else None

    @property
    def needs_out(self) -> bool:
        return self.out != "none"

    def attack_config(self, part: Literal["in_attack", "out_attack"], lr_drops: int) -> AttackConfig:
        """The engine configuration of ``part`` after ``lr_drops`` learning-rate drops."""
        spec: TrainAttack = getattr(self.recipe, part)
        return AttackConfig(threat=spec.threat, objective=spec.objective, optimizer=spec.optimizer,
                            steps=spec.steps_after(lr_drops), step_size=spec.step_size,
                            restarts=spec.restarts, random_start=spec.random_start,
                            momentum=spec.momentum,
                            select="objective")

    def loss(self, model: nn.Module, batch: Batch, *, lr_drops: int, seed: int) -> losses.LossOutput:
        raise NotImplementedError


@trainers.register("plain", paper="baseline")
class Plain(Method):
    """Cross-entropy on the in-distribution only: the baseline of both papers."""

    def loss(self, model, batch, *, lr_drops, seed):
        return losses.cross_entropy_loss(model, batch.x_in, batch.y_in)


@trainers.register("ceda", paper="Hein et al. 2019")
class CEDA(Method):
    """CEDA: CE + λ·out-loss on clean out-distribution samples (default: smoothed noise)."""

    out = "any"
    default_out = HEIN_OUT

    def loss(self, model, batch, *, lr_drops, seed):
        return losses.ceda_loss(model, batch.x_in, batch.y_in, batch.x_out, lam=self.lam,
                                out_loss_kind=self.out_loss)


@trainers.register("acet", paper="Hein et al. 2019")
class ACET(Method):
    """ACET: CE + λ·out-loss maximised by PGD in a ball around out samples (Linf 0.3, 40 steps)."""

    out = "any"
    default_out = HEIN_OUT
    uses_out_attack = True
    default_out_attack = HEIN_ACET_ATTACK

    def loss(self, model, batch, *, lr_drops, seed):
        return losses.acet_loss(model, batch.x_in, batch.y_in, batch.x_out,
                                attack=self.attack_config("out_attack", lr_drops), lam=self.lam,
                                out_loss_kind=self.out_loss, seed=seed)


@trainers.register("good", paper="Bitterwolf, Meinke, Hein 2020")
class GOOD(Method):
    """GOOD: CE + λ·certified (IBP) upper bound of the out-loss in an Linf ball around out
    samples, ε ramped up (Linf 0.3, uniform noise, logit-spread loss)."""

    out = "any"
    default_out = GOOD_OUT
    default_out_loss = "logit-spread"
    uses_out_bound = True
    default_out_bound = GOOD_BOUND

    def loss(self, model, batch, *, lr_drops, seed):
        bound = self.recipe.out_bound
        assert bound is not None and batch.x_out is not None
        return losses.good_loss(model, batch.x_in, batch.y_in, batch.x_out,
                                eps=bound.eps_at(batch.progress), quantile=bound.quantile,
                                lam=self.lam, out_loss_kind=self.out_loss)


@trainers.register("oe", paper="Hendrycks et al. 2019; Augustin et al. 2020")
class OE(Method):
    """Outlier exposure: CE + λ·CE-to-uniform on a real out-distribution data set."""

    out = "real"
    default_out_loss = "ce-uniform"

    def loss(self, model, batch, *, lr_drops, seed):
        return losses.oe_loss(model, batch.x_in, batch.y_in, batch.x_out, lam=self.lam,
                              out_loss_kind=self.out_loss)


@trainers.register("at", paper="Madry et al. 2018; Augustin et al. 2020")
class AT(Method):
    """Adversarial training: CE at PGD points in a ball around each training sample."""

    uses_in_attack = True

    def loss(self, model, batch, *, lr_drops, seed):
        return losses.at_loss(model, batch.x_in, batch.y_in,
                              attack=self.attack_config("in_attack", lr_drops), seed=seed)


@trainers.register("ratio", paper="Augustin et al. 2020")
class RATIO(Method):
    """RATIO: adversarial training on in- (L2 ε_i) and out-distribution (L2 1.0, CE to uniform)."""

    out = "any"
    default_out_loss = "ce-uniform"
    uses_in_attack = True
    uses_out_attack = True
    default_in_attack = AUGUSTIN_IN_ATTACK
    default_out_attack = AUGUSTIN_OUT_ATTACK

    def loss(self, model, batch, *, lr_drops, seed):
        return losses.ratio_loss(model, batch.x_in, batch.y_in, batch.x_out,
                                 in_attack=self.attack_config("in_attack", lr_drops),
                                 out_attack=self.attack_config("out_attack", lr_drops),
                                 lam=self.lam, out_loss_kind=self.out_loss, seed=seed)
