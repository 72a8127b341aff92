"""A job's trust checks run as an execution task: plain data in (a
:class:`~oodbench.pipeline.execute.tasks.ShardTask` of kind CHECK, run by
:func:`~oodbench.pipeline.execute.tasks.run_shard` on any executor), plain data out (:func:`encode`), and
only the driver writes their verdicts to the store (:func:`decode`). The checks themselves
(:mod:`oodbench.checks`) are components below execution; this module is how execution runs them.

:func:`run_checks` reads the task and its workspace through the two protocols below (the task
module imports this one, so naming :class:`ShardTask` here would close a circle).
"""

from __future__ import annotations

import json
from typing import Any, Optional, Protocol

import numpy as np
import torch

from oodbench.attacks.base import AttackContext
from oodbench.core.detectors import DEFAULT_DETECTOR, DetectorRef
from oodbench.checks.base import AttackInputs, BlackBoxInputs, ModelInputs
from oodbench.detectors import build_detector
from oodbench.detectors.attack import detector_head, uses_head
from oodbench.core.registry import attacks, checks

BLACK_BOX = "black-box-beats-white-box"


class CheckTask(Protocol):
    """The plain data of a CHECK task that :func:`run_checks` reads."""

    label: str
    model_index: int
    probe_index: Optional[int]
    attack: Any  # the job's resolved AttackSpec, or None for a model's clean job
    in_logits: Optional[np.ndarray]
    detector: Optional[DetectorRef]
    fit: Optional[dict[str, np.ndarray]]
    check: Optional[dict[str, Any]]


class CheckWorkspace(Protocol):
    """What a check run loads through the executor's workspace: the suite, its models, its
    data, the device."""

    suite: Any
    data: Any
    device: Any
    n_classes: Optional[int]

    def model(self, index: int) -> Any: ...

    def probe_spec(self, index: Optional[int]) -> Any: ...


def encode(codes: list[str], flags: dict[str, str]) -> dict[str, np.ndarray]:
    """A check task's result as arrays (what executors hand back): the codes run, the flags."""
    return {"codes": np.array(json.dumps(list(codes))), "flags": np.array(json.dumps(flags))}


def decode(arrays: dict[str, np.ndarray]) -> tuple[list[str], dict[str, str]]:
    return list(json.loads(str(arrays["codes"]))), dict(json.loads(str(arrays["flags"])))


def black_box_points(arrays: dict[str, np.ndarray], scores: np.ndarray, in_scores: np.ndarray,
                     n: int) -> dict[str, Any]:
    """The black-box comparison's plain data: the first ``n`` points that the gradient attack did
    not stop early on (a stopped point is settled for every metric asked) with their stored
    scores, and the clean in-distribution scores the row ranks them against."""
    stopped = np.asarray(arrays.get("stopped_early", np.zeros(len(scores), dtype=bool)), dtype=bool)
    chosen = np.flatnonzero(~stopped)[:n]
    return {"indices": chosen.astype(np.int64), "scores": np.asarray(scores, dtype=np.float64)[chosen],
            "in_scores": np.asarray(in_scores, dtype=np.float64)}


def _rows(images: Any, idx: torch.Tensor) -> torch.Tensor:
    return images[idx] if len(idx) else images[:0]


def run_checks(ws: CheckWorkspace, task: CheckTask) -> dict[str, np.ndarray]:
    """Run the checks ``task.check["codes"]`` of one job; return :func:`encode`'s arrays."""
    assert task.check is not None
    codes: list[str] = list(task.check["codes"])
    settings = ws.suite.checks
    model = ws.model(task.model_index).to(ws.device).eval()
    inputs: Any
    if task.attack is None:
        data = ws.data.in_distribution()
        idx = torch.arange(min(settings.n, len(data)))
        images = _rows(data.images, idx)
        n_classes = ws.n_classes
        if n_classes is None:
            with torch.no_grad():
                n_classes = int(model(images[:1].to(ws.device)).shape[1])
        inputs = ModelInputs(model, images, ws.device, n_classes, settings)
    else:
        assert task.in_logits is not None
        attack = attacks.get(task.attack.name)()
        source = ws.data.attack_source(ws.probe_spec(task.probe_index), attack.source)
        idx = torch.arange(min(settings.n, len(source)))
        detector = None if task.detector is None else build_detector(task.detector.name,
                                                                     task.detector.params)
        scorer = detector if detector is not None else build_detector(DEFAULT_DETECTOR)
        head = (detector_head(scorer, task.fit, ws.device, lower=attack.lowers_score)
                if uses_head(scorer, attack) else None)

        def context(points: torch.Tensor) -> AttackContext:
            return AttackContext(
                model=model, images=_rows(source.images, points),
                labels=None if source.labels is None else source.labels[points], spec=task.attack,
                in_logits=task.in_logits, device=ws.device, batch_size=ws.suite.batch_size,
                seed=ws.suite.seed, indices=points, head=head, label=task.label)

        ctx = context(idx)
        black_box: Optional[BlackBoxInputs] = None
        chosen = task.check.get("black_box")
        if chosen is not None and BLACK_BOX in codes:
            points = torch.as_tensor(np.asarray(chosen["indices"]), dtype=torch.long)
            bctx = context(points)
            objective = attack.gradient_objective(bctx)
            if objective is not None:
                black_box = BlackBoxInputs(bctx.images, points, np.asarray(chosen["scores"]),
                                           np.asarray(chosen["in_scores"]), objective)
        inputs = AttackInputs(model, attack, task.attack, int(np.asarray(task.in_logits).shape[1]),
                              ctx.images, idx, attack.gradient_objective(ctx), ws.device,
                              ws.suite.seed, scorer.name, settings, black_box)
    flags = {}
    for code in codes:
        detail = checks.get(code)().run(inputs)
        if detail:
            flags[code] = detail
    return encode(codes, flags)


__all__ = ["BLACK_BOX", "CheckTask", "CheckWorkspace", "black_box_points", "decode", "encode",
           "run_checks"]
