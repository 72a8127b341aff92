"""How a row scored by a detector is labelled: one rule for tables, reports, plots and intervals.

A msp-only table looks as it always did (no detector level, plain model names); as soon as a
row is scored by another detector, tables gain a detector level and the paper layouts, plots and
intervals name each column block ``model · detector``.
"""

from __future__ import annotations

from typing import Iterable

from oodbench.core.detectors import DEFAULT_DETECTOR


def folds(detectors: Iterable[str]) -> bool:
    """Whether rows scored by these detectors need a detector axis (any one is not msp)."""
    return any(d != DEFAULT_DETECTOR for d in detectors)


def shown_model(model: str, detector: str, folded: bool) -> str:
    """A row's model label where detectors join it (``lenet · energy``) when ``folded``."""
    return f"{model} · {detector}" if folded else model
