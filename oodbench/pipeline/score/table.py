"""Scoring a whole table from the store: each row's recipe (which jobs, which detector) in, its
metric values out. ``run`` scores a plan's :class:`~oodbench.pipeline.plan.jobs.Row`\\ s with it, and
``verify`` the recipes stored beside the metrics, so both compute every number the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import numpy as np

from oodbench.core.detectors import DetectorRef
from oodbench.pipeline.score.rows import RowKind, row_of_job, score_row

if TYPE_CHECKING:  # pragma: no cover
    from oodbench.detectors import Detector
    from oodbench.pipeline.store import ResultStore


@dataclass(frozen=True)
class RowInputs:
    """One row's arrays and scorer, as :func:`~oodbench.pipeline.score.score_row` and
    :func:`~oodbench.pipeline.score.bootstrap_intervals` take them."""

    kind: RowKind
    arrays: Mapping[str, np.ndarray]
    clean: Mapping[str, np.ndarray]
    detector: "Detector"
    fit: Optional[Mapping[str, np.ndarray]]
    versus: Optional[Mapping[str, np.ndarray]]
    attack: Any = None
    clean_scores: Optional[np.ndarray] = None


class MissingArraysError(LookupError):
    """A job a row is scored from is not (completely) in the store."""


class TableScorer:
    """Scores rows from one open store; each job's arrays, each detector and each detector's
    clean in-distribution scores are read or computed once per table, not once per row."""

    def __init__(self, store: "ResultStore", metrics: Sequence[str], seed: int):
        self.store, self.metrics, self.seed = store, list(metrics), seed
        self._arrays: dict[str, Mapping[str, np.ndarray]] = {}
        self._detectors: dict[str, "Detector"] = {}
        self._clean_scores: dict[tuple[Optional[str], ...], np.ndarray] = {}

    def arrays(self, key: str) -> Mapping[str, np.ndarray]:
        if key not in self._arrays:
            arrays = self.store.get_job(key)
            if arrays is None:
                raise MissingArraysError(f"job {key[:12]} is not complete in {self.store.path}")
            self._arrays[key] = arrays
        return self._arrays[key]

    def detector(self, spec: Union[DetectorRef, Mapping[str, Any]]) -> "Detector":
        """The detector of a row (a reference, or a stored recipe's plain ``detector``)."""
        from oodbench.detectors import build_detector

        ref = DetectorRef.of(spec)
        if ref.key not in self._detectors:
            self._detectors[ref.key] = build_detector(ref.name, ref.params)
        return self._detectors[ref.key]

    def reference(self, reference: str, extra: Sequence[str] = ()) -> Mapping[str, np.ndarray]:
        """The in-distribution side of a row: the ``reference`` job's arrays, with the points of
        the ``extra`` jobs after them (full spectrum: the covariate-shifted sets)."""
        if not extra:
            return self.arrays(reference)
        parts = [self.arrays(key) for key in (reference, *extra)]
        shared = [k for k in parts[0] if all(k in p and np.ndim(p[k]) >= 1 for p in parts)]
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in shared}

    def inputs(self, *, kind: RowKind, points: str, reference: str,
               detector: Union[DetectorRef, Mapping[str, Any]],
               fit: Optional[str] = None, versus: Optional[str] = None,
               extra_references: Sequence[str] = ()) -> RowInputs:
        """Everything a row is scored from, read from the store (the fields are a
        :class:`~oodbench.pipeline.plan.jobs.Row`'s, or the recipe stored beside its metrics)."""
        kind = RowKind(kind)
        det = self.detector(detector)
        fit_arrays = None if fit is None else self.arrays(fit)
        attack = None
        if kind is RowKind.SUMMARY:
            record = self.store.job_record(points)
            _, attack = row_of_job(record.config if record is not None else {})
        clean = self.reference(reference, tuple(extra_references))
        clean_scores = None
        if kind is RowKind.OOD:
            cache = (DetectorRef.of(detector).key, reference, fit, *extra_references)
            if cache not in self._clean_scores:
                self._clean_scores[cache] = det.scores(clean, fit_arrays)
            clean_scores = self._clean_scores[cache]
        return RowInputs(kind, self.arrays(points), clean, det, fit_arrays,
                         None if versus is None else self.arrays(versus), attack, clean_scores)

    def score(self, **recipe: Any) -> dict[str, float]:
        """The metric values of one row (keywords as for :meth:`inputs`)."""
        row = self.inputs(**recipe)
        return score_row(row.kind, row.arrays, row.clean, self.metrics, seed=self.seed,
                         attack=row.attack, detector=row.detector, fit=row.fit,
                         versus=row.versus, clean_scores=row.clean_scores)
