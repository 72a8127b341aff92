"""The recomputation audit: re-execute a seeded sample of a run's stored shards and compare.

A checksum proves that an array is the one that was stored, not that the computation made it:
anyone can edit an array and recompute its checksum with :func:`oodbench.pipeline.store.array_checksum`
(and the metrics with the scorer), and ``verify`` still passes. What proves an array is doing
its computation again. Every point's random draws depend only on the suite's seed and the
point's index, and model calls run in fixed-size chunks, so a shard re-executed on the run's own
software stack (the oodbench, torch, numpy and Python versions and the device the run recorded)
must give bit-identical arrays; on another stack, arrays within a tolerance
(:data:`DEFAULT_TOLERANCE` unless told otherwise).

The audit re-plans the stored suite against the store (so a job whose key the checkpoint, data
options or oodbench version found here no longer produce is reported, not recomputed), draws
``ceil(fraction × shards)`` of the run's stored shards with ``numpy.random.default_rng(seed)``,
runs each with :func:`oodbench.pipeline.execute.run_shard` exactly as the run's driver would (an attack
at the early-stop threshold its shard recorded, from the stored clean logits and fit), and
compares. It never writes the store. What it cannot prove: that the data set files are the ones
the run used (a job's key names the data set and its options, not its bytes), or anything about
jobs outside the sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from oodbench.core.errors import OodbenchError

if TYPE_CHECKING:  # pragma: no cover  (kept light: `oodbench --help` shows DEFAULT_TOLERANCE)
    import numpy as np

    from oodbench.pipeline.store import ResultStore

DEFAULT_TOLERANCE = 1e-4
"""Relative and absolute tolerance on float arrays when the stack differs from the run's
(integer and boolean arrays must always match exactly)."""

#: The parts of a run's recorded environment that make its numbers bit-reproducible here.
STACK_KEYS = ("oodbench", "torch", "numpy", "python", "device", "device_name")


class RecomputeError(OodbenchError, ValueError):
    """A recomputation audit that cannot start (bad fraction, no such run, suite unusable here)."""


@dataclass(frozen=True)
class ShardCheck:
    """One re-executed shard: its job, row label, points and what differed (empty: nothing)."""

    job: str
    label: str
    start: int
    stop: int
    problems: tuple[str, ...] = ()

    def where(self) -> str:
        return f"job {self.job[:12]} ({self.label}) points {self.start}-{self.stop}"


@dataclass
class Recomputation:
    """What :func:`recompute_run` checked and found."""

    run_id: int
    fraction: float
    seed: int
    tolerance: float
    same_stack: bool
    total: int
    checked: list[ShardCheck] = field(default_factory=list)
    #: Problems not tied to one re-executed shard (a stored job the suite no longer plans).
    other: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.other + [f"{c.where()}: {p}" for c in self.checked for p in c.problems]

    def summary(self) -> str:
        how = ("bit-identical (same stack as the run)" if self.tolerance == 0
               else f"within tolerance {self.tolerance:g}"
               + ("" if self.same_stack else " (another stack than the run's)"))
        bad = sum(1 for c in self.checked if c.problems)
        return (f"recomputed {len(self.checked)} of {self.total} stored shard(s) (fraction "
                f"{self.fraction:g}, seed {self.seed}), {how}: "
                + ("all match" if not self.problems else f"{bad} differ"
                   + (f", {len(self.other)} other problem(s)" if self.other else "")))


def same_stack(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether ``current`` is the run's recorded stack (:data:`STACK_KEYS`)."""
    return all(recorded.get(k) == current.get(k) for k in STACK_KEYS)


def array_differences(stored: Mapping[str, "np.ndarray"], recomputed: Mapping[str, "np.ndarray"],
                      tolerance: float) -> list[str]:
    """How ``recomputed`` differs from ``stored`` (empty: it matches). Tolerance 0: byte for
    byte; otherwise float arrays within ``tolerance`` (relative and absolute), other arrays
    exactly; dtype and shape always."""
    import numpy as np

    problems = []
    if set(stored) != set(recomputed):
        problems.append(f"arrays {sorted(stored)} stored, the recomputation gives {sorted(recomputed)}")
    for key in sorted(set(stored) & set(recomputed)):
        a, b = np.asarray(stored[key]), np.asarray(recomputed[key])
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"array {key!r}: stored {a.dtype} {a.shape}, recomputed {b.dtype} {b.shape}")
            continue
        if tolerance > 0 and np.issubdtype(a.dtype, np.floating):
            same = bool(np.allclose(a, b, rtol=tolerance, atol=tolerance, equal_nan=True))
        else:
            same = np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
        if same:
            continue
        gap = ""
        if np.issubdtype(a.dtype, np.number) and a.size:
            delta = np.abs(a.astype(np.float64) - b.astype(np.float64))
            gap = f"max |difference| {float(np.nanmax(delta)):.3g}, " if np.isfinite(delta).any() else ""
        problems.append(f"array {key!r} differs from its recomputation ({gap}tolerance "
                        f"{tolerance:g}): the stored arrays are not what the code, checkpoint "
                        "and data give")
    return problems


