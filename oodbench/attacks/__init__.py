"""Attacks: threat models, objectives, the batched PGD/APGD engine and the registered attacks."""

from oodbench.attacks import objectives as _objectives  # noqa: F401  (registers objectives)
from oodbench.attacks.engine import AttackConfig, AttackResult, run_attack
from oodbench.attacks.threats import ThreatModel

__all__ = ["AttackConfig", "AttackResult", "ThreatModel", "run_attack"]
