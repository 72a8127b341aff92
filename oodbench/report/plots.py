"""Figures of a stored run: ROC curves, confidence histograms and mean confidence vs attack radius.

Everything is recomputed from the logits in the results store (never from the metric values),
the same way the runner scores a row: the detector is the confidence (maximum softmax
probability), the in-distribution test set is the positive class, and a stored ``mask`` (attacks
on OOD points) selects the samples that count. Rows without per-sample logits (``summary`` rows
such as α-scaling) and rows scored like the in-distribution set (``robust``, e.g. AutoAttack) have
no ROC curve and are left out.

*Radius* figures show how over-confidence grows with the attacker's budget. A suite sweeps the
radius by listing the same attack probe several times with different ``threat: {eps: …}`` (each
entry needs its own ``name:``: table labels are unique). The attack rows of a run are grouped by
(attack, norm, attacked data): the attacked data is the probe's data spec (dataset, split, n,
options) as in the runner's cache key, so only rows attacking the very same points share a line.
A clean probe on those same points is the radius-0 point. Each point is the row's mean maximum
softmax confidence, computed like the ``mmc`` metric (a stored ``mask`` applies on OOD-scored
rows), so it equals the table's MMC. Groups with fewer than two distinct radii are not drawn. Rows
that differ only in other settings (steps, step size) share their figure and line, sorted by eps.

matplotlib is imported lazily, with the non-interactive Agg backend, only when figures are drawn,
so importing :mod:`oodbench` never touches it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from oodbench.core.arrays import ArrayKey
from oodbench.core.detectors import DetectorRef
from oodbench.core.jobs import JobKind
from oodbench.core.rows import CLEAN_OOD, RowKind, TableKind
from oodbench.core.errors import MissingFileError
from oodbench.core.filenames import slugify
from oodbench.report.data import (ReportError, RunData, UnverifiedResultsError, audit_run,
                                  find_run, load_run)
from oodbench.report.output import writing
from oodbench.pipeline.score.arrays import holds_bounds, point_scores
from oodbench.pipeline.score.labels import folds, shown_model
from oodbench.pipeline.store import ResultStore

FORMATS = ("png", "pdf")
ROC_KINDS = CLEAN_OOD + (TableKind.ADVERSARIAL, TableKind.WORST_CASE)

RADIUS_KINDS = (TableKind.ADVERSARIAL, TableKind.WORST_CASE, TableKind.ROBUST)
Point = tuple[float, str, float]  # a radius figure's point: (eps, row label, MMC)
GroupKey = tuple[str, str, str]  # (attack, norm, data key of the attacked points)
RADIUS_SECTION = "Mean confidence vs attack radius"

__all__ = ["FORMATS", "ROC_KINDS", "RADIUS_KINDS", "roc_points", "slugify", "ModelCurves",
           "RadiusCurve", "RadiusGroup", "PlotData", "Figure", "plot_data", "write_figures",
           "write_plots"]


def roc_points(conf_in: Any, conf_out: Any) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve of confidence separating in-distribution (positive) from OOD samples.

    One point per distinct confidence value, thresholds from high to low, starting at (0, 0)
    and ending at (1, 1): ``tpr`` is the share of in-distribution samples with confidence at
    least the threshold, ``fpr`` the share of OOD samples. Tied values form one diagonal step, so
    the trapezoidal area under the curve equals :func:`oodbench.metrics.auroc` (ties count 1/2).
    """
    cin = np.asarray(conf_in, dtype=np.float64).ravel()
    cout = np.asarray(conf_out, dtype=np.float64).ravel()
    if cin.size == 0 or cout.size == 0:
        raise ValueError("roc_points needs non-empty conf_in and conf_out")
    thresholds = np.unique(np.concatenate([cin, cout]))[::-1]
    # counts of values >= t, for every threshold, via sorted arrays
    tp = cin.size - np.searchsorted(np.sort(cin), thresholds, side="left")
    fp = cout.size - np.searchsorted(np.sort(cout), thresholds, side="left")
    tpr = np.concatenate([[0.0], tp / cin.size])
    fpr = np.concatenate([[0.0], fp / cout.size])
    return fpr, tpr


