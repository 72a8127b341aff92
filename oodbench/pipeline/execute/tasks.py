"""A shard as plain data, and the one function that runs it.

:class:`ShardTask` holds only plain values (numbers, strings, numpy arrays, a pydantic spec), so
an executor may run it in this process, in a thread, or in a worker on another machine;
:func:`run_shard` loads what it needs itself through a :class:`~oodbench.pipeline.execute.inputs.Workspace`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from oodbench.attacks.base import AttackContext, AttackSpec
from oodbench.core.detectors import DEFAULT_DETECTOR, DetectorRef
from oodbench.core.jobs import JobKind
from oodbench.detectors import Detector, FitData, build_detector
from oodbench.detectors.attack import detector_head, uses_head
from oodbench.pipeline.execute.check_task import run_checks
from oodbench.pipeline.execute.forward import forward_outputs
from oodbench.pipeline.execute.inputs import RunContext, Workspace
from oodbench.models.output_check import OutputChecked, check_outputs, check_shape
from oodbench.core.registry import attacks
from oodbench.pipeline.score import ArrayKey


@dataclass(frozen=True)
class ShardTask:
    """Points ``[start, stop)`` of job ``job_key``, or only the global ``indices`` among them
    (re-attacking points that stopped at a looser threshold)."""

    job_key: str
    kind: JobKind
    label: str
    start: int
    stop: int
    context: RunContext
    model_index: int
    probe_index: Optional[int] = None
    attack: Optional[AttackSpec] = None
    stop_above: Optional[float] = None
    in_logits: Optional[np.ndarray] = None
    indices: Optional[np.ndarray] = None
    artifact_dir: Optional[str] = None
    #: The detector of a fit, of a detector's own forward pass or of an attack on its head,
    #: and the fit arrays it reads.
    detector: Optional[DetectorRef] = None
    fit: Optional[dict[str, np.ndarray]] = None
    #: A forward pass that stores penultimate features too.
    features: bool = False
    #: A CHECK task's plain data: the codes to run and, for the black-box comparison, the
    #: points and the gradient attack's stored scores (:mod:`oodbench.pipeline.execute.check_task`).
    check: Optional[dict[str, Any]] = None

    @property
    def n_points(self) -> int:
        return self.stop - self.start if self.indices is None else len(self.indices)

    @property
    def id(self) -> str:
        part = "" if self.indices is None else f" (re-attack {len(self.indices)})"
        return f"{self.label} [{self.start}:{self.stop}]{part}"


ProgressFn = Callable[[int, int], None]  # (forward evaluations, gradient evaluations) just done


def _points(task: ShardTask, n_total: int) -> torch.Tensor:
    if task.indices is not None:
        return torch.as_tensor(task.indices, dtype=torch.long)
    return torch.arange(task.start, min(task.stop, n_total))


def _fit(ws: Workspace, task: ShardTask, detector: Detector, name: str) -> dict[str, np.ndarray]:
    """A detector's statistics of the fit split: one forward pass with features, then its fit."""
    model = ws.model(task.model_index)
    train = ws.data.fit_set()
    if train.labels is None:
        raise ValueError(f"detector {detector.name!r} fits on labelled training data; "
                         f"{train.name} has no labels")
    contract = dict(model=name, data=f"{train.name} (fit)", n_classes=ws.n_classes)
    arrays = forward_outputs(model, train.images, detector=None, features=True,
                             batch_size=ws.suite.batch_size, device=ws.device,
                             check=lambda out: check_shape(out, **contract))
    check_outputs(arrays[ArrayKey.LOGITS.value], **contract)
    data = FitData.of(arrays, train.labels.numpy(), model)
    return detector.fit(data)


def run_shard(ws: Workspace, task: ShardTask, on_progress: Optional[ProgressFn] = None) -> dict[str, np.ndarray]:
    """The arrays of one shard: forward outputs (and labels), a detector's fit, or the attack's
    outputs."""
    suite = ws.suite
    model = ws.model(task.model_index)
    spec = ws.probe_spec(task.probe_index)
    name = suite.models[task.model_index].name
    detector = None if task.detector is None else build_detector(task.detector.name,
                                                                 task.detector.params)
    if task.kind is JobKind.FIT:
        assert detector is not None
        return _fit(ws, task, detector, name)
    if task.kind is JobKind.CHECK:  # trust checks: flags, encoded as arrays
        return run_checks(ws, task)
    if task.kind is not JobKind.ATTACK:
        images = ws.data.in_distribution() if task.kind is JobKind.CLEAN else ws.data.probe(spec)
        idx = _points(task, len(images))
        tick = None if on_progress is None else (lambda n: on_progress(n, 0))
        contract = dict(model=name, data=spec.label, n_classes=ws.n_classes)
        # the logits; with them a detector's own pass (ODIN's input step) or the features
        out = forward_outputs(model, images.images[idx], detector=detector,
                              features=task.features, batch_size=suite.batch_size,
                              device=ws.device, on_batch=tick,
                              check=lambda out: check_shape(out, **contract))
        # Decided here, before the driver stores anything: NaN logits are an error, not a shard.
        check_outputs(out[ArrayKey.LOGITS.value], **contract)
        if images.labels is not None:
            out[ArrayKey.LABELS.value] = images.labels[idx].numpy()
        return out
    assert task.attack is not None and task.in_logits is not None
    attack = attacks.get(task.attack.name)()
    source = ws.data.attack_source(spec, attack.source)
    idx = _points(task, len(source))
    whole = task.indices is None and task.start == 0 and task.stop >= len(source)
    contract = dict(model=name, data=f"{spec.label} (attacked)", n_classes=ws.n_classes)
    # Every model call of the attack is checked (an attack's loop may not survive NaN logits),
    # and so are the logits it returns.
    attacked = OutputChecked(model, **contract)
    scorer = detector if detector is not None else build_detector(DEFAULT_DETECTOR)
    head = (detector_head(scorer, task.fit, ws.device, lower=attack.lowers_score)
            if uses_head(scorer, attack) else None)
    ctx = AttackContext(
        model=attacked, images=source.images if whole else source.images[idx],
        labels=None if source.labels is None else (source.labels if whole else source.labels[idx]),
        spec=task.attack, in_logits=task.in_logits, device=ws.device, batch_size=suite.batch_size,
        seed=suite.seed, stop_above=task.stop_above, progress=False,
        artifact_dir=None if task.artifact_dir is None else Path(task.artifact_dir),
        label=task.label, indices=None if whole else idx,
        on_progress=None if on_progress is None else (lambda n: on_progress(0, n)), head=head)
    arrays = attack.run(ctx)
    if ArrayKey.LOGITS.value in arrays:  # before the driver stores anything
        check_outputs(arrays[ArrayKey.LOGITS.value], **contract)
    return arrays
