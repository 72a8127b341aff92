"""The typed contract between planning, execution and scoring.

A :class:`Plan` is a tuple of frozen :class:`Job`\\ s. A job's ``key`` is the sha256 of what
determines its output and never of another job's *results* (an attack's early-stop threshold,
computed from the clean logits, is recorded with the stored shard instead), so every job of a
suite can be named, looked up and costed before anything runs. A job over N points is cut into
:class:`Shard`\\ s, the unit that is stored, resumed and scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from oodbench.core.cost import Cost
from oodbench.core.detectors import DEFAULT_DETECTOR, DetectorRef
from oodbench.core.jobs import JobKind, ShardState
from oodbench.core.rows import RowKind

if TYPE_CHECKING:  # pragma: no cover (annotations only; a downward import)
    from oodbench.attacks.base import AttackSpec


@dataclass(frozen=True)
class Shard:
    """Points ``[start, stop)`` of a job. ``positions``: which of them (counted from
    ``start``) a PARTIAL shard attacks again — the points that stopped at a looser threshold
    than this run needs, decided by the planner and executed as planned."""

    start: int
    stop: int
    state: ShardState = ShardState.MISSING
    positions: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def reattack(self) -> int:
        """How many points a PARTIAL shard attacks again."""
        return len(self.positions)


@dataclass(frozen=True)
class EarlyStop:
    """The early stop the plan decided for an attack job: the threshold its attacked points
    stop above (None: no early stop, the full budget). Stored shards that stopped at a looser
    threshold are PARTIAL, with the points to attack again."""

    threshold: Optional[float] = None


@dataclass(frozen=True)
class Job:
    """One unit of computation of a run.

    ``model`` and ``row`` are display names: they belong to the run that uses the job, not to the
    job (one checkpoint under two names is one job). ``model_index`` / ``probe_index`` point back
    into the suite, so a job can be turned into a task described by plain data.
    """

    key: str
    kind: JobKind
    model: str
    row: str
    config: dict[str, Any]
    n_points: int
    shards: tuple[Shard, ...]
    cost: Cost
    model_index: int
    probe_index: Optional[int] = None
    attack: Optional["AttackSpec"] = None
    depends_on: tuple[str, ...] = ()
    shardable: bool = True
    #: The detector whose score this job computes or attacks (None: a forward pass every
    #: logit detector shares, or a msp attack).
    detector: Optional[DetectorRef] = None
    #: The fit job whose arrays the detector reads (attacks on a fitted detector).
    fit_key: Optional[str] = None
    #: Whether a forward job stores penultimate features beside the logits.
    features: bool = False
    #: The clean job whose scores give an attack's early-stop threshold.
    reference_key: Optional[str] = None
    #: The suite's label of the detector the job serves alone (None: shared by detectors).
    detector_label: Optional[str] = None
    #: An attack job's early stop and, with it, its shards' states. None for other jobs, and
    #: for an attack job planned before its clean (or fit) job was stored: its threshold comes
    #: from their arrays, so :func:`~oodbench.pipeline.plan.planner.decide_early_stop` decides it once
    #: they are (the driver asks for it when the job becomes ready).
    early_stop: Optional[EarlyStop] = None

    @property
    def decided(self) -> bool:
        """Whether every shard's state is final (only an attack job may wait for its inputs)."""
        return self.kind is not JobKind.ATTACK or self.early_stop is not None

    @property
    def label(self) -> str:
        """``model / row``, and the detector a job serves alone (msp's jobs read as always)."""
        own = self.detector_label not in (None, DEFAULT_DETECTOR)
        return f"{self.model} / {self.row}" + (f" [{self.detector_label}]" if own else "")

    @property
    def cached(self) -> bool:
        return all(s.state is ShardState.CACHED for s in self.shards)

    @property
    def remaining_cost(self) -> Cost:
        """The estimated cost of what is not stored yet (re-attacked points count in full)."""
        todo = sum(s.size if s.state is ShardState.MISSING else s.reattack for s in self.shards)
        return self.cost.scaled(todo / self.n_points) if self.n_points else Cost()