@dataclass
class ModelCurves:
    """The confidences of one model: in-distribution and one array per plotted probe row
    (histograms show them), plus the rank scores the metrics order by (ROC curves use them, so
    a curve's area is the stored AUROC also where confidences saturate at 1.0)."""

    model: str
    slug: str
    in_conf: np.ndarray
    probes: list[tuple[str, TableKind, np.ndarray]] = field(default_factory=list)  # label, kind, conf
    in_score: Optional[np.ndarray] = None
    probe_scores: list[np.ndarray] = field(default_factory=list)  # parallel to ``probes``


@dataclass
class RadiusCurve:
    """One model's line of a radius figure: ``(eps, row label, MMC)`` sorted by eps; eps 0 is
    the clean probe on the same points."""

    model: str
    points: list[Point]


@dataclass
class RadiusGroup:
    """One radius figure: an attack and norm on one set of points, one curve per model."""

    attack: str
    norm: str
    source: str  # the attacked points: the clean probe's label, else the dataset (and n)
    slug: str
    curves: list[RadiusCurve]


@dataclass
class PlotData:
    run_id: int
    in_label: str
    num_classes: int
    models: list[ModelCurves]
    radius: list[RadiusGroup] = field(default_factory=list)


@dataclass(frozen=True)
class Figure:
    """A written figure, so that a report can link it: its section (the model, or
    :data:`RADIUS_SECTION`), its title and its files, one per format."""

    section: str
    title: str
    paths: tuple[Path, ...]


def _job_arrays(store: ResultStore, hashes: Sequence[str]) -> Optional[dict[str, np.ndarray]]:
    """The first of ``hashes`` whose stored arrays hold logits."""
    for h in hashes:
        arrays = store.get_job(h)
        if arrays is not None and ArrayKey.LOGITS.value in arrays:
            return arrays
    return None


def _row_jobs(store: ResultStore, run: RunData) -> dict[tuple[str, str], list[str]]:
    """(model, row label) -> job hashes: the row's own job (from its metrics) first, then any
    other job the run used for it (a store written before metrics named their job). With a
    detector axis the model is the table's ``model · detector`` and only metrics name jobs."""
    rows = store.metric_rows(run.run_id)
    folded = folds(r.detector for r in rows)
    preferred: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        hashes = preferred.setdefault((_shown(row, folded), row.probe), [])
        if row.job_hash is not None and row.job_hash not in hashes:
            hashes.append(row.job_hash)
    if folded:
        for row in rows:  # the in-distribution row's job is the clean pass of every detector
            if row.probe == run.in_label and row.recipe:
                preferred[(_shown(row, folded), run.in_label)] = [row.recipe["reference"]]
        return preferred
    for job in store.run_jobs(run.run_id).itertuples(index=False):
        probe = run.in_label if job.probe is None or (isinstance(job.probe, float)
                                                      and math.isnan(job.probe)) else job.probe
        hashes = preferred.setdefault((job.model, probe), [])
        if job.job_hash not in hashes:
            hashes.append(job.job_hash)
    return preferred


def _shown(row: Any, folded: bool) -> str:
    return shown_model(row.model, row.detector, folded)


def _recipes(store: ResultStore, run: RunData) -> dict[tuple[str, str], dict[str, Any]]:
    """(model as shown, row label) -> the row's stored recipe (which detector scores it)."""
    rows = store.metric_rows(run.run_id)
    folded = folds(r.detector for r in rows)
    return {(_shown(r, folded), r.probe): r.recipe for r in rows if r.recipe}


