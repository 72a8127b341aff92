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
from typing import Mapping, Sequence

import numpy as np

from oodbench.metrics import MetricInput, UndefinedMetricWarning, compute_metrics
from oodbench.score.arrays import PointArrays, ood_logits
from oodbench.score.rows import RowKind

DEFAULT_RESAMPLES = 1000


def bootstrap_intervals(kind: RowKind, arrays: Mapping[str, np.ndarray],
                        clean: Mapping[str, np.ndarray], metric_names: Sequence[str], *,
                        level: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES,
                        seed: int = 0) -> dict[str, tuple[float, float]]:
    """``{metric: (low, high)}``: the ``level`` percentile bootstrap interval of each metric of
    the row (summary rows have none). Metrics undefined on a resample are left out of it."""
    if not 0 < level < 1:
        raise ValueError(f"the interval's level must be between 0 and 1, got {level!r}")
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be at least 2, got {n_resamples!r}")
    kind = RowKind(kind)
    if kind is RowKind.SUMMARY:
        return {}
    rng = np.random.default_rng(seed)
    reference = PointArrays.of(arrays if kind is RowKind.IN_DISTRIBUTION else clean)
    out = None if kind is RowKind.IN_DISTRIBUTION else ood_logits(arrays)
    row = "in" if kind is RowKind.IN_DISTRIBUTION else "probe"
    n_in = len(reference.logits)
    samples: dict[str, list[float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for _ in range(n_resamples):
            i = rng.integers(0, n_in, n_in)
            o = None if out is None else out[rng.integers(0, len(out), len(out))]
            inp = MetricInput(in_logits=reference.logits[i],
                              in_labels=None if reference.labels is None else reference.labels[i],
                              out_logits=o, seed=seed)
            for name, value in compute_metrics(list(metric_names), inp, row=row).items():
                samples.setdefault(name, []).append(value)
    tail = (1 - level) / 2 * 100
    intervals = {}
    for name, values in samples.items():
        finite = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
        if finite.size:
            low, high = np.percentile(finite, [tail, 100 - tail])
            intervals[name] = (float(low), float(high))
    return intervals
