"""The detector every stage falls back to when none is named, and the typed reference to a
detector that the stages pass each other."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Union

DEFAULT_DETECTOR = "msp"
"""The benchmark's score since its first release, and the detector of every metric stored
before detectors existed."""


@dataclass(frozen=True)
class DetectorRef(Mapping[str, Any]):
    """A detector as the stages hand it to each other: its registered name and its parameters
    (over the paper defaults). A job, a task, a table row and the scorer all take this instead
    of a ``{"name", "params"}`` dict; it still reads as that mapping (``ref["name"]``,
    ``build_detector(**ref)``), and :meth:`plain` is exactly what a row's stored recipe keeps,
    so stored JSON and job keys are unchanged."""

    name: str = DEFAULT_DETECTOR
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, data: Union["DetectorRef", Mapping[str, Any], None]) -> "DetectorRef":
        """A reference from stored plain data (a recipe's ``detector``; ``params`` may be
        absent, and None is the default detector)."""
        if isinstance(data, DetectorRef):
            return data
        if not data:
            return cls()
        return cls(str(data["name"]), dict(data.get("params") or {}))

    def plain(self) -> dict[str, Any]:
        """The reference as the results store keeps it."""
        return {"name": self.name, "params": dict(self.params)}

    @property
    def key(self) -> str:
        """A string naming the detector and its parameters, for caches keyed by detector."""
        return json.dumps(self.plain(), sort_keys=True)

    def __getitem__(self, item: str) -> Any:
        return self.plain()[item]

    def __iter__(self) -> Iterator[str]:
        return iter(("name", "params"))

    def __len__(self) -> int:
        return 2

    __hash__ = None  # type: ignore[assignment]  # params is a mapping: compared, never hashed


__all__ = ["DEFAULT_DETECTOR", "DetectorRef"]