def plot_data(store: ResultStore, run_id: Optional[int] = None) -> PlotData:
    """Confidences of every model and plottable row of run ``run_id`` (default: the latest);
    the ROC curves rank by each row's detector score, as the metrics do."""
    from oodbench.metrics import confidence, msp_score
    from oodbench.pipeline.score.table import TableScorer

    run = load_run(store, run_id)
    preferred = _row_jobs(store, run)
    recipes = _recipes(store, run)
    scorer = TableScorer(store, [], 0)
    rows = run.of_kind(*ROC_KINDS)
    models: list[ModelCurves] = []
    used_slugs: set[str] = set()
    num_classes = 0
    for model in run.models:
        clean = _job_arrays(store, preferred.get((model, run.in_label), []))
        if clean is None:
            continue
        # the detector and its fit, from any of the model's OOD rows (they all carry both)
        recipe = next((r for (m, label), r in recipes.items()
                       if m == model and r.get("kind") == RowKind.OOD), None)
        detector = None if recipe is None else scorer.detector(recipe["detector"])
        fit = None if recipe is None or not recipe.get("fit") else scorer.arrays(recipe["fit"])

        def score(arrays: dict[str, np.ndarray]) -> np.ndarray:
            if detector is None and not holds_bounds(arrays):
                return msp_score(arrays[ArrayKey.LOGITS.value])
            return point_scores(detector or scorer.detector(DetectorRef()), arrays, fit)

        num_classes = max(num_classes, int(clean[ArrayKey.LOGITS.value].shape[1]))
        slug = base = slugify(model)
        i = 2
        while slug in used_slugs:
            slug, i = f"{base}-{i}", i + 1
        used_slugs.add(slug)
        curves = ModelCurves(model, slug, confidence(clean[ArrayKey.LOGITS.value]), in_score=score(clean))
        for probe in rows:
            row_recipe = recipes.get((model, probe.label))
            if row_recipe is not None and row_recipe.get("kind") == RowKind.IN_ATTACKED:
                continue  # its in-distribution side is not the clean one the curves share
            arrays = _job_arrays(store, preferred.get((model, probe.label), []))
            if arrays is None:
                continue
            mask = arrays[ArrayKey.MASK.value].astype(bool) if ArrayKey.MASK.value in arrays else None
            out, scores = arrays[ArrayKey.LOGITS.value], score(arrays)
            if mask is not None:
                out, scores = out[mask], scores[mask]
            if out.shape[0] == 0:
                continue
            curves.probes.append((probe.label, probe.kind, confidence(out)))
            curves.probe_scores.append(scores)
        models.append(curves)
    if not models:
        raise ReportError(f"{store.path}: run {run.run_id} has no stored in-distribution logits to plot")
    return PlotData(run.run_id, run.in_label, num_classes, models,
                    radius_groups(store, run, preferred))


# --------------------------------------------------------------------------- radius sweeps


def _job_config(store: ResultStore, job_hash: str) -> dict[str, Any]:
    """The stored config of a job (everything its cache key hashed); {} if absent or unreadable."""
    job = store.job_record(job_hash)
    return job.config if job is not None else {}


