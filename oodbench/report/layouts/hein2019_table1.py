"""The ``hein2019-table1`` layout: Hein et al. (CVPR 2019), Table 1."""

from __future__ import annotations

from oodbench.core.rows import TableKind
from oodbench.core.registry import layouts
from oodbench.report.data import RunData
from oodbench.report.layouts.base import (TABLE1, Block, Numbers, Row, Table, finish_table, groups_of,
                                          higher_is_better, make_cell, mark_best)
from oodbench.report.references import References

#: The row kinds the table shows, in the order of their groups.
ORDER = {TableKind.IN_DISTRIBUTION: 0, TableKind.OOD: 1, TableKind.NOISE: 2,
         TableKind.ADVERSARIAL: 3, TableKind.WORST_CASE: 3, TableKind.GROUP: 4}


def _te_header(run: RunData, refs: References, model: str) -> str:
    te = run.value(model, run.in_label, "test-error")
    if te is None:
        return model
    paper = refs.get(model, run.in_label, "test-error")
    return f"{model} (TE: {100 * te:.2f}%" + (f"; paper {100 * paper:.2f}%)" if paper is not None else ")")


@layouts.register("hein2019-table1")
def hein2019_table1(runs: list[RunData], numbers: Numbers, refs: References) -> Table:
    """Hein et al. (CVPR 2019), Table 1: per model MMC, AUROC and FPR@95 per probe.

    Per model a column group MMC / AUROC / FPR@95 headed with its test error; rows: the
    in-distribution set (MMC only), clean OOD sets, noise, then the attack rows scored as OOD
    (adversarial noise, adversarial samples, worst-case), each group in suite order. Best per OOD
    row and metric in bold (lowest MMC and FPR@95, highest AUROC); the in-distribution row is not
    bolded. Robust-accuracy and summary rows are left out."""
    blocks = []
    for run in runs:
        probes = sorted((p for p in run.probes if p.kind in ORDER),
                        key=lambda p: ORDER[p.kind])
        rows = []
        for probe in probes:
            cells_by_metric = {
                metric: [make_cell(numbers, metric,
                                   run.value(m, probe.label, metric) if probe.kind is not TableKind.IN_DISTRIBUTION
                                   or metric == "mmc" else None,
                                   refs.get(m, probe.label, metric),
                                   run.interval(m, probe.label, metric)) for m in run.models]
                for metric, _ in TABLE1}
            if probe.kind is not TableKind.IN_DISTRIBUTION:
                for metric, cells in cells_by_metric.items():
                    mark_best(cells, higher_is_better(metric))
            rows.append(Row(probe.label, [cells_by_metric[metric][i] for i in range(len(run.models))
                                          for metric, _ in TABLE1]))
        blocks.append(Block(stub=f"Trained on {run.in_label}", columns=[c for _ in run.models for _, c in TABLE1],
                            rows=rows, groups=groups_of([_te_header(run, refs, m) for m in run.models],
                                                      len(TABLE1))))
    legend = ("Mean maximum confidence (MMC), AUROC and FPR at 95% TPR (FPR@95) per probe; "
              "TE: test error. Best per OOD row in bold (lowest MMC and FPR@95, highest AUROC)")
    return finish_table(runs, "hein2019-table1", legend, blocks, numbers, refs)
