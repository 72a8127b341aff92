"""The driver: runs a plan's missing shards on an executor and is the one process writing the store.

It submits every job whose dependencies are complete (an attack needs its model's clean pass: its
early-stop threshold comes from the clean scores), stores each finished shard at once — a killed
run loses at most the shards in flight — and submits the jobs that become ready. A failed shard
(after the executor's retries) does not stop the others: they finish and are stored, the jobs that
depend on it are not started, and the run then ends with the failure(s) named. Attack shards
stored with a looser early stop than this run needs are completed by re-attacking only the points
that stopped too soon, as the plan decided (:func:`oodbench.pipeline.plan.planner.decide_early_stop`): the
driver reads no stored attack shard to decide anything, it only merges the re-attacked points.

The plan's trust checks (:mod:`oodbench.checks`) are submitted like shards once the job they
check is complete (a stored job is checked even when nothing else runs), and their verdicts are
stored in the ``flags`` table; they write no arrays and change no metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from oodbench.core.errors import OodbenchError
from oodbench.core.arrays import ArrayKey
from oodbench.pipeline.execute.base import Executor
from oodbench.pipeline.execute.check_task import BLACK_BOX, black_box_points, decode
from oodbench.pipeline.execute.inputs import RunContext
from oodbench.pipeline.execute.progress import RunProgress
from oodbench.pipeline.execute.tasks import ShardTask
from oodbench.core.jobs import JobKind, ShardState
from oodbench.pipeline.plan.jobs import Job, Plan
from oodbench.pipeline.plan.planner import decide_early_stop
from oodbench.pipeline.plan.thresholds import Thresholds, merge_reattacked
from oodbench.pipeline.store import ResultStore


def artifact_dir(store_path: Path, job_hash: str) -> Path:
    """Files an attack writes (image grids, resumable state) live beside the results store."""
    return store_path.with_name(store_path.stem + "-artifacts") / job_hash[:16]


class ShardsFailedError(OodbenchError, RuntimeError):
    """Shards that failed (after the executor's retries); every other shard was stored."""

    def __init__(self, failures: list[tuple[ShardTask, BaseException]]):
        self.failures = failures
        listing = "\n".join(f"  - {t.id}: {type(e).__name__}: {e}" for t, e in failures)
        super().__init__(f"{len(failures)} shard(s) failed; every other shard is stored, so a "
                         f"rerun computes only these:\n{listing}")


def _raise_failures(failures: list[tuple[ShardTask, BaseException]]) -> None:
    """One error as itself (a bad checkpoint fails all its shards alike: say it once), several
    different ones together, each with the shard it belongs to."""
    if not failures:
        return
    first = failures[0][1]
    if all(type(e) is type(first) and str(e) == str(first) for _, e in failures):
        first.add_note(f"(in {len(failures)} shard(s): {', '.join(t.id for t, _ in failures[:5])}"
                       f"{', …' if len(failures) > 5 else ''})")
        raise first
    raise ShardsFailedError(failures)


@dataclass
class Executed:
    """Which jobs this run computed (any shard or point) and which it found complete."""

    computed: set[str] = field(default_factory=set)
    seconds: dict[str, float] = field(default_factory=dict)
    #: Flags the run's checks stored (0 when none flagged or none ran).
    flagged: int = 0


def shard_task(job: Job, start: int, stop: int, ctx: RunContext, **kw: object) -> ShardTask:
    """The task of points ``[start, stop)`` of ``job``; ``kw``: what an attack or check task
    carries besides (threshold, clean logits, fit arrays). A run and a recomputation audit
    (:mod:`oodbench.pipeline.recompute`) describe a shard the same way."""
    return ShardTask(job_key=job.key, kind=job.kind, label=job.label, start=start, stop=stop,
                     context=ctx, model_index=job.model_index, probe_index=job.probe_index,
                     attack=job.attack, detector=job.detector, features=job.features,
                     **kw)  # type: ignore[arg-type]


class _Driver:
    def __init__(self, plan: Plan, store: ResultStore, executor: Executor, ctx: RunContext,
                 metrics: list[str], progress: RunProgress):
        self.plan, self.store, self.executor, self.ctx = plan, store, executor, ctx
        self.metrics, self.progress = metrics, progress
        from oodbench.checks import ChecksSpec

        self.ctx_checks = ChecksSpec.model_validate(ctx.suite.get("checks") or {})
        self.jobs: dict[str, Job] = {}
        for job in plan.jobs:  # one checkpoint under two names is one job
            self.jobs.setdefault(job.key, job)
        self.complete: set[str] = set()
        self.submitted: set[str] = set()
        self.outstanding: dict[str, int] = {}
        self.thresholds = Thresholds(store, metrics)
        self.merge: dict[str, np.ndarray] = {}  # task id -> positions re-attacked in its shard
        self.failed: set[str] = set()
        self.failures: list[tuple[ShardTask, BaseException]] = []
        self.result = Executed()
        self.checks: dict[str, Job] = {c.key: c for c in plan.checks if not c.cached}

    def _base_task(self, job: Job, start: int, stop: int, **kw: object) -> ShardTask:
        return shard_task(job, start, stop, self.ctx, **kw)

    def _decided(self, job: Job) -> Job:
        """``job`` with its early stop decided: as planned, or — for an attack job planned before
        its clean (or fit) job was stored — decided now by the plan's rule, once they are."""
        if job.decided:
            return job
        decided = decide_early_stop(job, self.store, self.thresholds, self.plan.shard_size)
        if decided is None:
            raise RuntimeError(f"{job.label}: a job it depends on is not stored")
        self.jobs[job.key] = decided
        return decided

    def _tasks(self, job: Job) -> list[ShardTask]:
        """The tasks of ``job``'s shards as the plan decided them: a MISSING shard in full, a
        PARTIAL one's planned points (the whole shard when the attack cannot run a subset)."""
        if job.kind is not JobKind.ATTACK:
            return [self._base_task(job, s.start, s.stop) for s in job.shards
                    if s.state is ShardState.MISSING]
        job = self._decided(job)
        assert job.early_stop is not None and job.reference_key is not None
        clean = self.store.get_job(job.reference_key)
        fit = None if job.fit_key is None else self.store.get_job(job.fit_key)
        if clean is None or (job.fit_key is not None and fit is None):
            raise RuntimeError(f"{job.label}: a job it depends on is not stored")
        kw = dict(stop_above=job.early_stop.threshold, in_logits=clean[ArrayKey.LOGITS.value],
                  fit=fit, artifact_dir=str(artifact_dir(Path(self.ctx.store_path), job.key)))
        tasks = []
        for shard in job.shards:
            if shard.state is ShardState.CACHED:
                continue
            if shard.state is ShardState.MISSING or not job.shardable:
                tasks.append(self._base_task(job, shard.start, shard.stop, **kw))
                continue
            positions = np.asarray(shard.positions, dtype=np.int64)
            task = self._base_task(job, shard.start, shard.stop,
                                   indices=shard.start + positions, **kw)
            self.merge[task.id] = positions
            tasks.append(task)
        return tasks

    def _check_task(self, check: Job) -> ShardTask:
        """A CHECK task: the codes, and what the checks read from the store as plain data."""
        codes = list(check.config["codes"])
        payload: dict[str, object] = {"codes": codes, "black_box": None}
        kw: dict[str, object] = {}
        if check.attack is not None:
            reference = check.reference_key
            assert reference is not None  # every attack job names its clean job
            clean = self.store.get_job(reference)
            clean_scores = self.thresholds.clean_scores(check.detector, reference, check.fit_key)
            fit = None if check.fit_key is None else self.store.get_job(check.fit_key)
            if clean is None or (check.fit_key is not None and fit is None):
                raise RuntimeError(f"{check.label}: a job its checks read is not stored")
            kw = dict(in_logits=clean[ArrayKey.LOGITS.value], fit=fit)
            settings = self.ctx_checks
            if BLACK_BOX in codes and settings.black_box_check is not None:
                arrays = self.store.get_job(check.config["job"])
                if arrays is None:
                    raise RuntimeError(f"{check.label}: the checked attack is not stored")
                scores = self.thresholds.scores(check.detector, check.fit_key)
                assert scores is not None and clean_scores is not None  # both stored (above)
                payload["black_box"] = black_box_points(arrays, scores(arrays), clean_scores,
                                                        settings.black_box_check.n)
        return self._base_task(check, 0, check.n_points, check=payload, **kw)

    def _submit_checks(self) -> None:
        for check in self.checks.values():
            if check.key in self.submitted or not all(d in self.complete for d in check.depends_on):
                continue
            self.submitted.add(check.key)
            self.outstanding[check.key] = 1
            self.executor.submit(self._check_task(check))

    def _store_check(self, task: ShardTask, arrays: dict[str, np.ndarray], seconds: float) -> None:
        check = self.checks[task.job_key]
        codes, flags = decode(arrays)
        self.store.put_check(check.key, job_hash=check.config["job"], codes=codes, flags=flags,
                             seconds=seconds)
        self.complete.add(check.key)
        self.result.flagged += len(flags)

    def _ready(self, job: Job) -> bool:
        return job.key not in self.submitted and all(d in self.complete for d in job.depends_on)

    def _submit(self, job: Job) -> None:
        self.submitted.add(job.key)
        tasks = self._tasks(job)
        if not tasks:
            self._finish(job)
            return
        self.result.computed.add(job.key)
        self.outstanding[job.key] = len(tasks)
        for task in tasks:
            self.executor.submit(task)

    def _finish(self, job: Job) -> None:
        self.complete.add(job.key)
        if job.key in self.result.computed:
            self.progress.job_done(job, self.result.seconds.get(job.key, 0.0))
        for other in self.jobs.values():
            if self._ready(other):
                self._submit(other)
        self._submit_checks()

    def _store(self, task: ShardTask, arrays: dict[str, np.ndarray], seconds: float) -> None:
        positions = self.merge.pop(task.id, None)
        if positions is not None:
            stored = self.store.get_shard(task.job_key, task.start, task.stop)
            if stored is None:
                raise RuntimeError(f"{task.id}: its stored shard vanished during the run")
            arrays = merge_reattacked(stored, positions, arrays)
        self.store.put_shard(task.job_key, task.start, task.stop, arrays, seconds=seconds,
                             stop_above=task.stop_above)

    def run(self) -> Executed:
        for job in self.jobs.values():
            self.store.put_job_record(job.key, kind=job.kind, model=job.model,
                                      probe=None if job.kind is JobKind.CLEAN else job.row,
                                      config=job.config, n_points=job.n_points)
        for job in list(self.jobs.values()):
            if self._ready(job):
                self._submit(job)
        self._submit_checks()
        for outcome in self.executor.results():
            task = outcome.task
            self.progress.task_done(task)
            if outcome.error is not None:  # keep going: every other shard is still stored
                self.failed.add(task.job_key)
                self.failures.append((task, outcome.error))
                continue
            assert outcome.arrays is not None
            if task.kind is JobKind.CHECK:
                self._store_check(task, outcome.arrays, outcome.seconds)
                continue
            self._store(task, outcome.arrays, outcome.seconds)
            self.result.seconds[task.job_key] = self.result.seconds.get(task.job_key, 0.0) + outcome.seconds
            self.outstanding[task.job_key] -= 1
            if self.outstanding[task.job_key] == 0 and task.job_key not in self.failed:
                self._finish(self.jobs[task.job_key])
        _raise_failures(self.failures)
        missing = [j.label for j in (*self.jobs.values(), *self.checks.values())
                   if j.key not in self.complete]
        if missing:
            raise RuntimeError(f"executor finished with jobs incomplete: {', '.join(missing)}")
        return self.result


def execute(plan: Plan, store: ResultStore, executor: Executor, ctx: RunContext, *,
            metrics: list[str], progress: Optional[RunProgress] = None) -> Executed:
    """Run every missing shard of ``plan`` on ``executor``, storing each as it finishes."""
    progress = progress or RunProgress(plan, enabled=False)
    try:
        return _Driver(plan, store, executor, ctx, metrics, progress).run()
    finally:
        progress.close()
        executor.close()
