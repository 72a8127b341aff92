"""The typed view of a job's stored arrays, so that no stage spells ``"logits"`` or ``"mask"``.

The store keeps a job's outputs as named numpy arrays (any metric can be recomputed from them,
and attack-specific arrays such as the α-scaling curves sit beside the common ones). The names
every stage shares are the members of :class:`~oodbench.core.arrays.ArrayKey` (defined in the
bottom layer, so that detectors and the store read them too); :class:`PointArrays` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Protocol

import numpy as np

from oodbench.core.arrays import ADDITIVE, ArrayKey  # noqa: F401 (defined in the bottom layer)


class Scorer(Protocol):
    """What :func:`point_scores` needs of a detector (the detectors import this module)."""

    def scores(self, arrays: Mapping[str, np.ndarray],
               fit: Optional[Mapping[str, np.ndarray]] = None) -> np.ndarray: ...


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
