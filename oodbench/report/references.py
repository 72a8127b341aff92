"""Reference cards: the numbers a paper reports for a model, to print beside the measured ones.

A card is a YAML file, one per model::

    name: RATIO-0.25                 # the model's name in the suite
    paper: Augustin et al., ECCV 2020, Table 5   # optional, listed under the table
    units: percent                   # optional: values as printed in the paper (default: fraction)
    reported:                        # {probe name: {metric: value}}, names as in the suite
      CIFAR-10: {test-error: 0.0571}
      SVHN: {auroc: 0.9617}
      SVHN worst-case: {auroc: 0.8547}
      summary: {mean-auroc: 0.9532}  # the ratio-summary layout's aggregate rows

Metric names are the store's (``auroc``, ``fpr95``, ``mmc``, ``test-error``, ``ece``, …). The
``summary`` entry holds the ``ratio-summary`` rows that are not one stored value: ``accuracy``,
``mean-auroc``, ``mean-worst-case-auroc``, ``mmc``; a robust-accuracy row is looked up as
``robust-accuracy`` under the attack probe's name, accuracy also as 1 − ``test-error`` of the
in-distribution row. With ``units: percent`` every value except MMC is divided by 100.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

import yaml

from oodbench.core.references import NOT_RATES, ReferenceCard, parse_card  # noqa: F401 (their old home)
from oodbench.report.data import ReportError

SUMMARY_ENTRY = "summary"
"""The card's entry for the ``ratio-summary`` rows that are not one stored value."""
from oodbench.zoo import ZooError, load_card as load_zoo_card

@dataclass
class References:
    """The cards of one report, by model name."""

    cards: dict[str, ReferenceCard] = field(default_factory=dict)

    def get(self, model: str, probe: str, metric: str) -> Optional[float]:
        card = self.cards.get(model)
        return None if card is None else card.get(probe, metric)

    def __bool__(self) -> bool:
        return bool(self.cards)


def load_card(path: Union[str, Path]) -> ReferenceCard:
    """Read and check one card; errors name the file and the field. A ``model_zoo`` card (its
    ``paper:`` is a mapping) is read as the reference card of its model (:mod:`oodbench.zoo`)."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no such reference card")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ReportError(f"{path}: not valid YAML: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("paper"), dict):
        try:
            card = load_zoo_card(path).reference()
        except ZooError as err:
            raise ReportError(str(err)) from None
        if card is None:
            raise ReportError(f"{path}: this model_zoo card's `paper:` has no `reported:` numbers")
        return card
    return parse_card(data, str(path))


def load_references(paths: Optional[Iterable[Union[str, Path, ReferenceCard]]],
                    models: list[str], probes: list[str]) -> References:
    """Cards for a run's models. A card for a model the run lacks, or two cards for one model,
    is an error; a probe the run lacks is an error too (a typo would silently hide a number)."""
    refs = References()
    for item in paths or []:
        card = item if isinstance(item, ReferenceCard) else load_card(item)
        if card.model not in models:
            raise ReportError(f"{card.source or 'reference card'}: model {card.model!r} is not in "
                              f"the run (models: {', '.join(models)})")
        if card.model in refs.cards:
            raise ReportError(f"{card.source}: a second reference card for {card.model!r} "
                              f"(the first: {refs.cards[card.model].source})")
        unknown = [p for p in card.reported if p not in probes and p != SUMMARY_ENTRY]
        if unknown:
            raise ReportError(f"{card.source}: probes not in the run: {', '.join(map(repr, unknown))}"
                              f" (probes: {', '.join(probes)}, and `summary`)")
        refs.cards[card.model] = card
    return refs
