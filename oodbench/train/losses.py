"""Training losses of the papers as pure functions of (model, batch, settings).

Each function returns a :class:`LossOutput` whose ``loss`` is the scalar to minimise:

- :func:`cross_entropy_loss` — plain training;
- :func:`ceda_loss` — CEDA (Hein et al. 2019, eq. 1): ``mean CE(in) + λ · mean L_out(out)``
  on clean out-distribution samples; with a real out-distribution data set and the
  ``ce-uniform`` out-loss this is outlier exposure (:func:`oe_loss`, Hendrycks et al.);
- :func:`acet_loss` — ACET (Hein et al. eq. 3): the out-loss at the worst point of an lp ball
  around each out-distribution sample, found by the attack engine;
- :func:`at_loss` — adversarial training (Madry et al.): CE at the worst point of a ball around
  each training sample; the inner objective may be the CE (Madry) or the logit margin
  ``max_{i≠y} f_i − f_y`` that Augustin et al. (app. B.1) maximise instead;
- :func:`ratio_loss` — RATIO (Augustin et al. eq. 6): AT on the in-distribution plus ACET on
  the out-distribution;
- :func:`good_loss` — GOOD (Bitterwolf et al. 2020): CEDA whose out-loss is the certified upper
  bound (interval bound propagation, last layer elided) of the max log-confidence over an Linf
  ball around each out-distribution sample, for the quantile of the batch with the lowest bounds.

Out-losses (per sample, minimised): ``max-log-conf`` = max_k log p_k(x) (Hein et al. eq. 2),
``ce-uniform`` = −(1/K) Σ_k log p_k(x), the cross-entropy to the uniform distribution (Augustin
et al. eq. 5), and ``logit-spread`` = log(1 + s²/2) of the spread s = max z − min z (GOOD's
out-loss, a monotone stand-in for the confidence that does not saturate). All are minimised by
the uniform prediction. They are the same functions as the
attack objectives of those names, so the inner maximisation and the outer minimisation of
ACET/RATIO optimise one quantity.

**Normalisation.** The in-part is a mean over the in-distribution samples and the out-part a
mean over the out-distribution samples times λ, exactly eq. (1)/(3)/(6) of the papers. (The
authors' TensorFlow code divides the *sum* of both parts by the total batch size instead, i.e.
for λ = 1 it minimises half of this; with Adam that only changes the balance against weight
decay.)

**Inner maximisation.** The engine reports, per point, the best iterate by the objective over
the start point and every PGD iterate (``select="objective"``), as the authors' code of both
papers does ("returns the point with the highest loss across its trajectory"); its PGD starts
at a random point of the ball (``random_start``), like Hein et al.'s code. Augustin et al.'s PGD
also uses momentum 0.9: the recipe's ``momentum`` field (the engine's heavy-ball PGD).

**Train/eval mode and BatchNorm.** Inner maximisations go through the one attack engine
(:func:`oodbench.attacks.run_attack`), which runs the model in eval mode: BatchNorm uses its
running statistics and is never updated by attack iterates, as in the authors' code ("we never
update BN averages during generation of adv. examples"). :func:`adversarial_points` then puts
the model back in the mode it was in. The loss is computed in train mode in ONE forward pass
over the concatenation ``[in; out]``, so BatchNorm batch statistics (and the running averages)
are those of the joint batch — again what the authors' code does (it concatenates the
adversarial noise and the clean batch before the training forward pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from oodbench.attacks.engine import AttackConfig, run_attack
from oodbench.attacks.objectives import spread_loss
from oodbench.bounds import OutputBounds, input_box, msp_upper, output_bounds
from oodbench.core.registry import objectives

OUT_LOSSES = ("max-log-conf", "ce-uniform", "logit-spread")


@dataclass
class LossOutput:
    """The scalar to minimise, the logits of the in-distribution part (for the training accuracy;
    adversarial points for AT/RATIO) and detached scalar tensors of its parts for logging
    (``in``: the in-distribution loss, ``out``: the unweighted out-loss)."""

    loss: torch.Tensor
    logits_in: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


# --- per-sample pieces ---------------------------------------------------------------------------


def max_log_confidence(logits: torch.Tensor) -> torch.Tensor:
    """max_k log softmax(logits)_k per sample (Hein et al. eq. 2); ≥ −log K."""
    return F.log_softmax(logits.float(), dim=1).max(dim=1).values


def cross_entropy_uniform(logits: torch.Tensor) -> torch.Tensor:
    """−(1/K) Σ_k log softmax(logits)_k per sample: cross-entropy to the uniform label; ≥ log K."""
    return -F.log_softmax(logits.float(), dim=1).mean(dim=1)


def out_loss(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample out-distribution loss ``kind`` (``max-log-conf``, ``ce-uniform`` or
    ``logit-spread``)."""
    if kind == "max-log-conf":
        return max_log_confidence(logits)
    if kind == "ce-uniform":
        return cross_entropy_uniform(logits)
    if kind == "logit-spread":
        return spread_loss(logits.max(dim=1).values - logits.min(dim=1).values)
    raise ValueError(f"unknown out-loss {kind!r}; choose one of {', '.join(OUT_LOSSES)}")


