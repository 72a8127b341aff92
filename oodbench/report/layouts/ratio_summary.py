"""The ``ratio-summary`` layout: Augustin et al. (ECCV 2020), Table 1."""

from __future__ import annotations

from typing import Callable, Optional

from oodbench.core.rows import CLEAN_OOD, TableKind
from oodbench.core.registry import layouts
from oodbench.report.data import RunData
from oodbench.report.layouts.base import (Block, Numbers, Row, Table, finish_table, higher_is_better,
                                          make_cell, mark_best, mean)
from oodbench.report.references import SUMMARY_ENTRY, References

@layouts.register("ratio-summary")
def ratio_summary(runs: list[RunData], numbers: Numbers, refs: References) -> Table:
    """Augustin et al. (ECCV 2020), Table 1: accuracy, robust accuracy, ECE, mean AUROCs per model.

    Rows: accuracy ↑, robust accuracy ↑ (one per attack scored like the test set, e.g.
    AutoAttack: 1 − its test error), ECE ↓ (``ece-ts`` when stored, else ``ece``), mean AUROC ↑
    over the clean OOD probes, mean worst-case AUROC ↑ over the ``worst-case`` rows, mean MMC ↓
    over the clean OOD probes; columns = models. Rows without data are left out."""
    blocks = []
    notes: list[str] = []
    for run in runs:
        specs: list[tuple[str, str, Callable[[str], Optional[float]], Callable[[str], Optional[float]]]] = []

        def one_minus(v: Optional[float]) -> Optional[float]:
            return None if v is None else 1.0 - v

        def ref_accuracy(model: str, probe: str, key: str) -> Optional[float]:
            direct = refs.get(model, probe if key != "accuracy" else SUMMARY_ENTRY, key)
            return direct if direct is not None else one_minus(refs.get(model, probe, "test-error"))

        specs.append(("Accuracy", "accuracy",
                      lambda m: one_minus(run.value(m, run.in_label, "test-error")),
                      lambda m: ref_accuracy(m, run.in_label, "accuracy")))
        for p in run.of_kind(TableKind.ROBUST):
            specs.append((f"Robust accuracy ({p.label})", "robust-accuracy",
                          lambda m, p=p: one_minus(run.value(m, p.label, "test-error")),
                          lambda m, p=p: ref_accuracy(m, p.label, "robust-accuracy")))
        ece = "ece-ts" if any(run.value(m, run.in_label, "ece-ts") is not None for m in run.models) else "ece"
        specs.append(("ECE (temperature-scaled)" if ece == "ece-ts" else "ECE", ece,
                      lambda m: run.value(m, run.in_label, ece),
                      lambda m: refs.get(m, run.in_label, ece)))
        clean = run.of_kind(*CLEAN_OOD)
        worst = run.of_kind(TableKind.WORST_CASE)
        specs.append(("Mean AUROC", "mean-auroc",
                      lambda m: mean([run.value(m, p.label, "auroc") for p in clean]),
                      lambda m: refs.get(m, SUMMARY_ENTRY, "mean-auroc")))
        specs.append(("Mean worst-case AUROC", "mean-worst-case-auroc",
                      lambda m: mean([run.value(m, p.label, "auroc") for p in worst]),
                      lambda m: refs.get(m, SUMMARY_ENTRY, "mean-worst-case-auroc")))
        specs.append(("Mean MMC on OOD", "mmc",
                      lambda m: mean([run.value(m, p.label, "mmc") for p in clean]),
                      lambda m: refs.get(m, SUMMARY_ENTRY, "mmc")))
        # OpenOOD's near/far means (oodbench.pipeline.score.groups), each with its bootstrap interval
        group_rows = {}
        for p in run.of_kind(TableKind.GROUP):
            for name, metric in (("AUROC", "auroc"), ("FPR@95", "fpr95")):
                label = f"{name}, {p.label}"
                specs.append((label, metric,
                              lambda m, p=p, metric=metric: run.value(m, p.label, metric),
                              lambda m, p=p, metric=metric: refs.get(m, p.label, metric)))
                group_rows[label] = p.label
        rows = []
        for label, metric, measured, reported in specs:
            values = [measured(m) for m in run.models]
            if all(v is None for v in values):
                continue
            cells = [make_cell(numbers, metric, v, reported(m),
                               run.interval(m, group_rows[label], metric) if label in group_rows else None)
                     for m, v in zip(run.models, values)]
            direction = higher_is_better(metric)
            mark_best(cells, direction)
            rows.append(Row(label, cells, arrow=None if direction is None else ("up" if direction else "down")))
        blocks.append(Block(stub=f"Trained on {run.in_label}", columns=list(run.models), rows=rows))
        if clean:
            notes.append(f"{run.in_label}: mean AUROC and MMC over {', '.join(p.label for p in clean)}")
        if worst:
            notes.append(f"{run.in_label}: mean worst-case AUROC over {', '.join(p.label for p in worst)}")
    legend = "Summary per model; arrows give the better direction, best per row in bold"
    return finish_table(runs, "ratio-summary", legend, blocks, numbers, refs, notes)
