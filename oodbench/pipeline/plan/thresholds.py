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

from functools import partial
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence

import numpy as np

from oodbench.attacks.base import Attack, AttackSpec
from oodbench.core.detectors import DEFAULT_DETECTOR, DetectorRef
from oodbench.detectors import build_detector
from oodbench.metrics import settled_above
from oodbench.pipeline.score import ArrayKey
from oodbench.pipeline.score.arrays import ADDITIVE

if TYPE_CHECKING:  # pragma: no cover
    from oodbench.pipeline.store import ResultStore

Scores = Callable[[Mapping[str, np.ndarray]], np.ndarray]
"""A detector's float64 scores of stored arrays (what the metrics rank)."""


class Thresholds:
    """Each attack job's early-stop threshold and score function, for the planner and the
    driver alike. The clean in-distribution scores a threshold comes from are computed once per
    (detector, clean job, fit job) and reused by every probe that attacks that detector (for a
    feature detector they cost a pass over the fit bank)."""

    def __init__(self, store: "ResultStore", metrics: Sequence[str]):
        self.store, self.metrics = store, list(metrics)
        self._clean: dict[tuple[str, str, Optional[str]], np.ndarray] = {}

    def scores(self, detector: Optional[DetectorRef],
               fit_key: Optional[str]) -> Optional[Scores]:
        """The scores of stored arrays by ``detector`` (None: msp) with its fit, or None while
        the fit job is not stored."""
        fit = None if fit_key is None else self.store.get_job(fit_key)
        if fit_key is not None and fit is None:
            return None
        ref = DetectorRef.of(detector)
        det = build_detector(ref.name, ref.params)
        return partial(det.scores, fit=fit)

    def needed(self, attack: Attack, spec: AttackSpec, detector: Optional[DetectorRef],
               reference: str, fit_key: Optional[str]
               ) -> Optional[tuple[Optional[float], Optional[Scores]]]:
        """``(threshold, scores)`` for an attack job (threshold None: no early stop; scores None:
        none needed), or None while its clean or fit job is not stored."""
        if not attack.supports_early_stop or spec.early_stop is False:
            return None, None
        scores = self.scores(detector, fit_key)
        clean = self.clean_scores(detector, reference, fit_key)
        if scores is None or clean is None:
            return None
        msp = DetectorRef.of(detector).name == DEFAULT_DETECTOR
        return needed_threshold(attack, spec, self.metrics, clean, msp=msp), scores

    def clean_scores(self, detector: Optional[DetectorRef], reference: str,
                     fit_key: Optional[str]) -> Optional[np.ndarray]:
        """``detector``'s scores of the clean job ``reference`` (once), or None if not stored."""
        key = (DetectorRef.of(detector).key, reference, fit_key)
        if key not in self._clean:
            scores = self.scores(detector, fit_key)
            clean = self.store.get_job(reference)
            if scores is None or clean is None:
                return None
            self._clean[key] = scores(clean)
        return self._clean[key]


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
