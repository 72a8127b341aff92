"""``make_plan``: a suite and a results store in, a :class:`~oodbench.plan.jobs.Plan` out.

Nothing here runs a model. The planner names every job by its content key, looks up which of its
shards the store already holds (and whether those are exact for this run's early stop), counts
the points and estimates the cost, so ``oodbench plan`` can show what a run will do before it
starts, and the executor only has to run what is missing.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import oodbench
from oodbench.attacks.base import Attack
from oodbench.data import DatasetNotFoundError
from oodbench.execute.inputs import SuiteData
from oodbench.models import model_fingerprint
from oodbench.plan.cost import Cost
from oodbench.plan.jobs import Job, JobKind, Plan, Shard, ShardState
from oodbench.plan.thresholds import needed_threshold, points_to_reattack
from oodbench.registry import attacks
from oodbench.scores import SCORE_DEFINITION
from oodbench.store import ResultStore, canonical_hash
from oodbench.suite import DataSpec, Suite


def job_config(suite: Suite, fingerprint: dict[str, Any], kind: JobKind, probe: Optional[DataSpec],
               attack: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Everything that determines a job's output; its sha256 is the job's key. Display names are
    not in it, and neither is anything computed from another job's results."""
    config = {"kind": kind.value, "model": fingerprint,
              "in_distribution": suite.in_distribution.identity(),
              "probe": probe.identity() if probe else None, "seed": suite.seed,
              "oodbench": oodbench.__version__}
    if attack is not None:  # the score that picks and stops iterates determines the arrays
        config["attack"] = attack
        config["score"] = SCORE_DEFINITION
    return config


def split(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


class _Unchecked:
    """Stored shards are taken as they are (their thresholds are checked after the clean pass)."""


UNCHECKED = _Unchecked()


def _shards(store: ResultStore, key: str, n: int, shard_size: int, shardable: bool,
            needed: Optional[float] | _Unchecked = UNCHECKED) -> tuple[Shard, ...]:
    """The job's shards: stored ones (cached, or partial when their early stop is looser than
    the ``needed`` threshold) and the gaps cut into pieces of at most ``shard_size``."""
    used, gaps = store.covering_shards(key) if store.job_points(key) == n else ([], [(0, n)])
    if not shardable and gaps:
        return (Shard(0, n),)
    out: list[Shard] = []
    for s in used:
        # Read (and so checksum) every stored shard now: one that fails is reported, deleted and
        # planned again, instead of being found broken after the run.
        arrays = store.get_shard(key, s.start, s.stop)
        if arrays is None and not shardable:
            return (Shard(0, n),)
        if arrays is None:
            out.extend(Shard(a, b) for a, b in split(s.start, s.stop, shard_size))
            continue
        reattack = 0 if isinstance(needed, _Unchecked) else len(
            points_to_reattack(arrays, s.stop_above, needed))
        out.append(Shard(s.start, s.stop, ShardState.PARTIAL if reattack else ShardState.CACHED,
                         reattack))
    for a, b in gaps:
        out.extend(Shard(x, y) for x, y in split(a, b, shard_size))
    return tuple(sorted(out, key=lambda s: s.start))


def make_plan(suite: Suite, store: ResultStore, data: SuiteData, *,
              skip_missing: bool = False) -> Plan:
    """The jobs of ``suite``, each model's clean pass first, then its probes in suite order.

    Probes whose data is missing raise :class:`DatasetNotFoundError`, or are skipped with a
    warning (and listed in ``Plan.skipped``) when ``skip_missing`` is set.
    """
    size = suite.shard_size
    n_in = len(data.in_distribution())
    jobs: list[Job] = []
    skipped: list[str] = []
    points: dict[int, int] = {}
    for probe_index, probe in enumerate(suite.probes):
        try:
            if probe.attack is None:
                points[probe_index] = len(data.probe(probe))
            else:
                points[probe_index] = len(data.attack_source(probe, attacks.get(probe.attack.name).source))
        except DatasetNotFoundError as err:
            if not skip_missing:
                raise
            warnings.warn(f"skipping probe {probe.label!r}: {err}", stacklevel=2)
            skipped.append(probe.label)
    in_name = suite.in_distribution.dataset or ""
    for model_index, spec in enumerate(suite.models):
        fingerprint = model_fingerprint(spec, suite.base_dir)
        clean_key = canonical_hash(job_config(suite, fingerprint, JobKind.CLEAN, None))
        clean_stored = store.get_job(clean_key)
        jobs.append(Job(clean_key, JobKind.CLEAN, spec.name, suite.in_distribution.label,
                        job_config(suite, fingerprint, JobKind.CLEAN, None), n_in,
                        _shards(store, clean_key, n_in, size, True), Cost(forward=n_in), model_index))
        for probe_index, probe in enumerate(suite.probes):
            if probe_index not in points:
                continue
            n = points[probe_index]
            if probe.attack is None:
                config = job_config(suite, fingerprint, JobKind.PROBE, probe)
                key = canonical_hash(config)
                jobs.append(Job(key, JobKind.PROBE, spec.name, probe.label, config, n,
                                _shards(store, key, n, size, True), Cost(forward=n), model_index,
                                probe_index))
                continue
            attack: Attack = attacks.get(probe.attack.name)()
            resolved = attack.resolve(probe.attack, in_name)
            config = job_config(suite, fingerprint, JobKind.ATTACK, probe,
                                resolved.model_dump(mode="json", exclude={"early_stop"}))
            key = canonical_hash(config)
            needed: Optional[float] | _Unchecked = UNCHECKED
            if clean_stored is not None and attack.supports_early_stop:
                needed = needed_threshold(attack, resolved, suite.metrics, clean_stored)
            jobs.append(Job(key, JobKind.ATTACK, spec.name, probe.label, config, n,
                            _shards(store, key, n, size, attack.shardable, needed),
                            attack.estimate_cost(resolved, n), model_index, probe_index,
                            attack=resolved, depends_on=(clean_key,), shardable=attack.shardable))
    return Plan(tuple(jobs), tuple(skipped), size)
