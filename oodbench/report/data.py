"""What a report reads from the results store: a run's metrics, what each row is, and checks.

Every metrics row of a run is tied to the stored job it was computed from (``job_hash``). Before
a report uses a run, :func:`verify_run` checks that the run is complete (it finished and has
every row its stored suite asks for), those ties (against the run's own record of which job it
used under which names) and the checksums of the jobs' arrays — read-only, unlike
:meth:`ResultStore.get_job` on a writable store, which deletes a corrupt job so that the next
run recomputes it — so that an edited, damaged or unfinished results file is never silently
turned into a table. :func:`audit_run` adds :func:`recompute_metrics` (every metric recomputed
from the stored arrays by the one scorer): ``verify``, ``report``, ``show``, ``plot`` and the
leaderboard print only recomputed values, and only when they equal the stored ones.
Everything is read through :class:`ResultStore`'s public read API.

Each table row (probe) gets a *kind* (:class:`~oodbench.core.rows.TableKind`), from the run's
suite (``runs.suite_json``): a clean probe's from its data set's registry meta, an attack's as
the attack declares it (:meth:`oodbench.attacks.base.Attack.shown_as`):

=================  =================================================================
``in-distribution``  the in-distribution test set (test error, MMC, ECE)
``ood``              a clean OOD probe on a real data set
``noise``            a clean probe on a synthetic data set (uniform / smoothed noise)
``adversarial``      an attack scored as an OOD row (adversarial noise, adversarial samples)
``worst-case``       an attack whose AUROC is a worst-case AUROC (the ``worst-case`` attack)
``robust``           an attack scored like the in-distribution row (AutoAttack: robust error)
``summary``          an attack's own quantities (α-scaling, counterfactuals)
``group``            the mean over a ``group:`` of probes (near, far; :mod:`oodbench.pipeline.score.groups`)
``unit-tests``       how many of NINCO's OOD unit tests each model fails
=================  =================================================================
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from oodbench.core.detectors import DEFAULT_DETECTOR, DetectorRef
from oodbench.core.errors import ReportError
from oodbench.core.rows import CLEAN_OOD, RowKind, TableKind  # noqa: F401 (CLEAN_OOD: its old home)
from oodbench.models.libraries.preprocessing import suite_overrides
from oodbench.report.protocols import attack_protocols
from oodbench.pipeline.score.groups import UNIT_TESTS, group_label
from oodbench.pipeline.store import JobRecord, ResultStore, RunRecord

KINDS = tuple(TableKind)  # the kinds a row can have (defined, with CLEAN_OOD, in core.rows)


class UnverifiedResultsError(ReportError):
    """The run's stored metrics do not check out against the stored jobs."""

    def __init__(self, path: Path, run_id: int, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: run {run_id} does not verify, refusing to report it "
                         f"({len(problems)} problem(s)):\n{listing}\n"
                         f"`oodbench verify {path}` lists every problem; re-run the suite to "
                         "recompute it (into a new store if this one was edited), or pass "
                         "allow_unverified=True (--allow-unverified) to report its stored "
                         "values anyway.")


def _names(names: set[tuple[str, Optional[str]]], in_label: str) -> set[tuple[str, str]]:
    """(model, row label) pairs of a run's record of a job (probe None: the in-distribution row)."""
    return {(model, probe or in_label) for model, probe in names}


def suite_detectors(suite: dict[str, Any]) -> list[tuple[str, DetectorRef]]:
    """(label, reference) of a stored suite's detectors; a suite of an oodbench before
    detectors existed scored with msp alone."""
    out = []
    for entry in suite.get("detectors") or [{"name": DEFAULT_DETECTOR}]:
        entry = entry if isinstance(entry, dict) else {"name": str(entry)}
        ref = DetectorRef(str(entry.get("name", DEFAULT_DETECTOR)), entry.get("params") or {})
        out.append((str(entry.get("label") or ref.name), ref))
    return out


