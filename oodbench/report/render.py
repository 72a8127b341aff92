"""``render``: a stored run as a LaTeX, HTML, Markdown or CSV table.

The output depends only on the stored run and the options — no dates, paths or versions — so
a committed report regenerates byte for byte. An HTML report can also draw the run's figures
(:mod:`oodbench.report.plots`) and link them by paths relative to the page, so that the page and
its figure folder can be moved or opened from disk together.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Sequence, Union
from urllib.parse import quote

from oodbench.core.errors import MissingFileError
from oodbench.report.data import (RunData, ReportError, UnverifiedResultsError, audit_run, find_run,
                                  load_run, run_ci_level, with_intervals)
from oodbench.core.registry import formats, layouts
from oodbench.report.formats import Content, Format
from oodbench.report.layouts import Numbers, Table
from oodbench.report.references import ReferenceCard, References, load_references
from oodbench.pipeline.store import ResultStore

if TYPE_CHECKING:
    import jinja2

CI_STYLES = ("pm", "interval")


class UnverifiedResultsWarning(UserWarning):
    """A run that fails verification was reported because ``allow_unverified`` was given."""


def environment(fmt: str) -> "jinja2.Environment":
    """The Jinja2 environment of the template format ``fmt`` (the leaderboard's pages use html's)."""
    return formats.get(fmt)().environment()


@dataclass(frozen=True)
class FigureLink:
    """A figure as the HTML page links it: ``image`` (the PNG shown inline, or None) and
    ``files`` ((format, href) per written file); hrefs are relative, URL-quoted paths."""

    title: str
    image: Optional[str]
    files: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class FigureSection:
    """The figures under one heading of the page (a model, or the radius sweeps)."""

    heading: str
    figures: tuple[FigureLink, ...]


def relative_href(path: Path, start: Path) -> str:
    """``path`` as a link from a page in directory ``start``: relative (the page opens from
    disk, wherever the pair is moved), with ``/`` separators and URL-quoted (a ``#`` or space in
    a folder name must not cut the link). HTML escaping is left to the template."""
    rel = os.path.relpath(Path(path).resolve(), Path(start).resolve())
    return quote(Path(rel).as_posix())


def figure_sections(store_path: Path, runs: list[RunData], plots: Path,
                    link_from: Path, allow_unverified: bool = False) -> list[FigureSection]:
    """Draw every run's figures into ``plots`` (one ``run-<id>`` folder each when there are
    several runs, so their files do not overwrite each other) and group their links by section."""
    from oodbench.report.plots import FORMATS, write_figures

    sections: dict[str, list[FigureLink]] = {}
    for run in runs:
        out = plots if len(runs) == 1 else plots / f"run-{run.run_id}"
        prefix = "" if len(runs) == 1 else f"{run.name} (run {run.run_id}): "
        for fig in write_figures(store_path, out, run_id=run.run_id, formats=FORMATS,
                                 allow_unverified=allow_unverified):
            files = tuple((p.suffix.lstrip("."), relative_href(p, link_from)) for p in fig.paths)
            image = next((href for fmt, href in files if fmt == "png"), None)
            sections.setdefault(prefix + fig.section, []).append(FigureLink(fig.title, image, files))
    return [FigureSection(heading, tuple(links)) for heading, links in sections.items()]


def _check_layout(layout: str) -> None:
    if layout not in layouts:
        raise ReportError(f"unknown layout {layout!r}; layouts: {', '.join(layouts.names())}")


def build_table(runs: list[RunData], layout: str, numbers: Numbers, refs: References) -> Table:
    """The table of the registered layout ``layout`` (``oodbench list layouts``)."""
    _check_layout(layout)
    return layouts.get(layout)(runs, numbers, refs)


def render(store_path: Union[str, Path], *, fmt: str, layout: str = "hein2019-table1",
           run_id: Union[int, Sequence[int], None] = None, precision: int = 3, percent: bool = False,
           references: Optional[Iterable[Union[str, Path, ReferenceCard]]] = None,
           standalone: bool = False, allow_unverified: bool = False,
           plots: Union[str, Path, None] = None, link_from: Union[str, Path, None] = None,
           ci: Optional[float] = None, ci_style: str = "pm") -> str:
    """Render run(s) of the results store at ``store_path`` as a table.

    fmt: a registered format (``oodbench list formats``; :mod:`oodbench.report.formats`):
    ``latex`` (a booktabs ``table`` environment; ``standalone=True`` wraps it in a
    compilable ``article``), ``html`` (a self-contained page), ``md`` (GitHub-flavoured
    Markdown) or ``csv`` (the long metric table with a ``kind`` column; ``layout`` does not
    apply). layout: a registered layout (``oodbench list layouts``; see
    :mod:`oodbench.report.layouts`): ``hein2019-table1``, ``ratio-summary``, ``per-probe`` or
    ``detectors``. run_id: a run, several runs (one block each), or None for
    the latest. references: reference cards (YAML paths) putting the paper's numbers beside the
    measured ones. Each run is audited first (:func:`~oodbench.report.data.audit_run`: verified,
    and every metric recomputed from the stored arrays by the scorer) and the table prints the
    recomputed values; :class:`UnverifiedResultsError` lists the problems unless
    ``allow_unverified`` (then the stored values are printed, with a warning).
    plots (``html`` only): draw the runs' figures into this directory (as ``oodbench plot``:
    ROC curves, confidence histograms, mean confidence vs attack radius) and link them from the
    page by paths relative to ``link_from``, the directory the page is written to (default: the
    working directory). Without ``plots`` the page is exactly as before.
    ci: print every value with its bootstrap interval at this level (e.g. 0.95; default: the
    run's suite field ``ci``, else none), computed from
    the stored arrays with the run's seed; ``ci_style`` ``pm`` (``97.3 ± 0.4``, half the
    interval's width) or ``interval`` (``97.3 [96.9, 97.7]``); csv gains ``ci_low``/``ci_high``.
    """
    if fmt not in formats:
        raise ReportError(f"unknown format {fmt!r}; formats: {', '.join(formats.names())}")
    writer: Format = formats.get(fmt)()
    _check_layout(layout)
    if not isinstance(precision, int) or not 0 <= precision <= 12:
        raise ReportError(f"precision must be an integer from 0 to 12, not {precision!r}")
    if plots is not None and not writer.figures:
        linking = [name for name in formats.names() if formats.get(name).figures]
        raise ReportError(f"figures are linked only from {' or '.join(linking)} reports, not {fmt}")
    if ci is not None and not 0 < ci < 1:
        raise ReportError(f"ci must be a level between 0 and 1 (e.g. 0.95), not {ci!r}")
    if ci_style not in CI_STYLES:
        raise ReportError(f"unknown ci_style {ci_style!r}; styles: {', '.join(CI_STYLES)}")
    path = Path(store_path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such results store")
    ids: list[Optional[int]] = [run_id] if run_id is None or isinstance(run_id, int) else list(run_id)
    with ResultStore(path, readonly=True) as store:
        runs = []
        for rid in ids:
            record = find_run(store, rid)
            audit = audit_run(store, record.id)
            if audit.problems and not allow_unverified:
                raise UnverifiedResultsError(path, record.id, audit.problems)
            if audit.problems:
                warnings.warn(f"{path}: run {record.id} does not verify "
                              f"({'; '.join(audit.problems)}); reporting its stored values anyway "
                              "(allow_unverified)", UnverifiedResultsWarning, stacklevel=2)
            # every printed value is the scorer's, compared above with the stored one
            run = load_run(store, record.id, None if audit.problems else audit.values)
            level = ci if ci is not None else run_ci_level(store, run.run_id)
            runs.append(run if level is None else with_intervals(store, run, level))
    models = list(dict.fromkeys(m for r in runs for m in r.models))
    # Probes the suite declares but the run skipped (missing data) may carry paper numbers too.
    probes = list(dict.fromkeys([p.label for r in runs for p in r.probes]
                                + [label for r in runs for label in r.declared]))
    refs = load_references(references, models, probes)
    numbers = Numbers(precision=precision, percent=percent, ci_style=ci_style)
    table = build_table(runs, layout, numbers, refs) if writer.tables else None
    # drawn last, once the run verified and the table built: a refused report writes no files
    figures = [] if plots is None else figure_sections(
        path, runs, Path(plots), Path.cwd() if link_from is None else Path(link_from),
        allow_unverified)
    return writer.render(Content(runs, numbers, refs, layout, table, standalone, figures))
