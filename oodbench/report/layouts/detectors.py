"""The ``detectors`` layout: detectors compared, clean and under attacks on their own scores."""

from __future__ import annotations

from oodbench.core.rows import CLEAN_OOD, TableKind
from oodbench.core.registry import layouts
from oodbench.report.data import RunData
from oodbench.report.layouts.base import (TABLE1, Block, Group, Numbers, Row, Table, finish_table,
                                          higher_is_better, make_cell, mark_best)
from oodbench.report.references import References
from oodbench.pipeline.score.groups import FAILED

#: The rows the layout shows: clean sets, attacks scored as OOD rows, group means, unit tests.
SHOWN = CLEAN_OOD + (TableKind.ADVERSARIAL, TableKind.WORST_CASE, TableKind.GROUP,
                     TableKind.UNIT_TESTS)


def _detector_columns(kind: TableKind) -> tuple[str, ...]:
    """The metrics the detectors layout shows for a row of ``kind``: a group mean like a clean
    set; the unit tests as the count of failed ones (:mod:`oodbench.pipeline.score.groups`)."""
    if kind is TableKind.UNIT_TESTS:
        return (FAILED,)
    return ("auroc", "fpr95") if kind in CLEAN_OOD + (TableKind.GROUP,) else ("auroc",)


@layouts.register("detectors")
def detectors(runs: list[RunData], numbers: Numbers, refs: References) -> Table:
    """One row per model · detector: AUROC and FPR@95 per clean OOD set, AUROC per attacked row.

    The detector issue's comparison: per clean OOD probe its AUROC and FPR@95, per attacked row
    (an attack on the detector's own score, the in-distribution side, both) its AUROC. Best per
    column in bold."""
    blocks = []
    for run in runs:
        probes = [p for p in run.probes if p.kind in SHOWN]
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
                            columns=[dict(TABLE1).get(metric, metric) for _, metric in columns],
                            rows=rows, groups=spans))
    legend = ("AUROC and FPR@95 per clean OOD set, AUROC under each attack on the detector's own "
              "score, per model · detector; best per column in bold")
    return finish_table(runs, "detectors", legend, blocks, numbers, refs)
