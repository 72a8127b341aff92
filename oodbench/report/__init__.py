"""Reports: tables from the results store, rendered through the Jinja2 templates in this package.

::

    from oodbench.report import render
    print(render("results/quickstart.db", fmt="latex", layout="hein2019-table1", percent=True))

Formats: ``latex`` (booktabs), ``html`` (self-contained page), ``md`` (GitHub Markdown), ``csv``
(long metric table) — one module each in :mod:`oodbench.report.formats`. Layouts:
``hein2019-table1``, ``ratio-summary``, ``per-probe``, ``detectors`` — one module each in
:mod:`oodbench.report.layouts`. Both are registries (``oodbench list formats``, ``oodbench list
layouts``): a new one is one file in its folder. A run is audited before it is reported
(:func:`~oodbench.report.data.audit_run`: verified against its stored jobs, and every metric
recomputed from the stored arrays; the table prints the recomputed values).
``oodbench report`` is the command-line face of :func:`render`.
"""

from oodbench.report.data import ReportError, UnverifiedResultsError, load_run, verify_run
from oodbench.report.escape import latex_escape, md_escape
from oodbench.report.references import ReferenceCard, load_card
from oodbench.report.render import UnverifiedResultsWarning, render

__all__ = ["render", "verify_run", "load_run", "latex_escape", "md_escape", "load_card",
           "ReferenceCard", "ReportError", "UnverifiedResultsError", "UnverifiedResultsWarning"]
