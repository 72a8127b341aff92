"""How a table row is scored: the kind every stage agrees on (attacks declare it, the planner
plans by it, the scorer scores by it), and the rows a metric's scope covers (the metrics
compute by it), in one vocabulary."""

from __future__ import annotations

from enum import Enum


class RowKind(str, Enum):
    """How a row is scored: like an OOD probe, like the in-distribution set, or by its attack."""

    OOD = "probe"
    IN_DISTRIBUTION = "in"
    SUMMARY = "summary"
    IN_ATTACKED = "in-attacked"   # attacked in-distribution points against a probe's OOD points


#: A metric's ``scope`` -> the kinds of row it has a value on. The scopes are named by the row
#: kinds they cover (``in``, ``probe``); ``both`` covers the two.
METRIC_SCOPES: dict[str, frozenset[RowKind]] = {
    RowKind.IN_DISTRIBUTION.value: frozenset({RowKind.IN_DISTRIBUTION}),
    RowKind.OOD.value: frozenset({RowKind.OOD}),
    "both": frozenset({RowKind.IN_DISTRIBUTION, RowKind.OOD}),
}

__all__ = ["METRIC_SCOPES", "RowKind"]
