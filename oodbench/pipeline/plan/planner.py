"""``make_plan``: a suite and a results store in, a :class:`~oodbench.pipeline.plan.jobs.Plan` out.

Nothing here runs a model. The planner names every job by its content key, looks up which of its
shards the store already holds (and whether those are exact for this run's early stop), counts
the points and estimates the cost, so ``oodbench plan`` can show what a run will do before it
starts, and the executor only has to run what is missing. It also says which jobs make each
table row (:class:`~oodbench.pipeline.plan.jobs.Row`), so the scorer needs nothing but the store.

Detectors multiply as little as possible: one forward pass per (model, data set) serves every
detector that reads logits or features (features are stored only when one asks for them); only
a detector that needs the model at scoring time (ODIN) gets its own forward jobs, only a fitted
one its fit job (the rule :class:`~oodbench.detectors.passes.ForwardPasses`, which
:func:`oodbench.pipeline.run.evaluate` follows too), and only detector-aware attacks one job per
detector. With the default
``detectors: [msp]`` every job key is what it always was.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any, Optional, Protocol

from oodbench.core.detectors import DetectorRef
from oodbench.core.version import VERSION
from oodbench.core.arrays import ArrayKey
from oodbench.attacks.base import Attack, AttackSpec
from oodbench.data import DatasetNotFoundError, ImageSet
from oodbench.detectors import Detector, build_detector
from oodbench.detectors.attack import scores_row, uses_head
from oodbench.detectors.passes import ForwardPasses
from oodbench.models import model_fingerprint
from oodbench.pipeline.plan.cost import Cost
from oodbench.core.jobs import JobKind, ShardState
from oodbench.pipeline.plan.jobs import EarlyStop, Job, Plan, Row, Shard
from oodbench.pipeline.plan.thresholds import Scores, Thresholds, points_to_reattack
from oodbench.core.registry import attacks
from oodbench.pipeline.score.groups import CSID
from oodbench.pipeline.score.rows import RowKind
from oodbench.scores import SCORE_DEFINITION
from oodbench.pipeline.store import ResultStore, canonical_hash
from oodbench.pipeline.suite import DataSpec, DetectorSpec, Suite


class PlannedData(Protocol):
    """The data sets a plan counts points in: what the executor's loader
    (:class:`~oodbench.pipeline.execute.inputs.SuiteData`) offers, named here because execution sits
    above planning."""

    def in_distribution(self) -> ImageSet: ...

    def probe(self, spec: DataSpec) -> ImageSet: ...

    def fit_spec(self) -> DataSpec: ...

    def attack_source(self, spec: DataSpec, source: str) -> ImageSet: ...


def job_config(suite: Suite, fingerprint: dict[str, Any], kind: JobKind, probe: Optional[DataSpec],
               attack: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Everything that determines a job's output; its sha256 is the job's key. Display names are
    not in it, and neither is anything computed from another job's results."""
    config = {"kind": kind.value, "model": fingerprint,
              "in_distribution": suite.in_distribution.identity(),
              "probe": probe.identity() if probe else None, "seed": suite.seed,
              "oodbench": VERSION}
    if attack is not None:  # the score that picks and stops iterates determines the arrays
        config["attack"] = attack
        config["score"] = SCORE_DEFINITION
    return config


