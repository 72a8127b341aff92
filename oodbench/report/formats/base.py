"""What a report format is: a :class:`Format` turns the audited runs — and, when it lays out a
table, the layout's :class:`~oodbench.report.layouts.Table` — into text.

Template formats render the Jinja2 templates of ``oodbench/report/templates``; every printed
value is escaped for the format (LaTeX and Markdown through ``finalize``, HTML through
autoescape), and a macro's output is marked :class:`Raw` so it is not escaped twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

from oodbench.report.data import RunData
from oodbench.report.escape import latex_label
from oodbench.report.layouts import Numbers, Table
from oodbench.report.references import References

if TYPE_CHECKING:  # jinja2 is imported when a template format renders: `oodbench list` stays light
    import jinja2


@dataclass(frozen=True)
class Content:
    """Everything a format may print: the runs, how numbers print, the paper values, the layout's
    name and table (None for a format that lays out no table), and the figure links."""

    runs: list[RunData]
    numbers: Numbers
    refs: References
    layout: str
    table: Optional[Table] = None
    standalone: bool = False
    figures: list[Any] = field(default_factory=list)


class Format:
    """A report format: a module of :mod:`oodbench.report.formats` registers a subclass with
    ``@formats.register(name)``; the first line of its docstring is what ``oodbench list formats``
    shows."""

    #: Renders a layout's table (``render`` builds it first); False: the layout does not apply.
    tables: ClassVar[bool] = True
    #: Can link the run's figures (``render(plots=...)`` draws them only for such a format).
    figures: ClassVar[bool] = False

    def render(self, content: Content) -> str:
        raise NotImplementedError


class Raw(str):
    """Template output that is already in the target format (a macro's result): not re-escaped."""


def _finalizer(escape: Callable[[Any], str]) -> Callable[[object], str]:
    def finalize(value: object) -> str:
        if isinstance(value, Raw):
            return str(value)
        if value is None:
            raise ValueError("a template printed None (a missing value must be a string)")
        return escape(value)

    return finalize


def escaping(escape: Callable[[Any], str]) -> dict[str, Any]:
    """Environment options that escape every printed value with ``escape`` (not autoescape)."""
    return {"finalize": _finalizer(escape), "autoescape": False}


@lru_cache(maxsize=None)
def _environment(fmt: type["TemplateFormat"]) -> "jinja2.Environment":
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("oodbench.report", "templates"),
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, **fmt.jinja_options())
    env.filters["raw"] = Raw
    return env


class TemplateFormat(Format):
    """A format written by one Jinja2 template of ``oodbench/report/templates``."""

    template: ClassVar[str]

    @classmethod
    def jinja_options(cls) -> dict[str, Any]:
        """The format's own environment options (delimiters, escaping)."""
        return {"autoescape": True}

    def environment(self) -> "jinja2.Environment":
        """The format's Jinja2 environment (made once per format)."""
        return _environment(type(self))

    def render(self, content: Content) -> str:
        assert content.table is not None
        return self.environment().get_template(self.template).render(
            table=content.table, standalone=content.standalone,
            label=latex_label(content.table.label), layout=content.layout,
            figures=content.figures)
