"""Table layouts: from classified runs to a format-free :class:`Table` the templates render.

A layout decides rows, columns, which numbers go where and which are best; formatting a number
(precision, percent) and bolding the best are shared rules (:mod:`~oodbench.report.layouts.base`),
and the per-format templates only lay the structure out. Each layout is one module here with a
function registered in the ``layouts`` family (``oodbench list layouts``; the registry imports
every module of this folder on its first lookup, so a new layout is one file):

- ``hein2019-table1``: Hein et al. (CVPR 2019), Table 1 — MMC / AUROC / FPR@95 per probe;
- ``ratio-summary``: Augustin et al. (ECCV 2020), Table 1 — accuracy, robust accuracy, ECE,
  mean (worst-case) AUROC per model;
- ``per-probe``: Augustin et al. (ECCV 2020), Table 5 — clean and worst-case AUROC per OOD set;
- ``detectors``: one row per model · detector, clean and under attacks on the detector's score.
"""

from oodbench.report.layouts.base import (FLAG_MARK, Block, Cell, Group, Layout, Numbers, Row, Table,
                                          finish_table, higher_is_better, is_rate, make_cell,
                                          mark_best)

__all__ = ["FLAG_MARK", "Block", "Cell", "Group", "Layout", "Numbers", "Row", "Table",
           "finish_table", "higher_is_better", "is_rate", "make_cell", "mark_best"]
