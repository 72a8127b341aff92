"""The ``md`` format: a GitHub-flavoured Markdown table."""

from __future__ import annotations

from typing import Any

from oodbench.core.registry import formats
from oodbench.report.escape import md_escape
from oodbench.report.formats.base import TemplateFormat, escaping


@formats.register("md")
class Markdown(TemplateFormat):
    """A GitHub-flavoured Markdown table."""

    template = "table.md.j2"

    @classmethod
    def jinja_options(cls) -> dict[str, Any]:
        return escaping(md_escape)
