"""The typed view of a job's stored arrays, so that no stage spells ``"logits"`` or ``"mask"``.

The store keeps a job's outputs as named numpy arrays (any metric can be recomputed from them,
and attack-specific arrays such as the α-scaling curves sit beside the common ones). The names
every stage shares are the members of :class:`ArrayKey`; :class:`PointArrays` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Mapping, Optional, Protocol

import numpy as np


class Scorer(Protocol):
    """What :func:`point_scores` needs of a detector (the detectors import this module)."""

    def scores(self, arrays: Mapping[str, np.ndarray],
               fit: Optional[Mapping[str, np.ndarray]] = None) -> np.ndarray: ...


class ArrayKey(str, Enum):
    """Names of the arrays that more than one stage reads."""

    LOGITS = "logits"                  # (N, K) float32: the model's outputs on the (attacked) points
    LABELS = "labels"                  # (N,) int64: true labels, where the points have them
    FEATURES = "features"              # (N, D) float32: penultimate features (feature detectors)
    MASK = "mask"                      # (N,) bool: which points count on an OOD row
    STOPPED_EARLY = "stopped_early"    # (N,) bool: attack finished before its full budget
    GRADIENT_EVALUATIONS = "gradient_evaluations"  # () int: work an attack did (additive)
    SCORE_UPPER = "score_upper"        # (N,) float64: certified upper bound of the row's score


#: Arrays that are totals over points: shards of one job add up instead of concatenating.
ADDITIVE = frozenset({ArrayKey.GRADIENT_EVALUATIONS.value})


@dataclass(frozen=True)
class PointArrays:
    """A job's per-point outputs; ``extra`` holds the attack-specific arrays."""

    logits: np.ndarray
    labels: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray]) -> "PointArrays":
        mask = arrays.get(ArrayKey.MASK.value)
        return cls(logits=arrays[ArrayKey.LOGITS.value], labels=arrays.get(ArrayKey.LABELS.value),
                   mask=None if mask is None else np.asarray(mask).astype(bool))


def ood_logits(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """The logits of the points that count on an OOD row (all of them unless a mask is stored)."""
    points = PointArrays.of(arrays)
    return points.logits if points.mask is None else points.logits[points.mask]


def point_scores(detector: Scorer, arrays: Mapping[str, np.ndarray],
                 fit: Optional[Mapping[str, np.ndarray]]) -> np.ndarray:
    """The detector's scores of a job's points; a ``certified`` job's stored upper bounds of the
    score instead (its points are balls, not inputs)."""
    bound = arrays.get(ArrayKey.SCORE_UPPER.value)
    return (np.asarray(bound, dtype=np.float64) if bound is not None
            else detector.scores(arrays, fit))


def ood_scores(detector: Scorer, arrays: Mapping[str, np.ndarray],
               fit: Optional[Mapping[str, np.ndarray]]) -> np.ndarray:
    """:func:`point_scores` of the points that count on an OOD row."""
    scores = point_scores(detector, arrays, fit)
    mask = PointArrays.of(arrays).mask
    return scores if mask is None else scores[mask]


def holds_bounds(arrays: Mapping[str, np.ndarray]) -> bool:
    """Whether a job's points are certified score bounds (no confidences of real inputs)."""
    return ArrayKey.SCORE_UPPER.value in arrays
