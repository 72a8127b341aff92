"""What a shard needs to run, rebuilt from plain data: the suite, its data sets and its models.

A :class:`RunContext` is plain data (the suite as JSON, paths as strings), so a shard can be
shipped to another process or machine; :class:`Workspace` turns it back into a suite, loads each
data set and model at most once per process and keeps them for the next shard.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from oodbench.data import DataRequest, ImageSet, load_dataset, num_classes, take_rows, to_shape
from oodbench.data.common import subsample_indices
from oodbench.pipeline.execute.forward import resolve_device
from oodbench.models import load_model
from oodbench.pipeline.store import canonical_hash
from oodbench.pipeline.suite import DataSpec, Suite, parse_suite

log = logging.getLogger(__name__)


class SuiteData:
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
        return ImageSet(full.name, take_rows(full.images, idx),  # a source stays unread
                        None if full.labels is None else full.labels[idx])

    def probe(self, spec: DataSpec) -> ImageSet:
        """The probe's data, converted to the in-distribution's shape (batch by batch as a shard
        reads it, when the data set is read from files)."""
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

    def fit_spec(self) -> DataSpec:
        """The training points detectors fit on: the suite's ``fit`` split of the in-distribution."""
        ind = self.suite.in_distribution
        return DataSpec(dataset=ind.dataset, split=self.suite.fit.split, n=self.suite.fit.n,
                        options=dict(ind.options), name=f"{ind.label} ({self.suite.fit.split})")

    def fit_set(self) -> ImageSet:
        """The fit points, loaded once (labelled: class statistics need them)."""
        if "__fit__" not in self._cache:
            spec = self.fit_spec()
            assert spec.dataset is not None
            self._cache["__fit__"] = load_dataset(spec.dataset, self._request(spec, None))
        return self._cache["__fit__"]

    def attack_source(self, spec: DataSpec, source: str) -> ImageSet:
        """The points an attack starts from: its probe's data, or in-distribution test points."""
        return self.in_distribution_subset(spec.n) if source == "in-distribution" else self.probe(spec)


@dataclass(frozen=True)
class RunContext:
    """A run's settings as plain data: enough for any process to rebuild its :class:`Workspace`."""

    suite: dict[str, Any]
    source: Optional[str]
    data_root: str
    device: str
    store_path: str

    @classmethod
    def of(cls, suite: Suite, *, data_root: Path, device: torch.device, store_path: Path) -> "RunContext":
        return cls(suite=suite.model_dump(mode="json"),
                   source=None if suite.source is None else str(suite.source),
                   data_root=str(data_root), device=str(device), store_path=str(store_path))

    @property
    def key(self) -> str:
        return canonical_hash([self.suite, self.source, self.data_root, self.device])


class Workspace:
    """The suite, data and models of one run inside one process."""

    def __init__(self, suite: Suite, data: SuiteData, device: torch.device, store_path: Path):
        self.suite, self.data, self.device, self.store_path = suite, data, device, store_path
        self._models: dict[int, nn.Module] = {}
        spec = suite.in_distribution
        #: What every model must output K logits for (None when the data set does not say).
        self.n_classes = num_classes(spec.dataset, spec.options) if spec.dataset else None

    @classmethod
    def of(cls, ctx: RunContext) -> "Workspace":
        suite = parse_suite(dict(ctx.suite), source=None if ctx.source is None else Path(ctx.source))
        return cls(suite, SuiteData(suite, Path(ctx.data_root)), resolve_device(ctx.device),
                   Path(ctx.store_path))

    def model(self, index: int) -> nn.Module:
        if index not in self._models:
            self._models[index] = load_model(self.suite.models[index], self.suite.base_dir)
        return self._models[index]

    def probe_spec(self, index: Optional[int]) -> DataSpec:
        return self.suite.in_distribution if index is None else self.suite.probes[index]
