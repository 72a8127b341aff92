"""OOD detectors: scores of a model's outputs, measured clean and under attack on themselves.

``oodbench list detectors`` shows each with what it needs and whether its adaptive attack is
exact. A new detector is one file here (or in a plugin) with a decorated :class:`Detector`
subclass; nothing else changes: the ``detectors`` registry finds it by scanning this folder, and
the registry-parametrised tests pick it up. :func:`build_detector` turns a suite's
``detectors:`` entry into an instance.
"""

from __future__ import annotations

from typing import Any, Mapping

from oodbench.detectors.base import Detector, FitData, Need, Outputs, Params
from oodbench.core.registry import detectors
from oodbench.core.detectors import DEFAULT_DETECTOR

__all__ = ["Detector", "FitData", "Need", "Outputs", "Params", "build_detector", "DEFAULT_DETECTOR"]



def build_detector(name: str, params: Mapping[str, Any] | None = None) -> Detector:
    """The registered detector ``name`` with ``params`` over its paper defaults; bad params
    raise pydantic's ``ValidationError`` naming the field."""
    cls = detectors.get(name)
    return cls(**dict(params or {}))