def _row_exists(detector: DetectorRef, attack_name: Optional[str]) -> bool:
    """Whether the planner makes this detector's row of a probe (see
    :func:`oodbench.detectors.attack.scores_row`); unknown names: assume it does."""
    from oodbench.detectors import build_detector
    from oodbench.detectors.attack import scores_row
    from oodbench.core.registry import UnknownNameError, attacks

    try:
        det = build_detector(detector.name, detector.params)
        attack = None if attack_name is None else attacks.get(attack_name)()
    except (UnknownNameError, ValueError):
        return True
    return scores_row(det, attack)


def expected_rows(run: RunRecord) -> list[tuple[str, str, str, Optional[RowKind]]]:
    """The (model, detector, row label, row kind) a finished run of its suite stores, in table
    order: per model and detector, the in-distribution row, then every probe it did not skip
    for missing data and the detector scores. Row kind: how the row is scored (its metrics are
    the suite's ones whose scope covers it; a summary row holds its attack's own quantities),
    or None (an attack not registered here)."""
    in_label, labels = _suite_labels(run.suite)
    kinds: list[Optional[RowKind]] = []
    names: list[Optional[str]] = []
    versus: list[Optional[str]] = []
    specs = run.suite.get("probes") or []
    for spec in specs:
        attack = (spec or {}).get("attack") if isinstance(spec, dict) else None
        names.append(str(attack.get("name", "")) if attack else None)
        kinds.append(_attack_row(str(attack.get("name", ""))) if attack else RowKind.OOD)
        versus.append(spec.get("versus") if isinstance(spec, dict) else None)
    models = [str(m.get("name")) for m in run.suite.get("models") or [] if isinstance(m, dict)]
    rows: list[tuple[str, str, str, Optional[RowKind]]] = []
    for model in models:
        for det_label, det in suite_detectors(run.suite):
            rows.append((model, det_label, in_label, RowKind.IN_DISTRIBUTION))
            rows += [(model, det_label, label, kind)
                     for label, kind, name, target, spec in zip(labels, kinds, names, versus, specs)
                     if label not in run.skipped and target not in run.skipped
                     and _row_exists(det, name) and not _joins_in_distribution(spec)]
    return rows


def _joins_in_distribution(spec: Any) -> bool:
    """A covariate-shifted in-distribution probe (``group: csid``) makes no row of its own."""
    from oodbench.pipeline.score.groups import CSID

    return isinstance(spec, dict) and spec.get("group") == CSID


def completeness_problems(store: ResultStore, run_id: int) -> list[str]:
    """Why run ``run_id`` is not a complete table (empty when it is): the run is missing, did
    not finish (interrupted or failed), or lacks rows or metrics its stored suite asks for.
    Cheap (no arrays are read), so ``show`` checks it too."""
    from oodbench.metrics import row_metric_names
    from oodbench.core.registry import UnknownNameError

    run = store.run_record(run_id)
    if run is None:
        return [f"run {run_id} is not in the store"]
    problems: list[str] = []
    if run.finished is None:
        problems.append(f"run {run_id} did not finish (interrupted, or it failed): its results "
                        "are incomplete; run the suite again (stored jobs are reused)")
    have: dict[tuple[str, str, str], set[str]] = {}
    for row in store.metric_rows(run_id):
        have.setdefault((row.model, row.detector, row.probe), set()).add(row.metric)
    if not have:
        return problems + [f"run {run_id} has no metrics stored"]
    asked = [str(m) for m in run.suite.get("metrics") or []]
    several = len(suite_detectors(run.suite)) > 1
    for model, detector, label, kind in expected_rows(run):
        where = f"{model} / {detector} / {label}" if several else f"{model} / {label}"
        stored = have.get((model, detector, label))
        if stored is None:
            problems.append(f"{where}: no metrics stored")
            continue
        if kind is None or not asked:
            continue
        try:
            wanted = row_metric_names(asked, kind)  # none for a summary row
        except UnknownNameError:  # a plugin metric not installed here: cannot tell
            continue
        problems += [f"{where} / {m}: missing" for m in wanted if m not in stored]
    return problems


