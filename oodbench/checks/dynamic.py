"""``dynamic-forward``: the forward pass computes gradients, or behaves differently when
gradients are taken.

How it is detected (three signals, any one flags):

1. **autograd inside forward**: a :class:`torch.overrides.TorchFunctionMode` sees every torch
   call the forward makes; a call of ``torch.autograd.grad`` / ``Tensor.backward`` /
   ``torch.autograd.backward``, or ``requires_grad_`` on a tensor, is a gradient computed in the
   forward pass (an input-gradient step, BPDA-style tricks);
2. **grad mode switched on inside forward**: a forward called under ``torch.no_grad()`` whose
   operations run with gradients enabled turned them on itself (``torch.enable_grad()``);
3. **outputs depend on the autograd mode**: the forward under ``torch.inference_mode()`` (the
   clean pass), under ``torch.no_grad()`` (an attack's selection step) and with an input that
   requires a gradient (an attack's gradient step) give different outputs beyond float noise —
   the model branches on ``torch.is_grad_enabled()`` or ``x.requires_grad``, so what the attack
   differentiates is not what is evaluated.

Signals 1 and 2 see Python-level torch calls (all of ``torch``, ``torch.nn.functional`` and
``torch.autograd``); a model compiled into one opaque extension call would pass them, and then
only signal 3 can catch it. A model that raises in one of the modes is flagged too.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch.overrides import TorchFunctionMode

from oodbench.checks.base import Check, ModelInputs, close
from oodbench.checks.calls import Mode, outputs
from oodbench.core.cost import Cost
from oodbench.core.registry import checks

_AUTOGRAD = {"grad", "backward", "vjp", "jvp", "requires_grad_"}


class _Recorder(TorchFunctionMode):
    """Records autograd calls and operations that run with gradients enabled."""

    def __init__(self) -> None:
        super().__init__()
        self.autograd: set[str] = set()
        self.grad_ops = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in _AUTOGRAD:
            self.autograd.add(name)
        if torch.is_grad_enabled() and name not in ("_set_grad_enabled", "set_grad_enabled"):
            self.grad_ops += 1
        return func(*args, **(kwargs or {}))


@checks.register("dynamic-forward")
class DynamicForward(Check):
    """The forward pass calls autograd, turns gradients on, or depends on the autograd mode."""

    code = "dynamic-forward"
    scope = "model"
    meaning = ("the forward pass computes gradients itself or behaves differently when "
               "gradients are taken (autograd calls, grad mode switched on, outputs that depend "
               "on the autograd mode): the attack's gradient is not that of the evaluated model")

    def cost(self, spec, settings) -> Cost:
        return Cost(forward=3 * settings.n, gradient=settings.n)

    def run(self, inputs: ModelInputs) -> Optional[str]:
        model = inputs.model.eval()
        x = inputs.images.to(inputs.device)
        found: list[str] = []
        outs: dict[Mode, torch.Tensor] = {}
        for mode in ("inference", "no-grad", "grad"):
            recorder = _Recorder()
            try:
                outs[mode] = outputs(model, x, mode, around=lambda: recorder)
            except Exception as err:  # a forward that only works in some modes
                found.append(f"the forward raises under {mode} ({type(err).__name__}: {err})")
                continue
            if recorder.autograd:
                found.append(f"the forward under {mode} calls "
                             f"{', '.join(sorted(recorder.autograd))}")
            elif mode != "grad" and recorder.grad_ops:
                found.append(f"the forward under {mode} runs {recorder.grad_ops} operations with "
                             "gradients enabled (it switches grad mode on)")
        modes = list(outs)
        if "no-grad" in outs and not close(outs["no-grad"], outputs(model, x, "no-grad")).all():
            modes = []  # a randomised forward differs anyway: randomised-forward says so
        for a, b in zip(modes, modes[1:]):
            differ = ~close(outs[a], outs[b])
            if differ.any():
                gap = float((outs[a] - outs[b]).abs().max())
                found.append(f"outputs under {a} and {b} differ on {int(differ.sum())} of {len(x)} "
                             f"points (by up to {gap:.3g})")
        return "; ".join(found) if found else None
