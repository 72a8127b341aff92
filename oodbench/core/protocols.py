"""What a lower layer reads from an object a higher layer builds, named as a protocol.

A trust check runs as an execution task (:class:`~oodbench.execute.tasks.ShardTask` of kind
CHECK, in a :class:`~oodbench.execute.inputs.Workspace`), but the checks sit below execution:
they may not import it. A detector's planning rules read two traits of an attack, and the
attacks sit above the detectors. These protocols say exactly which attributes those lower
modules use, so the higher types satisfy them without either side importing the other.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

import numpy as np


class AttackTraits(Protocol):
    """The traits of an attack (class attributes of :class:`~oodbench.attacks.base.Attack`)
    that decide whether its job runs on a detector's own head."""

    @property
    def detector_aware(self) -> bool: ...

    @property
    def lowers_score(self) -> bool: ...


class CheckTask(Protocol):
    """The plain data of a CHECK task that :func:`~oodbench.checks.run.run_checks` reads."""

    label: str
    model_index: int
    probe_index: Optional[int]
    attack: Any  # the job's resolved AttackSpec, or None for a model's clean job
    in_logits: Optional[np.ndarray]
    detector: Optional[dict[str, Any]]
    fit: Optional[dict[str, np.ndarray]]
    check: Optional[dict[str, Any]]


class CheckWorkspace(Protocol):
    """What a check run loads through the executor's workspace: the suite, its models, its
    data, the device."""

    suite: Any
    data: Any
    device: Any
    n_classes: Optional[int]

    def model(self, index: int) -> Any: ...

    def probe_spec(self, index: Optional[int]) -> Any: ...


__all__ = ["AttackTraits", "CheckTask", "CheckWorkspace"]
