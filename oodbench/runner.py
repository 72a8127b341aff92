"""Turns a suite into jobs, runs the ones the store does not have, and computes the metrics.

The unit of work is a *job*: one model's clean pass over the in-distribution test set, or one
model × probe pass. Its cache key is the sha256 of everything that determines its output (the
model's fingerprint — checkpoint sha256 plus architecture — the data specs, the seed, the oodbench
version), so re-running a suite recomputes nothing and a changed checkpoint or probe setting
recomputes only the jobs it touches. Each model's clean pass is done once and reused by every
probe (AUROC needs in-distribution confidences once, not once per OOD set). Metrics are computed
from the stored logits, never inside a forward loop, so adding a metric never re-runs a model.
"""

from __future__ import annotations

import logging
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

import oodbench
from oodbench.data import DataRequest, DatasetNotFoundError, ImageSet, load_dataset, to_shape
from oodbench.metrics import MetricInput, compute_metrics
from oodbench.models import load_model, model_fingerprint
from oodbench.store import ResultStore, canonical_hash
from oodbench.suite import DEFAULT_METRICS, DataSpec, Suite

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present, so one suite file serves laptops and GPU servers."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.inference_mode()
def forward_logits(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256,
                   device: Union[str, torch.device] = "cpu", desc: str = "",
                   progress: bool = False) -> np.ndarray:
    """Logits of ``model`` on ``images`` in batches, as float32 numpy (N, K)."""
    device = torch.device(device)
    model = model.to(device).eval()
    chunks = []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, leave=False, unit="batch"):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        chunks.append(model(batch).float().cpu())
    if not chunks:
        raise ValueError(f"no images to evaluate ({desc or 'empty set'})")
    return torch.cat(chunks).numpy()


def metric_rows(in_label: str, in_logits: np.ndarray, in_labels: np.ndarray,
                probe_logits: Mapping[str, np.ndarray], metric_names: Sequence[str],
                *, seed: int = 0) -> list[tuple[str, str, float]]:
    """(probe, metric, value) rows: the in-distribution row first, then one row per probe."""
    rows: list[tuple[str, str, float]] = []
    base = MetricInput(in_logits=in_logits, in_labels=in_labels, out_logits=None, seed=seed)
    for metric, value in compute_metrics(list(metric_names), base, row="in").items():
        rows.append((in_label, metric, value))
    for probe, logits in probe_logits.items():
        inp = MetricInput(in_logits=in_logits, in_labels=in_labels, out_logits=logits, seed=seed)
        for metric, value in compute_metrics(list(metric_names), inp, row="probe").items():
            rows.append((probe, metric, value))
    return rows


