"""Bootstrap confidence intervals of a row's metrics, from the stored arrays alone.

A benchmark number without its uncertainty invites reading noise as progress: an AUROC of 0.962
against 0.958 on 1,000 OOD points may be no difference at all. The interval is computed from the
stored per-point arrays (never by re-running a model) by resampling *both* sides with
replacement — the in-distribution points and the OOD points, independently, since both are
samples — and taking the percentile interval of the metric over the resamples.

The resampling is seeded and its order is part of the contract (tests reproduce it by hand):
``rng = numpy.random.default_rng(seed)``; for each resample, first the in-distribution indices
``rng.integers(0, n_in, n_in)``, then (OOD rows) the OOD indices ``rng.integers(0, n_out, n_out)``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import numpy as np

from oodbench.metrics import MetricInput, UndefinedMetricWarning, compute_metrics
from oodbench.pipeline.score.arrays import PointArrays, ood_logits, ood_scores
from oodbench.pipeline.score.rows import RowKind, rank_metrics

if TYPE_CHECKING:  # pragma: no cover
    from oodbench.detectors import Detector

DEFAULT_RESAMPLES = 1000


def bootstrap_intervals(kind: RowKind, arrays: Mapping[str, np.ndarray],
                        clean: Mapping[str, np.ndarray], metric_names: Sequence[str], *,
                        level: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES,
                        seed: int = 0, detector: Optional["Detector"] = None,
                        fit: Optional[Mapping[str, np.ndarray]] = None,
                        versus: Optional[Mapping[str, np.ndarray]] = None
                        ) -> dict[str, tuple[float, float]]:
    """``{metric: (low, high)}``: the ``level`` percentile bootstrap interval of each metric of
    the row (summary rows have none). Metrics undefined on a resample are left out of it.
    ``detector``, ``fit``, ``versus``: as for :func:`oodbench.pipeline.score.score_row`; each side's
    detector scores are computed once and resampled with its points."""
    if not 0 < level < 1:
        raise ValueError(f"the interval's level must be between 0 and 1, got {level!r}")
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be at least 2, got {n_resamples!r}")
    kind = RowKind(kind)
    if kind is RowKind.SUMMARY:
        return {}
    return percentile_intervals(bootstrap_samples(
        kind, arrays, clean, metric_names, n_resamples=n_resamples, seed=seed, detector=detector,
        fit=fit, versus=versus), level)


def bootstrap_samples(kind: RowKind, arrays: Mapping[str, np.ndarray],
                      clean: Mapping[str, np.ndarray], metric_names: Sequence[str], *,
                      n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                      detector: Optional["Detector"] = None,
                      fit: Optional[Mapping[str, np.ndarray]] = None,
                      versus: Optional[Mapping[str, np.ndarray]] = None) -> dict[str, list[float]]:
    """Each metric's value on each of ``n_resamples`` resamples of the row's points (NaN where
    undefined on a resample), in the documented draw order."""
    kind = RowKind(kind)
    rng = np.random.default_rng(seed)
    inside = arrays if kind in (RowKind.IN_DISTRIBUTION, RowKind.IN_ATTACKED) else clean
    outside = None if kind is RowKind.IN_DISTRIBUTION else versus if kind is RowKind.IN_ATTACKED else arrays
    if kind is RowKind.IN_ATTACKED and versus is None:
        raise ValueError("an attacked in-distribution row needs its OOD side (versus)")
    reference = PointArrays.of(inside)
    out = None if outside is None else ood_logits(outside)
    own = detector is not None and outside is not None
    in_scores = detector.scores(inside, fit) if own else None  # type: ignore[union-attr]
    out_scores = None
    if own:
        assert outside is not None
        out_scores = ood_scores(detector, outside, fit)  # type: ignore[arg-type]
    if outside is not None:
        metric_names = rank_metrics(metric_names, outside)
    n_in = len(reference.logits)
    samples: dict[str, list[float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for _ in range(n_resamples):
            i = rng.integers(0, n_in, n_in)
            j = None if out is None else rng.integers(0, len(out), len(out))
            inp = MetricInput(in_logits=reference.logits[i],
                              in_labels=None if reference.labels is None else reference.labels[i],
                              out_logits=None if out is None else out[j], seed=seed,
                              in_scores=None if in_scores is None else in_scores[i],
                              out_scores=None if out_scores is None else out_scores[j])
            for name, value in compute_metrics(list(metric_names), inp, row=kind).items():
                samples.setdefault(name, []).append(value)
    return samples


def bootstrap_mean_intervals(members: Sequence[Mapping[str, list[float]]], *, level: float = 0.95
                             ) -> dict[str, tuple[float, float]]:
    """The interval of a group row's mean (:mod:`oodbench.pipeline.score.groups`): ``members`` are the
    member rows' :func:`bootstrap_samples` (each set's points resampled); resample ``r`` of the
    mean is the mean of the members' resample ``r``, for each metric every member has."""
    if not members:
        return {}
    sizes = {len(values) for m in members for values in m.values()}
    names = set.intersection(*(set(m) for m in members)) if len(sizes) == 1 else set()
    means = {name: list(np.mean([np.asarray(m[name], dtype=np.float64) for m in members], axis=0))
             for name in sorted(names)}
    return percentile_intervals(means, level)


def percentile_intervals(samples: Mapping[str, Sequence[float]], level: float
                         ) -> dict[str, tuple[float, float]]:
    """The ``level`` percentile interval of each metric's resampled values (finite ones)."""
    tail = (1 - level) / 2 * 100
    intervals = {}
    for name, values in samples.items():
        finite = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
        if finite.size:
            low, high = np.percentile(finite, [tail, 100 - tail])
            intervals[name] = (float(low), float(high))
    return intervals
