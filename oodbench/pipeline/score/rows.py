"""One table row's metric values from stored arrays (see :mod:`oodbench.pipeline.score`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import numpy as np

from oodbench.core.jobs import JobKind
from oodbench.core.rows import MetricScope, RowKind
from oodbench.metrics import MetricInput, compute_metrics
from oodbench.pipeline.score.arrays import PointArrays, holds_bounds, ood_logits, ood_scores

if TYPE_CHECKING:  # pragma: no cover (annotations only; a downward import)
    from oodbench.attacks.base import Attack
    from oodbench.detectors import Detector


def score_row(kind: RowKind, arrays: Mapping[str, np.ndarray], clean: Mapping[str, np.ndarray],
              metric_names: Sequence[str], *, seed: int,
              attack: Optional["Attack"] = None, detector: Optional["Detector"] = None,
              fit: Optional[Mapping[str, np.ndarray]] = None,
              versus: Optional[Mapping[str, np.ndarray]] = None,
              clean_scores: Optional[np.ndarray] = None) -> dict[str, float]:
    """The metric values of one row. ``clean``: the model's clean in-distribution arrays, which
    OOD rows are ranked against; ``attack``: the registered attack of a summary row;
    ``detector`` (default msp) and its ``fit`` arrays: the score the rank metrics order;
    ``versus``: the OOD side of an attacked in-distribution row; ``clean_scores``: the
    detector's scores of ``clean`` when the caller has them already (a cache)."""
    kind = RowKind(kind)
    if kind is RowKind.SUMMARY:
        if attack is None:
            raise ValueError("a summary row is scored by its attack; none was given")
        return attack.summarize(dict(arrays))
    if kind is RowKind.IN_DISTRIBUTION:
        points = PointArrays.of(arrays)
        if points.labels is None:
            raise ValueError("an in-distribution row needs the points' labels")
        inp = MetricInput(in_logits=points.logits, in_labels=points.labels, seed=seed)
        return compute_metrics(list(metric_names), inp, row=kind)
    own = detector is not None  # None: the metrics' own default, msp's score of the logits
    if kind is RowKind.IN_ATTACKED:
        if versus is None:
            raise ValueError("an attacked in-distribution row needs its OOD side (versus)")
        inside, outside = arrays, versus
        in_scores = None if not own else detector.scores(inside, fit)  # type: ignore[union-attr]
    else:
        inside, outside = clean, arrays
        in_scores = (None if not own else clean_scores if clean_scores is not None
                     else detector.scores(inside, fit))  # type: ignore[union-attr]
    reference = PointArrays.of(inside)
    if reference.labels is None:
        raise ValueError("the in-distribution side of a row needs its points' labels")
    out_scores = None if not own else ood_scores(detector, outside, fit)  # type: ignore[arg-type]
    inp = MetricInput(in_logits=reference.logits, in_labels=reference.labels,
                      out_logits=ood_logits(outside), seed=seed, in_scores=in_scores,
                      out_scores=out_scores)
    values = compute_metrics(list(metric_names), inp, row=kind)
    ranked = rank_metrics(list(metric_names), outside)
    return {name: value if name in ranked else float("nan") for name, value in values.items()}


def rank_metrics(names: Sequence[str], outside: Mapping[str, np.ndarray]) -> list[str]:
    """The metrics a row computes: all of ``names``, except on a certified row (stored score
    bounds, :func:`~oodbench.pipeline.score.arrays.holds_bounds`), which has rank metrics only: it has
    no confidences of real inputs to average (MMC is NaN there)."""
    if not holds_bounds(outside):
        return list(names)
    from oodbench.core.registry import metrics

    return [n for n in names if metrics.get(n).scope is MetricScope.PROBE]


def row_of_job(config: Mapping[str, object]) -> tuple[RowKind, Optional["Attack"]]:
    """How the row of a stored job is scored, from the job's config: a clean pass like the
    in-distribution set, a probe like an OOD set, an attack as its registered class declares
    (the attack is returned for summary rows). Raises ``UnknownNameError`` for an attack that
    is not registered here."""
    kind = JobKind.of(config)
    if kind is JobKind.CLEAN:
        return RowKind.IN_DISTRIBUTION, None
    if kind is not JobKind.ATTACK:
        return RowKind.OOD, None
    from oodbench.core.registry import attacks

    attack_config = config.get("attack")
    name = attack_config.get("name") if isinstance(attack_config, Mapping) else None
    attack = attacks.get(str(name))()
    return RowKind(attack.row), attack
