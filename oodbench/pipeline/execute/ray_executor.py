"""``executor: ray``: one Ray task per shard, on a local or an existing cluster.

Ray (``pip install 'oodbench[ray]'``) is imported only when this executor is chosen. Each task
is a :class:`~oodbench.pipeline.execute.tasks.ShardTask` — plain data — and runs :func:`_run_in_worker`,
which rebuilds the run's :class:`~oodbench.pipeline.execute.inputs.Workspace` once per worker process and
keeps it, so a worker loads each model and data set once for all the shards it runs. Tasks
return arrays; only the driver writes the results store. A task that raises, or whose worker
dies, is retried ``max_retries`` times, then reported with its error while every other shard
finishes and is stored. Ctrl-C (or any error in the driver) cancels the outstanding tasks; every
shard stored so far stays valid.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Iterator, Optional

import numpy as np

from oodbench.pipeline.execute.base import ProgressSink, ShardOutcome
from oodbench.pipeline.execute.inputs import Workspace
from oodbench.pipeline.execute.tasks import ShardTask, run_shard

INSTALL_HINT = "pip install 'oodbench[ray]'"

_WORKSPACES: OrderedDict[str, Workspace] = OrderedDict()
_KEEP = 4  # runs whose models and data a long-lived worker keeps


def _run_in_worker(task: ShardTask) -> tuple[dict[str, np.ndarray], float, str]:
    """The body of every Ray task: the shard's arrays, its wall time in the worker and the id
    of the Ray node that ran it."""
    ws = _WORKSPACES.get(task.context.key)
    if ws is None:
        ws = _WORKSPACES[task.context.key] = Workspace.of(task.context)
        while len(_WORKSPACES) > _KEEP:
            _WORKSPACES.popitem(last=False)
    _WORKSPACES.move_to_end(task.context.key)
    start = time.perf_counter()
    arrays = run_shard(ws, task)
    return arrays, time.perf_counter() - start, _import_ray().get_runtime_context().get_node_id()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"executor 'ray' needs the package ray: {INSTALL_HINT}") from err
    return ray


def _cause(err: BaseException) -> BaseException:
    """The exception the task raised (Ray wraps it), or Ray's own error for a lost worker."""
    as_cause = getattr(err, "as_instanceof_cause", None)
    if callable(as_cause):
        cause = getattr(err, "cause", None)
        if isinstance(cause, BaseException):
            return cause
    return err


class RayExecutor:
    """One Ray task per shard on a local or existing cluster (``address``; ``auto`` joins a
    running one); resources per task from the suite's ``resources`` (fractional GPUs allowed)."""

    def __init__(self, workspace: Workspace, progress: Optional[ProgressSink] = None, *,
                 address: Optional[str] = None, num_cpus: Optional[int] = None):
        self.ray = ray = _import_ray()
        suite = workspace.suite
        address = address if address is not None else suite.ray_address
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus
            ray.init(**kwargs)
        res = suite.resources
        self._remote = ray.remote(_run_in_worker).options(
            num_cpus=res.cpus_per_task, num_gpus=res.gpus_per_task,
            max_retries=suite.max_retries, retry_exceptions=True)
        self._pending: dict[Any, ShardTask] = {}
        #: Which Ray node computed each finished shard (shard id → node id; a retried shard:
        #: the node of the attempt that succeeded), to see how a run spread over a cluster.
        self.ran_on: dict[str, str] = {}

    def submit(self, task: ShardTask) -> None:
        self._pending[self._remote.remote(task)] = task

    def results(self) -> Iterator[ShardOutcome]:
        while self._pending:
            done, _ = self.ray.wait(list(self._pending), num_returns=1)
            for ref in done:
                task = self._pending.pop(ref)
                try:
                    arrays, seconds, node = self.ray.get(ref)
                except Exception as err:  # the task's error (after retries), or a lost worker
                    yield ShardOutcome(task, error=_cause(err))
                    continue
                self.ran_on[task.id] = node
                yield ShardOutcome(task, arrays, seconds)

    def close(self) -> None:
        for ref in list(self._pending):
            self.ray.cancel(ref, force=True)
        self._pending.clear()
