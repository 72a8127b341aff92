"""Model calls of the checks: in the fixed-shape chunks every other model call uses
(:mod:`oodbench.models.fixed_rows`), under an explicit autograd mode."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable, Literal, Optional

import torch
from torch import nn

from oodbench.models.fixed_rows import chunks

Mode = Literal["inference", "no-grad", "grad"]


def outputs(model: nn.Module, x: torch.Tensor, mode: Mode = "no-grad", *,
            around: Optional[Callable[[], AbstractContextManager]] = None) -> torch.Tensor:
    """The model's outputs on ``x`` (detached, float64 on the CPU) as the clean pass
    (``inference``), an attack's selection step (``no-grad``) or an attack's gradient step
    (``grad``: the input requires a gradient) call it. ``around``: a context entered around each
    model call only (a recorder of what the forward pass does)."""
    around = around or nullcontext
    parts = []
    for part, n in chunks(x):
        if mode == "grad":
            with torch.enable_grad():
                part = part.detach().requires_grad_(True)
                with around():
                    out = model(part)
        else:
            with torch.inference_mode() if mode == "inference" else torch.no_grad():
                with around():
                    out = model(part)
        parts.append(out[:n].detach().double().cpu())
    return torch.cat(parts)
