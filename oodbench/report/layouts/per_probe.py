"""The ``per-probe`` layout: Augustin et al. (ECCV 2020), Table 5."""

from __future__ import annotations

from typing import Optional

from oodbench.registry import layouts
from oodbench.report.data import CLEAN_OOD, ReportError, RunData
from oodbench.report.layouts.base import (Block, Numbers, Row, Table, finish_table, groups_of,
                                          make_cell, mark_best)
from oodbench.report.references import References

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


@layouts.register("per-probe")
def per_probe(runs: list[RunData], numbers: Numbers, refs: References) -> Table:
    """Augustin et al. (ECCV 2020), Table 5: per OOD set the clean and the worst-case AUROC.

    Per model; a ``worst-case`` probe is paired with the clean probe on the same data (data set,
    split, options; the sample count may differ), else with the clean probe ``X`` when it is
    named ``X worst-case`` (:func:`pair_worst_case`)."""
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
                            rows=rows, groups=groups_of(list(run.models), 2)))
    legend = ("AUROC per OOD set, clean and under the worst-case attack (WC AUROC); "
              "best per row and column in bold")
    return finish_table(runs, "per-probe", legend, blocks, numbers, refs)