def _row_job(store: ResultStore, hashes: Sequence[str],
             kind: JobKind) -> Optional[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """(config, arrays) of the first of ``hashes`` that is a ``kind`` job with stored logits:
    the config says which attack, radius and points a row used, which its label does not."""
    for h in hashes:
        config = _job_config(store, h)
        if JobKind.of(config) is not kind:
            continue
        arrays = store.get_job(h)
        if arrays is not None and ArrayKey.LOGITS.value in arrays:
            return config, arrays
    return None


def _row_mmc(arrays: dict[str, np.ndarray], *, masked: bool) -> Optional[float]:
    """MMC of a row exactly as the runner's ``mmc`` metric scores it (a stored ``mask`` selects
    the points of OOD-scored rows, not of rows scored like the in-distribution set); None when
    no point counts (the metric is undefined there)."""
    from oodbench.metrics import confidence, mean_max_confidence
    from oodbench.pipeline.score import ArrayKey, ood_logits

    logits = ood_logits(arrays) if masked else arrays[ArrayKey.LOGITS.value]
    return mean_max_confidence(confidence(logits)) if logits.shape[0] else None


def _data_key(identity: Any) -> str:
    """Canonical form of a probe's data identity: equal keys mean the very same points."""
    return json.dumps(identity, sort_keys=True, default=str)


def _source_label(identity: Any, clean_label: Optional[str], in_label: str) -> str:
    """How a radius figure names the attacked points: the clean probe on them if the suite has
    one, else the dataset (the in-distribution test points for attacks on those) and ``n``."""
    if clean_label:
        return clean_label
    ident = identity if isinstance(identity, dict) else {}
    name = str(ident.get("dataset") or f"{in_label} test points")
    return f"{name} (n={ident['n']})" if ident.get("n") else name


def _model_radius_points(store: ResultStore, run: RunData, model: str,
                         preferred: dict[tuple[str, str], list[str]],
                         clean_labels: dict[str, str]) -> dict[GroupKey, list[Point]]:
    """One model's attack rows as (attack, norm, data key) -> [(eps, label, MMC)], each with the
    clean probe on the same points (if any) as its radius-0 point. Fills ``clean_labels``."""
    clean: dict[str, tuple[str, float]] = {}
    for probe in run.of_kind(*CLEAN_OOD):
        found = _row_job(store, preferred.get((model, probe.label), []), JobKind.PROBE)
        mmc = None if found is None else _row_mmc(found[1], masked=True)
        if found is not None and mmc is not None:
            key = _data_key(found[0].get("probe"))
            clean.setdefault(key, (probe.label, mmc))
            clean_labels.setdefault(key, probe.label)
    groups: dict[GroupKey, list[Point]] = {}
    for probe in run.of_kind(*RADIUS_KINDS):
        found = _row_job(store, preferred.get((model, probe.label), []), JobKind.ATTACK)
        if found is None:
            continue
        attack = found[0].get("attack") or {}
        threat = attack.get("threat") or {}
        mmc = _row_mmc(found[1], masked=probe.kind is not TableKind.ROBUST)
        if not isinstance(threat.get("eps"), (int, float)) or not threat.get("norm") or mmc is None:
            continue
        data = _data_key(found[0].get("probe"))
        points = groups.setdefault((str(attack.get("name")), str(threat["norm"]), data), [])
        if data in clean and not points:
            points.append((0.0, *clean[data]))
        points.append((float(threat["eps"]), probe.label, mmc))
    return groups


def radius_groups(store: ResultStore, run: RunData,
                  preferred: Optional[dict[tuple[str, str], list[str]]] = None) -> list[RadiusGroup]:
    """The radius figures of a run: attack rows grouped by (attack, norm, attacked points), one
    curve per model, in suite order; only groups with at least two distinct radii (counting the
    clean probe as radius 0), since one radius is no sweep."""
    preferred = _row_jobs(store, run) if preferred is None else preferred
    clean_labels: dict[str, str] = {}
    by_key: dict[GroupKey, dict[str, list[Point]]] = {}
    for model in run.models:
        for key, points in _model_radius_points(store, run, model, preferred, clean_labels).items():
            by_key.setdefault(key, {})[model] = sorted(points, key=lambda p: p[0])
    groups: list[RadiusGroup] = []
    used: set[str] = set()
    for (attack, norm, data), curves in by_key.items():
        if len({eps for points in curves.values() for eps, _, _ in points}) < 2:
            continue
        source = _source_label(json.loads(data), clean_labels.get(data), run.in_label)
        slug = base = f"radius-{slugify(attack)}-{slugify(norm)}-{slugify(source)}"
        i = 2
        while slug in used:
            slug, i = f"{base}-{i}", i + 1
        used.add(slug)
        groups.append(RadiusGroup(attack, norm, source, slug,
                                  [RadiusCurve(m, pts) for m, pts in curves.items()]))
    return groups


# --------------------------------------------------------------------------- drawing


def _save(fig: Any, out_dir: Path, stem: str, formats: Sequence[str]) -> tuple[Path, ...]:
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        # no creation date / software stamp: the same run gives the same files
        meta = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        with writing(path):
            fig.savefig(path, format=fmt, metadata=meta, bbox_inches="tight")
        paths.append(path)
    return tuple(paths)


def _draw_roc(plt: Any, data: PlotData, m: ModelCurves, out: Path, formats: Sequence[str]) -> Figure:
    """ROC curves of one model, one per OOD row, AUROC (equal to the stored metric) in the legend."""
    from oodbench.metrics import auroc

    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    for (label, _kind, _conf), score in zip(m.probes, m.probe_scores):
        fpr, tpr = roc_points(m.in_score, score)
        ax.plot(fpr, tpr, lw=1.4, label=f"{label} (AUROC {auroc(m.in_score, score):.3f})")
    title = f"ROC, {m.model} (run {data.run_id})"
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (OOD accepted)",
           ylabel=f"true positive rate ({data.in_label} accepted)", title=title)
    if m.probes:
        ax.legend(loc="lower right", fontsize="small")
    paths = _save(fig, out, f"roc-{m.slug}", formats)
    plt.close(fig)
    return Figure(m.model, title, paths)


