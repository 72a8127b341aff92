"""What a report reads from the results store: a run's metrics, what each row is, and checks.

Every metrics row of a run is tied to the stored job it was computed from (``job_hash``). Before
a report uses a run, :func:`verify_run` checks those ties and the checksums of the jobs' arrays
— read-only, unlike :meth:`ResultStore.get_job`, which deletes a corrupt job so that the next
run recomputes it — so that an edited or damaged results file is never silently turned into a
table.

Each table row (probe) gets a *kind*, from the run's suite (``runs.suite_json``):

=================  =================================================================
``in-distribution``  the in-distribution test set (test error, MMC, ECE)
``ood``              a clean OOD probe on a real data set
``noise``            a clean probe on a synthetic data set (uniform / smoothed noise)
``adversarial``      an attack scored as an OOD row (adversarial noise, adversarial samples)
``worst-case``       the ``worst-case`` attack on an OOD set (worst-case AUROC)
``robust``           an attack scored like the in-distribution row (AutoAttack: robust error)
``summary``          an attack's own quantities (α-scaling, counterfactuals)
=================  =================================================================
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from oodbench.errors import OodbenchError
from oodbench.store import ResultStore

KINDS = ("in-distribution", "ood", "noise", "adversarial", "worst-case", "robust", "summary")
CLEAN_OOD = ("ood", "noise")


class ReportError(OodbenchError, ValueError):
    """A report that cannot be made as asked (no such run, layout without data, bad card)."""


class UnverifiedResultsError(ReportError):
    """The run's stored metrics do not check out against the stored jobs."""

    def __init__(self, path: Path, run_id: int, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: run {run_id} does not verify, refusing to report it "
                         f"({len(problems)} problem(s)):\n{listing}\n"
                         "Re-run the suite to recompute it, or pass allow_unverified=True "
                         "(--allow-unverified) to report it anyway.")


