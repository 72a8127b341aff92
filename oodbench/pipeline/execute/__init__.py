"""Execution: a plan's missing shards run on an executor; the driver alone writes the store.

- :mod:`~oodbench.pipeline.execute.tasks`: a shard as plain data, and :func:`run_shard`, which runs it;
- :mod:`~oodbench.pipeline.execute.base`: the :class:`Executor` protocol (``local`` is the default);
- :mod:`~oodbench.pipeline.execute.driver`: dependencies, early-stop thresholds, storing each shard;
- :mod:`~oodbench.pipeline.execute.progress`: the bars.
"""

from oodbench.pipeline.execute.base import Executor, ShardOutcome
from oodbench.pipeline.execute.driver import Executed, artifact_dir, execute
from oodbench.pipeline.execute.forward import forward_logits, resolve_device
from oodbench.pipeline.execute.inputs import RunContext, SuiteData, Workspace
from oodbench.pipeline.execute.local import LocalExecutor
from oodbench.pipeline.execute.progress import RunProgress
from oodbench.pipeline.execute.tasks import ShardTask, run_shard

__all__ = ["Executed", "Executor", "LocalExecutor", "RunContext", "RunProgress", "ShardOutcome",
           "ShardTask", "SuiteData", "Workspace", "artifact_dir", "execute", "forward_logits",
           "resolve_device", "run_shard"]
