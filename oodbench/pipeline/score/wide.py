"""A run's metrics as one wide table: rows of models (× detectors) × probes, one column per metric.

This is the shape a run hands back (:meth:`oodbench.pipeline.run.RunResult.table`,
:func:`oodbench.pipeline.run.evaluate`) and every report starts from, so it sits with scoring, below
both; how it is printed is the report's business (:mod:`oodbench.report.tables`).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import pandas as pd

from oodbench.pipeline.score.groups import with_group_rows
from oodbench.pipeline.score.labels import folds


def has_detector_axis(long: pd.DataFrame) -> bool:
    """:func:`~oodbench.pipeline.score.labels.folds` for a long metrics frame."""
    return "detector" in long.columns and folds(long["detector"])


def wide_table(long: pd.DataFrame, metric_order: Optional[Sequence[str]] = None,
               groups: Optional[Mapping[str, str]] = None) -> pd.DataFrame:
    """models × (detectors ×) probes rows, one column per metric, in the order the suite lists
    them; the detector level appears when a detector other than msp was asked. ``groups``
    (``{probe label: group}``) adds each group's row after the per-set rows
    (:func:`oodbench.pipeline.score.groups.with_group_rows`)."""
    if long.empty:
        return pd.DataFrame()
    long = with_group_rows(long, groups or {})
    levels = ["model", "detector", "probe"] if has_detector_axis(long) else ["model", "probe"]
    if "detector" in long.columns and len(levels) == 2:
        long = long.drop(columns="detector")
    orders = [list(dict.fromkeys(long[level])) for level in levels]
    table = long.pivot_table(index=levels, columns="metric", values="value",
                             aggfunc="first", dropna=False)
    table = table.reindex(pd.MultiIndex.from_product(orders, names=levels))
    order = list(metric_order or []) + list(dict.fromkeys(long["metric"]))
    cols = [m for m in dict.fromkeys(order) if m in table.columns]
    return table[cols].dropna(how="all")


__all__ = ["has_detector_axis", "wide_table"]
