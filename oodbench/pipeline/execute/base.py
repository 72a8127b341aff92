"""The executor seam: the driver submits shard tasks and consumes finished shards.

An executor never touches the results store: the driver (one process) writes every finished
shard, so a distributed executor needs no shared file system and no locking. A task is plain
data and :func:`~oodbench.pipeline.execute.tasks.run_shard` loads its own model and data, so an executor
that runs tasks in threads, processes or on a cluster only has to ship the task and return its
arrays. Executors are registered (``oodbench list executors``) and built from a run context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Protocol

import numpy as np

from oodbench.pipeline.execute.tasks import ShardTask


@dataclass
class ShardOutcome:
    """A finished task: its arrays and wall time, or the error that ended it."""

    task: ShardTask
    arrays: Optional[dict[str, np.ndarray]] = None
    seconds: float = 0.0
    error: Optional[BaseException] = None


class ProgressSink(Protocol):
    """Where an executor reports work as it happens (the driver's progress bars)."""

    def step(self, task: ShardTask, forward: int, gradient: int) -> None: ...


class Executor(Protocol):
    """Runs shard tasks. ``results`` yields each submitted task's outcome once, in any order,
    until none is outstanding; tasks submitted while iterating are picked up by the same loop."""

    def submit(self, task: ShardTask) -> None: ...

    def results(self) -> Iterator[ShardOutcome]: ...

    def close(self) -> None: ...
