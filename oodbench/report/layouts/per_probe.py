"""The ``per-probe`` layout: Augustin et al. (ECCV 2020), Table 5."""

from __future__ import annotations

from typing import Optional

from oodbench.core.rows import CLEAN_OOD, TableKind
from oodbench.core.registry import layouts
from oodbench.report.data import ReportError, RunData
from oodbench.report.layouts.base import (Block, Numbers, Row, Table, finish_table, groups_of,
                                          make_cell, mark_best)
from oodbench.report.references import References
from oodbench.pipeline.score.groups import group_label, group_members

def pair_worst_case(run: RunData) -> list[tuple[Optional[str], Optional[str]]]:
    """(clean probe, worst-case probe) label pairs: every clean OOD probe, with its worst-case
    attack if the run has one, then worst-case rows without a clean partner."""
    clean = run.of_kind(*CLEAN_OOD)
    partner: dict[str, str] = {}
    for w in run.of_kind(TableKind.WORST_CASE):
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
            + [(None, w.label) for w in run.of_kind(TableKind.WORST_CASE) if w.label not in paired])


def pair_groups(run: RunData) -> list[tuple[Optional[str], Optional[str]]]:
    """(clean group row, worst-case group row) label pairs of the per-probe layout: each group
    of clean OOD probes, beside the group whose members are exactly its members' worst-case
    partners (:func:`pair_worst_case`) when the suite tagged them so, then groups of worst-case
    rows without a clean partner. Groups of other rows (attacks scored as OOD) are not shown."""
    kinds = {p.label: p.kind for p in run.probes}
    present = {p.label for p in run.of_kind(TableKind.GROUP)}
    members = {group_label(g): labels for g, labels in
               group_members(run.groups, [p.label for p in run.probes]).items()
               if group_label(g) in present}
    partner = {c: w for c, w in pair_worst_case(run) if c is not None and w is not None}
    clean = [g for g, labels in members.items() if all(kinds[m] in CLEAN_OOD for m in labels)]
    worst = [g for g, labels in members.items() if all(kinds[m] is TableKind.WORST_CASE for m in labels)]
    pairs: list[tuple[Optional[str], Optional[str]]] = []
    for group in clean:
        wanted = {partner.get(m) for m in members[group]}
        match = next((w for w in worst if None not in wanted and set(members[w]) == wanted), None)
        pairs.append((group, match))
    paired = {w for _, w in pairs}
    return pairs + [(None, w) for w in worst if w not in paired]


def _clean_and_worst_row(run: RunData, numbers: Numbers, refs: References,
                         clean: Optional[str], worst: Optional[str]) -> Row:
    """One per-probe row: per model the AUROC of row ``clean`` and of row ``worst`` (either may
    be missing), each with its bootstrap interval; the best of each column in bold."""
    cols = []
    for label in (clean, worst):
        cells = [make_cell(numbers, "auroc", run.value(m, label, "auroc") if label else None,
                           refs.get(m, label, "auroc") if label else None,
                           run.interval(m, label, "auroc") if label else None)
                 for m in run.models]
        mark_best(cells, True)
        cols.append(cells)
    return Row(clean or worst or "?", [c for i in range(len(run.models)) for c in (cols[0][i], cols[1][i])])


@layouts.register("per-probe")
def per_probe(runs: list[RunData], numbers: Numbers, refs: References) -> Table:
    """Augustin et al. (ECCV 2020), Table 5: per OOD set the clean and the worst-case AUROC.

    Per model; a ``worst-case`` probe is paired with the clean probe on the same data (data set,
    split, options; the sample count may differ), else with the clean probe ``X`` when it is
    named ``X worst-case`` (:func:`pair_worst_case`). Then a row per ``group:`` mean of clean
    sets (near, far), beside the mean of the group whose members are exactly their worst-case
    partners, if the suite has one (:func:`pair_groups`)."""
    blocks = []
    if not any(run.of_kind(TableKind.WORST_CASE) for run in runs):
        raise ReportError(f"run {', '.join(str(r.run_id) for r in runs)} ({', '.join(r.name for r in runs)})"
                          " has no worst-case rows; the per-probe layout pairs each `attack: {name: "
                          "worst-case}` probe with its clean probe (use hein2019-table1 or ratio-summary)")
    for run in runs:
        if not run.of_kind(TableKind.WORST_CASE):
            continue  # another run of the report has them; this one has nothing to pair
        # the per-set rows, then the group means (near, far, …) as OpenOOD reports them
        rows = [_clean_and_worst_row(run, numbers, refs, clean, worst)
                for clean, worst in pair_worst_case(run) + pair_groups(run)]
        blocks.append(Block(stub=f"Trained on {run.in_label}", columns=["AUROC", "WC AUROC"] * len(run.models),
                            rows=rows, groups=groups_of(list(run.models), 2)))
    legend = ("AUROC per OOD set, clean and under the worst-case attack (WC AUROC); "
              "best per row and column in bold")
    return finish_table(runs, "per-probe", legend, blocks, numbers, refs)