def suite_hash_problems(store: ResultStore, run_id: int) -> list[str]:
    """Whether the run's stored suite still hashes to the suite hash recorded when it ran (a
    suite whose metric or probe list was cut, together with the rows it no longer asks for,
    is otherwise a complete run of a smaller suite). A suite that does not validate here (an
    older or plugin-using oodbench) cannot be checked and is not reported."""
    from oodbench.pipeline.suite import SuiteError, parse_suite

    run = store.run_record(run_id)
    if run is None or not run.suite:
        return []
    try:
        actual = parse_suite(run.suite).content_hash()
    except (SuiteError, ValueError, TypeError, LookupError):
        return []
    if actual == run.suite_hash:
        return []
    return [f"run {run_id}'s stored suite hashes to {actual[:12]}, but the run recorded suite "
            f"{run.suite_hash[:12]} when it ran: its stored suite (runs.suite_json) was "
            "edited, so its table may be shorter than the run's plan"]


def verify_run(store: ResultStore, run_id: int) -> list[str]:
    """Problems with run ``run_id`` of ``store`` (empty when it verifies). Reads, never writes.

    Checks: the run exists, finished and has every row and metric its suite asks for
    (:func:`completeness_problems`); every metrics row names a job (``job_hash``) that is in
    ``jobs``, that the run recorded using under the row's model and probe names (names belong to
    the run, not to the content-addressed job), and whose arrays pass
    :meth:`ResultStore.array_problems` (checksums over key, dtype, shape and bytes). A metric
    value edited in place is caught by :func:`recompute_metrics`, which :func:`audit_run` adds:
    every command that prints a number runs both.
    """
    problems = completeness_problems(store, run_id) + suite_hash_problems(store, run_id)
    run = store.run_record(run_id)
    if run is None:
        return problems
    in_label = _suite_labels(run.suite)[0]
    names = store.job_names(run_id)
    jobs: dict[str, Optional[JobRecord]] = {}
    seen: set[tuple[str, str, str]] = set()
    for row in store.metric_rows(run_id):
        where = f"{row.model} / {row.probe}"
        if row.job_hash is None:
            problems.append(f"{where} / {row.metric}: metrics row names no job (job_hash is empty)")
            continue
        if (row.model, row.probe, row.job_hash) in seen:
            continue
        seen.add((row.model, row.probe, row.job_hash))
        short = row.job_hash[:12]
        if row.job_hash not in jobs:
            jobs[row.job_hash] = store.job_record(row.job_hash)
        if jobs[row.job_hash] is None:
            problems.append(f"{where}: its metrics name job {short}, which is not in the jobs "
                            "table (deleted, or the job_hash was edited)")
            continue
        used = _names(names.get(row.job_hash, set()), in_label)
        if not used:
            problems.append(f"{where}: job {short} is not recorded as used by run {run_id}")
        elif (row.model, row.probe) not in used:
            problems.append(f"{where}: its metrics name job {short}, which belongs to "
                            f"{', '.join(f'{m} / {p}' for m, p in sorted(used))} in run {run_id}")
    for job_hash in sorted(h for h, job in jobs.items() if job is not None):
        used = _names(names.get(job_hash, set()), in_label)
        what = ", ".join(f"{m} / {p}" for m, p in sorted(used)) or "unused"
        problems += [f"job {job_hash[:12]} ({what}): {p}" for p in store.array_problems(job_hash)]
    return problems


def _same_value(stored: Optional[float], computed: Optional[float]) -> bool:
    def nan(v: Optional[float]) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    return (nan(stored) and nan(computed)) or (not nan(stored) and not nan(computed)
                                               and float(stored) == float(computed))


MetricKey = tuple[str, str, str, str]
"""A stored metric value's place: (model, detector, probe, metric)."""


def _where(model: str, detector: str, probe: str, several: bool) -> str:
    return f"{model} / {detector} / {probe}" if several or detector != DEFAULT_DETECTOR else f"{model} / {probe}"


