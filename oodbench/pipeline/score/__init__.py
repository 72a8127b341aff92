"""Scoring: stored arrays + metric names -> metric values, and nothing else.

This is the one place that turns what a job stored into the numbers of a table row. ``run``
scores a finished plan with it, ``verify`` recomputes every stored value with it, ``report`` and
``plot`` read rows through it, so a number can never mean one thing in the table and another in a
figure. It is pure: it never loads a model or data set and never writes a store.

A row is one of three :class:`RowKind`\\ s, declared by the job that produced it (an attack's
``row`` class attribute): OOD rows are scored against the model's clean in-distribution
confidences, in-distribution rows like the clean test set (test error under AutoAttack = robust
error), summary rows by the attack's own :meth:`~oodbench.attacks.Attack.summarize`.
:func:`bootstrap_intervals` gives each metric its confidence interval from the same arrays.
"""

from oodbench.pipeline.score.arrays import ArrayKey, PointArrays, ood_logits
from oodbench.pipeline.score.bootstrap import bootstrap_intervals
from oodbench.pipeline.score.rows import RowKind, row_of_job, score_row

__all__ = ["bootstrap_intervals", "ArrayKey", "PointArrays", "RowKind", "ood_logits", "row_of_job", "score_row"]