@objectives.register("logit-margin")
def logit_margin(logits: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """max_{i≠y} f_i − f_y: the inner loss of adversarial training in RATIO (Augustin et al.)."""
    if target is None:
        raise ValueError("objective 'logit-margin' needs the true labels as target")
    true = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, target[:, None], float("-inf"))
    return others.max(dim=1).values - true


# --- inner maximisation --------------------------------------------------------------------------


def adversarial_points(model: nn.Module, x: torch.Tensor, config: AttackConfig, *,
                       target: Optional[torch.Tensor] = None, seed: int = 0) -> torch.Tensor:
    """The engine's best iterates for ``x`` (detached, on ``x``'s device), the model left in the
    mode it was handed in (the engine switches it to eval mode)."""
    was_training = model.training
    try:
        result = run_attack(model, x.detach(), config, target=target, batch_size=max(len(x), 1),
                            device=x.device, seed=seed)
    finally:
        model.train(was_training)
    return result.x_adv.to(device=x.device, dtype=x.dtype)


# --- losses --------------------------------------------------------------------------------------


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LossOutput:
    """Mean cross-entropy of ``model`` on (x, y)."""
    logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    return LossOutput(loss, logits.detach(), {"in": loss.detach()})


def ceda_loss(model: nn.Module, x_in: torch.Tensor, y_in: torch.Tensor, x_out: torch.Tensor, *,
              lam: float = 1.0, out_loss_kind: str = "max-log-conf") -> LossOutput:
    """CEDA: ``mean CE(f(x_in), y_in) + lam · mean L_out(f(x_out))``, one forward pass over
    ``[x_in; x_out]`` (joint BatchNorm statistics in train mode)."""
    n = len(x_in)
    logits = model(torch.cat([x_in, x_out]) if len(x_out) else x_in)
    logits_in, logits_out = logits[:n], logits[n:]
    loss_in = F.cross_entropy(logits_in.float(), y_in)
    if len(x_out):
        loss_out = out_loss(logits_out, out_loss_kind).mean()
    else:
        loss_out = logits.new_zeros((), dtype=torch.float32)
    loss = loss_in + lam * loss_out
    return LossOutput(loss, logits_in.detach(),
                      {"in": loss_in.detach(), "out": loss_out.detach()})


def oe_loss(model: nn.Module, x_in: torch.Tensor, y_in: torch.Tensor, x_out: torch.Tensor, *,
            lam: float = 1.0, out_loss_kind: str = "ce-uniform") -> LossOutput:
    """Outlier exposure: CEDA on samples of a real out-distribution data set, with the
    cross-entropy to the uniform distribution as out-loss by default."""
    return ceda_loss(model, x_in, y_in, x_out, lam=lam, out_loss_kind=out_loss_kind)


def acet_loss(model: nn.Module, x_in: torch.Tensor, y_in: torch.Tensor, x_out: torch.Tensor, *,
              attack: AttackConfig, lam: float = 1.0, out_loss_kind: str = "max-log-conf",
              seed: int = 0) -> LossOutput:
    """ACET: CEDA evaluated at the points of the ``attack`` ball around ``x_out`` that maximise
    ``attack.objective`` (normally the out-loss itself)."""
    x_adv = adversarial_points(model, x_out, attack, seed=seed) if len(x_out) else x_out
    return ceda_loss(model, x_in, y_in, x_adv, lam=lam, out_loss_kind=out_loss_kind)