def recompute_metrics(store: ResultStore, run_id: int) -> tuple[dict[MetricKey, Optional[float]], list[str]]:
    """Every metric value of a run recomputed from its stored arrays, and the values that differ
    from the stored ones (or cannot be recomputed here).

    Uses the run's own scorer (:class:`oodbench.pipeline.score.table.TableScorer` on the row recipes
    stored beside the metrics; :func:`oodbench.pipeline.score.score_row` for rows stored before recipes
    existed), with the run's seed, so an honest file reproduces every value bit for bit. Reads
    the arrays through the store (a corrupt job, which :func:`verify_run` names, is missing
    here). Rows whose attack is not registered here are reported as not recomputable.
    """
    from oodbench.core.registry import UnknownNameError
    from oodbench.pipeline.score import row_of_job, score_row
    from oodbench.pipeline.score.table import MissingArraysError, TableScorer
    from oodbench.pipeline.store import CorruptEntryWarning

    run = store.run_record(run_id)
    suite = run.suite if run is not None else {}
    seed = int(suite.get("seed", 0))
    in_label = _suite_labels(suite)[0]
    by_row: dict[tuple[str, str, str, Optional[str]], dict[str, Optional[float]]] = {}
    recipes: dict[tuple[str, str, str, Optional[str]], Optional[dict[str, Any]]] = {}
    for row in store.metric_rows(run_id):
        key = (row.model, row.detector, row.probe, row.job_hash)
        by_row.setdefault(key, {})[row.metric] = row.value
        recipes[key] = row.recipe
    several = len({detector for _, detector, _, _ in by_row}) > 1
    values: dict[MetricKey, Optional[float]] = {}
    problems: list[str] = []
    with warnings.catch_warnings():  # a corrupt job is verify_run's to name
        warnings.simplefilter("ignore", CorruptEntryWarning)
        clean = {model: job_hash for model, _, probe, job_hash in by_row if probe == in_label}
        clean_arrays_of = {model: store.get_job(job_hash) for model, job_hash in clean.items()
                           if job_hash is not None}
        scorers: dict[tuple[str, ...], TableScorer] = {}
        for (model, detector, probe, job_hash), stored in by_row.items():
            where = _where(model, detector, probe, several)
            names = list(suite.get("metrics") or stored)  # as the run computed them
            recipe = recipes[(model, detector, probe, job_hash)]
            try:
                if recipe is not None:
                    scorer = scorers.setdefault(tuple(names), TableScorer(store, names, seed))
                    computed = scorer.score(**recipe)
                else:
                    arrays = (clean_arrays_of.get(model) if job_hash == clean.get(model)
                              else None if job_hash is None else store.get_job(job_hash))
                    clean_arrays = clean_arrays_of.get(model)
                    if arrays is None or clean_arrays is None:
                        raise MissingArraysError(where)
                    job = store.job_record(job_hash) if job_hash else None
                    kind, attack = row_of_job(job.config if job is not None else {})
                    computed = score_row(kind, arrays, clean_arrays, names, seed=seed, attack=attack)
            except MissingArraysError:
                problems.append(f"{where}: its arrays (or its model's clean pass) are missing, so "
                                "its metrics cannot be recomputed")
                continue
            except (UnknownNameError, KeyError, TypeError, ValueError) as err:
                problems.append(f"{where}: its metrics cannot be recomputed here ({err})")
                continue
            for metric, value in stored.items():
                values[(model, detector, probe, metric)] = computed.get(metric)
                if metric not in computed and metric not in names:
                    problems.append(f"{where} / {metric}: stored {value!r}, but the run's suite "
                                    "does not ask for this metric (its stored suite was edited?)")
                elif not _same_value(value, computed.get(metric)):
                    problems.append(f"{where} / {metric}: stored {value!r}, but the stored "
                                    f"arrays give {computed.get(metric)!r} (edited in place?)")
            problems += [f"{where} / {metric}: missing (the stored arrays give {value!r})"
                         for metric, value in computed.items() if metric not in stored]
    return values, problems