def split(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


def _shards(store: ResultStore, key: str, n: int, shard_size: int, shardable: bool,
            stop: Optional[tuple[Optional[float], Optional[Scores]]] = None) -> tuple[Shard, ...]:
    """The job's shards: stored ones and the gaps cut into pieces of at most ``shard_size``.
    ``stop``: an attack's decided threshold and score function; a stored shard that stopped at
    a looser threshold is PARTIAL, with the points to attack again. Without it (a forward job,
    or an attack whose threshold is not known yet) stored shards are taken as they are."""
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
        positions: tuple[int, ...] = ()
        if stop is not None and stop[1] is not None:
            positions = tuple(int(i) for i in points_to_reattack(arrays, s.stop_above, *stop))
        out.append(Shard(s.start, s.stop, ShardState.PARTIAL if positions else ShardState.CACHED,
                         positions))
    for a, b in gaps:
        out.extend(Shard(x, y) for x, y in split(a, b, shard_size))
    return tuple(sorted(out, key=lambda s: s.start))


def decide_early_stop(job: Job, store: ResultStore, thresholds: Thresholds,
                      shard_size: int) -> Optional[Job]:
    """``job`` (an attack) with its early stop decided: the threshold this run's metrics allow,
    and its stored shards CACHED, or PARTIAL with the points to attack again; None while the
    clean or fit job the threshold comes from is not stored. The one place that decides what to
    re-attack: the planner calls it for every attack job, and the driver for one planned
    before its inputs were stored, once they are."""
    assert job.attack is not None and job.reference_key is not None
    attack: Attack = attacks.get(job.attack.name)()
    known = thresholds.needed(attack, job.attack, job.detector, job.reference_key, job.fit_key)
    if known is None:
        return None
    shards = _shards(store, job.key, job.n_points, shard_size, job.shardable, known)
    return replace(job, shards=shards, early_stop=EarlyStop(known[0]))


def plain(spec: DetectorSpec) -> DetectorRef:
    """The reference to a suite's detector that jobs, tasks and rows carry."""
    return DetectorRef(spec.name, dict(spec.params))


class _Planner:
    """The jobs and rows of one suite against one store (one instance per :func:`make_plan`)."""

    def __init__(self, suite: Suite, store: ResultStore, data: PlannedData, points: dict[int, int]):
        self.suite, self.store, self.data, self.points = suite, store, data, points
        self.size = suite.shard_size
        self.n_in = len(data.in_distribution())
        self.detectors = [(d, build_detector(d.name, d.params)) for d in suite.detectors]
        self.passes = ForwardPasses(tuple(det for _, det in self.detectors))
        self.features = self.passes.shared_features
        # one entry per job *and name*: a checkpoint listed twice is one job used under two
        # names, and the run records both uses
        self.jobs: dict[tuple[str, str, str], Job] = {}
        self.rows: list[Row] = []
        self.thresholds = Thresholds(store, suite.metrics)

    def _add(self, job: Job) -> str:
        self.jobs.setdefault((job.key, job.model, job.row), job)
        return job.key

    def _forward(self, model_index: int, fp: dict[str, Any], probe_index: Optional[int],
                 det: Optional[tuple[DetectorSpec, Detector]] = None) -> str:
        """A clean (probe_index None) or probe forward pass: shared, or a detector's own."""
        spec = self.suite.models[model_index]
        kind = JobKind.CLEAN if probe_index is None else JobKind.PROBE
        probe = None if probe_index is None else self.suite.probes[probe_index]
        config = job_config(self.suite, fp, kind, probe)
        features = det is None and self.features
        if det is not None:
            config["detector"] = det[1].identity()
        elif features:
            config["outputs"] = [ArrayKey.LOGITS.value, ArrayKey.FEATURES.value]
        key = canonical_hash(config)
        n = self.n_in if probe_index is None else self.points[probe_index]
        label = self.suite.in_distribution.label if probe is None else probe.label
        # ODIN's input step costs a gradient evaluation per point before its forward pass
        cost = Cost(forward=n, gradient=n if det is not None and self.passes.own_pass(det[1]) else 0)
        return self._add(Job(key, kind, spec.name, label, config, n,
                             _shards(self.store, key, n, self.size, True), cost, model_index,
                             probe_index, detector=None if det is None else plain(det[0]),
                             features=features, detector_label=None if det is None else det[0].display))

    def _fit(self, model_index: int, fp: dict[str, Any], det: tuple[DetectorSpec, Detector]) -> str:
        spec = self.suite.models[model_index]
        config = {"kind": JobKind.FIT.value, "model": fp, "data": self.data.fit_spec().identity(),
                  "detector": det[1].identity(), "seed": self.suite.seed,
                  "oodbench": VERSION}
        key = canonical_hash(config)
        stored = self.store.job_points(key) == 1 and self.store.get_job(key) is not None
        return self._add(Job(key, JobKind.FIT, spec.name, f"fit: {det[0].display}", config, 1,
                             (Shard(0, 1, ShardState.CACHED if stored else ShardState.MISSING),),
                             Cost(forward=self.suite.fit.n or 0), model_index,
                             detector=plain(det[0]), shardable=False, detector_label=det[0].display))

    def _attack(self, model_index: int, fp: dict[str, Any], probe_index: int,
                det: Optional[tuple[DetectorSpec, Detector]], reference: str,
                fit: Optional[str]) -> str:
        """An attack job: the detector's own when it runs on the detector's head."""
        spec, probe = self.suite.models[model_index], self.suite.probes[probe_index]
        assert probe.attack is not None
        attack: Attack = attacks.get(probe.attack.name)()
        resolved = attack.resolve(probe.attack, self.suite.in_distribution.dataset or "")
        own = det is not None and uses_head(det[1], attack)
        if own:  # the detector's score is the objective
            resolved = resolved.model_copy(update={"objective": None})
        config = job_config(self.suite, fp, JobKind.ATTACK, probe,
                            resolved.identity())
        if own:
            assert det is not None
            config["detector"] = det[1].identity()
            if not det[1].exact_gradient:  # what was ascended, recorded with the arrays
                config["surrogate"] = det[1].surrogate
        key = canonical_hash(config)
        n = self.points[probe_index]
        fit_key = fit if own else None
        job_detector = plain(det[0]) if own and det is not None else None
        deps = (reference,) + ((fit_key,) if fit_key else ())
        job = Job(key, JobKind.ATTACK, spec.name, probe.label, config, n, (),
                  attack.estimate_cost(resolved, n), model_index, probe_index,
                  attack=resolved, depends_on=deps, shardable=attack.shardable,
                  detector=job_detector, fit_key=fit_key, reference_key=reference,
                  detector_label=det[0].display if det is not None and attack.detector_aware
                  else None)
        decided = decide_early_stop(job, self.store, self.thresholds, self.size)
        return self._add(decided if decided is not None else replace(
            job, shards=_shards(self.store, key, n, self.size, attack.shardable)))

    def checks(self) -> list[Job]:
        """One check job per clean job (the model checks) and per attack job (the attack checks
        that apply to it), keyed by the checked job's key, the codes and the check settings."""
        from oodbench.checks import CHECKS_VERSION, codes_for

        settings = self.suite.checks
        out: dict[str, Job] = {}
        for job in self.jobs.values():
            if job.kind not in (JobKind.CLEAN, JobKind.ATTACK) or job.key in out:
                continue
            if job.kind is JobKind.CLEAN and job.detector is not None:
                continue  # a detector's own clean pass (ODIN): the model is checked once
            attack = None if job.attack is None else attacks.get(job.attack.name)()
            codes = codes_for(attack, job.attack, settings)
            if not codes:
                continue
            config = {"kind": JobKind.CHECK.value, "job": job.key, "codes": codes,
                      "checks": settings.identity(), "version": CHECKS_VERSION,
                      "oodbench": VERSION}
            key = canonical_hash(config)
            from oodbench.core.registry import checks as registry

            cost = sum((registry.get(c)().cost(job.attack, settings) for c in codes), Cost())
            n = min(settings.n, job.n_points)
            state = ShardState.CACHED if self.store.has_check(key) else ShardState.MISSING
            out[key] = Job(key, JobKind.CHECK, job.model, job.row, config, n,
                           (Shard(0, n, state),), cost, job.model_index, job.probe_index,
                           attack=job.attack, depends_on=(job.key,), shardable=False,
                           detector=job.detector, fit_key=job.fit_key,
                           reference_key=job.reference_key)
        return list(out.values())

    def model(self, model_index: int) -> None:
        spec = self.suite.models[model_index]
        fp = model_fingerprint(spec, self.suite.base_dir)
        clean = self._forward(model_index, fp, None)
        in_label = self.suite.in_distribution.label
        # (detector label, probe label) -> the job of that row's OOD points, for `versus`
        ood_points: dict[tuple[str, str], str] = {}
        pending: list[tuple[Row, Optional[str]]] = []
        for d in self.detectors:
            dspec, det = d
            own = self.passes.own_pass(det)
            reference = self._forward(model_index, fp, None, d) if own else clean
            fit = self._fit(model_index, fp, d) if self.passes.fitted(det) else None
            pending.append((Row(spec.name, dspec.display, in_label, RowKind.IN_DISTRIBUTION,
                                clean, reference, plain(dspec), fit), None))
            # full spectrum: the covariate-shifted sets join the in-distribution side
            extra = tuple(self._forward(model_index, fp, i, d if own else None)
                          for i, p in enumerate(self.suite.probes)
                          if p.group == CSID and i in self.points)
            for probe_index, probe in enumerate(self.suite.probes):
                if probe_index not in self.points or probe.group == CSID:
                    continue
                attack = None if probe.attack is None else attacks.get(probe.attack.name)()
                if not scores_row(det, attack):
                    continue
                if attack is None:
                    points = self._forward(model_index, fp, probe_index, d if own else None)
                    kind = RowKind.OOD
                else:
                    points = self._attack(model_index, fp, probe_index, d, reference, fit)
                    kind = RowKind(attack.row)
                if probe.versus is None:
                    ood_points[(dspec.display, probe.label)] = points
                pending.append((Row(spec.name, dspec.display, probe.label, kind, points, reference,
                                    plain(dspec), fit, extra_references=extra
                                    if kind is RowKind.OOD else ()), probe.versus))
        for row, versus in pending:
            if versus is not None:
                target = ood_points.get((row.detector, versus))
                if target is None:  # its OOD probe was skipped (data missing)
                    continue
                row = Row(row.model, row.detector, row.label, row.kind, row.points, row.reference,
                          row.detector_spec, row.fit, target)
            self.rows.append(row)


def make_plan(suite: Suite, store: ResultStore, data: PlannedData, *,
              skip_missing: bool = False) -> Plan:
    """The jobs of ``suite``, each model's clean pass first, then its probes in suite order,
    and the rows they make (per model, per detector, in suite order).

    Probes whose data is missing raise :class:`DatasetNotFoundError`, or are skipped with a
    warning (and listed in ``Plan.skipped``) when ``skip_missing`` is set.
    """
    skipped: list[str] = []
    points: dict[int, int] = {}
    for probe_index, probe in enumerate(suite.probes):
        if probe.group == CSID and not suite.full_spectrum:
            continue  # covariate-shifted in-distribution: only the full-spectrum setting uses it
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
    planner = _Planner(suite, store, data, points)
    for model_index in range(len(suite.models)):
        planner.model(model_index)
    return Plan(tuple(planner.jobs.values()), tuple(skipped), suite.shard_size, tuple(planner.rows),
                tuple(planner.checks()))


__all__ = ["AttackSpec", "decide_early_stop", "job_config", "make_plan", "split"]
