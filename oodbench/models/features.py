"""Penultimate features: the input of the classifier's last linear layer, taken by a hook.

Feature detectors (Mahalanobis, KNN, ViM, ReAct) score the representation the classifier's head
sees. Reading it with a forward pre-hook on that layer works for any architecture without a
special ``features()`` method, keeps the autograd graph (so an attack can differentiate a
feature score end to end), and costs nothing when no detector asks for it. An architecture may
name its head in its registry metadata (``head: "fc"``); otherwise the last ``nn.Linear``
registered in the module is taken, which is the classifier in every architecture of the zoo.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import nn

from oodbench.core.errors import OodbenchError


class FeaturesError(OodbenchError, ValueError):
    """A model whose penultimate features cannot be read (no linear head, a TorchScript module)."""


def head_layer(model: nn.Module, name: Optional[str] = None) -> nn.Linear:
    """The classifier's last linear layer: the module called ``name``, or the last ``nn.Linear``."""
    if isinstance(model, torch.jit.ScriptModule):
        raise FeaturesError("a TorchScript model's layers cannot be hooked, so its penultimate "
                            "features cannot be read; load it as a state dict with `arch:` to use "
                            "feature detectors (mahalanobis, rmd, knn, vim, react)")
    if name is not None:
        for module_name, module in model.named_modules():
            if module_name == name or module_name.endswith("." + name):
                if isinstance(module, nn.Linear):
                    return module
        raise FeaturesError(f"the model has no linear layer named {name!r}")
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise FeaturesError("the model has no nn.Linear layer, so its penultimate features "
                            "(the input of the last linear layer) are not defined; use a "
                            "detector that needs only logits (msp, max-logit, energy, entropy, gen)")
    return linear[-1]


@contextmanager
def tapped(model: nn.Module, head: Optional[nn.Linear] = None) -> Iterator[list[torch.Tensor]]:
    """Inside the block, each call of ``model`` appends its penultimate features to the list."""
    layer = head if head is not None else head_layer(model)
    seen: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        seen.append(inputs[0].flatten(1))

    handle = layer.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def logits_and_features(model: nn.Module, x: torch.Tensor,
                        head: Optional[nn.Linear] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass: the logits and the penultimate features (differentiable in ``x``)."""
    with tapped(model, head) as seen:
        logits = model(x)
    if len(seen) != 1:
        raise FeaturesError(f"the head layer ran {len(seen)} times in one forward pass; name the "
                            "classifier layer in the architecture's metadata (`head:`)")
    return logits, seen[0]
