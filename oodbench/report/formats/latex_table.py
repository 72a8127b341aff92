"""The ``latex`` format: a booktabs ``table`` environment (``standalone``: a compilable
``article``)."""

from __future__ import annotations

from typing import Any

from oodbench.core.registry import formats
from oodbench.report.escape import latex_escape
from oodbench.report.formats.base import TemplateFormat, escaping


@formats.register("latex")
class Latex(TemplateFormat):
    """A booktabs LaTeX table (standalone: a compilable article)."""

    template = "table.tex.j2"

    @classmethod
    def jinja_options(cls) -> dict[str, Any]:
        # <% %> and << >> instead of {% %} and {{ }}, which LaTeX itself is full of
        return dict(block_start_string="<%", block_end_string="%>",
                    variable_start_string="<<", variable_end_string=">>",
                    comment_start_string="<#", comment_end_string="#>", **escaping(latex_escape))
