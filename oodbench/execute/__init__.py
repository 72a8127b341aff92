"""Execution: a plan's missing shards run on an executor; the driver alone writes the store.

- :mod:`~oodbench.execute.tasks`: a shard as plain data, and :func:`run_shard`, which runs it;
- :mod:`~oodbench.execute.base`: the :class:`Executor` protocol (``local`` is the default);
- :mod:`~oodbench.execute.driver`: dependencies, early-stop thresholds, storing each shard;
- :mod:`~oodbench.execute.progress`: the bars.
"""

from oodbench.execute.base import Executor, ShardOutcome
from oodbench.execute.driver import Executed, artifact_dir, execute
from oodbench.execute.forward import forward_logits, resolve_device
from oodbench.execute.inputs import RunContext, SuiteData, Workspace
from oodbench.execute.local import LocalExecutor
from oodbench.execute.progress import RunProgress
from oodbench.execute.tasks import ShardTask, run_shard

__all__ = ["Executed", "Executor", "LocalExecutor", "RunContext", "RunProgress", "ShardOutcome",
           "ShardTask", "SuiteData", "Workspace", "artifact_dir", "execute", "forward_logits",
           "resolve_device", "run_shard"]
