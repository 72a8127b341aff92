"""Attack objectives: per-sample quantities of the logits that an attack *maximises*.

An objective is ``f(logits, target) -> (N,)``; ``target`` is the true label (adversarial
samples), the target class (counterfactuals) or ignored (OOD attacks). Registered in
``oodbench.core.registry.objectives``; a new one is one decorated function.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from oodbench.core.registry import objectives


@objectives.register("max-log-conf")
def max_log_confidence(logits: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Log of the maximal softmax probability: adversarial noise / worst-case OOD (Hein et al.)."""
    return F.log_softmax(logits, dim=1).max(dim=1).values


@objectives.register("ce-uniform")
def cross_entropy_to_uniform(logits: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy to the uniform distribution: its maximiser leaves the uniform prediction
    (Augustin et al.); smoother than the max, so gradients reach every class."""
    return -F.log_softmax(logits, dim=1).mean(dim=1)


def spread_loss(spread: torch.Tensor) -> torch.Tensor:
    """``log(1 + s²/2)`` of a logit spread ``s = max_j z_j − min_k z_k`` (or a certified upper
    bound of it): 0 only for the uniform prediction, and, unlike the log-confidence, it does not
    flatten out for confident predictions (its gradient decays like 1/s, not like e^{−s}), so a
    vacuous interval bound early in GOOD training still gives a gradient (Bitterwolf et al.)."""
    return (spread.float() ** 2 / 2).log1p()


@objectives.register("logit-spread")
def logit_spread(logits: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """GOOD's out-loss on the logits themselves, :func:`spread_loss` of max z − min z: as an
    ACET objective its maximiser in the ball is the point whose prediction is least uniform."""
    return spread_loss(logits.max(dim=1).values - logits.min(dim=1).values)


@objectives.register("ce")
def cross_entropy(logits: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy on the true label: untargeted adversarial samples (Madry et al.)."""
    if target is None:
        raise ValueError("objective 'ce' needs the true labels as target")
    return F.cross_entropy(logits, target, reduction="none")


@objectives.register("targeted-conf")
def targeted_log_confidence(logits: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Log-probability of a target class: counterfactuals (Augustin et al., Sec. 5)."""
    if target is None:
        raise ValueError("objective 'targeted-conf' needs target classes")
    return F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