def _draw_hist(plt: Any, data: PlotData, m: ModelCurves, out: Path, formats: Sequence[str]) -> Figure:
    """Step histograms of the in-distribution set and every OOD row on a log-scaled y axis."""
    k = max(data.num_classes, 1)
    bins = np.linspace(1.0 / k, 1.0, 21) if k > 1 else np.linspace(0.0, 1.0, 21)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, conf in [(data.in_label, m.in_conf)] + [(p[0], p[2]) for p in m.probes]:
        ax.hist(np.clip(conf, bins[0], bins[-1]), bins=bins, histtype="step", lw=1.4,
                weights=np.full(conf.shape, 1.0 / conf.size), log=True, label=label)
    title = f"Confidence, {m.model} (run {data.run_id})"
    ax.set(xlim=(bins[0], bins[-1]), xlabel="confidence (max. softmax probability)",
           ylabel="fraction of samples (log scale)", title=title)
    ax.legend(loc="upper left", fontsize="small")
    paths = _save(fig, out, f"hist-{m.slug}", formats)
    plt.close(fig)
    return Figure(m.model, title, paths)


def _draw_radius(plt: Any, data: PlotData, g: RadiusGroup, out: Path, formats: Sequence[str]) -> Figure:
    """MMC against the attack radius, one line per model; the dashed line is 1/K, the MMC of a
    model that is maximally uncertain (the ideal on OOD points)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    for curve in g.curves:
        ax.plot([p[0] for p in curve.points], [p[2] for p in curve.points], marker="o", lw=1.4,
                label=curve.model)
    if data.num_classes > 1:
        ax.axhline(1.0 / data.num_classes, color="0.7", lw=0.8, ls="--",
                   label=f"uniform (1/{data.num_classes})")
    top = max(p[0] for c in g.curves for p in c.points)
    title = f"Mean confidence vs radius: {g.attack} on {g.source} (run {data.run_id})"
    ax.set(xlim=(-0.04 * top, 1.04 * top), ylim=(0, 1.02), xlabel=f"attack radius ε ({g.norm})",
           ylabel="mean confidence (MMC)", title=f"{g.attack} on {g.source}\n"
           f"in-distribution: {data.in_label}, run {data.run_id}")
    ax.legend(loc="lower right", fontsize="small")
    paths = _save(fig, out, g.slug, formats)
    plt.close(fig)
    return Figure(RADIUS_SECTION, title, paths)


def write_figures(results: str | Path, out_dir: str | Path, *, run_id: Optional[int] = None,
                  formats: Sequence[str] = FORMATS, allow_unverified: bool = False) -> list[Figure]:
    """Write the figures of a stored run and describe them (for a report to link).

    The run is audited first, as a report audits it (:func:`~oodbench.report.data.audit_run`):
    a run that does not verify, or whose stored metrics differ from their recomputation, is an
    :class:`~oodbench.report.data.UnverifiedResultsError` and nothing is drawn, unless
    ``allow_unverified`` (a report that was told to print it anyway).

    Per model ``roc-<model>`` (one curve per OOD row, AUROC in the legend, equal to the stored
    ``auroc`` metric) and ``hist-<model>`` (step histograms of the in-distribution set and every
    OOD row, log-scaled y, bins on [1/K, 1]); then ``radius-<attack>-<norm>-<points>`` per radius
    sweep (see the module doc), one line per model.
    """
    formats = list(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ReportError(f"unknown plot format(s) {bad or formats}; choose from {', '.join(FORMATS)}")
    results = Path(results)
    if not results.is_file():
        raise MissingFileError(f"{results}: no such results store")
    with ResultStore(results, readonly=True) as store:
        record = find_run(store, run_id)
        problems = audit_run(store, record.id).problems
        if problems and not allow_unverified:
            raise UnverifiedResultsError(results, record.id, problems)
        data = plot_data(store, record.id)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    for m in data.models:
        figures += [_draw_roc(plt, data, m, out, formats), _draw_hist(plt, data, m, out, formats)]
    figures += [_draw_radius(plt, data, g, out, formats) for g in data.radius]
    return figures


def write_plots(results: str | Path, out_dir: str | Path, *, run_id: Optional[int] = None,
                formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write the figures of :func:`write_figures` and return their paths: ``roc-<model>`` and
    ``hist-<model>`` per model, then one ``radius-…`` figure per radius sweep."""
    return [path for fig in write_figures(results, out_dir, run_id=run_id, formats=formats)
            for path in fig.paths]
