"""What a trust check is, what it is given, and the verdict it returns.

A check looks for one reason not to trust a row — mostly the ways gradient-based attacks are
fooled ("gradient masking": Athalye et al. 2018, Carlini et al. 2019, Croce et al. 2022) — and
returns a human-readable detail when it finds it, ``None`` otherwise. A verdict is a
:class:`Flag`: a structured code, the job it concerns and the detail. Checks come in two scopes:

- ``model`` checks look at the model alone, on a few in-distribution test points; their flags
  belong to the model's clean job (and so to every row of that model);
- ``attack`` checks look at one attack job: its objective (through the detector's head when the
  attack is detector-aware), its number of classes, and its stored result.

A check is registered in the ``checks`` family (``oodbench list checks``) under its code; a new
one is one file in this package (or a plugin) with a decorated :class:`Check` subclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

import numpy as np
import torch
from torch import nn

from oodbench.checks.spec import ChecksSpec
from oodbench.core.cost import Cost

if TYPE_CHECKING:  # pragma: no cover
    from oodbench.attacks.base import Attack, AttackSpec, GradientObjective

Scope = Literal["model", "attack"]


@dataclass(frozen=True)
class Flag:
    """One verdict: ``code`` (a registered check), the ``job`` (hash) it concerns, and what was
    found, in words and numbers (``detail``)."""

    code: str
    job: str
    detail: str


@dataclass
class ModelInputs:
    """What a model check is given: the model (as the attacks see it), ``images`` (a few
    in-distribution test points) and where to run."""

    model: nn.Module
    images: torch.Tensor
    device: torch.device
    n_classes: int
    settings: ChecksSpec = field(default_factory=ChecksSpec)


@dataclass
class AttackInputs:
    """What an attack check is given. ``images`` / ``indices``: the first points of the attack's
    source (global indices, so random starts are the engine's); ``objective``: the gradient
    attack's head, target and config (None: the attack exposes none, e.g. α-scaling);
    ``black_box``: the points the black-box comparison uses and the gradient attack's stored
    score of each (None: no comparison for this job)."""

    model: nn.Module
    attack: "Attack"
    spec: "AttackSpec"
    n_classes: int
    images: torch.Tensor
    indices: torch.Tensor
    objective: Optional["GradientObjective"]
    device: torch.device
    seed: int
    score_name: str
    settings: ChecksSpec = field(default_factory=ChecksSpec)
    black_box: Optional["BlackBoxInputs"] = None


@dataclass
class BlackBoxInputs:
    """The black-box comparison's points (global ``indices``), the gradient attack's stored
    score of each, the model's clean in-distribution scores (what the row ranks them against)
    and the gradient attack's objective on these points (its head and ball)."""

    images: torch.Tensor
    indices: torch.Tensor
    stored_scores: np.ndarray
    in_scores: np.ndarray
    objective: "GradientObjective"


class Check:
    """Base class of registered checks: set ``code``, ``scope`` and ``meaning``, override
    :meth:`run` (and :meth:`applies` / :meth:`cost` where it differs)."""

    code: ClassVar[str] = ""
    scope: ClassVar[Scope] = "model"
    #: One line: what the flag means and why it matters (footnotes, ``oodbench list checks``).
    meaning: ClassVar[str] = ""

    def applies(self, attack: Optional["Attack"], spec: Optional["AttackSpec"],
                settings: ChecksSpec) -> bool:
        """Whether the check runs for this job (an attack check: for this attack)."""
        return True

    def cost(self, spec: Optional["AttackSpec"], settings: ChecksSpec) -> Cost:
        """Model evaluations it needs at most (shown nowhere yet; kept honest for the planner)."""
        return Cost(forward=settings.n)

    def run(self, inputs: Any) -> Optional[str]:
        """The detail of the flag when the check finds its problem, else None."""
        raise NotImplementedError

    @classmethod
    def describe(cls) -> str:
        return f"[{cls.scope}] {cls.meaning}"


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4) -> torch.Tensor:
    """Per row: whether two outputs agree up to float noise (``rtol`` of the row's scale, at
    least 1): far above the rounding of one model call, far below any randomness that matters."""
    scale = torch.maximum(a.abs().flatten(1).amax(1), b.abs().flatten(1).amax(1)).clamp_min(1.0)
    return (a - b).abs().flatten(1).amax(1) <= rtol * scale


__all__ = ["AttackInputs", "BlackBoxInputs", "Check", "Flag", "ModelInputs", "Scope", "close"]