def _query(store: ResultStore, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read-only SQL on the store (the report needs columns the store API does not expose)."""
    return store._db.execute(sql, params).fetchall()


def verify_run(store: ResultStore, run_id: int) -> list[str]:
    """Problems with run ``run_id`` of ``store`` (empty when it verifies). Reads, never writes.

    Checks: the run exists; every metrics row names a job (``job_hash``) that is in ``jobs``,
    belongs to the same model and probe, is recorded as used by the run, and has arrays whose
    sha256 checksums match. A metric value edited in place is caught only by the slower
    :func:`recomputed_metric_problems` (``oodbench verify``), which recomputes every value.
    """
    if not _query(store, "SELECT 1 FROM runs WHERE id=?", (run_id,)):
        return [f"run {run_id} is not in the store"]
    in_label = _suite_labels(_suite_json(store, run_id))[0]
    problems: list[str] = []
    rows = _query(store, "SELECT model, probe, metric, job_hash FROM metrics WHERE run_id=? "
                  "ORDER BY rowid", (run_id,))
    jobs = {h: (model, probe) for h, model, probe in _query(store, "SELECT hash, model, probe FROM jobs")}
    used = {h for (h,) in _query(store, "SELECT job_hash FROM run_jobs WHERE run_id=?", (run_id,))}
    seen: set[tuple[str, str, Optional[str]]] = set()
    for model, probe, metric, job_hash in rows:
        where = f"{model} / {probe}"
        if job_hash is None:
            problems.append(f"{where} / {metric}: metrics row names no job (job_hash is empty)")
            continue
        if (model, probe, job_hash) in seen:
            continue
        seen.add((model, probe, job_hash))
        short = job_hash[:12]
        if job_hash not in jobs:
            problems.append(f"{where}: its metrics name job {short}, which is not in the jobs "
                            "table (deleted, or the job_hash was edited)")
            continue
        job_model, job_probe = jobs[job_hash]
        if job_model != model or (job_probe or in_label) != probe:
            problems.append(f"{where}: its metrics name job {short}, which belongs to "
                            f"{job_model} / {job_probe or in_label}")
        if job_hash not in used:
            problems.append(f"{where}: job {short} is not recorded as used by run {run_id}")
    for job_hash in sorted({h for _, _, h in seen if h in jobs}):
        arrays = _query(store, "SELECT key, data, sha256 FROM arrays WHERE job_hash=? ORDER BY key",
                        (job_hash,))
        if not arrays:
            problems.append(f"job {job_hash[:12]} ({' / '.join(map(str, jobs[job_hash]))}) has no "
                            "stored arrays")
        for key, data, digest in arrays:
            if hashlib.sha256(data).hexdigest() != digest:
                problems.append(f"job {job_hash[:12]} ({' / '.join(map(str, jobs[job_hash]))}): "
                                f"array {key!r} fails its sha256 checksum")
    return problems


def _same_value(stored: Optional[float], computed: Optional[float]) -> bool:
    def nan(v: Optional[float]) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    return (nan(stored) and nan(computed)) or (not nan(stored) and not nan(computed)
                                               and float(stored) == float(computed))


def recomputed_metric_problems(store: ResultStore, run_id: int) -> list[str]:
    """Metric values of a run that differ from the same metrics recomputed from its stored arrays.

    Uses the run's own scorer, :func:`oodbench.score.score_row`, with the run's seed, so an honest
    file reproduces every value bit for bit. Call it only after :func:`verify_run` found nothing:
    it reads the arrays through the store, which drops a job whose checksum fails. Rows whose
    attack is not registered here are reported as not recomputable.
    """
    from oodbench.registry import UnknownNameError
    from oodbench.score import row_of_job, score_row

    suite = _suite_json(store, run_id)
    seed = int(suite.get("seed", 0))
    in_label = _suite_labels(suite)[0]
    rows = _query(store, "SELECT model, probe, metric, value, job_hash FROM metrics WHERE run_id=? "
                  "ORDER BY rowid", (run_id,))
    configs = {h: json.loads(c) for h, c in _query(store, "SELECT hash, config_json FROM jobs")}
    by_row: dict[tuple[str, str, str], dict[str, Optional[float]]] = {}
    for model, probe, metric, value, job_hash in rows:
        by_row.setdefault((model, probe, job_hash), {})[metric] = value
    clean = {model: job_hash for model, probe, job_hash in by_row if probe == in_label}
    clean_arrays_of = {model: store.get_job(job_hash) for model, job_hash in clean.items()}
    problems: list[str] = []
    for (model, probe, job_hash), stored in by_row.items():
        arrays = clean_arrays_of.get(model) if job_hash == clean.get(model) else store.get_job(job_hash)
        clean_arrays = clean_arrays_of.get(model)
        if arrays is None or clean_arrays is None:
            problems.append(f"{model} / {probe}: its arrays (or its model's clean pass) are missing")
            continue
        config = configs[job_hash]
        try:
            kind, attack = row_of_job(config)
        except UnknownNameError:
            problems.append(f"{model} / {probe}: attack {config['attack']['name']!r} is not "
                            "registered here, its metrics cannot be recomputed")
            continue
        names = list(suite.get("metrics") or stored)  # as the run computed them
        computed = score_row(kind, arrays, clean_arrays, names, seed=seed, attack=attack)
        for metric, value in stored.items():
            if not _same_value(value, computed.get(metric)):
                problems.append(f"{model} / {probe} / {metric}: stored {value!r}, but the stored "
                                f"arrays give {computed.get(metric)!r} (edited in place?)")
    return problems


# --------------------------------------------------------------------------- a run, classified


@dataclass
class Probe:
    """One table row of a run: its label, kind and suite entry (``None`` for the in-dist row)."""

    label: str
    kind: str
    spec: Optional[dict[str, Any]] = None

    def identity(self, with_n: bool = True) -> Optional[tuple[Any, ...]]:
        """What the data is (as in the runner's cache key), for pairing attacks with probes."""
        if not self.spec or not self.spec.get("dataset"):
            return None
        s = self.spec
        return (s.get("dataset"), s.get("split", "test"), s.get("n") if with_n else None,
                json.dumps(s.get("options") or {}, sort_keys=True))


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

    def of_kind(self, *kinds: str) -> list[Probe]:
        return [p for p in self.probes if p.kind in kinds]

    @property
    def caption(self) -> str:
        return f"{self.name}: {self.description}" if self.description else self.name


def _suite_json(store: ResultStore, run_id: int) -> dict[str, Any]:
    row = _query(store, "SELECT suite_json FROM runs WHERE id=?", (run_id,))
    try:
        data = json.loads(row[0][0]) if row else {}
    except json.JSONDecodeError:
        data = {}
    return data if isinstance(data, dict) else {}


def _label(spec: dict[str, Any]) -> str:
    """A suite entry's table label, as :attr:`oodbench.suite.DataSpec.label` makes it."""
    attack = spec.get("attack") or {}
    return str(spec.get("name") or spec.get("dataset") or attack.get("name") or "?")


def _suite_labels(suite: dict[str, Any]) -> tuple[str, list[str]]:
    in_spec = suite.get("in_distribution") or {}
    return (_label(in_spec) if in_spec else "in-distribution",
            [_label(p) for p in suite.get("probes") or []])


def _attack_row(name: str) -> Optional[str]:
    from oodbench.registry import UnknownNameError, attacks

    try:
        return attacks.get(name).row
    except UnknownNameError:
        return None


def _is_synthetic(dataset: Optional[str]) -> bool:
    from oodbench.registry import UnknownNameError, datasets

    if not dataset:
        return False
    try:
        return datasets.meta(dataset).get("kind") == "synthetic"
    except UnknownNameError:
        return "noise" in dataset


def probe_kind(spec: Optional[dict[str, Any]], metric_names: set[str]) -> str:
    """The kind of a probe row from its suite entry (see the module doc); unknown attacks are
    classified by the metrics their row holds."""
    if spec is None:
        return "robust" if "test-error" in metric_names else ("ood" if "auroc" in metric_names else "summary")
    attack = spec.get("attack")
    if attack:
        name = str(attack.get("name", ""))
        row = _attack_row(name)
        if row is None:  # attack not registered here (a plugin that is not installed)
            row = "in" if "test-error" in metric_names else ("probe" if "auroc" in metric_names else "summary")
        if row == "in":
            return "robust"
        if row == "summary":
            return "summary"
        return "worst-case" if name == "worst-case" else "adversarial"
    return "noise" if _is_synthetic(spec.get("dataset")) else "ood"


def load_run(store: ResultStore, run_id: Optional[int]) -> RunData:
    """Run ``run_id`` (default: the latest) with every row classified, in-distribution first."""
    rid = store.latest_run_id() if run_id is None else run_id
    if rid is None or not _query(store, "SELECT 1 FROM runs WHERE id=?", (rid,)):
        known = ", ".join(str(i) for (i,) in _query(store, "SELECT id FROM runs ORDER BY id"))
        raise ReportError(f"{store.path}: no run {rid if rid is not None else ''} in the store"
                          f" (runs: {known or 'none'})")
    suite = _suite_json(store, rid)
    name_row = _query(store, "SELECT suite_name FROM runs WHERE id=?", (rid,))
    long = store.metrics_frame(rid)
    if long.empty:
        raise ReportError(f"{store.path}: run {rid} has no metrics (was it interrupted?)")
    in_label, probe_labels = _suite_labels(suite)
    specs = dict(zip(probe_labels, suite.get("probes") or []))
    metric_sets = long.groupby("probe")["metric"].agg(set).to_dict()

    probes = [Probe(in_label, "in-distribution")]
    for label in probe_labels + [p for p in dict.fromkeys(long["probe"])
                                 if p not in probe_labels and p != in_label]:
        if label in metric_sets:
            probes.append(Probe(label, probe_kind(specs.get(label), metric_sets[label]), specs.get(label)))
    kinds = {p.label: p.kind for p in probes}
    long = long.assign(kind=long["probe"].map(kinds))

    model_names = [str(m.get("name")) for m in suite.get("models") or []]
    present = list(dict.fromkeys(long["model"]))
    models = [m for m in model_names if m in present] + [m for m in present if m not in model_names]
    return RunData(run_id=rid, name=str(suite.get("name") or name_row[0][0]),
                   description=str(suite.get("description") or ""), in_label=in_label,
                   models=models, probes=probes, metrics=long,
                   declared=[in_label, *probe_labels])


def full_verification(store: ResultStore, run_id: int) -> list[str]:
    """:func:`verify_run`, then (if it passed) every metric recomputed from the stored arrays."""
    return verify_run(store, run_id) or recomputed_metric_problems(store, run_id)


def run_ci_level(store: ResultStore, run_id: int) -> Optional[float]:
    """The ``ci`` level the run's suite asked for, if any."""
    level = _suite_json(store, run_id).get("ci")
    return float(level) if isinstance(level, (int, float)) and 0 < level < 1 else None


def with_intervals(store: ResultStore, run: RunData, level: float, *,
                   n_resamples: int = 1000) -> RunData:
    """``run`` with a bootstrap interval for every value that has one, computed from the stored
    arrays by :func:`oodbench.score.bootstrap_intervals` with the run's seed (never re-running a
    model). Rows whose arrays are missing get none."""
    from oodbench.registry import UnknownNameError
    from oodbench.score import bootstrap_intervals, row_of_job

    suite = _suite_json(store, run.run_id)
    seed = int(suite.get("seed", 0))
    rows = _query(store, "SELECT DISTINCT model, probe, job_hash FROM metrics WHERE run_id=?",
                  (run.run_id,))
    configs = {h: json.loads(c) for h, c in _query(store, "SELECT hash, config_json FROM jobs")}
    clean = {m: h for m, p, h in rows if p == run.in_label}
    intervals: dict[tuple[str, str, str], tuple[float, float]] = {}
    for model, probe, job_hash in rows:
        arrays = store.get_job(job_hash) if job_hash in configs else None
        clean_arrays = store.get_job(clean[model]) if model in clean else None
        if arrays is None or clean_arrays is None:
            continue
        try:
            kind, _ = row_of_job(configs[job_hash])
        except UnknownNameError:
            continue
        names = sorted({str(m) for m in run.metrics.loc[(run.metrics["model"] == model)
                                                         & (run.metrics["probe"] == probe), "metric"]})
        for metric, bounds in bootstrap_intervals(kind, arrays, clean_arrays, names, level=level,
                                                  n_resamples=n_resamples, seed=seed).items():
            intervals[(model, probe, metric)] = bounds
    run.intervals = intervals
    return run