def recomputed_metric_problems(store: ResultStore, run_id: int) -> list[str]:
    """Metric values of a run that differ from the same metrics recomputed from its stored
    arrays (:func:`recompute_metrics`)."""
    return recompute_metrics(store, run_id)[1]


@dataclass(frozen=True)
class Audit:
    """A run checked as every command checks it before it prints a number: ``problems`` (those
    of :func:`verify_run`, then of recomputation; empty: the run may be printed), ``mismatches``
    (stored values that differ from their recomputation, or cannot be recomputed) and the
    recomputed ``values`` the products print."""

    problems: list[str]
    mismatches: list[str]
    values: dict[MetricKey, Optional[float]]


def audit_run(store: ResultStore, run_id: int) -> Audit:
    """:func:`verify_run` and :func:`recompute_metrics` of run ``run_id``: what ``verify``,
    ``report``, ``show``, ``plot`` and the leaderboard check (one scoring path for all)."""
    problems = verify_run(store, run_id)
    values, mismatches = recompute_metrics(store, run_id)
    return Audit(problems + mismatches, mismatches, values)


def recomputed_frame(store: ResultStore, run_id: int,
                     values: dict[MetricKey, Optional[float]]) -> pd.DataFrame:
    """:meth:`ResultStore.metrics_frame` of the run with every value replaced by its
    recomputation (``values`` of a run whose :class:`Audit` has no mismatches: the same
    numbers, now taken from the arrays rather than from the ``metrics`` table)."""
    frame = store.metrics_frame(run_id)
    keys = zip(frame["model"], frame["detector"], frame["probe"], frame["metric"])
    recomputed = [values[key] for key in keys]
    return frame.assign(value=[math.nan if v is None else float(v) for v in recomputed])


# --------------------------------------------------------------------------- a run, classified


@dataclass
class Probe:
    """One table row of a run: its label, kind and suite entry (``None`` for the in-dist row)."""

    label: str
    kind: TableKind
    spec: Optional[dict[str, Any]] = None

    def identity(self, with_n: bool = True) -> Optional[tuple[Any, ...]]:
        """What the data is (as in the runner's cache key), for pairing attacks with probes."""
        if not self.spec or not self.spec.get("dataset"):
            return None
        s = self.spec
        return (s.get("dataset"), s.get("split", "test"), s.get("n") if with_n else None,
                json.dumps(s.get("options") or {}, sort_keys=True))


@dataclass(frozen=True)
class RowFlag:
    """A stored flag as a table shows it: the ``model``, the ``row`` it concerns (None: the model
    itself, from its clean job), the ``detectors`` whose rows use the flagged job, the code and
    the detail."""

    model: str
    row: Optional[str]
    detectors: tuple[str, ...]
    code: str
    detail: str

    def where(self, with_detectors: bool = False) -> str:
        text = self.model if self.row is None else f"{self.model} / {self.row}"
        return text + (f" [{', '.join(self.detectors)}]" if with_detectors and self.detectors else "")


def run_flags(store: ResultStore, run_id: int) -> list[RowFlag]:
    """The flags of the jobs run ``run_id``'s rows are computed from (:mod:`oodbench.checks`),
    in table order: a model's own flags (on its clean job) first, then per row."""
    run = store.run_record(run_id)
    if run is None:
        return []
    in_label = _suite_labels(run.suite)[0]
    uses: dict[str, dict[tuple[str, Optional[str]], list[str]]] = {}
    for row in store.metric_rows(run_id):
        if row.job_hash is None:
            continue
        key = (row.model, None if row.probe == in_label else row.probe)
        dets = uses.setdefault(row.job_hash, {}).setdefault(key, [])
        if row.detector not in dets:
            dets.append(row.detector)
    order = {k: i for i, k in enumerate(dict.fromkeys(k for d in uses.values() for k in d))}
    out = []
    for job_hash, code, detail in store.flags(list(uses)):
        for (model, row), dets in uses[job_hash].items():
            out.append(RowFlag(model, row, tuple(dets) if row is not None else (), code, detail))
    return sorted(out, key=lambda f: (f.row is not None, order[(f.model, f.row)], f.code))


