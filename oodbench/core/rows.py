"""The one vocabulary for the kind of a table row, in three views of the same thing.

- :class:`RowKind`: how a row is *scored* (attacks declare it, the planner plans by it, the
  scorer scores by it, and stored row recipes carry its value);
- :class:`MetricScope`: on which rows a metric has a value, defined by the :class:`RowKind`\\ s
  it covers (a metric's ``scope``);
- :class:`TableKind`: what a row *is* in a report (``ood``, ``noise``, ``worst-case``, …), which
  layouts pick rows by: a row's :class:`RowKind` plus a presentation its component declares (an
  attack's :attr:`~oodbench.attacks.base.Attack.table_kind`, a data set's ``kind: synthetic``).

The values are the strings stores, suites and CSV reports have always held, so old stores read
the same and the members compare equal to those strings.
"""

from __future__ import annotations

from enum import Enum


class RowKind(str, Enum):
    """How a row is scored: like an OOD probe, like the in-distribution set, or by its attack."""

    OOD = "probe"
    IN_DISTRIBUTION = "in"
    SUMMARY = "summary"
    IN_ATTACKED = "in-attacked"   # attacked in-distribution points against a probe's OOD points


class _Word(str, Enum):
    """A member that prints as its value (what :class:`enum.StrEnum` does, which Python 3.10
    lacks), so a report that writes one writes the same bytes as the plain string did."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)

    def __hash__(self) -> int:  # as the string's, so a set or dict of strings finds a member
        return str.__hash__(self)


class MetricScope(_Word):
    """On which rows of the table a metric has a value (:attr:`rows`)."""

    IN = "in"          # the model's in-distribution row (test error, ECE)
    PROBE = "probe"    # rows ranked against an OOD side: probes and attacked rows (AUROC)
    BOTH = "both"      # both (MMC)

    @property
    def rows(self) -> frozenset[RowKind]:
        """The row kinds on which a metric of this scope is computed (a summary row holds its
        attack's own quantities: no metric has a value there)."""
        return _SCOPE_ROWS[self]

    def covers(self, row: RowKind | str) -> bool:
        return RowKind(row) in self.rows


_IN_ROWS = frozenset({RowKind.IN_DISTRIBUTION})
_PROBE_ROWS = frozenset({RowKind.OOD, RowKind.IN_ATTACKED})
_SCOPE_ROWS = {MetricScope.IN: _IN_ROWS, MetricScope.PROBE: _PROBE_ROWS,
               MetricScope.BOTH: _IN_ROWS | _PROBE_ROWS}


class TableKind(_Word):
    """What a row is in a report; layouts choose and order rows by it."""

    IN_DISTRIBUTION = "in-distribution"   # the in-distribution test set (test error, MMC, ECE)
    OOD = "ood"                           # a clean OOD probe on a real data set
    NOISE = "noise"                       # a clean probe on a synthetic data set
    ADVERSARIAL = "adversarial"           # an attack scored as an OOD row (adversarial noise)
    WORST_CASE = "worst-case"             # worst-case AUROC: an attack declared so
    ROBUST = "robust"                     # an attack scored like the in-distribution row
    SUMMARY = "summary"                   # an attack's own quantities (α-scaling)
    GROUP = "group"                       # the mean over a ``group:`` of probes
    UNIT_TESTS = "unit-tests"             # how many of NINCO's OOD unit tests a model fails

    @classmethod
    def of_probe(cls, synthetic: bool) -> "TableKind":
        """A clean probe's kind: its data set's registry meta says whether it is synthetic."""
        return cls.NOISE if synthetic else cls.OOD

    @classmethod
    def of_attack(cls, row: RowKind | str) -> "TableKind":
        """An attack row's kind by how it is scored, for attacks that declare none."""
        return _ATTACK_KINDS.get(RowKind(row), cls.ADVERSARIAL)


_ATTACK_KINDS = {RowKind.IN_DISTRIBUTION: TableKind.ROBUST, RowKind.SUMMARY: TableKind.SUMMARY}

#: The clean OOD rows (real and synthetic data), which layouts average and pair.
CLEAN_OOD: tuple[TableKind, ...] = (TableKind.OOD, TableKind.NOISE)


__all__ = ["CLEAN_OOD", "MetricScope", "RowKind", "TableKind"]
