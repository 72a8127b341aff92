"""How a table of metrics is shown: as plain text on the terminal, and with the detector folded
into a label where a layout has no detector axis (the report's layouts, the leaderboard)."""

from __future__ import annotations

import pandas as pd

from oodbench.pipeline.score.groups import COUNTS, count_text
from oodbench.pipeline.score.labels import shown_model
from oodbench.pipeline.score.wide import has_detector_axis


def fold_detectors(long: pd.DataFrame, into: str = "model") -> pd.DataFrame:
    """``long`` without a detector column: for a table with a detector axis the detector joins
    the ``model`` label (``lenet · energy``: the paper layouts then compare detectors as they
    compare models) or the ``probe`` label (a leaderboard entry is one checkpoint); a msp-only
    table keeps its labels as they always were."""
    if "detector" not in long.columns:
        return long
    if has_detector_axis(long):
        long = long.assign(**{into: [shown_model(v, d, True) for v, d in zip(long[into], long["detector"])]})
    return long.drop(columns="detector")


def format_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A plain-text table for the terminal; empty cells (metric not defined for the row) as '-',
    counts (the unit-tests row's) as integers."""
    counts = {c: (lambda v: "-" if pd.isna(v) else count_text(v)) for c in table.columns if c in COUNTS}
    return table.to_string(float_format=lambda v: f"{v:.{digits}f}", na_rep="-", formatters=counts)


__all__ = ["fold_detectors", "format_table"]
