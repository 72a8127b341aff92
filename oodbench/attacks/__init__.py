"""Attacks: threat models, objectives, the batched PGD/APGD engine and the registered attacks."""

from oodbench.attacks import objectives as _objectives  # noqa: F401  (registers objectives)
from oodbench.attacks.engine import AttackConfig, AttackResult, run_attack
from oodbench.attacks.threats import ThreatModel

__all__ = ["AttackConfig", "AttackResult", "ThreatModel", "run_attack"]
from oodbench.attacks import registered as _registered  # noqa: F401,E402  (registers attacks)
from oodbench.attacks.base import Attack, AttackContext, AttackSpec  # noqa: E402

__all__ += ["Attack", "AttackContext", "AttackSpec"]
from oodbench.attacks import autoattack as _autoattack  # noqa: F401,E402  (registers autoattack)
from oodbench.attacks import alpha_scaling as _alpha_scaling  # noqa: F401,E402  (registers alpha-scaling)
from oodbench.attacks import counterfactuals as _counterfactuals  # noqa: F401,E402  (registers counterfactuals)
from oodbench.attacks import certified as _certified  # noqa: F401,E402  (registers certified)
