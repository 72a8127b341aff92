"""Input normalisation as the first layer of the model, never in the data pipeline.

Attacks, noise probes and the papers' threat models all live in [0, 1] image space; keeping the
per-channel standardisation inside the module means an ε-ball in image space is what the attack
sees, whatever statistics the network was trained with.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for NCHW inputs.

    ``mean`` and ``std`` are non-persistent buffers: they move with ``.to(device)`` but are not
    part of the state dict (they come from the model entry, not from the checkpoint).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        if mean_t.ndim != 1 or mean_t.shape != std_t.shape or mean_t.numel() == 0:
            raise ValueError(
                f"normalize: mean and std must be equal-length lists (one value per channel), "
                f"got mean={list(mean)} std={list(std)}")
        if bool((std_t <= 0).any()):
            raise ValueError(f"normalize: every std must be positive, got {list(std)}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4 and self.mean.shape[1] not in (1, x.shape[1]):
            raise ValueError(f"Normalize has {self.mean.shape[1]} channels, the input has "
                             f"{x.shape[1]} (shape {tuple(x.shape)})")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def with_normalization(net: nn.Module, normalization: Any | None) -> nn.Module:
    """``nn.Sequential(Normalize(mean, std), net)``, or ``net`` itself when ``normalization`` is
    None. ``normalization`` is a :class:`~oodbench.models.spec.Normalization`, a mapping with
    ``mean``/``std``, or a ``(mean, std)`` pair."""
    if normalization is None:
        return net
    if isinstance(normalization, Mapping):
        mean, std = normalization["mean"], normalization["std"]
    elif hasattr(normalization, "mean") and hasattr(normalization, "std"):
        mean, std = normalization.mean, normalization.std
    else:
        mean, std = normalization
    return nn.Sequential(Normalize(mean, std), net)
