"""Table layouts: from classified runs to a format-free :class:`Table` the templates render.

A layout decides rows, columns, which numbers go where and which are best; formatting a number
(precision, percent) and bolding the best are shared rules (:class:`Numbers`, :func:`mark_best`),
and the per-format templates only lay the structure out. Layouts:

``hein2019-table1``
    Hein et al. (CVPR 2019), Table 1: per model a column group MMC / AUROC / FPR@95 headed with
    its test error; rows: the in-distribution set (MMC only), clean OOD sets, noise, then the
    attack rows scored as OOD (adversarial noise, adversarial samples, worst-case), each group
    in suite order. Best per OOD row and metric in bold (lowest MMC and FPR@95, highest AUROC);
    the in-distribution row is not bolded. Robust-accuracy and summary rows are left out.
``ratio-summary``
    Augustin et al. (ECCV 2020), Table 1: rows = accuracy ↑, robust accuracy ↑ (one per attack
    scored like the test set, e.g. AutoAttack: 1 − its test error), ECE ↓ (``ece-ts`` when
    stored, else ``ece``), mean AUROC ↑ over the clean OOD probes, mean worst-case AUROC ↑ over
    the ``worst-case`` rows, mean MMC ↓ over the clean OOD probes; columns = models. Rows
    without data are left out.
``per-probe``
    Augustin et al. (ECCV 2020), Table 5: per OOD set the clean and the worst-case AUROC, per
    model. A ``worst-case`` probe is paired with the clean probe on the same data (data set,
    split, options; the sample count may differ), else with the clean probe ``X`` when it is
    named ``X worst-case``.
``detectors``
    One row per model · detector (the detector issue's comparison): per clean OOD probe its AUROC
    and FPR@95, per attacked row (an attack on the detector's own score, the in-distribution
    side, both) its AUROC. Best per column in bold.

Bold marks the best value per row (and metric) across models, judged on the printed (rounded)
values, so equal-looking numbers are all bold; with a single model nothing is bolded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from oodbench.report.data import CLEAN_OOD, ReportError, RunData
from oodbench.score.groups import FAILED, UNIT_TESTS
from oodbench.report.references import References

LAYOUTS = ("hein2019-table1", "ratio-summary", "per-probe", "detectors")

# Rates the papers print in percent with --percent; everything else (MMC, α, …) stays as is.
_DERIVED_RATES = {"accuracy", "robust-accuracy", "mean-auroc", "mean-worst-case-auroc",
                  "overconfident-share"}
_NOT_RATES = {"mmc"}
_DERIVED_DIRECTION = {"accuracy": True, "robust-accuracy": True, "mean-auroc": True,
                      "mean-worst-case-auroc": True}


def _registered_meta(metric: str) -> Optional[dict]:
    from oodbench.registry import UnknownNameError, metrics

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


def _groups(labels: list[str], span: int) -> list[Group]:
    return [Group(label, span, 2 + i * span) for i, label in enumerate(labels)]


# --------------------------------------------------------------------------- hein2019-table1

_TABLE1 = (("mmc", "MMC"), ("auroc", "AUROC"), ("fpr95", "FPR@95"))
_TABLE1_ORDER = {"in-distribution": 0, "ood": 1, "noise": 2, "adversarial": 3, "worst-case": 3,
                 "group": 4}


def _te_header(run: RunData, refs: References, model: str) -> str:
    te = run.value(model, run.in_label, "test-error")
    if te is None:
        return model
    paper = refs.get(model, run.in_label, "test-error")
    return f"{model} (TE: {100 * te:.2f}%" + (f"; paper {100 * paper:.2f}%)" if paper is not None else ")")


def hein2019_table1(runs: list[RunData], numbers: Numbers, refs: References) -> Table:
    blocks = []
    for run in runs:
        probes = sorted((p for p in run.probes if p.kind in _TABLE1_ORDER),
                        key=lambda p: _TABLE1_ORDER[p.kind])
        rows = []
        for probe in probes:
            cells_by_metric = {
                metric: [make_cell(numbers, metric,
                                   run.value(m, probe.label, metric) if probe.kind != "in-distribution"
                                   or metric == "mmc" else None,
                                   refs.get(m, probe.label, metric),
                                   run.interval(m, probe.label, metric)) for m in run.models]
                for metric, _ in _TABLE1}
            if probe.kind != "in-distribution":
                for metric, cells in cells_by_metric.items():
                    mark_best(cells, higher_is_better(metric))
            rows.append(Row(probe.label, [cells_by_metric[metric][i] for i in range(len(run.models))
                                          for metric, _ in _TABLE1]))
        blocks.append(Block(stub=f"Trained on {run.in_label}", columns=[c for _ in run.models for _, c in _TABLE1],
                            rows=rows, groups=_groups([_te_header(run, refs, m) for m in run.models],
                                                      len(_TABLE1))))
    legend = ("Mean maximum confidence (MMC), AUROC and FPR at 95% TPR (FPR@95) per probe; "
              "TE: test error. Best per OOD row in bold (lowest MMC and FPR@95, highest AUROC)")
    return _table(runs, "hein2019-table1", legend, blocks, numbers, refs)


# --------------------------------------------------------------------------- ratio-summary


def _mean(values: list[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def ratio_summary(runs: list[RunData], numbers: Numbers, refs: References) -> Table:
    blocks = []
    notes: list[str] = []
    for run in runs:
        specs: list[tuple[str, str, Callable[[str], Optional[float]], Callable[[str], Optional[float]]]] = []

        def one_minus(v: Optional[float]) -> Optional[float]:
            return None if v is None else 1.0 - v

        def ref_accuracy(model: str, probe: str, key: str) -> Optional[float]:
            direct = refs.get(model, probe if key != "accuracy" else "summary", key)
            return direct if direct is not None else one_minus(refs.get(model, probe, "test-error"))

        specs.append(("Accuracy", "accuracy",
                      lambda m: one_minus(run.value(m, run.in_label, "test-error")),
                      lambda m: ref_accuracy(m, run.in_label, "accuracy")))
        for p in run.of_kind("robust"):
            specs.append((f"Robust accuracy ({p.label})", "robust-accuracy",
                          lambda m, p=p: one_minus(run.value(m, p.label, "test-error")),
                          lambda m, p=p: ref_accuracy(m, p.label, "robust-accuracy")))
        ece = "ece-ts" if any(run.value(m, run.in_label, "ece-ts") is not None for m in run.models) else "ece"
        specs.append(("ECE (temperature-scaled)" if ece == "ece-ts" else "ECE", ece,
                      lambda m: run.value(m, run.in_label, ece),
                      lambda m: refs.get(m, run.in_label, ece)))
        clean = run.of_kind(*CLEAN_OOD)
        worst = run.of_kind("worst-case")
        specs.append(("Mean AUROC", "mean-auroc",
                      lambda m: _mean([run.value(m, p.label, "auroc") for p in clean]),
                      lambda m: refs.get(m, "summary", "mean-auroc")))
        specs.append(("Mean worst-case AUROC", "mean-worst-case-auroc",
                      lambda m: _mean([run.value(m, p.label, "auroc") for p in worst]),
                      lambda m: refs.get(m, "summary", "mean-worst-case-auroc")))
        specs.append(("Mean MMC on OOD", "mmc",
                      lambda m: _mean([run.value(m, p.label, "mmc") for p in clean]),
                      lambda m: refs.get(m, "summary", "mmc")))
        for p in run.of_kind("group"):  # OpenOOD's near/far means (oodbench.score.groups)
            for name, metric in (("AUROC", "auroc"), ("FPR@95", "fpr95")):
                specs.append((f"{name}, {p.label}", metric,
                              lambda m, p=p, metric=metric: run.value(m, p.label, metric),
                              lambda m, p=p, metric=metric: refs.get(m, p.label, metric)))
        rows = []
        for label, metric, measured, reported in specs:
            values = [measured(m) for m in run.models]
            if all(v is None for v in values):
                continue
            cells = [make_cell(numbers, metric, v, reported(m)) for m, v in zip(run.models, values)]
            direction = higher_is_better(metric)
            mark_best(cells, direction)
            rows.append(Row(label, cells, arrow=None if direction is None else ("up" if direction else "down")))
        blocks.append(Block(stub=f"Trained on {run.in_label}", columns=list(run.models), rows=rows))
        if clean:
            notes.append(f"{run.in_label}: mean AUROC and MMC over {', '.join(p.label for p in clean)}")
        if worst:
            notes.append(f"{run.in_label}: mean worst-case AUROC over {', '.join(p.label for p in worst)}")
    legend = "Summary per model; arrows give the better direction, best per row in bold"
    return _table(runs, "ratio-summary", legend, blocks, numbers, refs, notes)


# --------------------------------------------------------------------------- per-probe


def pair_worst_case(run: RunData) -> list[tuple[Optional[str], Optional[str]]]:
    """(clean probe, worst-case probe) label pairs: every clean OOD probe, with its worst-case
    attack if the run has one, then worst-case rows without a clean partner."""
    clean = run.of_kind(*CLEAN_OOD)
    partner: dict[str, str] = {}
    for w in run.of_kind("worst-case"):
        free = [c for c in clean if c.label not in partner]
        by_data = [c for c in free if c.identity(with_n=False) is not None
                   and c.identity(with_n=False) == w.identity(with_n=False)]
        by_name = [c for c in free if w.label == f"{c.label} worst-case"]
        exact = [c for c in by_data if c.identity() == w.identity()]
        choice = (exact or [c for c in by_data if c in by_name] or by_data or by_name or [None])[0]
        if choice is not None:
            partner[choice.label] = w.label
    paired = set(partner.values())
    return ([(c.label, partner.get(c.label)) for c in clean]
            + [(None, w.label) for w in run.of_kind("worst-case") if w.label not in paired])


def per_probe(runs: list[RunData], numbers: Numbers, refs: References) -> Table:
    blocks = []
    if not any(run.of_kind("worst-case") for run in runs):
        raise ReportError(f"run {', '.join(str(r.run_id) for r in runs)} ({', '.join(r.name for r in runs)})"
                          " has no worst-case rows; the per-probe layout pairs each `attack: {name: "
                          "worst-case}` probe with its clean probe (use hein2019-table1 or ratio-summary)")
    for run in runs:
        if not run.of_kind("worst-case"):
            continue  # another run of the report has them; this one has nothing to pair
        rows = []
        for clean, worst in pair_worst_case(run):
            cols = []
            for probe in (clean, worst):
                cells = [make_cell(numbers, "auroc", run.value(m, probe, "auroc") if probe else None,
                                   refs.get(m, probe, "auroc") if probe else None,
                                   run.interval(m, probe, "auroc") if probe else None)
                         for m in run.models]
                mark_best(cells, True)
                cols.append(cells)
            rows.append(Row(clean or worst or "?", [c for i in range(len(run.models)) for c in (cols[0][i], cols[1][i])]))
        blocks.append(Block(stub=f"Trained on {run.in_label}", columns=["AUROC", "WC AUROC"] * len(run.models),
                            rows=rows, groups=_groups(list(run.models), 2)))
    legend = ("AUROC per OOD set, clean and under the worst-case attack (WC AUROC); "
              "best per row and column in bold")
    return _table(runs, "per-probe", legend, blocks, numbers, refs)


# --------------------------------------------------------------------------- detectors


def _detector_columns(kind: str) -> tuple[str, ...]:
    """The metrics the detectors layout shows for a row of ``kind``: a group mean like a clean
    set; the unit tests as the count of failed ones (:mod:`oodbench.score.groups`)."""
    if kind == UNIT_TESTS:
        return (FAILED,)
    return ("auroc", "fpr95") if kind in CLEAN_OOD + ("group",) else ("auroc",)


def detectors(runs: list[RunData], numbers: Numbers, refs: References) -> Table:
    blocks = []
    for run in runs:
        probes = [p for p in run.probes
                  if p.kind in CLEAN_OOD + ("adversarial", "worst-case", "group", UNIT_TESTS)]
        columns = [(p.label, metric) for p in probes for metric in _detector_columns(p.kind)]
        cells = {(m, col): make_cell(numbers, col[1], run.value(m, col[0], col[1]),
                                     refs.get(m, col[0], col[1]), run.interval(m, col[0], col[1]))
                 for m in run.models for col in columns}
        for col in columns:
            mark_best([cells[(m, col)] for m in run.models], higher_is_better(col[1]))
        rows = [Row(m, [cells[(m, col)] for col in columns]) for m in run.models]
        spans: list[Group] = []
        start = 2
        for p in probes:
            span = len(_detector_columns(p.kind))
            spans.append(Group(p.label, span, start))
            start += span
        blocks.append(Block(stub=f"Trained on {run.in_label}",
                            columns=[dict(_TABLE1).get(metric, metric) for _, metric in columns],
                            rows=rows, groups=spans))
    legend = ("AUROC and FPR@95 per clean OOD set, AUROC under each attack on the detector's own "
              "score, per model · detector; best per column in bold")
    return _table(runs, "detectors", legend, blocks, numbers, refs)


# --------------------------------------------------------------------------- shared


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
    several = any(len(f.detectors) > 1 or (f.detectors and f.detectors != ("msp",))
                  for run in runs for f in run.flags)
    return [f"{FLAG_MARK} flagged by a trust check, {f.where(several)}: {f.code} ({f.detail})"
            for run in runs for f in run.flags]


def _table(runs: list[RunData], layout: str, legend: str, blocks: list[Block], numbers: Numbers,
           refs: References, notes: Optional[list[str]] = None) -> Table:
    notes = list(notes or []) + _flag_rows(runs, blocks)
    if numbers.percent:
        legend += "; rates in %"
    if refs:
        legend += "; paper values beside the measured ones (measured \u2212 paper)"
        notes += [f"paper values for {model}: {(card.paper or Path(card.source).name).rstrip('.')}"
                  for model, card in refs.cards.items()]
    return Table(caption="; ".join(r.caption for r in runs), legend=legend,
                 label=f"tab:{'+'.join(r.name for r in runs)}:{layout}", blocks=blocks, notes=notes)


BUILDERS = {"hein2019-table1": hein2019_table1, "ratio-summary": ratio_summary,
            "per-probe": per_probe, "detectors": detectors}