def at_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack: AttackConfig,
            seed: int = 0) -> LossOutput:
    """Adversarial training: mean CE at the points of the ``attack`` ball around ``x`` that
    maximise ``attack.objective`` (``ce`` as Madry et al., ``logit-margin`` as Augustin et al.);
    the model is always updated with the CE gradient."""
    x_adv = adversarial_points(model, x, attack, target=y, seed=seed)
    return cross_entropy_loss(model, x_adv, y)


def ratio_loss(model: nn.Module, x_in: torch.Tensor, y_in: torch.Tensor, x_out: torch.Tensor, *,
               in_attack: AttackConfig, out_attack: AttackConfig, lam: float = 1.0,
               out_loss_kind: str = "ce-uniform", seed: int = 0) -> LossOutput:
    """RATIO: adversarial training on the in-distribution (``in_attack``) plus adversarial
    training towards the uniform prediction on the out-distribution (``out_attack``)."""
    x_in_adv = adversarial_points(model, x_in, in_attack, target=y_in, seed=seed)
    x_out_adv = (adversarial_points(model, x_out, out_attack, seed=seed + 1)
                 if len(x_out) else x_out)
    return ceda_loss(model, x_in_adv, y_in, x_out_adv, lam=lam, out_loss_kind=out_loss_kind)


def certified_out_loss(bounds: OutputBounds, kind: str) -> torch.Tensor:
    """Per-sample upper bound of the out-loss ``kind`` over the bounded set: the log-confidence
    bound for ``max-log-conf``, the loss of the largest certified logit difference for
    ``logit-spread``."""
    if kind == "max-log-conf":
        return msp_upper(bounds.diff_upper).float()
    if kind == "logit-spread":
        return spread_loss(bounds.diff_upper.flatten(1).max(dim=1).values)
    raise ValueError(f"GOOD bounds the out-loss max-log-conf or logit-spread, not {kind!r}")


def good_loss(model: nn.Module, x_in: torch.Tensor, y_in: torch.Tensor, x_out: torch.Tensor, *,
              eps: float, quantile: float = 1.0, lam: float = 1.0,
              out_loss_kind: str = "logit-spread") -> LossOutput:
    """GOOD: ``mean CE(in) + lam · mean_out L``, where ``L`` is the certified upper bound of the
    out-loss over the Linf ``eps``-ball (∩ [0, 1]) around the out samples whose bounds are the
    lowest ``quantile`` of the batch, and the clean out-loss on the others (on all of them while
    ``eps`` is 0: CEDA with that out-loss).

    Bounds by interval bound propagation with the last layer elided
    (:func:`oodbench.bounds.output_bounds`, no rounding margin: training needs none).
    ``parts["bound"]``: the batch's mean certified upper bound of the log-confidence plus log K
    (0: the uniform prediction is certified on the whole ball)."""
    if eps <= 0 or not len(x_out):
        return ceda_loss(model, x_in, y_in, x_out, lam=lam, out_loss_kind=out_loss_kind)
    n = len(x_in)
    logits = model(torch.cat([x_in, x_out]))
    logits_in = logits[:n]
    loss_in = F.cross_entropy(logits_in.float(), y_in)
    clean_out = out_loss(logits[n:], out_loss_kind)
    bounds = output_bounds(model, input_box(x_out, eps), margin=0.0)
    upper = certified_out_loss(bounds, out_loss_kind)
    n_bound = max(1, math.ceil(quantile * len(x_out) - 1e-9))
    on_bound = torch.zeros(len(x_out), dtype=torch.bool, device=x_out.device)
    on_bound[upper.detach().argsort()[:n_bound]] = True
    loss_out = torch.where(on_bound, upper, clean_out).mean()
    loss = loss_in + lam * loss_out
    with torch.no_grad():
        conf_bound = msp_upper(bounds.diff_upper).mean() + math.log(logits.shape[1])
    return LossOutput(loss, logits_in.detach(),
                      {"in": loss_in.detach(), "out": loss_out.detach(), "bound": conf_bound})
