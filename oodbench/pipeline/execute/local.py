"""The default executor: every shard in this process, one after the other, with live progress."""

from __future__ import annotations

import time
from collections import deque
from typing import Iterator, Optional

from oodbench.pipeline.execute.base import ProgressSink, ShardOutcome
from oodbench.pipeline.execute.inputs import Workspace
from oodbench.pipeline.execute.tasks import ShardTask, run_shard
from oodbench.core.registry import executors


@executors.register("local")
class LocalExecutor:
    """Runs each shard in the calling process, in submission order (the default).

    It shares the driver's :class:`Workspace`, so the data sets the planner loaded to count
    points are not loaded again, and each model is loaded once for all its shards. An error in a
    shard is returned as its outcome; the driver stops there, after every earlier shard was stored.
    """

    def __init__(self, workspace: Workspace, progress: Optional[ProgressSink] = None):
        self.workspace, self.progress = workspace, progress
        self._queue: deque[ShardTask] = deque()

    def submit(self, task: ShardTask) -> None:
        self._queue.append(task)

    def _next(self) -> ShardTask:
        return self._queue.popleft()

    def results(self) -> Iterator[ShardOutcome]:
        while self._queue:
            task = self._next()
            sink = self.progress
            tick = None if sink is None else (lambda f, g, t=task: sink.step(t, f, g))
            start = time.perf_counter()
            try:
                arrays = run_shard(self.workspace, task, tick)
            except Exception as err:  # handed to the driver, which decides what to do
                yield ShardOutcome(task, error=err, seconds=time.perf_counter() - start)
                continue
            yield ShardOutcome(task, arrays, time.perf_counter() - start)

    def close(self) -> None:
        self._queue.clear()


# Lazy: Ray is imported only when a suite asks for this executor.
executors.add("ray", "oodbench.pipeline.execute.ray_executor:RayExecutor",
              doc="One Ray task per shard on a local or existing cluster (pip install 'oodbench[ray]').")
