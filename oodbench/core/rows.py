"""How a table row is scored: the kind every stage agrees on (attacks declare it, the planner
plans by it, the scorer scores by it)."""

from __future__ import annotations

from enum import Enum


class RowKind(str, Enum):
    """How a row is scored: like an OOD probe, like the in-distribution set, or by its attack."""

    OOD = "probe"
    IN_DISTRIBUTION = "in"
    SUMMARY = "summary"
    IN_ATTACKED = "in-attacked"   # attacked in-distribution points against a probe's OOD points


__all__ = ["RowKind"]
