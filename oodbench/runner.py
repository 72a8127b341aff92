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
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

import oodbench
from oodbench.attacks import Attack, AttackContext
from oodbench.data import DataRequest, DatasetNotFoundError, ImageSet, load_dataset, to_shape
from oodbench.data.common import subsample_indices
from oodbench.metrics import MetricInput, compute_metrics, confidence, settled_above
from oodbench.models import load_model, model_fingerprint
from oodbench.registry import attacks
from oodbench.store import ResultStore, canonical_hash
from oodbench.suite import DEFAULT_METRICS, DataSpec, Suite, SuiteModel

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
    order = list(metric_order or []) + list(dict.fromkeys(long["metric"]))
    cols = [m for m in dict.fromkeys(order) if m in table.columns]
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
    clean = {"logits": in_logits, "labels": in_distribution.labels.numpy()}
    rows = [(in_distribution.name, row_values("in", clean, clean, metrics, seed=seed))]
    rows += [(name, row_values("probe", {"logits": logits}, clean, metrics, seed=seed))
             for name, logits in probe_logits.items()]
    long = pd.DataFrame([("model", probe, metric, value) for probe, values in rows
                         for metric, value in values.items()],
                        columns=["model", "probe", "metric", "value"])
    return wide_table(long, metrics).droplevel("model")


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and hardware recorded with every run, for provenance."""
    # The installed version, read from its metadata: importing torchvision only to read it
    # takes about 2 s, which a run on embedded data would otherwise pay for nothing.
    from importlib.metadata import PackageNotFoundError, version

    try:
        torchvision_version = version("torchvision")
    except PackageNotFoundError:
        torchvision_version = "not installed"
    env: dict[str, Any] = {
        "oodbench": oodbench.__version__, "torch": str(torch.__version__),
        "torchvision": torchvision_version, "numpy": np.__version__,
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
            assert spec.dataset is not None
            self._cache["__in__"] = load_dataset(spec.dataset, self._request(spec, None))
        return self._cache["__in__"]

    def in_distribution_subset(self, n: Optional[int]) -> ImageSet:
        """A seeded subset of the in-distribution test set (attacks on test points)."""
        full = self.in_distribution()
        idx = subsample_indices(len(full), n, self.suite.seed)
        if idx is None:
            return full
        return ImageSet(full.name, full.images[idx], None if full.labels is None else full.labels[idx])

    def probe(self, spec: DataSpec) -> ImageSet:
        """The probe's data, converted to the in-distribution's shape."""
        key = canonical_hash(spec.identity())
        if key not in self._cache:
            ref = self.in_distribution()
            assert spec.dataset is not None
            loaded = load_dataset(spec.dataset, self._request(spec, ref))
            if loaded.shape != ref.shape:
                log.info("probe %s: converting %s to the in-distribution shape %s",
                         spec.label, loaded.shape, ref.shape)
            self._cache[key] = ImageSet(spec.label, to_shape(loaded.images, ref.shape), loaded.labels)
        return self._cache[key]


def row_values(kind: str, arrays: Mapping[str, np.ndarray], clean: Mapping[str, np.ndarray],
               metric_names: Sequence[str], *, seed: int,
               attack: Optional[Attack] = None) -> dict[str, float]:
    """The metric values of one table row from stored arrays.

    ``kind``: ``probe`` (OOD probe or attack on OOD points: scored against the clean
    in-distribution confidences; a stored ``mask`` selects the points that count), ``in``
    (scored like the in-distribution row, e.g. under AutoAttack) or ``summary`` (the attack's own
    quantities).
    """
    if kind == "summary":
        assert attack is not None
        return attack.summarize(dict(arrays))
    if kind == "in":
        inp = MetricInput(in_logits=arrays["logits"], in_labels=arrays["labels"], seed=seed)
        return compute_metrics(list(metric_names), inp, row="in")
    out = arrays["logits"]
    if "mask" in arrays:
        out = out[arrays["mask"].astype(bool)]
    inp = MetricInput(in_logits=clean["logits"], in_labels=clean["labels"], out_logits=out, seed=seed)
    return compute_metrics(list(metric_names), inp, row="probe")


class _ModelJobs:
    """The jobs of one model in one run: looked up in the store, computed only when missing."""

    def __init__(self, suite: Suite, spec: SuiteModel, store: ResultStore, data: _SuiteData,
                 result: RunResult, device: torch.device, progress: bool):
        self.suite, self.spec, self.store, self.data = suite, spec, store, data
        self.result, self.device, self.progress = result, device, progress
        self.fingerprint = model_fingerprint(spec, suite.base_dir)
        self._model: Optional[nn.Module] = None

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            self._model = load_model(self.spec, self.suite.base_dir)
        return self._model

    def job(self, kind: str, probe: Optional[DataSpec], compute: Callable[[str], dict[str, np.ndarray]],
            extra: Optional[dict[str, Any]] = None) -> tuple[str, dict[str, np.ndarray]]:
        """Stored arrays of a job, computing (and storing) them if absent. Returns (hash, arrays)."""
        config = {"kind": kind, "model": self.fingerprint,
                  "in_distribution": self.suite.in_distribution.identity(),
                  "probe": probe.identity() if probe else None, "seed": self.suite.seed,
                  "oodbench": oodbench.__version__, **(extra or {})}
        job_hash = canonical_hash(config)
        probe_label = probe.label if probe else None
        label = f"{self.spec.name} / {probe_label or self.suite.in_distribution.label}"
        arrays = self.store.get_job(job_hash)
        cached = arrays is not None
        if arrays is None:
            start = time.perf_counter()
            arrays = compute(job_hash)
            self.store.put_job(job_hash, kind=kind, model=self.spec.name, probe=probe_label,
                               config=config, arrays=arrays, seconds=time.perf_counter() - start)
        (self.result.cached if cached else self.result.computed).append(label)
        self.store.record_job_use(self.result.run_id, job_hash, model=self.spec.name,
                                  probe=probe_label, cached=cached)
        return job_hash, arrays

    def forward(self, images: ImageSet, desc: str) -> dict[str, np.ndarray]:
        logits = forward_logits(self.model, images.images, batch_size=self.suite.batch_size,
                                device=self.device, desc=desc, progress=self.progress)
        out = {"logits": logits}
        if images.labels is not None:
            out["labels"] = images.labels.numpy()
        return out

    def clean(self) -> tuple[str, dict[str, np.ndarray]]:
        return self.job("clean", None, lambda _: self.forward(self.data.in_distribution(),
                                                              f"{self.spec.name} clean"))

    def probe(self, probe: DataSpec) -> tuple[str, dict[str, np.ndarray]]:
        return self.job("probe", probe, lambda _: self.forward(self.data.probe(probe),
                                                               f"{self.spec.name} / {probe.label}"))

    def attack(self, probe: DataSpec, clean: dict[str, np.ndarray]) -> tuple[str, dict[str, np.ndarray], Attack]:
        assert probe.attack is not None
        attack: Attack = attacks.get(probe.attack.name)()
        in_name = self.suite.in_distribution.dataset or ""
        spec = attack.resolve(probe.attack, in_name)
        # The stop threshold is part of the job's identity: an attack stopped for FPR@95 alone
        # must not be served to a run that also asks for AUROC.
        stop_above = (settled_above(self.suite.metrics, confidence(clean["logits"]))
                      if attack.supports_early_stop and spec.early_stop is not False else None)

        def compute(job_hash: str) -> dict[str, np.ndarray]:
            source = (self.data.in_distribution_subset(probe.n) if attack.source == "in-distribution"
                      else self.data.probe(probe))
            ctx = AttackContext(
                model=self.model, images=source.images, labels=source.labels, spec=spec,
                in_logits=clean["logits"], device=self.device, batch_size=self.suite.batch_size,
                seed=self.suite.seed, stop_above=stop_above, progress=self.progress,
                artifact_dir=artifact_dir(self.result.store_path, job_hash),
                label=f"{self.spec.name} / {probe.label}")
            return attack.run(ctx)

        job_hash, arrays = self.job("attack", probe, compute,
                                    {"attack": spec.model_dump(mode="json", exclude={"early_stop"}),
                                     "stop_above": stop_above})
        return job_hash, arrays, attack


def artifact_dir(store_path: Path, job_hash: str) -> Path:
    """Files an attack writes (image grids, resumable state) live beside the results store."""
    return store_path.with_name(store_path.stem + "-artifacts") / job_hash[:16]


def run_suite(suite: Suite, *, data_root: Union[str, Path, None] = None,
              output: Union[str, Path, None] = None, device: Optional[str] = None,
              skip_missing: Optional[bool] = None, progress: bool = True) -> RunResult:
    """Run every job of ``suite`` that the results store lacks; return the run's metrics."""
    dev = resolve_device(device or suite.device)
    skip = suite.skip_missing if skip_missing is None else skip_missing
    store_path = suite.resolve_output(output)
    data = _SuiteData(suite, suite.resolve_data_root(data_root))
    in_label = suite.in_distribution.label

    with ResultStore(store_path) as store:
        run_id = store.start_run(suite_name=suite.name, suite_hash=suite.content_hash(),
                                 suite_json=suite.model_dump(mode="json"), environment=environment(dev))
        result = RunResult(run_id, store_path, pd.DataFrame(), list(suite.metrics))
        missing: set[str] = set()
        for spec in suite.models:
            jobs = _ModelJobs(suite, spec, store, data, result, dev, progress)
            clean_hash, clean = jobs.clean()
            rows = [(in_label, clean_hash, row_values("in", clean, clean, suite.metrics, seed=suite.seed))]
            for probe in suite.probes:
                if probe.label in missing:
                    continue
                try:
                    if probe.attack is None:
                        job_hash, arrays = jobs.probe(probe)
                        values = row_values("probe", arrays, clean, suite.metrics, seed=suite.seed)
                    else:
                        job_hash, arrays, attack = jobs.attack(probe, clean)
                        values = row_values(attack.row, arrays, clean, suite.metrics,
                                            seed=suite.seed, attack=attack)
                except DatasetNotFoundError as err:
                    if not skip:
                        raise
                    warnings.warn(f"skipping probe {probe.label!r}: {err}", stacklevel=2)
                    missing.add(probe.label)
                    result.skipped.append(probe.label)
                    continue
                rows.append((probe.label, job_hash, values))
            store.put_metrics(run_id, [(spec.name, label, metric, value, job_hash)
                                       for label, job_hash, values in rows
                                       for metric, value in values.items()])
        store.finish_run(run_id, skipped=result.skipped)
        result.metrics = store.metrics_frame(run_id)
    return result
