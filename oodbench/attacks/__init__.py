"""Attacks: threat models, objectives, the batched PGD/APGD engine and the registered attacks.

A new attack is one file here (or in a plugin) with a decorated :class:`Attack` subclass; the
``attacks`` registry finds it by scanning this folder on its first lookup.
"""

from oodbench.attacks.base import Attack, AttackContext, AttackSpec
from oodbench.attacks.engine import AttackConfig, AttackResult, run_attack
from oodbench.attacks.threats import ThreatModel

__all__ = ["AttackConfig", "AttackResult", "ThreatModel", "run_attack", "Attack", "AttackContext",
           "AttackSpec"]
