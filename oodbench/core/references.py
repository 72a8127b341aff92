"""A paper's numbers for one model (a reference card), checked from the mapping it is written as.

Both the report (``report --reference CARD.yaml``, :mod:`oodbench.report.references`) and the
model zoo (a card's ``paper:`` block, :mod:`oodbench.zoo`) read these numbers, so the card type
and its check live here, below both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from oodbench.core.errors import ReportError

# Metrics printed as fractions even by papers that print rates in percent.
NOT_RATES = frozenset({"mmc", "median-alpha"})


@dataclass
class ReferenceCard:
    model: str
    reported: dict[str, dict[str, float]]
    paper: str = ""
    source: str = ""

    def get(self, probe: str, metric: str) -> Optional[float]:
        return self.reported.get(probe, {}).get(metric)


def parse_card(data: object, source: str, *, prefix: str = "") -> ReferenceCard:
    """Check a card given as a mapping (a card file's content, or a ``model_zoo`` card's
    ``paper:`` block with the model's ``name``); ``prefix`` is the block's place in the file,
    so an error names the field as the user wrote it."""
    path = source
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ReportError(f"{path}: a reference card is a mapping with `name:` (the model's name "
                          "in the suite) and `reported: {probe: {metric: value}}`")
    units = data.get("units", "fraction")
    if units not in ("fraction", "percent"):
        raise ReportError(f"{path}: `{prefix}units` must be 'fraction' or 'percent', not {units!r}")
    reported = data.get("reported")
    if not isinstance(reported, dict) or not reported:
        raise ReportError(f"{path}: `{prefix}reported` must map probe names to {{metric: value}}")
    out: dict[str, dict[str, float]] = {}
    for probe, values in reported.items():
        if not isinstance(values, dict):
            raise ReportError(f"{path}: `{prefix}reported.{probe}` must map metric names to numbers")
        out[str(probe)] = {}
        for metric, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ReportError(f"{path}: `{prefix}reported.{probe}.{metric}` must be a number, "
                                  f"got {value!r}")
            scale = 100.0 if units == "percent" and str(metric) not in NOT_RATES else 1.0
            out[str(probe)][str(metric)] = float(value) / scale
    return ReferenceCard(model=data["name"], reported=out, paper=str(data.get("paper") or ""),
                         source=str(path))


__all__ = ["NOT_RATES", "ReferenceCard", "parse_card"]
