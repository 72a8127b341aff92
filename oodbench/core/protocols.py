"""What a lower layer reads from an object a higher layer builds, named as a protocol.

A detector's planning rules read two traits of an attack, and the attacks sit above the
detectors. The protocol says exactly which attributes the lower module uses, so the higher type
satisfies it without either side importing the other.
"""

from __future__ import annotations

from typing import Protocol


class AttackTraits(Protocol):
    """The traits of an attack (class attributes of :class:`~oodbench.attacks.base.Attack`)
    that decide whether its job runs on a detector's own head."""

    @property
    def detector_aware(self) -> bool: ...

    @property
    def lowers_score(self) -> bool: ...


__all__ = ["AttackTraits"]
