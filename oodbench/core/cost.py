"""What a job costs, counted in model evaluations rather than seconds.

Seconds depend on the machine; evaluations do not, so a plan can say before a run starts how much
work it is, and the progress bar can count the same unit the attack does. A forward pass without
gradient costs about a third of a forward+backward pass, so the plan's single *work* figure counts
a forward as 1/3 of a gradient evaluation (only for the bar and its ETA; the table shows both).
"""

from __future__ import annotations

from dataclasses import dataclass

FORWARD_PER_GRADIENT = 3


@dataclass(frozen=True)
class Cost:
    """Model evaluations of one job (per point: one forward or one forward+backward)."""

    forward: int = 0
    gradient: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.forward + other.forward, self.gradient + other.gradient)

    def scaled(self, fraction: float) -> "Cost":
        return Cost(round(self.forward * fraction), round(self.gradient * fraction))

    @property
    def work(self) -> int:
        """Gradient-evaluation equivalents: what the overall progress bar counts."""
        return self.gradient + -(-self.forward // FORWARD_PER_GRADIENT)


__all__ = ["Cost", "FORWARD_PER_GRADIENT"]
