"""What every layout shares: the format-free :class:`Table` the templates render, and the rules
for numbers (precision, percent: :class:`Numbers`), bolding the best (:func:`mark_best`) and the
notes under a table (:func:`finish_table`: flagged rows, paper values). A layout module builds
its rows from these; the per-format templates only lay the structure out.

Bold marks the best value per row (and metric) across models, judged on the printed (rounded)
values, so equal-looking numbers are all bold; with a single model nothing is bolded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from oodbench.core.detectors import DEFAULT_DETECTOR
from oodbench.models.libraries.preprocessing import override_notes
from oodbench.report.data import RunData
from oodbench.report.protocols import protocol_notes
from oodbench.report.references import References
from oodbench.pipeline.score.groups import COUNTS, FAILED, count_text

Layout = Callable[[list[RunData], "Numbers", References], "Table"]
"""A registered layout: the audited runs, how numbers print and the paper values -> a table."""

# Rates the papers print in percent with --percent; everything else (MMC, α, …) stays as is.
_DERIVED_RATES = {"accuracy", "robust-accuracy", "mean-auroc", "mean-worst-case-auroc",
                  "overconfident-share"}
_NOT_RATES = {"mmc"}
_DERIVED_DIRECTION = {"accuracy": True, "robust-accuracy": True, "mean-auroc": True,
                      "mean-worst-case-auroc": True, FAILED: False}


def _registered_meta(metric: str) -> Optional[dict]:
    from oodbench.core.registry import UnknownNameError, metrics

    try:
        return metrics.meta(metric)
    except UnknownNameError:
        return None


def higher_is_better(metric: str) -> Optional[bool]:
    """Direction of a metric; None for names that are not registered metrics (no bolding)."""
    if metric in _DERIVED_DIRECTION:
        return _DERIVED_DIRECTION[metric]
    meta = _registered_meta(metric)
    return None if meta is None else bool(meta["higher_is_better"])


def is_rate(metric: str) -> bool:
    """A share in [0, 1] that ``percent`` prints ×100 (AUROC, FPR@95, errors, ECE; not MMC)."""
    if metric in _NOT_RATES:
        return False
    return metric in _DERIVED_RATES or _registered_meta(metric) is not None


@dataclass(frozen=True)
class Numbers:
    """How numbers print: ``precision`` decimals; with ``percent`` rates are ×100, and values that
    stay fractions (MMC) get two more decimals, so every column has the same resolution."""

    precision: int = 3
    percent: bool = False
    ci_style: str = "pm"  # "pm": 97.3 ± 0.4 (half the interval's width); "interval": 97.3 [96.9, 97.7]

    def scaled(self, metric: str, value: float) -> float:
        return value * 100.0 if self.percent and is_rate(metric) else value

    def decimals(self, metric: str) -> int:
        return self.precision + (2 if self.percent and not is_rate(metric) else 0)

    def text(self, metric: str, value: Optional[float]) -> str:
        if value is None:
            return "-"
        if metric in COUNTS:  # the unit-tests row: how many tests fail, an integer
            return count_text(value)
        return f"{self.scaled(metric, value):.{self.decimals(metric)}f}"

    def with_interval(self, metric: str, value: Optional[float],
                      interval: Optional[tuple[float, float]]) -> str:
        """The value and its bootstrap interval, as ``ci_style`` says."""
        text = self.text(metric, value)
        if value is None or interval is None:
            return text
        low, high = (self.scaled(metric, v) for v in interval)
        digits = self.decimals(metric)
        if self.ci_style == "interval":
            return f"{text} [{low:.{digits}f}, {high:.{digits}f}]"
        return f"{text} \u00b1 {(high - low) / 2:.{digits}f}"

    def rounded(self, metric: str, value: Optional[float]) -> Optional[float]:
        return None if value is None else round(self.scaled(metric, value), self.decimals(metric))

    def difference(self, metric: str, measured: float, reported: float) -> str:
        """printed measured − printed reported (so the printed numbers add up), signed, with a
        real minus sign (U+2212)."""
        diff = round(self.rounded(metric, measured) - self.rounded(metric, reported), self.decimals(metric))
        text = f"{diff + 0.0:+.{self.decimals(metric)}f}"
        return text.replace("-", "\u2212")


@dataclass
class Cell:
    text: str = "-"
    bold: bool = False
    ref: Optional[str] = None  # "paper 0.998, −0.026"
    key: Optional[float] = None  # the printed value, for choosing the best


@dataclass
class Row:
    label: str
    cells: list[Cell]
    arrow: Optional[str] = None  # "up" (higher is better) or "down"


@dataclass
class Group:
    """A column group header spanning ``span`` value columns, starting at ``start`` (1-based,
    counting the row-label column as column 1, as ``\\cmidrule`` does)."""

    label: str
    span: int
    start: int

    @property
    def end(self) -> int:
        return self.start + self.span - 1


@dataclass
class Block:
    """One in-distribution set: header (optional column groups, column names) and rows."""

    stub: str
    columns: list[str]
    rows: list[Row]
    groups: list[Group] = field(default_factory=list)

    def group_of(self, index: int) -> Optional[Group]:
        """The group over value column ``index`` (0-based), if any (spans may differ)."""
        return next((g for g in self.groups if g.start <= index + 2 <= g.end), None)


@dataclass
class Table:
    caption: str
    legend: str
    label: str
    blocks: list[Block]
    notes: list[str] = field(default_factory=list)

    @property
    def ncols(self) -> int:
        return 1 + max(len(b.columns) for b in self.blocks)


def make_cell(numbers: Numbers, metric: str, value: Optional[float],
              reported: Optional[float] = None,
              interval: Optional[tuple[float, float]] = None) -> Cell:
    cell = Cell(numbers.with_interval(metric, value, interval), key=numbers.rounded(metric, value))
    if reported is not None:
        cell.ref = f"paper {numbers.text(metric, reported)}" + (
            f", {numbers.difference(metric, value, reported)}" if value is not None else "")
    return cell


def mark_best(cells: list[Cell], higher: Optional[bool]) -> None:
    """Bold the best of ``cells`` (all of them when tied); nothing for fewer than two values or
    for a metric without a direction."""
    keys = [c.key for c in cells if c.key is not None]
    if higher is None or len(keys) < 2:
        return
    best = max(keys) if higher else min(keys)
    for c in cells:
        c.bold = c.key is not None and c.key == best


def groups_of(labels: list[str], span: int) -> list[Group]:
    """One column group of ``span`` columns per label, side by side after the row labels."""
    return [Group(label, span, 2 + i * span) for i, label in enumerate(labels)]


def mean(values: list[Optional[float]]) -> Optional[float]:
    """The mean of the values present; None when there are none."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


