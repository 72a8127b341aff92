"""The names of a job's stored arrays, so that no stage spells ``"logits"`` or ``"mask"``.

The store keeps a job's outputs as named numpy arrays (any metric can be recomputed from them,
and attack-specific arrays such as the α-scaling curves sit beside the common ones). The names
every stage shares are the members of :class:`ArrayKey`;
:class:`~oodbench.pipeline.score.arrays.PointArrays` reads them.
"""

from __future__ import annotations

from enum import Enum


class ArrayKey(str, Enum):
    """Names of the arrays that more than one stage reads."""

    LOGITS = "logits"                  # (N, K) float32: the model's outputs on the (attacked) points
    LABELS = "labels"                  # (N,) int64: true labels, where the points have them
    FEATURES = "features"              # (N, D) float32: penultimate features (feature detectors)
    MASK = "mask"                      # (N,) bool: which points count on an OOD row
    STOPPED_EARLY = "stopped_early"    # (N,) bool: attack finished before its full budget
    GRADIENT_EVALUATIONS = "gradient_evaluations"  # () int: work an attack did (additive)
    MEMBER = "member"                  # (N,) int8: ensemble member whose iterate is reported (-1: clean)
    MEMBER_SCORES = "member_scores"    # (N, M) float64: each member's best score (NaN: not run)
    SCORE_UPPER = "score_upper"        # (N,) float64: certified upper bound of the row's score


#: Arrays that are totals over points: shards of one job add up instead of concatenating.
ADDITIVE = frozenset({ArrayKey.GRADIENT_EVALUATIONS.value})

__all__ = ["ADDITIVE", "ArrayKey"]
