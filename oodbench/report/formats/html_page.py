"""The ``html`` format: a self-contained page, which can link the run's figures."""

from __future__ import annotations

from oodbench.core.registry import formats
from oodbench.report.formats.base import TemplateFormat


@formats.register("html")
class Html(TemplateFormat):
    """A self-contained HTML page (with --plots: the run's figures linked under the table)."""

    template = "table.html.j2"
    figures = True