#: Hein et al.'s three columns per model, (metric, header); the detectors layout reuses headers.
TABLE1 = (("mmc", "MMC"), ("auroc", "AUROC"), ("fpr95", "FPR@95"))


FLAG_MARK = "\u2020"
"""Marks the label of a row whose job a trust check flagged (:mod:`oodbench.checks`); the notes
under the table list each flag."""


def _flag_rows(runs: list[RunData], blocks: list[Block]) -> list[str]:
    """Mark flagged rows (a model's own flags mark its in-distribution row) and return the
    notes that list the flags; a run without flags changes nothing."""
    flagged = {f.row or run.in_label for run in runs for f in run.flags}
    for block in blocks:
        for row in block.rows:
            if row.label in flagged:
                row.label = f"{row.label} {FLAG_MARK}"
    several = any(len(f.detectors) > 1 or (f.detectors and f.detectors != (DEFAULT_DETECTOR,))
                  for run in runs for f in run.flags)
    return [f"{FLAG_MARK} flagged by a trust check, {f.where(several)}: {f.code} ({f.detail})"
            for run in runs for f in run.flags]


def finish_table(runs: list[RunData], layout: str, legend: str, blocks: list[Block],
                 numbers: Numbers, refs: References, notes: Optional[list[str]] = None) -> Table:
    """The table of ``layout``: its blocks and legend, flagged rows marked, and the notes (the
    layout's own, each attacked row's protocol, the flags, preprocessing a suite overrode, where
    the paper values come from) under it."""
    notes = (list(notes or []) + [n for run in runs for n in protocol_notes(run.protocols)]
             + _flag_rows(runs, blocks))
    overrides = {model: o for run in runs for model, o in run.overrides.items()}
    notes += override_notes(overrides)  # the suite's preprocessing, not the library config's
    if numbers.percent:
        legend += "; rates in %"
    if refs:
        legend += "; paper values beside the measured ones (measured \u2212 paper)"
        notes += [f"paper values for {model}: {(card.paper or Path(card.source).name).rstrip('.')}"
                  for model, card in refs.cards.items()]
    return Table(caption="; ".join(r.caption for r in runs), legend=legend,
                 label=f"tab:{'+'.join(r.name for r in runs)}:{layout}", blocks=blocks, notes=notes)
