"""A run: plan → execute → store → score, and the in-memory :func:`evaluate`.

``run_suite`` is the seam between the stages and holds no logic of its own (a run's table is
shaped by :mod:`oodbench.pipeline.score.wide`, printed by :mod:`oodbench.report.tables`, and its
provenance recorded by :mod:`oodbench.core.provenance`): the planner
(:mod:`oodbench.pipeline.plan`) names every job by its content key and finds what the store holds; an
executor (:mod:`oodbench.pipeline.execute`, ``local`` by default) runs the missing shards while the
driver stores each one; the scorer (:mod:`oodbench.pipeline.score`) turns the stored arrays into the
metrics of every row. Adding a metric therefore never re-runs a model, and a killed run resumes
from its last stored shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
from torch import nn

from oodbench.data import ImageSet, num_classes, to_shape
from oodbench.models.output_check import check_outputs
from oodbench.pipeline.execute import (Executor, RunContext, RunProgress, SuiteData, Workspace, execute,
                              forward_logits, resolve_device)
from oodbench.core.jobs import JobKind
from oodbench.core.detectors import DEFAULT_DETECTOR
from oodbench.pipeline.plan import Plan, make_plan
from oodbench.core.provenance import environment
from oodbench.core.registry import executors
from oodbench.pipeline.score import ArrayKey, RowKind, score_row
from oodbench.pipeline.score.table import MissingArraysError, TableScorer
from oodbench.pipeline.score.bracket import check_table
from oodbench.pipeline.score.wide import wide_table
from oodbench.pipeline.store import ResultStore
from oodbench.pipeline.suite import DEFAULT_METRICS, Suite

if TYPE_CHECKING:  # pragma: no cover
    from oodbench.detectors import Detector

__all__ = ["RunResult", "evaluate", "environment", "forward_logits", "plan_suite", "resolve_device",
           "run_suite", "score_plan", "wide_table"]



def evaluate(model: nn.Module, in_distribution: ImageSet, probes: Mapping[str, ImageSet] = {},
             *, metrics: Sequence[str] = DEFAULT_METRICS, batch_size: int = 256,
             device: str = "auto", seed: int = 0,
             detectors: Sequence[Union[str, "Detector"]] = (DEFAULT_DETECTOR,),
             fit: Optional[ImageSet] = None) -> pd.DataFrame:
    """Evaluate one in-memory model on in-memory data, without a suite or a store.

    Probes are converted to the in-distribution's shape first. ``detectors``: registered names
    or :class:`~oodbench.detectors.Detector` objects; those that need a fit read the labelled
    ``fit`` set. Returns the wide table (rows: the in-distribution set then each probe, per
    detector when there are several; columns: metrics).
    """
    from oodbench.detectors import FitData, build_detector
    from oodbench.detectors.passes import ForwardPasses
    from oodbench.pipeline.execute.forward import forward_outputs

    dev = resolve_device(device)
    if in_distribution.labels is None:
        raise ValueError(f"in-distribution set {in_distribution.name!r} has no labels")
    dets = [build_detector(d) if isinstance(d, str) else d for d in detectors]
    passes = ForwardPasses(tuple(dets))  # the plan's rule: which passes the detectors share
    sets = {in_distribution.name: in_distribution.images,
            **{name: to_shape(p.images, in_distribution.shape) for name, p in probes.items()}}
    labels = in_distribution.labels.numpy()
    features = passes.shared_features

    def outputs(images: Any, det: Optional["Detector"] = None, *, with_features: bool = features
                ) -> dict[str, np.ndarray]:
        return forward_outputs(model, images, detector=det, features=with_features and det is None,
                               batch_size=batch_size, device=dev)

    # one pass per set serves every detector but those that need the model to score (ODIN)
    shared = {name: outputs(images) for name, images in sets.items()}
    shared[in_distribution.name][ArrayKey.LABELS.value] = labels
    train = None
    if passes.first_fitted is not None:
        if fit is None or fit.labels is None:
            raise ValueError(f"detector {passes.first_fitted.name!r} needs a labelled `fit` set "
                             "to fit on")
        train = FitData.of(outputs(fit.images, with_features=True), fit.labels.numpy(), model)
    in_row = score_row(RowKind.IN_DISTRIBUTION, shared[in_distribution.name],
                       shared[in_distribution.name], metrics, seed=seed)
    rows: list[tuple[str, str, str, float]] = []
    for det in dets:
        own = shared if not passes.own_pass(det) else {
            name: {**outputs(images, det), ArrayKey.LABELS.value: labels}
            if name == in_distribution.name else outputs(images, det)
            for name, images in sets.items()}
        fitted = None if train is None or not passes.fitted(det) else det.fit(train)
        values = [(in_distribution.name, in_row)]
        values += [(name, score_row(RowKind.OOD, own[name], own[in_distribution.name], metrics,
                                    seed=seed, detector=det, fit=fitted))
                   for name in sets if name != in_distribution.name]
        rows += [(det.name, probe, metric, value) for probe, vals in values
                 for metric, value in vals.items()]
    long = pd.DataFrame([("model", d, p, m, v) for d, p, m, v in rows],
                        columns=["model", "detector", "probe", "metric", "value"])
    return wide_table(long, metrics).droplevel("model")


@dataclass
class RunResult:
    """What a run produced: where it is stored, its metrics, and which jobs were (re)computed."""

    run_id: int
    store_path: Path
    metrics: pd.DataFrame
    metric_order: list[str]
    computed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: How many of ``cached`` are second uses of a job this run computed (not from the store).
    shared: int = 0
    #: ``{probe label: group}`` of the suite: the group rows of :meth:`table`.
    groups: dict[str, str] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        return wide_table(self.metrics, self.metric_order, self.groups)


def _executor(choice: Union[str, Executor, None], suite: Suite, workspace: Workspace,
              progress: RunProgress) -> Executor:
    if choice is not None and not isinstance(choice, str):
        return choice
    return executors.get(choice or suite.executor)(workspace, progress)


def _open(suite: Suite, data_root: Union[str, Path, None], output: Union[str, Path, None],
          device: Optional[str]) -> tuple[Path, Workspace]:
    dev = resolve_device(device or suite.device)
    store_path = suite.resolve_output(output)
    return store_path, Workspace(suite, SuiteData(suite, suite.resolve_data_root(data_root)),
                                 dev, store_path)


def plan_suite(suite: Suite, *, data_root: Union[str, Path, None] = None,
               output: Union[str, Path, None] = None,
               skip_missing: Optional[bool] = None) -> Plan:
    """The plan a run of ``suite`` would execute against its results store (nothing runs, and
    no store is created: without one, every job is to run)."""
    store_path, ws = _open(suite, data_root, output, "cpu")
    skip = suite.skip_missing if skip_missing is None else skip_missing
    with ResultStore(store_path if store_path.is_file() else ":memory:") as store:
        return make_plan(suite, store, ws.data, skip_missing=skip)


def score_plan(plan: Plan, store: ResultStore, suite: Suite) -> list[tuple[Any, ...]]:
    """Metric rows (model, detector, row, metric, value, job key, recipe) of an executed plan,
    from the store: each :class:`~oodbench.pipeline.plan.jobs.Row` scored by the one scorer."""
    spec = suite.in_distribution
    n_classes = num_classes(spec.dataset, spec.options) if spec.dataset else None
    scorer = TableScorer(store, suite.metrics, suite.seed)  # reads each job's arrays once
    for job in plan.jobs:
        try:
            arrays = scorer.arrays(job.key)
        except MissingArraysError:
            raise RuntimeError(f"{job.label}: job {job.key[:12]} is not complete in {store.path}") from None
        if job.kind is not JobKind.FIT and ArrayKey.LOGITS.value in arrays:
            # a job stored before the output check existed
            check_outputs(arrays[ArrayKey.LOGITS.value], model=job.model, data=job.row,
                          n_classes=n_classes)
    rows: list[tuple[Any, ...]] = []
    for row in plan.table:
        values = scorer.score(kind=row.kind, points=row.points, reference=row.reference,
                              detector=row.detector_spec, fit=row.fit, versus=row.versus,
                              extra_references=row.extra_references)
        rows += [(row.model, row.detector, row.label, metric, value, row.points, row.recipe())
                 for metric, value in values.items()]
    check_table(scorer, plan.table)  # certified >= attacked >= clean per point, or a bug
    return rows


def run_suite(suite: Suite, *, data_root: Union[str, Path, None] = None,
              output: Union[str, Path, None] = None, device: Optional[str] = None,
              skip_missing: Optional[bool] = None, progress: bool = True,
              executor: Union[str, Executor, None] = None) -> RunResult:
    """Run every shard of ``suite`` that the results store lacks; return the run's metrics.

    ``executor``: a registered executor's name (default: the suite's ``executor``) or an
    :class:`~oodbench.pipeline.execute.Executor` object.
    """
    skip = suite.skip_missing if skip_missing is None else skip_missing
    store_path, ws = _open(suite, data_root, output, device)
    with ResultStore(store_path) as store:
        plan = make_plan(suite, store, ws.data, skip_missing=skip)
        run_id = store.start_run(suite_name=suite.name, suite_hash=suite.content_hash(),
                                 suite_json=suite.model_dump(mode="json"),
                                 environment=environment(ws.device))
        bars = RunProgress(plan, enabled=progress)
        ctx = RunContext.of(suite, data_root=ws.data.root, device=ws.device, store_path=store_path)
        done = execute(plan, store, _executor(executor, suite, ws, bars), ctx,
                       metrics=list(suite.metrics), progress=bars)
        result = RunResult(run_id, store_path, pd.DataFrame(), list(suite.metrics),
                           skipped=list(plan.skipped),
                           groups={p.label: p.group for p in suite.probes if p.group})
        first_use: set[str] = set()
        for job in plan.jobs:
            computed = job.key in done.computed and job.key not in first_use
            if job.key in done.computed and not computed:
                result.shared += 1  # one job computed here, used under a second name
            first_use.add(job.key)
            (result.computed if computed else result.cached).append(job.label)
            store.record_job_use(run_id, job.key, model=job.model,
                                 probe=None if job.kind is JobKind.CLEAN else job.row,
                                 cached=not computed)
        store.put_metrics(run_id, score_plan(plan, store, suite))
        store.finish_run(run_id, skipped=result.skipped)
        result.metrics = store.metrics_frame(run_id)
    return result
