"""The model-output contract: (N, K) finite logits, K the in-distribution's number of classes.

A model with NaN weights or an inf bias, one built for another number of classes, or one that
returns a scalar, used to surface as a traceback from the metrics — after its logits had been
stored, so every rerun reused them and crashed again. The runner checks outputs here, before
anything is stored, and the error names the model, the data and what was expected.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from oodbench.core.errors import OodbenchError


class ModelOutputError(OodbenchError, ValueError):
    """A model's outputs cannot be scored: wrong shape, or NaN/inf logits."""


def _expected(n_classes: Optional[int]) -> str:
    return f"(N, {n_classes})" if n_classes is not None else "(N, number of classes)"


def check_shape(logits: Any, *, model: str, data: str, n_classes: Optional[int]) -> Any:
    """``logits`` if it is a 2-D (N, ``n_classes``) array or tensor (any K when ``n_classes`` is
    None), else :class:`ModelOutputError`. Cheap: the runner calls it on every batch, so a scalar
    output is reported before batches are concatenated."""
    shape = tuple(getattr(logits, "shape", ()))
    if not isinstance(logits, (np.ndarray, np.generic, torch.Tensor)):
        raise ModelOutputError(f"model {model!r} on {data}: returned a {type(logits).__name__}, "
                               f"expected a tensor of logits {_expected(n_classes)}")
    if len(shape) != 2 or (n_classes is not None and shape[1] != n_classes):
        got = "a scalar" if not shape else f"shape {shape}"
        raise ModelOutputError(
            f"model {model!r} on {data}: returned {got}, expected logits {_expected(n_classes)}"
            + (f" for the {n_classes} classes of the in-distribution set; check `arch_options` "
               "(num_classes) and the data set's `classes`" if n_classes is not None else ""))
    return logits


def check_outputs(logits: Any, *, model: str, data: str, n_classes: Optional[int],
                  unit: str = "points") -> Any:
    """``logits`` if :func:`check_shape` passes and every value is finite, else
    :class:`ModelOutputError` saying how many of the N points have a NaN or infinite logit.
    A tensor is checked where it lives (one device reduction when all is well)."""
    check_shape(logits, model=model, data=data, n_classes=n_classes)
    if isinstance(logits, torch.Tensor):
        if bool(torch.isfinite(logits).all()):
            return logits
        values = logits.detach().float().cpu().numpy()
    else:
        values = np.asarray(logits)
    bad = int((~np.isfinite(values).all(axis=1)).sum())
    if bad:
        kinds = [k for k, present in (("NaN", np.isnan(values).any()),
                                      ("infinite", np.isinf(values).any())) if present]
        raise ModelOutputError(
            f"model {model!r} on {data}: {bad} of {len(values)} {unit} have {' and '.join(kinds)} "
            "logits, which no metric can score. The model's weights (NaN weights, an inf bias) "
            "or its forward pass are broken: check the checkpoint")
    return logits


class OutputChecked(nn.Module):
    """``net`` whose every output passes :func:`check_outputs`: for attacks, whose own loops
    call the model many times and would otherwise meet NaN logits deep inside their bookkeeping
    (the counts are then those of one batch)."""

    #: The check leaves values unchanged: interval bounds go through ``net`` itself.
    bounds_through = "net"

    def __init__(self, net: nn.Module, *, model: str, data: str, n_classes: Optional[int]):
        super().__init__()
        self.net, self.label, self.data, self.n_classes = net, model, data, n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return check_outputs(self.net(x), model=self.label, data=self.data, n_classes=self.n_classes,
                             unit="rows of one model call")


__all__ = ["ModelOutputError", "OutputChecked", "check_shape", "check_outputs"]