@dataclass(frozen=True)
class Row:
    """One row of the results table and the jobs it is scored from: the typed contract between
    the planner and the scorer (which reads the store, never the suite).

    ``points``: the job whose arrays are the row's points (the OOD side; for in-distribution
    rows, the in-distribution points). ``reference``: the job with the clean in-distribution
    arrays this detector's OOD rows are ranked against. ``fit``: the detector's fit job.
    ``versus``: for an attacked in-distribution row, the job of its OOD side.
    ``extra_references``: jobs whose points join ``reference`` on the in-distribution side of an
    OOD row (OpenOOD's full-spectrum setting: the covariate-shifted in-distribution sets).
    """

    model: str
    detector: str
    label: str
    kind: RowKind
    points: str
    reference: str
    detector_spec: DetectorRef
    fit: Optional[str] = None
    versus: Optional[str] = None
    extra_references: tuple[str, ...] = ()

    def recipe(self) -> dict[str, Any]:
        """What the store keeps with the row's metrics, so ``verify`` recomputes them alone."""
        recipe = {"kind": self.kind.value, "points": self.points, "reference": self.reference,
                  "detector": self.detector_spec.plain(), "fit": self.fit, "versus": self.versus}
        if self.extra_references:  # only full-spectrum rows: recipes stored before stay as they were
            recipe["extra_references"] = list(self.extra_references)
        return recipe


@dataclass(frozen=True)
class Plan:
    """Every job of a suite in execution order (each job after the jobs it depends on), and
    the table rows they make."""

    jobs: tuple[Job, ...]
    skipped: tuple[str, ...] = ()
    shard_size: int = 0
    #: The table rows the jobs make, in table order (what the scorer scores).
    table: tuple[Row, ...] = ()
    #: The trust checks (:mod:`oodbench.checks`) of the jobs: ``kind`` CHECK, ``config["job"]``
    #: the checked job, ``config["codes"]`` the checks it runs. Not in ``jobs``: they make no
    #: arrays and no rows, only flags, and the job table and cost above leave them out.
    checks: tuple[Job, ...] = ()

    @property
    def cost(self) -> Cost:
        return sum((j.cost for j in self.jobs), Cost())

    @property
    def remaining_cost(self) -> Cost:
        return sum((j.remaining_cost for j in self.jobs), Cost())

    def rows(self) -> list[dict[str, Any]]:
        """The job table ``oodbench plan`` prints: one dict per job."""
        out = []
        for j in self.jobs:
            states = [s.state for s in j.shards]
            if j.cached:
                status = "cached"
            elif all(s is ShardState.MISSING for s in states):
                status = "to run"
            else:
                done = sum(s is ShardState.CACHED for s in states)
                status = f"{done}/{len(states)} shards cached"
                reattack = sum(s.reattack for s in j.shards)
                if reattack:
                    status += f", re-attack {reattack} pts"
            version = None if j.attack is None else j.attack.version
            kind = j.kind.value + (f" ({version})" if version not in (None, "paper") else "")
            out.append({"model": j.model, "detector": j.detector_label or "·", "row": j.row,
                        "kind": kind,
                        "points": j.n_points, "shards": len(j.shards), "status": status,
                        "forward": j.remaining_cost.forward,
                        "gradient": j.remaining_cost.gradient})
        return out


def format_plan(plan: Plan) -> str:
    """The job table ``oodbench plan`` and ``oodbench run --dry-run`` print, with the totals."""
    import pandas as pd

    rows = plan.rows()
    if not rows:
        return "nothing to run"
    table = pd.DataFrame(rows).rename(columns={"forward": "fwd evals", "gradient": "grad evals"})
    if set(table["detector"]) <= {"·", DEFAULT_DETECTOR}:  # msp alone: the plan reads as it always did
        table = table.drop(columns="detector")
    cost, cached = plan.remaining_cost, sum(j.cached for j in plan.jobs)
    lines = [table.to_string(index=False), "",
             f"{len(plan.jobs)} jobs, {cached} cached, {len(plan.jobs) - cached} to run "
             f"(shards of at most {plan.shard_size} points)",
             f"estimated work: {cost.forward:,} forward + {cost.gradient:,} gradient evaluations "
             "(an upper bound: early stops and broken points need less)"]
    if plan.skipped:
        lines.append(f"probes skipped (data missing): {', '.join(plan.skipped)}")
    if plan.checks:
        todo = [c for c in plan.checks if not c.cached]
        lines.append(f"trust checks: {len(plan.checks)} jobs checked, {len(todo)} to check "
                     f"({sum(c.cost.work for c in todo):,} gradient-evaluation equivalents)")
    return "\n".join(lines)
