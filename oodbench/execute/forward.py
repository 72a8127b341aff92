"""The model's forward pass in batches: the only place a clean or probe job runs a model."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from oodbench.devices import resolve_device  # noqa: F401  (re-exported: one device rule)


@torch.inference_mode()
def forward_logits(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256,
                   device: Union[str, torch.device] = "cpu", desc: str = "",
                   on_batch: Optional[Callable[[int], None]] = None,
                   check: Optional[Callable[[torch.Tensor], Any]] = None) -> np.ndarray:
    """Logits of ``model`` on ``images`` in batches, as float32 numpy (N, K). ``on_batch`` is
    told the size of every finished batch (progress bars); ``check`` sees each batch's output
    first (the output contract, :mod:`oodbench.models.output_check`).

    The model is called on chunks of exactly :data:`~oodbench.attacks.engine.FORWARD_ROWS` rows
    (the last one padded), as the attack engine does: kernels round differently for different
    row counts, and a point's logits must not depend on its batch or shard."""
    from oodbench.attacks.engine import FORWARD_ROWS

    device = torch.device(device)
    model = model.to(device).eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        for i in range(0, len(batch), FORWARD_ROWS):
            part = batch[i:i + FORWARD_ROWS]
            n = len(part)
            if n < FORWARD_ROWS:  # copies of the first row; their outputs are dropped
                part = torch.cat([part, part[:1].expand(FORWARD_ROWS - n, *part.shape[1:])])
            out = model(part)
            if check is not None:  # on the rows that are points, not on the padding
                check(out[:n] if getattr(out, "ndim", 0) >= 1 else out)
            chunks.append(out[:n].float().cpu())
        if on_batch is not None:
            on_batch(len(batch))
    if not chunks:
        raise ValueError(f"no images to evaluate ({desc or 'empty set'})")
    return torch.cat(chunks).numpy()
