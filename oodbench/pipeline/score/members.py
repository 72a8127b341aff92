"""Per-member AUROC of ensemble rows, as AutoAttack prints robust accuracy after each attack.

An ensemble row (:mod:`oodbench.attacks.ensemble`) stores, per point, each member's best score
(NaN where the member did not run: the point was settled before it) and which member found the
reported point. The AUROC *after* member m ranks each point by the best score of the clean point
and of members 1..m against the clean in-distribution scores, so the last value is the row's own
AUROC (up to the float64 rounding of the stored outputs) and the drops show what each member
added. Only OOD rows (noise raised towards the in-distribution) are summarised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from oodbench.metrics import auroc
from oodbench.pipeline.score.arrays import ArrayKey
from oodbench.pipeline.score.rows import RowKind

if TYPE_CHECKING:  # pragma: no cover
    from oodbench.pipeline.score.table import TableScorer
    from oodbench.pipeline.store import ResultStore


@dataclass(frozen=True)
class MemberSummary:
    """One ensemble row: its members, the AUROC after each, and how many points each won."""

    model: str
    detector: str
    probe: str
    members: tuple[str, ...]
    auroc_after: tuple[float, ...]
    won: tuple[int, ...]
    clean_won: int

    def line(self) -> str:
        steps = " → ".join(f"{m} {100 * a:.1f}" for m, a in zip(self.members, self.auroc_after))
        wins = ", ".join(f"{m} {w}" for m, w in zip(self.members, self.won))
        return (f"{self.model} · {self.detector} · {self.probe}: AUROC % after {steps} "
                f"(points won: {wins}, clean {self.clean_won})")


def cumulative_aurocs(clean_scores: np.ndarray, start: np.ndarray,
                      member_scores: np.ndarray) -> list[float]:
    """AUROC after each member: per point the best of ``start`` and members 1..m."""
    best = np.array(start, dtype=np.float64)
    out = []
    for m in range(member_scores.shape[1]):
        best = np.fmax(best, member_scores[:, m])
        out.append(auroc(clean_scores, best))
    return out


def member_summaries(store: "ResultStore", run_id: int, scorer: "TableScorer"
                     ) -> list[MemberSummary]:
    """Every ensemble row of run ``run_id`` (those whose attack stored member scores)."""
    out: list[MemberSummary] = []
    seen: set[tuple[str, str, str]] = set()
    for row in store.metric_rows(run_id):
        recipe = row.recipe
        name = (row.model, row.detector, row.probe or "")
        if recipe is None or name in seen or RowKind(recipe.get("kind")) is not RowKind.OOD:
            continue
        seen.add(name)
        summary = _summary(store, scorer, recipe, name)
        if summary is not None:
            out.append(summary)
    return out


def _summary(store: "ResultStore", scorer: "TableScorer", recipe: dict,
             name: tuple[str, str, str]) -> Optional[MemberSummary]:
    record = store.job_record(recipe["points"])
    members = ((record.config.get("attack") or {}).get("members") if record else None) or []
    if not members:
        return None
    inputs = scorer.inputs(**recipe)
    arrays = inputs.arrays
    if ArrayKey.MEMBER_SCORES.value not in arrays or inputs.clean_scores is None:
        return None
    scores = np.asarray(arrays[ArrayKey.MEMBER_SCORES.value], dtype=np.float64)
    winner = np.asarray(arrays[ArrayKey.MEMBER.value])
    # the clean point's score: where no member won, the reported score is the clean one; a
    # member's run starts from (and keeps) the clean point, so its score bounds it from above
    start = np.where(winner < 0, inputs.detector.scores(arrays, inputs.fit), -np.inf)
    names = tuple(m["name"] for m in members)
    return MemberSummary(*name, names, tuple(cumulative_aurocs(inputs.clean_scores, start, scores)),
                         tuple(int((winner == m).sum()) for m in range(len(names))),
                         int((winner < 0).sum()))


__all__ = ["MemberSummary", "cumulative_aurocs", "member_summaries"]
