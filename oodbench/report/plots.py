"""Figures of a stored run: ROC curves and confidence histograms, from the per-sample arrays.

Everything is recomputed from the logits in the results store (never from the metric values),
the same way the runner scores a row: the detector is the confidence (maximum softmax
probability), the in-distribution test set is the positive class, and a stored ``mask`` (attacks
on OOD points) selects the samples that count. Rows without per-sample logits (``summary`` rows
such as α-scaling) and rows scored like the in-distribution set (``robust``, e.g. AutoAttack) have
no ROC curve and are left out.

matplotlib is imported lazily, with the non-interactive Agg backend, only when figures are drawn,
so importing :mod:`oodbench` never touches it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from oodbench.report.data import ReportError, _query, load_run
from oodbench.store import ResultStore

FORMATS = ("png", "pdf")
ROC_KINDS = ("ood", "noise", "adversarial", "worst-case")

__all__ = ["FORMATS", "ROC_KINDS", "roc_points", "slugify", "ModelCurves", "PlotData",
           "plot_data", "write_plots"]


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


def slugify(name: str) -> str:
    """A file-name-safe form of a model name: letters, digits, ``.``, ``_`` and ``-`` only."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.")
    return slug or "model"


@dataclass
class ModelCurves:
    """The confidences of one model: in-distribution and one array per plotted probe row."""

    model: str
    slug: str
    in_conf: np.ndarray
    probes: list[tuple[str, str, np.ndarray]] = field(default_factory=list)  # label, kind, conf


@dataclass
class PlotData:
    run_id: int
    in_label: str
    num_classes: int
    models: list[ModelCurves]


def _job_arrays(store: ResultStore, hashes: Sequence[str]) -> Optional[dict[str, np.ndarray]]:
    """The first of ``hashes`` whose stored arrays hold logits."""
    for h in hashes:
        arrays = store.get_job(h)
        if arrays is not None and "logits" in arrays:
            return arrays
    return None


def plot_data(store: ResultStore, run_id: Optional[int] = None) -> PlotData:
    """Confidences of every model and plottable row of run ``run_id`` (default: the latest)."""
    from oodbench.metrics import confidence

    run = load_run(store, run_id)
    jobs = store.run_jobs(run.run_id)
    # a row's own job (from its metrics) first, then any other job the run used for it
    preferred: dict[tuple[str, str], list[str]] = {}
    for model, probe, job_hash in _query(
            store, "SELECT DISTINCT model, probe, job_hash FROM metrics WHERE run_id=? "
            "AND job_hash IS NOT NULL ORDER BY rowid", (run.run_id,)):
        preferred.setdefault((model, probe), []).append(job_hash)
    for row in jobs.itertuples(index=False):
        probe = run.in_label if row.probe is None or (isinstance(row.probe, float)
                                                      and math.isnan(row.probe)) else row.probe
        hashes = preferred.setdefault((row.model, probe), [])
        if row.job_hash not in hashes:
            hashes.append(row.job_hash)

    rows = run.of_kind(*ROC_KINDS)
    models: list[ModelCurves] = []
    used_slugs: set[str] = set()
    num_classes = 0
    for model in run.models:
        clean = _job_arrays(store, preferred.get((model, run.in_label), []))
        if clean is None:
            continue
        num_classes = max(num_classes, int(clean["logits"].shape[1]))
        slug = base = slugify(model)
        i = 2
        while slug in used_slugs:
            slug, i = f"{base}-{i}", i + 1
        used_slugs.add(slug)
        curves = ModelCurves(model, slug, confidence(clean["logits"]))
        for probe in rows:
            arrays = _job_arrays(store, preferred.get((model, probe.label), []))
            if arrays is None:
                continue
            out = arrays["logits"]
            if "mask" in arrays:
                out = out[arrays["mask"].astype(bool)]
            if out.shape[0] == 0:
                continue
            curves.probes.append((probe.label, probe.kind, confidence(out)))
        models.append(curves)
    if not models:
        raise ReportError(f"{store.path}: run {run.run_id} has no stored in-distribution logits to plot")
    return PlotData(run.run_id, run.in_label, num_classes, models)


def _save(fig: Any, out_dir: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        # no creation date / software stamp: the same run gives the same files
        meta = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        fig.savefig(path, format=fmt, metadata=meta, bbox_inches="tight")
        paths.append(path)
    return paths


def write_plots(results: str | Path, out_dir: str | Path, *, run_id: Optional[int] = None,
                formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``roc-<model>`` and ``hist-<model>`` figures of a stored run; returns the paths.

    ROC curves: one figure per model, one curve per OOD row (AUROC in the legend, equal to the
    stored ``auroc`` metric). Confidence histograms: one figure per model, step histograms of the
    in-distribution set and every OOD row on a log-scaled y axis, bins on [1/K, 1].
    """
    formats = list(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ReportError(f"unknown plot format(s) {bad or formats}; choose from {', '.join(FORMATS)}")
    results = Path(results)
    if not results.is_file():
        raise FileNotFoundError(f"{results}: no such results store")
    with ResultStore(results) as store:
        data = plot_data(store, run_id)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from oodbench.metrics import auroc

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k = max(data.num_classes, 1)
    bins = np.linspace(1.0 / k, 1.0, 21) if k > 1 else np.linspace(0.0, 1.0, 21)
    written: list[Path] = []
    for m in data.models:
        fig, ax = plt.subplots(figsize=(5, 4.5))
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        for label, _kind, conf in m.probes:
            fpr, tpr = roc_points(m.in_conf, conf)
            ax.plot(fpr, tpr, lw=1.4, label=f"{label} (AUROC {auroc(m.in_conf, conf):.3f})")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (OOD accepted)",
               ylabel=f"true positive rate ({data.in_label} accepted)",
               title=f"ROC, {m.model} (run {data.run_id})")
        if m.probes:
            ax.legend(loc="lower right", fontsize="small")
        written += _save(fig, out, f"roc-{m.slug}", formats)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(5.5, 4))
        for label, conf in [(data.in_label, m.in_conf)] + [(p[0], p[2]) for p in m.probes]:
            ax.hist(np.clip(conf, bins[0], bins[-1]), bins=bins, histtype="step", lw=1.4,
                    weights=np.full(conf.shape, 1.0 / conf.size), log=True, label=label)
        ax.set(xlim=(bins[0], bins[-1]), xlabel="confidence (max. softmax probability)",
               ylabel="fraction of samples (log scale)",
               title=f"Confidence, {m.model} (run {data.run_id})")
        ax.legend(loc="upper left", fontsize="small")
        written += _save(fig, out, f"hist-{m.slug}", formats)
        plt.close(fig)
    return written