def format_flags(flags: list[RowFlag], several_detectors: bool = False) -> str:
    """The lines ``oodbench show`` and ``oodbench run`` print after the table (empty: none)."""
    if not flags:
        return ""
    lines = [f"flags ({len(flags)}; trust checks, see README \"Trust\"):"]
    lines += [f"  - {f.where(several_detectors)}: {f.code}: {f.detail}" for f in flags]
    return "\n".join(lines)


@dataclass
class RunData:
    """A stored run ready for layouts: suite metadata, rows in order, and the metric values."""

    run_id: int
    name: str
    description: str
    in_label: str
    models: list[str]
    probes: list[Probe]
    metrics: pd.DataFrame  # model, probe, metric, value, kind
    declared: list[str] = field(default_factory=list)  # every probe of the suite, skipped ones too
    intervals: dict[tuple[str, str, str], tuple[float, float]] = field(default_factory=dict)
    #: The trust checks' flags of the run's jobs (:func:`run_flags`).
    flags: list[RowFlag] = field(default_factory=list)
    #: ``{probe label: group}`` of the suite (:mod:`oodbench.pipeline.score.groups`).
    groups: dict[str, str] = field(default_factory=dict)
    #: ``{row label: the protocol that produced it}`` of the attacked rows
    #: (:mod:`oodbench.report.protocols`).
    protocols: dict[str, str] = field(default_factory=dict)
    #: ``{model: (library config, fields)}``: preprocessing the suite set over a model's library
    #: config (:func:`oodbench.models.libraries.preprocessing.suite_overrides`).
    overrides: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    _values: dict[tuple[str, str, str], float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._values = {(m, p, k): v for m, p, k, v in
                        self.metrics[["model", "probe", "metric", "value"]].itertuples(index=False)}

    def value(self, model: str, probe: str, metric: str) -> Optional[float]:
        """The stored value, or None when absent or not a number."""
        v = self._values.get((model, probe, metric))
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    def interval(self, model: str, probe: str, metric: str) -> Optional[tuple[float, float]]:
        """The bootstrap interval of a value (:func:`with_intervals`), or None."""
        return self.intervals.get((model, probe, metric))

    def of_kind(self, *kinds: TableKind) -> list[Probe]:
        return [p for p in self.probes if p.kind in kinds]

    @property
    def caption(self) -> str:
        return f"{self.name}: {self.description}" if self.description else self.name


def _label(spec: dict[str, Any]) -> str:
    """A suite entry's table label, as :attr:`oodbench.pipeline.suite.DataSpec.label` makes it."""
    attack = spec.get("attack") or {}
    return str(spec.get("name") or spec.get("dataset") or attack.get("name") or "?")


def _suite_labels(suite: dict[str, Any]) -> tuple[str, list[str]]:
    in_spec = suite.get("in_distribution") or {}
    return (_label(in_spec) if in_spec else "in-distribution",
            [_label(p) for p in suite.get("probes") or []])


def _attack_row(name: str) -> Optional[RowKind]:
    from oodbench.core.registry import UnknownNameError, attacks

    try:
        return RowKind(attacks.get(name).row)
    except UnknownNameError:
        return None


def _attack_kind(name: str) -> Optional[TableKind]:
    """What the attack declares its row to be in a report (None: not registered here)."""
    from oodbench.core.registry import UnknownNameError, attacks

    try:
        return attacks.get(name).shown_as()
    except UnknownNameError:
        return None


def _row_by_metrics(metric_names: set[str]) -> RowKind:
    """How a row of an attack not registered here was scored, told by the metrics it holds."""
    if "test-error" in metric_names:
        return RowKind.IN_DISTRIBUTION
    return RowKind.OOD if "auroc" in metric_names else RowKind.SUMMARY


def _is_synthetic(dataset: Optional[str]) -> bool:
    from oodbench.core.registry import UnknownNameError, datasets

    if not dataset:
        return False
    try:
        return datasets.meta(dataset).get("kind") == "synthetic"
    except UnknownNameError:
        return "noise" in dataset


def probe_kind(spec: Optional[dict[str, Any]], metric_names: set[str]) -> TableKind:
    """The kind of a probe row from its suite entry (see the module doc); unknown attacks are
    classified by the metrics their row holds."""
    if spec is None:
        row = _row_by_metrics(metric_names)
        return TableKind.OOD if row is RowKind.OOD else TableKind.of_attack(row)
    attack = spec.get("attack")
    if attack:
        declared = _attack_kind(str(attack.get("name", "")))
        # an attack not registered here (a plugin that is not installed): by its metrics
        return declared or TableKind.of_attack(_row_by_metrics(metric_names))
    return TableKind.of_probe(_is_synthetic(spec.get("dataset")))


def find_run(store: ResultStore, run_id: Optional[int]) -> RunRecord:
    """Run ``run_id`` (default: the latest), or a :class:`ReportError` listing the stored runs."""
    rid = store.latest_run_id() if run_id is None else run_id
    record = None if rid is None else store.run_record(rid)
    if record is None:
        known = ", ".join(str(i) for i in store.run_ids())
        raise ReportError(f"{store.path}: no run {rid if rid is not None else ''} in the store"
                          f" (runs: {known or 'none'})")
    return record


def load_run(store: ResultStore, run_id: Optional[int],
             values: Optional[dict[MetricKey, Optional[float]]] = None) -> RunData:
    """Run ``run_id`` (default: the latest) with every row classified, in-distribution first;
    ``values``: the recomputed values of an :class:`Audit` without mismatches, printed instead
    of the stored ones (None: the stored values, as an unverified report prints them)."""
    record = find_run(store, run_id)
    rid, suite = record.id, record.suite
    from oodbench.report.tables import fold_detectors
    from oodbench.pipeline.score.groups import probe_groups, with_group_rows

    groups = probe_groups(suite)
    frame = store.metrics_frame(rid) if values is None else recomputed_frame(store, rid, values)
    long = fold_detectors(with_group_rows(frame, groups))
    if long.empty:
        raise ReportError(f"{store.path}: run {rid} has no metrics"
                          + (" (it did not finish: interrupted, or it failed)"
                             if record.finished is None else ""))
    in_label, probe_labels = _suite_labels(suite)
    specs = dict(zip(probe_labels, suite.get("probes") or []))
    metric_sets = long.groupby("probe")["metric"].agg(set).to_dict()

    probes = [Probe(in_label, TableKind.IN_DISTRIBUTION)]
    group_labels = {group_label(g): g for g in groups.values()}
    for label in probe_labels + [p for p in dict.fromkeys(long["probe"])
                                 if p not in probe_labels and p != in_label]:
        if label in group_labels:
            kind = TableKind.UNIT_TESTS if group_labels[label] == UNIT_TESTS else TableKind.GROUP
            probes.append(Probe(label, kind))
        elif label in metric_sets:
            probes.append(Probe(label, probe_kind(specs.get(label), metric_sets[label]), specs.get(label)))
    kinds = {p.label: p.kind for p in probes}
    long = long.assign(kind=long["probe"].map(kinds))

    model_names = [str(m.get("name")) for m in suite.get("models") or []]
    present = list(dict.fromkeys(long["model"]))
    models = [m for m in model_names if m in present] + [m for m in present if m not in model_names]
    return RunData(run_id=rid, name=str(suite.get("name") or record.suite_name), groups=groups,
                   overrides=suite_overrides(suite.get("models") or []),
                   description=str(suite.get("description") or ""), in_label=in_label,
                   models=models, probes=probes, metrics=long,
                   declared=[in_label, *probe_labels], flags=run_flags(store, rid),
                   protocols=attack_protocols(store, rid))


def full_verification(store: ResultStore, run_id: int) -> list[str]:
    """The problems of :func:`verify_run` and of every metric recomputed from the stored arrays."""
    return audit_run(store, run_id).problems


def run_ci_level(store: ResultStore, run_id: int) -> Optional[float]:
    """The ``ci`` level the run's suite asked for, if any."""
    record = store.run_record(run_id)
    level = None if record is None else record.suite.get("ci")
    return float(level) if isinstance(level, (int, float)) and 0 < level < 1 else None


def with_intervals(store: ResultStore, run: RunData, level: float, *,
                   n_resamples: int = 1000) -> RunData:
    """``run`` with a bootstrap interval for every value that has one, computed from the stored
    arrays by :func:`oodbench.pipeline.score.bootstrap_intervals` with the run's seed (never re-running a
    model), each row scored by its own detector. Rows whose arrays are missing get none."""
    from oodbench.core.registry import UnknownNameError
    from oodbench.pipeline.score.labels import folds, shown_model
    from oodbench.pipeline.score import RowKind, row_of_job
    from oodbench.pipeline.score.bootstrap import bootstrap_mean_intervals, bootstrap_samples, percentile_intervals
    from oodbench.pipeline.score.groups import group_members
    from oodbench.pipeline.score.table import MissingArraysError, TableScorer

    record = store.run_record(run.run_id)
    seed = int((record.suite if record is not None else {}).get("seed", 0))
    stored = store.metric_rows(run.run_id)
    folded = folds(r.detector for r in stored)
    rows = list(dict.fromkeys((r.model, r.detector, r.probe, r.job_hash) for r in stored))
    recipes = {(r.model, r.detector, r.probe, r.job_hash): r.recipe for r in stored}
    clean = {m: h for m, d, p, h in rows if p == run.in_label}
    scorer = TableScorer(store, [], seed)
    intervals: dict[tuple[str, str, str], tuple[float, float]] = {}
    member_samples: dict[tuple[str, str], dict[str, list[float]]] = {}
    for model, detector, probe, job_hash in rows:
        shown = shown_model(model, detector, folded)
        recipe = recipes[(model, detector, probe, job_hash)]
        names = sorted({str(m) for m in run.metrics.loc[(run.metrics["model"] == shown)
                                                         & (run.metrics["probe"] == probe), "metric"]})
        try:
            if recipe is not None:
                row = scorer.inputs(**recipe)
                kind, arrays, clean_arrays = row.kind, row.arrays, row.clean
                det, fit, versus = row.detector, row.fit, row.versus
            else:
                job = None if job_hash is None else store.job_record(job_hash)
                arrays = None if job is None else store.get_job(job.hash)
                clean_arrays = store.get_job(clean[model]) if clean.get(model) else None
                if job is None or arrays is None or clean_arrays is None:
                    continue
                kind, _ = row_of_job(job.config)
                det = fit = versus = None
        except (MissingArraysError, UnknownNameError, KeyError, ValueError):
            continue
        if kind is RowKind.SUMMARY:
            continue
        samples = bootstrap_samples(kind, arrays, clean_arrays, names, n_resamples=n_resamples,
                                    seed=seed, detector=det, fit=fit, versus=versus)
        member_samples[(shown, probe)] = samples
        for metric, bounds in percentile_intervals(samples, level).items():
            intervals[(shown, probe, metric)] = bounds
    models = dict.fromkeys(shown for shown, _ in member_samples)
    for group, labels in group_members(run.groups, [p.label for p in run.probes]).items():
        for shown in models:
            members = [member_samples.get((shown, label)) for label in labels]
            if any(m is None for m in members):
                continue
            for metric, bounds in bootstrap_mean_intervals(members, level=level).items():  # type: ignore[arg-type]
                intervals[(shown, group_label(group), metric)] = bounds
    run.intervals = intervals
    return run
