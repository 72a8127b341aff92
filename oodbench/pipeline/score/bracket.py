"""The bracket of a worst case: certified <= true worst case <= attacked <= clean.

For one detector on one probe's points, per point: the clean score <= the attacked score (the
engine reports the best of the clean point and its iterates) <= the certified upper bound of
the score over the ball (when the attack's ball lies inside the certified one). Every rank
metric is monotone in the OOD scores, so the AUROC of the certified row is at most the attacked
row's, which is at most the clean row's (FPR@95 the other way round), and the true worst-case
AUROC lies between the certified and the attacked one.

The order is checked per point on every table, for every pair of rows of one model and detector
whose points are the same probe points. A violation is a bug (an unsound bound, an attack that
left its ball or lost its start point), never a property of a model: it raises
:class:`BracketViolation`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from oodbench.core.detectors import DetectorRef
from oodbench.core.jobs import JobKind
from oodbench.pipeline.score.arrays import point_scores

BRACKET_RTOL = 1e-5
"""Relative slack ``rtol·(1 + |s|)`` of each comparison: the clean pass and the attack evaluate
the same point in float32 in batches of different sizes, so their logits may differ in the last
bits (the certified bounds carry their own outward margin for this)."""

# a Linf ball of radius r holds the L2 and L1 balls of radius r (||d||_inf <= ||d||_2 <= ||d||_1)
_INSIDE_LINF = ("Linf", "L2", "L1")


class BracketViolation(AssertionError):
    """A point whose scores are out of the order certified >= attacked >= clean: a bug."""


@dataclass(frozen=True)
class Side:
    """One row's per-point scores and what they are: ``clean``, ``attacked`` or ``certified``
    (with the ball's norm and radius for the last two)."""

    label: str
    kind: str
    scores: np.ndarray
    norm: Optional[str] = None
    eps: Optional[float] = None


def _inside(attacked: Side, certified: Side) -> bool:
    """Whether the attacked ball lies inside the certified (Linf) ball."""
    return (attacked.norm in _INSIDE_LINF and certified.norm == "Linf"
            and attacked.eps is not None and certified.eps is not None
            and attacked.eps <= certified.eps)


def check_order(lower: Side, upper: Side, *, where: str = "") -> None:
    """Raise :class:`BracketViolation` if any point of ``lower`` scores above ``upper``."""
    if lower.scores.shape != upper.scores.shape:
        raise BracketViolation(f"{where}: rows {lower.label!r} and {upper.label!r} have "
                               f"{lower.scores.shape} and {upper.scores.shape} points")
    slack = BRACKET_RTOL * (1 + np.abs(upper.scores))
    bad = np.flatnonzero(lower.scores > upper.scores + slack)
    if bad.size:
        i = int(bad[0])
        raise BracketViolation(
            f"{where}: the {lower.kind} row {lower.label!r} scores above the {upper.kind} row "
            f"{upper.label!r} at {bad.size} of {len(bad) and upper.scores.size} points (first: "
            f"point {i}, {lower.scores[i]!r} > {upper.scores[i]!r}); certified >= attacked >= "
            "clean must hold per point: this is a bug in the bound or the attack")


def check_sides(sides: Sequence[Side], *, where: str = "") -> int:
    """Check every ordered pair among the rows of one probe's points; the number checked."""
    clean = [s for s in sides if s.kind == "clean"]
    attacked = [s for s in sides if s.kind == "attacked"]
    certified = [s for s in sides if s.kind == "certified"]
    pairs = [(c, a) for c in clean for a in attacked]
    pairs += [(c, b) for c in clean for b in certified]
    pairs += [(a, b) for a in attacked for b in certified if _inside(a, b)]
    for lower, upper in pairs:
        check_order(lower, upper, where=where)
    return len(pairs)


def side_of(config: Mapping[str, Any], label: str, scores: np.ndarray) -> Optional[Side]:
    """The bracket side of a job from its stored config (None: not part of a bracket, e.g. an
    attack on in-distribution points or one that lowers the score)."""
    from oodbench.core.registry import attacks
    from oodbench.pipeline.score.rows import RowKind

    kind = JobKind.of(config)
    if kind is JobKind.PROBE:
        return Side(label, "clean", scores)
    if kind is not JobKind.ATTACK:
        return None
    spec = config.get("attack") or {}
    attack = attacks.get(str(spec.get("name")))()
    threat = spec.get("threat") or {}
    if attack.source != "probe" or RowKind(attack.row) is not RowKind.OOD or attack.lowers_score:
        return None
    return Side(label, "certified" if attack.certifies else "attacked", scores,
                threat.get("norm"), threat.get("eps"))


def check_table(scorer: Any, rows: Sequence[Any]) -> int:
    """Check the bracket on every OOD row of a scored table (``rows``: the plan's
    :class:`~oodbench.pipeline.plan.jobs.Row`\\ s, ``scorer``: its
    :class:`~oodbench.pipeline.score.table.TableScorer`); the number of row pairs checked."""
    from oodbench.pipeline.score.rows import RowKind

    groups: dict[tuple[str, ...], list[Side]] = {}
    for row in rows:
        if row.kind is not RowKind.OOD:
            continue
        record = scorer.store.job_record(row.points)
        if record is None:
            continue
        config = record.config
        inputs = scorer.inputs(kind=row.kind, points=row.points, reference=row.reference,
                               detector=row.detector_spec, fit=row.fit)
        scores = point_scores(inputs.detector, inputs.arrays, inputs.fit)
        side = side_of(config, row.label, scores)
        if side is None:
            continue
        key = (row.model, DetectorRef.of(row.detector_spec).key, row.reference,
               json.dumps(config.get("probe"), sort_keys=True))
        groups.setdefault(key, []).append(side)
    checked = 0
    for (model, detector, _, _), sides in groups.items():
        checked += check_sides(sides, where=f"{model} · {json.loads(detector)['name']}")
    return checked