def recompute_run(store: "ResultStore", run_id: int, fraction: float, *, seed: int = 0,
                  tolerance: Optional[float] = None, suite_dir: Union[str, Path, None] = None,
                  data_root: Union[str, Path, None] = None,
                  device: Optional[str] = None) -> Recomputation:
    """Re-execute a seeded sample (``fraction`` of the shards, at least one) of run ``run_id``'s
    stored shards and compare each with its stored arrays (see the module doc).

    ``tolerance``: None for bit-identical on the run's stack and :data:`DEFAULT_TOLERANCE` on
    another; ``suite_dir``: the directory the run's suite file was in (its relative checkpoint
    and data paths resolve from it; default: the working directory); ``data_root``,
    ``device``: as for ``oodbench run``.
    """
    import math
    import tempfile

    import numpy as np

    from oodbench.pipeline.execute import RunContext, SuiteData, Workspace, resolve_device, run_shard
    from oodbench.core.arrays import ArrayKey
    from oodbench.core.jobs import JobKind
    from oodbench.pipeline.execute.driver import shard_task
    from oodbench.pipeline.plan import make_plan
    from oodbench.core.provenance import environment
    from oodbench.pipeline.suite import SuiteError, parse_suite

    if not 0 < fraction <= 1:
        raise RecomputeError(f"--recompute takes a fraction of the shards in (0, 1], not {fraction!r}")
    if tolerance is not None and tolerance < 0:
        raise RecomputeError(f"the tolerance must be 0 or more, not {tolerance!r}")
    run = store.run_record(run_id)
    if run is None:
        raise RecomputeError(f"{store.path}: no run {run_id} to recompute")
    base = Path(suite_dir) if suite_dir is not None else Path.cwd()
    try:
        # only the file's folder is used (relative paths); the name is not the suite's, which
        # may be anything
        suite = parse_suite(run.suite, source=base / "stored-suite.yaml")
    except SuiteError as err:
        raise RecomputeError(f"{store.path}: run {run_id}'s stored suite cannot be run here "
                             f"({err})") from None
    dev = resolve_device(device or suite.device)
    here = same_stack(run.environment, environment(dev))
    tol = (0.0 if here else DEFAULT_TOLERANCE) if tolerance is None else float(tolerance)
    ws = Workspace(suite, SuiteData(suite, suite.resolve_data_root(data_root)), dev, store.path)
    plan = make_plan(suite, store, ws.data, skip_missing=True)
    jobs = {job.key: job for job in plan.jobs}
    result = Recomputation(run_id, fraction, seed, tol, here, 0)
    names = store.job_names(run_id)
    shards = []
    for key in sorted(names):
        used = ", ".join(sorted(f"{m} / {p or 'in-distribution'}" for m, p in names[key]))
        if key not in jobs:
            result.other.append(
                f"job {key[:12]} ({used}) is not a job the stored suite plans here: the "
                "checkpoint, a data set's options or the oodbench version differ from the run's "
                "(or its data is missing here), so it cannot be recomputed")
            continue
        shards += [(key, s) for s in store.covering_shards(key)[0]]
    result.total = len(shards)
    if not shards:
        return result
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(shards), size=max(1, math.ceil(fraction * len(shards))),
                               replace=False))
    ctx = RunContext.of(suite, data_root=ws.data.root, device=dev, store_path=store.path)
    with tempfile.TemporaryDirectory(prefix="oodbench-recompute-") as scratch:
        for i in chosen:
            key, shard = shards[int(i)]
            job = jobs[key]
            stored = store.get_shard(key, shard.start, shard.stop)
            check = ShardCheck(key, job.label, shard.start, shard.stop)
            if stored is None:
                result.checked.append(ShardCheck(check.job, check.label, check.start, check.stop,
                                                 ("its stored arrays fail their checksum",)))
                continue
            kw: dict[str, Any] = {}
            if job.kind is JobKind.ATTACK:
                clean = None if job.reference_key is None else store.get_job(job.reference_key)
                fit = None if job.fit_key is None else store.get_job(job.fit_key)
                if clean is None or (job.fit_key is not None and fit is None):
                    result.checked.append(ShardCheck(key, job.label, shard.start, shard.stop,
                                                     ("a job it depends on is not stored",)))
                    continue
                kw = dict(stop_above=shard.stop_above, in_logits=clean[ArrayKey.LOGITS.value], fit=fit,
                          artifact_dir=str(Path(scratch) / f"{key}-{shard.start}"))
            arrays = run_shard(ws, shard_task(job, shard.start, shard.stop, ctx, **kw))
            result.checked.append(ShardCheck(key, job.label, shard.start, shard.stop,
                                             tuple(array_differences(stored, arrays, tol))))
    return result
