"""Early-stop thresholds: which stored attack points serve a run, and which must be attacked again.

An attack that may stop early stops a point once it is *settled* for every metric asked (its
score is above :func:`oodbench.metrics.settled_above`, in the attacked detector's score units),
which depends on the clean in-distribution scores. The threshold is therefore not part of the job's key; each stored shard
records the threshold it ran with. A shard stopped at threshold ``t`` (or not stopped, ``None``)
is exact for any run that needs ``t' <= t``: its stopped points are above ``t >= t'`` and the
others got the full budget. A run that needs a stricter ``t' > t`` (or the full attack) attacks
again only the points that stopped without being settled for ``t'``; with per-point random
streams they follow the very trajectory a fresh run would, so the arrays are the same.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from oodbench.attacks.base import Attack, AttackSpec
from oodbench.metrics import settled_above
from oodbench.score import ArrayKey
from oodbench.score.arrays import ADDITIVE

Scores = Callable[[Mapping[str, np.ndarray]], np.ndarray]
"""A detector's float64 scores of stored arrays (what the metrics rank)."""


def needed_threshold(attack: Attack, spec: AttackSpec, metrics: Sequence[str],
                     score_in: np.ndarray, *, msp: bool = True) -> Optional[float]:
    """The threshold this run's metrics allow the attack to stop at (None: no early stop), from
    the detector's clean in-distribution scores; ``msp``: whether the detector is msp."""
    if not attack.supports_early_stop or spec.early_stop is False:
        return None
    return settled_above(list(metrics), score_in, msp=msp)


def is_exact(stored: Optional[float], needed: Optional[float]) -> bool:
    """Whether a shard that ran with threshold ``stored`` serves a run that needs ``needed``."""
    return stored is None or (needed is not None and needed <= stored)


def points_to_reattack(arrays: Mapping[str, np.ndarray], stored: Optional[float],
                       needed: Optional[float], scores: Scores) -> np.ndarray:
    """Positions (within the shard) of the points to attack again; empty when it is exact.
    A point stays settled when its score, as the metrics compute it, is above ``needed``."""
    if is_exact(stored, needed):
        return np.zeros(0, dtype=np.int64)
    stopped = np.asarray(arrays[ArrayKey.STOPPED_EARLY.value]).astype(bool)
    if needed is not None:
        stopped &= ~(scores(arrays) > needed)
    return np.flatnonzero(stopped)


def merge_reattacked(stored: Mapping[str, np.ndarray], positions: np.ndarray,
                     fresh: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The shard's arrays with the re-attacked points' rows replaced; totals add up."""
    out = {k: np.array(v, copy=True) for k, v in stored.items()}
    for key, value in fresh.items():
        if key in ADDITIVE:
            out[key] = (out[key] + value).astype(out[key].dtype)
        else:
            out[key][positions] = value
    return out
