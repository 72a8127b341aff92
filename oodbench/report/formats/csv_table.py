"""The ``csv`` format: the long metric table (one line per model, probe and metric, with its row
``kind``); the layout does not apply."""

from __future__ import annotations

import pandas as pd

from oodbench.core.registry import formats
from oodbench.report.formats.base import Content, Format


@formats.register("csv")
class Csv(Format):
    """The long metric table as CSV (paper values and intervals as extra columns; no layout)."""

    tables = False

    def render(self, content: Content) -> str:
        runs, numbers, refs = content.runs, content.numbers, content.refs
        frames = []
        for run in runs:
            long = run.metrics[["model", "probe", "metric", "value", "kind"]].copy()
            long["value"] = ["" if pd.isna(v) else numbers.text(m, float(v))
                             for m, v in zip(long["metric"], long["value"])]
            if refs:
                reported = [refs.get(mo, p, me) for mo, p, me in zip(long["model"], long["probe"], long["metric"])]
                long["paper"] = [numbers.text(me, r) if r is not None else "" for me, r in zip(long["metric"], reported)]
                long["difference"] = [
                    numbers.difference(me, float(v), r).replace("\u2212", "-") if r is not None and not pd.isna(v) else ""
                    for me, v, r in zip(long["metric"], run.metrics["value"], reported)]
            if run.intervals:
                bounds = [run.interval(mo, p, me) for mo, p, me in
                          zip(run.metrics["model"], run.metrics["probe"], run.metrics["metric"])]
                long["ci_low"] = ["" if b is None else numbers.text(me, b[0]) for me, b in zip(long["metric"], bounds)]
                long["ci_high"] = ["" if b is None else numbers.text(me, b[1]) for me, b in zip(long["metric"], bounds)]
            if len(runs) > 1:
                long.insert(0, "suite", run.name)
            frames.append(long)
        return pd.concat(frames, ignore_index=True).to_csv(index=False, lineterminator="\n")
