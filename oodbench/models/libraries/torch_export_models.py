"""The ``torch-export`` adapter: a ``.pt2`` archive written by ``torch.export.save``.

What was found (torch 2.14): the module ``torch.export.load(f).module()`` returns is an FX graph
of ATen operations run by eager autograd, so gradients w.r.t. the input flow through it — also
for programs exported under ``torch.no_grad()`` / ``inference_mode()`` or after
``run_decompositions()``. They do not reach the input when the network itself cuts the graph
(``with torch.no_grad():`` or ``.detach()`` inside ``forward``): the adapter checks this on the
first differentiated call and refuses the attack with a clear error instead of a zero gradient.

Safety: ``torch.export.load`` unpickles (``weights_only=False``) any weight or constant the
archive marks ``use_pickle``, opaque and custom objects, and falls back to ``weights_only=False``
when a tensor payload does not load as plain tensors. The archive is therefore inspected first
and refused unless every payload is raw tensor bytes or loads with ``weights_only=True``, or
the entry says ``trust_code: true``.

Feature detectors need the classifier's ``nn.Linear``, which an exported graph no longer has:
use logit detectors (msp, energy, …), or a state dict with ``arch:`` for the others.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from oodbench.data.transforms import Geometry
from oodbench.core.errors import OodbenchError
from oodbench.models.adapters import refuse_wrong_format, spec_path
from oodbench.models.errors import spec_error
from oodbench.models.files import require_file
from oodbench.models.fixed_rows import FORWARD_ROWS
from oodbench.models.libraries.preprocessing import InputConfig, with_input
from oodbench.models.sniff import torch_file_problem
from oodbench.models.spec import ModelSpec
from oodbench.core.registry import models

_EXPORT_FIX = ("export with `torch.export.save(torch.export.export(model.eval(), (x,), "
               "dynamic_shapes=({0: torch.export.Dim('batch')},)), 'model.pt2')`")
_PICKLED_PREFIXES = ("custom_obj", "opaque_obj")


class NoGradientError(OodbenchError, RuntimeError):
    """An attack asked for gradients that the exported program does not pass to its input."""


class ExportedNet(nn.Module):
    """An exported program as a module: eval-only, and it says when gradients cannot flow."""

    def __init__(self, program: nn.Module, label: str, source: Path):
        super().__init__()
        self.program, self.label, self.source = program, label, source
        self.passes_gradients: Optional[bool] = None  # found on the first differentiated call

    def train(self, mode: bool = True) -> "ExportedNet":
        """An exported graph is frozen in the mode it was exported in: ``train``/``eval``
        only set the flag here (the unlifted program refuses both)."""
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.program(x)
        if x.requires_grad and torch.is_grad_enabled():
            if self.passes_gradients is None:
                self.passes_gradients = out.requires_grad and torch.autograd.grad(
                    out.sum(), x, retain_graph=True, allow_unused=True)[0] is not None
            if not self.passes_gradients:
                raise NoGradientError(
                    f"model {self.label!r}: the exported program {self.source} does not pass "
                    "gradients to its input (its forward detaches or runs under no_grad), and an "
                    "attack needs them. Fix: export the network without no_grad/detach inside "
                    "forward, or drop the attacked probes for this model")
        return out


def pickled_payloads(path: Path) -> list[str]:
    """Members of the archive that ``torch.export.load`` would unpickle with code allowed."""
    found = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith("_config.json") and ("/weights/" in name or "/constants/" in name):
                config = json.loads(archive.read(name)).get("config", {})
                found += [f"{name}: {key}" for key, meta in config.items()
                          if meta.get("use_pickle") or str(meta.get("path_name", "")).startswith(
                              _PICKLED_PREFIXES)]
            elif name.endswith(".pt"):  # sample inputs, legacy constants: torch.load payloads
                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception:
                    found.append(name)
    return found


def _input_shape(program: torch.export.ExportedProgram) -> tuple[object, ...]:
    """The shape of the program's one user input (ints, or symbols for dynamic dimensions)."""
    users = set(program.graph_signature.user_inputs)
    shapes = [tuple(node.meta["val"].shape) for node in program.graph.nodes
              if node.op == "placeholder" and node.name in users and "val" in node.meta]
    return shapes[0] if len(shapes) == 1 else ()


@models.register("torch-export", required=("path",), file=spec_path)
def load_torch_export(spec: ModelSpec, base_dir: Path) -> nn.Module:
    """A `torch.export.save` archive (.pt2): one NCHW image batch in, logits out."""
    path = spec_path(spec, base_dir)
    if path is None:
        raise spec_error(spec.name, "path", "the torch-export adapter needs a .pt2 file",
                         "add `path: model.pt2`")
    require_file(spec, path)
    refuse_wrong_format(spec, path, torch_file_problem(path))
    if not zipfile.is_zipfile(path):
        raise spec_error(spec.name, "path", f"{path} is not a torch.export archive", _EXPORT_FIX)
    if not spec.trust_code:
        pickled = pickled_payloads(path)
        if pickled:
            raise spec_error(spec.name, "trust_code", f"{path} holds pickled payloads that "
                             f"torch.export.load would unpickle with code allowed ({pickled[:3]})",
                             "if you trust the file's source, add `trust_code: true`; else "
                             "re-export a network whose weights and constants are plain tensors")
    try:
        program = torch.export.load(str(path))
    except Exception as err:
        raise spec_error(spec.name, "path", f"torch.export.load cannot read {path} "
                         f"({type(err).__name__}: {err})", _EXPORT_FIX) from err
    shape = _input_shape(program)
    if len(shape) != 4 or not all(isinstance(s, int) for s in shape[1:]):
        raise spec_error(spec.name, "path", f"{path} takes inputs of shape {shape}, not one NCHW "
                         "image batch of fixed channels and size", _EXPORT_FIX)
    if isinstance(shape[0], int) and shape[0] != FORWARD_ROWS:
        raise spec_error(spec.name, "path", f"{path} was exported for batches of exactly "
                         f"{shape[0]} images; oodbench calls models with {FORWARD_ROWS} rows",
                         _EXPORT_FIX + " (a dynamic batch dimension)")
    channels, h, w = (int(s) for s in shape[1:])  # type: ignore[call-overload]
    geometry = Geometry(channels, (h, w), (h, w), spec.interpolation or "bilinear")
    net = ExportedNet(program.module(), spec.name, path)
    config = InputConfig(geometry, [0.0] * channels, [1.0] * channels,
                         source="the exported program's input shape")
    return with_input(net, spec, config)


__all__ = ["load_torch_export", "ExportedNet", "NoGradientError", "pickled_payloads"]
