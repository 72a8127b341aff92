"""Typed metadata every architecture file declares in its table (cf. timm's ``PretrainedCfg``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ArchInfo:
    """What a user must know about an architecture before pointing a checkpoint at it.

    ``version`` changes whenever the module's forward pass or state-dict names change; it is part
    of the model fingerprint, so cached results of an older implementation are not reused.
    """

    input_shape: tuple[int, int, int]
    paper: str
    source: str
    licence: str = "MIT (oodbench implementation)"
    input_range: tuple[float, float] = (0.0, 1.0)
    num_classes: int = 10
    version: str = "1"

    def meta(self) -> dict[str, Any]:
        """Keyword arguments for ``architectures.register``."""
        return asdict(self)