def wide_table(long: pd.DataFrame, metric_order: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """models × probes rows, one column per metric, in the order the suite lists them."""
    if long.empty:
        return pd.DataFrame()
    order_models = list(dict.fromkeys(long["model"]))
    order_probes = list(dict.fromkeys(long["probe"]))
    table = long.pivot_table(index=["model", "probe"], columns="metric", values="value",
                             aggfunc="first", dropna=False)
    table = table.reindex(pd.MultiIndex.from_product([order_models, order_probes],
                                                     names=["model", "probe"]))
    cols = [m for m in (metric_order or list(dict.fromkeys(long["metric"]))) if m in table.columns]
    return table[cols].dropna(how="all")


def format_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A plain-text table for the terminal; empty cells (metric not defined for the row) as '-'."""
    return table.to_string(float_format=lambda v: f"{v:.{digits}f}", na_rep="-")


def evaluate(model: nn.Module, in_distribution: ImageSet, probes: Mapping[str, ImageSet] = {},
             *, metrics: Sequence[str] = DEFAULT_METRICS, batch_size: int = 256,
             device: str = "auto", seed: int = 0) -> pd.DataFrame:
    """Evaluate one in-memory model on in-memory data, without a suite or a store.

    Probes are converted to the in-distribution's shape first. Returns the wide table (rows:
    the in-distribution set then each probe; columns: metrics).
    """
    dev = resolve_device(device)
    in_logits = forward_logits(model, in_distribution.images, batch_size=batch_size, device=dev)
    if in_distribution.labels is None:
        raise ValueError(f"in-distribution set {in_distribution.name!r} has no labels")
    probe_logits = {
        name: forward_logits(model, to_shape(p.images, in_distribution.shape),
                             batch_size=batch_size, device=dev)
        for name, p in probes.items()
    }
    rows = metric_rows(in_distribution.name, in_logits, in_distribution.labels.numpy(),
                       probe_logits, metrics, seed=seed)
    long = pd.DataFrame([("model", *r) for r in rows], columns=["model", "probe", "metric", "value"])
    return wide_table(long, metrics).droplevel("model")


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and hardware recorded with every run, for provenance."""
    import torchvision

    env: dict[str, Any] = {
        "oodbench": oodbench.__version__, "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__), "numpy": np.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    return env


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

    def table(self) -> pd.DataFrame:
        return wide_table(self.metrics, self.metric_order)


class _SuiteData:
    """Loads each data set of a run at most once, and only when a job needs it."""

    def __init__(self, suite: Suite, root: Path):
        self.suite, self.root = suite, root
        self._cache: dict[str, ImageSet] = {}

    def _request(self, spec: DataSpec, reference: Optional[ImageSet]) -> DataRequest:
        return DataRequest(root=self.root, split=spec.split, download=self.suite.download, n=spec.n,
                           seed=self.suite.seed, options=dict(spec.options), reference=reference)

    def in_distribution(self) -> ImageSet:
        if "__in__" not in self._cache:
            spec = self.suite.in_distribution
            self._cache["__in__"] = load_dataset(spec.dataset, self._request(spec, None))
        return self._cache["__in__"]

    def probe(self, spec: DataSpec) -> ImageSet:
        if spec.label not in self._cache:
            ref = self.in_distribution()
            loaded = load_dataset(spec.dataset, self._request(spec, ref))
            if loaded.shape != ref.shape:
                log.info("probe %s: converting %s to the in-distribution shape %s",
                         spec.label, loaded.shape, ref.shape)
            self._cache[spec.label] = ImageSet(spec.label, to_shape(loaded.images, ref.shape),
                                               loaded.labels)
        return self._cache[spec.label]


def run_suite(suite: Suite, *, data_root: Union[str, Path, None] = None,
              output: Union[str, Path, None] = None, device: Optional[str] = None,
              skip_missing: Optional[bool] = None, progress: bool = True) -> RunResult:
    """Run every job of ``suite`` that the results store lacks; return the run's metrics."""
    dev = resolve_device(device or suite.device)
    root = suite.resolve_data_root(data_root)
    skip = suite.skip_missing if skip_missing is None else skip_missing
    store_path = suite.resolve_output(output)
    data = _SuiteData(suite, root)
    in_spec = suite.in_distribution

    with ResultStore(store_path) as store:
        run_id = store.start_run(suite_name=suite.name, suite_hash=suite.content_hash(),
                                 suite_json=suite.model_dump(mode="json"), environment=environment(dev))
        result = RunResult(run_id, store_path, pd.DataFrame(), list(suite.metrics))
        missing_probes: set[str] = set()
        for spec in suite.models:
            fingerprint = model_fingerprint(spec, suite.base_dir)
            model: Optional[nn.Module] = None

            def get_model() -> nn.Module:
                nonlocal model
                if model is None:
                    model = load_model(spec, suite.base_dir)
                return model

            def run_job(kind: str, probe: Optional[DataSpec]) -> dict[str, np.ndarray]:
                config = {"kind": kind, "model": fingerprint, "in_distribution": in_spec.identity(),
                          "probe": probe.identity() if probe else None, "seed": suite.seed,
                          "oodbench": oodbench.__version__}
                job_hash = canonical_hash(config)
                label = f"{spec.name} / {probe.label if probe else in_spec.label}"
                arrays = store.get_job(job_hash)
                cached = arrays is not None
                if arrays is None:
                    images = data.probe(probe) if probe else data.in_distribution()
                    start = time.perf_counter()
                    logits = forward_logits(get_model(), images.images, batch_size=suite.batch_size,
                                            device=dev, desc=label, progress=progress)
                    arrays = {"logits": logits}
                    if images.labels is not None:
                        arrays["labels"] = images.labels.numpy()
                    store.put_job(job_hash, kind=kind, model=spec.name,
                                  probe=probe.label if probe else None, config=config,
                                  arrays=arrays, seconds=time.perf_counter() - start)
                    result.computed.append(label)
                else:
                    result.cached.append(label)
                store.record_job_use(run_id, job_hash, model=spec.name,
                                     probe=probe.label if probe else None, cached=cached)
                arrays["hash"] = np.array(job_hash)
                return arrays

            clean = run_job("clean", None)
            probe_logits: dict[str, np.ndarray] = {}
            probe_hashes: dict[str, str] = {}
            for probe in suite.probes:
                if probe.label in missing_probes:
                    continue
                try:
                    out = run_job("probe", probe)
                except DatasetNotFoundError as err:
                    if not skip:
                        raise
                    warnings.warn(f"skipping probe {probe.label!r}: {err}", stacklevel=2)
                    missing_probes.add(probe.label)
                    result.skipped.append(probe.label)
                    continue
                probe_logits[probe.label] = out["logits"]
                probe_hashes[probe.label] = str(out["hash"])
            rows = metric_rows(in_spec.label, clean["logits"], clean["labels"], probe_logits,
                               suite.metrics, seed=suite.seed)
            store.put_metrics(run_id, [
                (spec.name, probe_label, metric, value,
                 probe_hashes.get(probe_label, str(clean["hash"])))
                for probe_label, metric, value in rows])
        store.finish_run(run_id)
        result.metrics = store.metrics_frame(run_id)
    return result
