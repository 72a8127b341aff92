"""The model's forward pass in batches: the only place a clean or probe job runs a model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from oodbench.core.devices import resolve_device  # noqa: F401  (re-exported: one device rule)
from oodbench.models.fixed_rows import chunks as fixed_chunks

if TYPE_CHECKING:  # pragma: no cover
    from oodbench.detectors import Detector


@torch.inference_mode()
def forward_logits(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256,
                   device: Union[str, torch.device] = "cpu", desc: str = "",
                   on_batch: Optional[Callable[[int], None]] = None,
                   check: Optional[Callable[[torch.Tensor], Any]] = None) -> np.ndarray:
    """Logits of ``model`` on ``images`` in batches, as float32 numpy (N, K). ``on_batch`` is
    told the size of every finished batch (progress bars); ``check`` sees each batch's output
    first (the output contract, :mod:`oodbench.models.output_check`).

    The model is called on :func:`oodbench.models.fixed_rows.chunks` of one fixed shape, as
    the attack engine does, so a point's logits do not depend on its batch or shard."""
    device = torch.device(device)
    model = model.to(device).eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        for part, n in fixed_chunks(batch):
            out = model(part)
            if check is not None:  # on the rows that are points, not on the padding
                check(out[:n] if getattr(out, "ndim", 0) >= 1 else out)
            outputs.append(out[:n].float().cpu())
        if on_batch is not None:
            on_batch(len(batch))
    if not outputs:
        raise ValueError(f"no images to evaluate ({desc or 'empty set'})")
    return torch.cat(outputs).numpy()


def forward_outputs(model: nn.Module, images: torch.Tensor, *, detector: Optional["Detector"],
                    features: bool, batch_size: int = 256, device: Union[str, torch.device] = "cpu",
                    on_batch: Optional[Callable[[int], None]] = None,
                    check: Optional[Callable[[torch.Tensor], Any]] = None) -> dict[str, np.ndarray]:
    """The arrays a forward job stores: the logits (by :func:`forward_logits` when that is all),
    or the outputs a detector reads: the logits of its own forward (ODIN's perturbed input)
    and, with ``features``, the penultimate features. Not in inference mode: ODIN takes an
    input gradient inside."""
    from oodbench.detectors.base import Outputs
    from oodbench.models.features import logits_and_features
    from oodbench.pipeline.score.arrays import ArrayKey

    if detector is None and not features:
        return {ArrayKey.LOGITS.value: forward_logits(model, images, batch_size=batch_size,
                                                      device=device, on_batch=on_batch, check=check)}
    device = torch.device(device)
    model = model.to(device).eval()
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        for part, n in fixed_chunks(batch):
            with torch.no_grad():
                if detector is not None:
                    out = detector.forward(model, part)
                else:
                    out = Outputs(*logits_and_features(model, part)) if features else Outputs(model(part))
            if check is not None:
                check(out.logits[:n])
            parts.append(Outputs(out.logits[:n], None if out.features is None
                                 else out.features[:n]).arrays())
        if on_batch is not None:
            on_batch(len(batch))
    if not parts:
        raise ValueError("no images to evaluate (empty set)")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
