"""Progress that tells the truth: one bar for the whole plan, one per running shard.

Both count *work* — gradient evaluations, a forward pass counting a third of one
(:mod:`oodbench.pipeline.plan.cost`) — as the model does it, so a ten-minute attack moves with its steps
instead of sitting at 0/1. The plan's bar has the estimated total; when a shard ends below its
estimate (points stopped early) the bar jumps by the difference, so it never overshoots. ``-q``
shows nothing; a stream that is not a terminal gets one line per finished job instead of bars.
"""

from __future__ import annotations

import sys
from typing import IO, Optional

from tqdm.auto import tqdm

from oodbench.pipeline.execute.tasks import ShardTask
from oodbench.pipeline.plan.cost import FORWARD_PER_GRADIENT
from oodbench.core.jobs import JobKind
from oodbench.pipeline.plan.jobs import Job, Plan


def task_work(job: Job, task: ShardTask) -> int:
    """The estimated work of one task: its share of the job's cost."""
    return job.cost.scaled(task.n_points / job.n_points).work if job.n_points else 0


class RunProgress:
    """Bars (or lines) for one executed plan; implements the executors' ``ProgressSink``."""

    def __init__(self, plan: Plan, *, enabled: bool = True, stream: Optional[IO[str]] = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.bars = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._jobs = {j.key: j for j in (*plan.jobs, *plan.checks)}  # checks: no line of their own
        self._done: dict[str, float] = {}   # work reported per task id
        self._task_bars: dict[str, tqdm] = {}
        self._carry: dict[str, float] = {}  # fractional forward work not yet shown
        total = plan.remaining_cost.work
        self.overall = (tqdm(total=total, desc="plan", unit="grad-eval", file=self.stream,
                             dynamic_ncols=True, smoothing=0.05) if self.bars and total else None)

    def step(self, task: ShardTask, forward: int, gradient: int) -> None:
        work = gradient + forward / FORWARD_PER_GRADIENT
        self._done[task.id] = self._done.get(task.id, 0.0) + work
        if self.overall is None:
            return
        bar = self._task_bars.get(task.id)
        if bar is None:
            bar = self._task_bars[task.id] = tqdm(
                total=task_work(self._jobs[task.job_key], task), desc=task.id, unit="grad-eval",
                file=self.stream, leave=False, position=1, dynamic_ncols=True)
        carry = self._carry.get(task.id, 0.0) + work
        whole = int(carry)
        self._carry[task.id] = carry - whole
        bar.update(whole)
        self.overall.update(whole)

    def task_done(self, task: ShardTask) -> None:
        """Close the shard's bar; move the plan's bar to where the estimate said it would be."""
        bar = self._task_bars.pop(task.id, None)
        if bar is not None:
            bar.close()
        if self.overall is not None:
            shown = int(self._done.pop(task.id, 0.0) - self._carry.pop(task.id, 0.0))
            rest = task_work(self._jobs[task.job_key], task) - shown
            if rest > 0:
                self.overall.update(min(rest, self.overall.total - self.overall.n))

    def job_done(self, job: Job, seconds: float) -> None:
        if not self.enabled:
            return
        size = "" if job.kind is JobKind.FIT else f"{job.n_points} points, "
        line = f"done: {job.label} ({job.kind.value}, {size}{seconds:.1f} s)"
        if self.overall is not None:
            self.overall.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        for bar in self._task_bars.values():
            bar.close()
        if self.overall is not None:
            self.overall.close()
