"""The model's forward pass in batches: the only place a clean or probe job runs a model."""

from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import nn


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present, so one suite file serves laptops and GPU servers."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.inference_mode()
def forward_logits(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256,
                   device: Union[str, torch.device] = "cpu", desc: str = "",
                   on_batch: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """Logits of ``model`` on ``images`` in batches, as float32 numpy (N, K). ``on_batch`` is
    told the size of every finished batch (progress bars)."""
    device = torch.device(device)
    model = model.to(device).eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        chunks.append(model(batch).float().cpu())
        if on_batch is not None:
            on_batch(len(batch))
    if not chunks:
        raise ValueError(f"no images to evaluate ({desc or 'empty set'})")
    return torch.cat(chunks).numpy()
