"""Model adapters: each turns a :class:`ModelSpec` into an ``nn.Module`` returning logits.

An adapter is ``adapter(spec, base_dir) -> nn.Module``, registered in ``oodbench.core.registry.models``
with metadata:

* ``required``: the spec fields it needs (a tuple inside: any one of those fields); a suite entry
  without one (for a flag such as ``trust_code``: without it true) is refused at validation
  (:mod:`oodbench.models.entry_checks`), and ``trusted_without`` lists those a ``trust_code``
  entry may leave out;
* ``file``: ``(spec, base_dir) -> Path | None``, the file whose bytes determine the weights; its
  sha256 goes into :func:`oodbench.models.model_fingerprint` without loading anything;
* ``defaults``: values the adapter substitutes for unset spec fields (part of the fingerprint);
* ``config_files``: ``(spec, base_dir) -> list[Path]``, the configuration files beside the
  weights that also determine the outputs (a library's architecture and preprocessing config);
  their sha256es go into the fingerprint too (:func:`config_files_in`);
* ``config``: what a library adapter calls the config a suite's preprocessing fields override
  (:func:`oodbench.models.libraries.preprocessing.suite_overrides`).

Adapters do not normalise and do not call ``.eval()``; :func:`oodbench.models.load_model` does
both for every adapter. Anything that would execute code from a file or a module (pickles with
custom classes, Python factories) is refused unless the entry says ``trust_code: true``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import pickle
import re
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from oodbench.models.errors import ModelLoadError, spec_error
from oodbench.models.files import require_file, resolve_path
from oodbench.models.sniff import REDOWNLOAD_FIX, safetensors_problem, torch_file_problem
from oodbench.models.spec import ModelSpec
from oodbench.core.registry import UnknownNameError, architectures, models

# --------------------------------------------------------------------------------------------
# shared helpers


WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
"""Keys under which training scripts commonly nest the state dict in a checkpoint dict."""

DATA_PARALLEL_PREFIX = "module."

_ARCH_FIX = "set `arch:` to a registered architecture (`oodbench list architectures`)"


def spec_path(spec: ModelSpec, base_dir: Path) -> Path | None:
    """The resolved ``path`` field, or None."""
    return resolve_path(spec.path, base_dir) if spec.path else None


def config_files_in(names: tuple[str, ...]) -> Callable[[ModelSpec, Path], list[Path]]:
    """An adapter's ``config_files``: those of ``names`` that exist in a ``path`` folder (a file
    ``path`` has none beside it: its config is the library's own, named by the entry)."""

    def files(spec: ModelSpec, base_dir: Path) -> list[Path]:
        path = spec_path(spec, base_dir)
        if path is None or not path.is_dir():
            return []
        return [path / name for name in names if (path / name).is_file()]

    return files


def _require_path(spec: ModelSpec, base_dir: Path) -> Path:
    path = spec_path(spec, base_dir)
    if path is None:
        raise spec_error(spec.name, "path", f"adapter {spec.adapter!r} needs a file but none is set",
                         "add `path: FILE` (relative to the suite's folder)")
    return require_file(spec, path, "path")


def build_arch(spec: ModelSpec) -> nn.Module:
    """Instantiate ``spec.arch`` with ``spec.arch_options`` (randomly initialised)."""
    if not spec.arch:
        raise spec_error(spec.name, "arch", "a state dict needs an architecture to load into, "
                         "and none is set", _ARCH_FIX + ", plus `arch_options:` if needed")
    try:
        builder = architectures.get(spec.arch)
    except UnknownNameError as err:
        raise spec_error(spec.name, "arch", str(err), _ARCH_FIX) from None
    try:
        return builder(**spec.arch_options)
    except (TypeError, ValueError, RuntimeError, MemoryError) as err:  # RuntimeError: allocation
        raise spec_error(spec.name, "arch_options",
                         f"architecture {spec.arch!r} rejects options {spec.arch_options}: {err}",
                         "use the options its builder accepts (`oodbench list architectures`)"
                         ) from err


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def unwrap_checkpoint(obj: Any) -> Any:
    """Follow ``state_dict`` / ``model_state_dict`` / ``model`` / ``net`` wrapper keys down to
    the state dict (or, for trusted pickles, the module) they hold."""
    for _ in range(4):  # a few levels: {"model": {"state_dict": ...}} exists in the wild
        if _is_state_dict(obj) or not isinstance(obj, Mapping):
            return obj
        inner = next((obj[k] for k in WRAPPER_KEYS
                      if k in obj and isinstance(obj[k], (Mapping, nn.Module))), None)
        if inner is None:
            return obj
        obj = inner
    return obj


def strip_prefix(state: Mapping[str, torch.Tensor],
                 prefix: str = DATA_PARALLEL_PREFIX) -> dict[str, torch.Tensor]:
    """Drop a leading ``module.`` (``nn.DataParallel`` / DDP) from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def _few(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", … ({len(keys)} in all)" if len(keys) > n else "")


def _prefix_hint(unexpected: list[str], expected: Mapping[str, Any]) -> str:
    heads = {k.split(".", 1)[0] for k in unexpected if "." in k}
    if len(heads) == 1:
        head = heads.pop() + "."
        if all(k.split(".", 1)[-1] in expected for k in unexpected if k.startswith(head)):
            return (f". The checkpoint's keys carry an extra prefix {head!r}: re-save it "
                    "without the prefix, or load it with a `python` factory")
    return ""


def load_state_into(net: nn.Module, state: Any, spec: ModelSpec, source: Path, *,
                    target: str | None = None, field: str = "arch") -> nn.Module:
    """Load ``state`` into ``net`` strictly, with a message that lists what does not match.

    Missing ``num_batches_tracked`` entries (checkpoints from PyTorch < 0.4.1) are tolerated:
    they do not affect eval-mode outputs. ``target`` names the network in messages (default:
    ``spec.arch`` and its options) and ``field`` is the entry field blamed for a mismatch.
    """
    target = target or f"architecture {spec.arch!r} with arch_options {spec.arch_options}"
    if not _is_state_dict(state):
        keys = list(state)[:8] if isinstance(state, Mapping) else []
        raise spec_error(
            spec.name, "path",
            f"{source} holds no state dict (found {type(state).__name__}"
            + (f" with keys {keys}" if keys else "") + ")",
            "save `model.state_dict()`, or a dict holding it under one of "
            + ", ".join(repr(k) for k in WRAPPER_KEYS))
    state = strip_prefix(state)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    # load_state_dict cannot copy these (a bare RuntimeError): refuse them by name
    no_values = [f"{k} ({'meta: a shape without values' if t.is_meta else str(t.layout).removeprefix('torch.')})"
                 for k, t in state.items() if t.is_meta or t.layout != torch.strided]
    if no_values:
        raise spec_error(
            spec.name, "path", f"{source} holds {len(no_values)} tensor(s) that are not dense "
            f"tensors with values ({_few(no_values, 3)})",
            "save the trained weights as ordinary tensors (`model.state_dict()` of the model on "
            "the CPU, after `.to_dense()` for sparse ones)")
    # load_state_dict would cast silently: integer, boolean or complex weights are not trained
    # real-valued weights
    for what, wrong in (("complex", torch.Tensor.is_complex),
                        ("integer or boolean", lambda t: not t.is_floating_point() and not t.is_complex())):
        mistyped = [f"{k} {str(state[k].dtype).removeprefix('torch.')}" for k, v in expected.items()
                    if k in state and v.is_floating_point() and wrong(state[k])]
        if mistyped:
            raise spec_error(
                spec.name, "path", f"{source} holds {len(mistyped)} {what} tensor(s) where "
                f"{spec.arch!r} has real floating-point weights ({_few(mistyped, 3)})",
                "save the trained float weights (`model.state_dict()`); this file is not a "
                "trained checkpoint of that architecture")
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches, checkpoint vs arch "
                         f"({_few(mismatched, 3)})")
        raise spec_error(
            spec.name, field,
            f"{source} does not fit {target}: " + "; ".join(parts)
            + _prefix_hint(unexpected, expected),
            "choose the architecture the checkpoint was trained with; shape mismatches usually "
            "mean other `arch_options` (num_classes, depth, widen_factor)")
    net.load_state_dict(state, strict=False)
    return net


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _unpickling_reason(err: Exception) -> tuple[bool, str]:
    """(needs code?, short reason) from torch's weights_only error message."""
    text = str(err)
    needs_code = "global" in text.lower()
    found = _GLOBAL_RE.search(text)
    if found:
        return True, f"it references {found.group(1)}"
    tail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
    return needs_code, (tail[0] if tail else text)[:200]


def refuse_wrong_format(spec: ModelSpec, path: Path, problem: str | None) -> None:
    """A file whose bytes show it is not what the adapter reads (an HTML page saved as ``.pt``,
    an empty or truncated download) is refused as such, before a loader blames something else."""
    if problem is not None:
        raise spec_error(spec.name, "path", f"{path} {problem}", REDOWNLOAD_FIX)


def torch_load(spec: ModelSpec, path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``; ``weights_only=False`` only with trust_code."""
    refuse_wrong_format(spec, path, torch_file_problem(path))
    try:
        with warnings.catch_warnings():  # torch's note on sparse tensors: they are refused anyway
            warnings.filterwarnings("ignore", message="Validating sparse tensor invariants")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        needs_code, reason = _unpickling_reason(err)
        if not spec.trust_code:
            what = ("is a pickle that needs code to unpickle" if needs_code else
                    "cannot be read as plain tensors (it may need code to unpickle, or be corrupt)")
            raise spec_error(
                spec.name, "trust_code",
                f"{path} {what} ({reason}); unpickling it executes code named in the file, so "
                "oodbench refuses by default",
                "if you trust the file's source, add `trust_code: true` to the model entry; "
                "better, re-save it as a state dict (`torch.save(model.state_dict(), f)`) or "
                "safetensors") from None
    except Exception as err:
        raise spec_error(spec.name, "path", f"torch.load cannot read {path} ({err})",
                         "point `path` at a PyTorch checkpoint (`adapter: torchscript` for "
                         "TorchScript files, `adapter: safetensors` for .safetensors)") from err
    try:  # trusted: the caller opted in to executing the pickle's code
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise spec_error(spec.name, "path", f"unpickling {path} with trust_code failed "
                         f"({type(err).__name__}: {err})",
                         "make the classes the pickle names importable (install / add to "
                         "PYTHONPATH the code that saved it), or re-save it as a state dict"
                         ) from err


# --------------------------------------------------------------------------------------------
# checkpoint


@models.register("checkpoint", required=("path", "arch"), trusted_without=("arch",), file=spec_path)
def load_checkpoint(spec: ModelSpec, base_dir: Path) -> nn.Module:
    """A torch.save'd state dict (optionally wrapped, `module.`-prefixed) loaded into `arch`."""
    path = _require_path(spec, base_dir)
    if not spec.arch and not spec.trust_code:
        build_arch(spec)  # raises the "needs an architecture" error before reading the file
    obj = unwrap_checkpoint(torch_load(spec, path))
    if isinstance(obj, nn.Module):  # only possible with trust_code (weights_only can't build one)
        return obj
    return load_state_into(build_arch(spec), obj, spec, path)


# --------------------------------------------------------------------------------------------
# safetensors


@models.register("safetensors", required=("path", "arch"), file=spec_path)
def load_safetensors(spec: ModelSpec, base_dir: Path) -> nn.Module:
    """A .safetensors state dict (no code can run on load) loaded into `arch`."""
    from safetensors.torch import load_file

    path = _require_path(spec, base_dir)
    net = build_arch(spec)
    refuse_wrong_format(spec, path, safetensors_problem(path))
    try:
        state = load_file(str(path), device="cpu")
    except Exception as err:
        raise spec_error(spec.name, "path", f"{path} is not a readable safetensors file ({err})",
                         "point `path` at a .safetensors file, or use `adapter: checkpoint` for "
                         "torch.save files") from err
    return load_state_into(net, state, spec, path)


# --------------------------------------------------------------------------------------------
# torchscript


@models.register("torchscript", required=("path",), file=spec_path)
def load_torchscript(spec: ModelSpec, base_dir: Path) -> nn.Module:
    """A TorchScript archive (torch.jit.save): architecture and weights in one file."""
    path = _require_path(spec, base_dir)
    refuse_wrong_format(spec, path, torch_file_problem(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notices
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as err:
        raise spec_error(spec.name, "path", f"{path} is not a TorchScript archive ({err})",
                         "export with `torch.jit.save(torch.jit.script(model), f)`, or use "
                         "`adapter: checkpoint` with `arch:` for a state dict") from err


# --------------------------------------------------------------------------------------------
# python


def _factory_file(spec: ModelSpec, base_dir: Path) -> Path | None:
    """For ``factory: path/to/file.py:callable``, that file (its bytes are part of the
    fingerprint); for an importable module, None."""
    if spec.factory and ":" in spec.factory:
        module = spec.factory.rsplit(":", 1)[0]
        if module.endswith(".py"):
            return resolve_path(module, base_dir)
    return None


def _import_factory(spec: ModelSpec, base_dir: Path) -> Callable[..., Any]:
    ref = spec.factory or ""
    module_name, sep, attr = ref.rpartition(":")
    if not sep or not module_name or not attr:
        raise spec_error(spec.name, "factory", f"{ref!r} is not of the form 'module:callable'",
                         "write e.g. `factory: mypkg.nets:build` or `factory: nets.py:build`")
    try:
        if module_name.endswith(".py"):
            file = resolve_path(module_name, base_dir)
            if not file.is_file():
                raise FileNotFoundError(f"no file {file}")
            unique = "oodbench_factory_" + hashlib.sha1(str(file).encode()).hexdigest()[:12]
            loader_spec = importlib.util.spec_from_file_location(unique, file)
            assert loader_spec is not None and loader_spec.loader is not None
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[unique] = module
            try:
                loader_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[unique]
                raise
        else:
            base = str(Path(base_dir).expanduser().resolve())
            added = base not in sys.path
            if added:  # a package next to the suite file; appended, so it never shadows others
                sys.path.append(base)
            try:
                module = importlib.import_module(module_name)
            finally:
                if added:
                    sys.path.remove(base)
        target: Any = module
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as err:
        raise spec_error(spec.name, "factory", f"cannot import {ref!r} "
                         f"({type(err).__name__}: {err})",
                         "make the module importable (installed, or next to the suite file) and "
                         "check the callable's name") from err
    if not callable(target):
        raise spec_error(spec.name, "factory", f"{ref!r} is a {type(target).__name__}, not callable",
                         "name a function or class that returns an nn.Module")
    return target


@models.register("python", required=("factory", "trust_code"), file=_factory_file)
def load_python(spec: ModelSpec, base_dir: Path) -> nn.Module:
    """`factory: "module:callable"` called with `factory_kwargs`; needs `trust_code: true`."""
    if not spec.trust_code:
        raise spec_error(spec.name, "trust_code",
                         f"the python adapter imports and runs {spec.factory!r}, i.e. executes "
                         "arbitrary code, and the entry does not allow that",
                         "if you trust that code, add `trust_code: true` to the model entry")
    if not spec.factory:
        raise spec_error(spec.name, "factory", "the python adapter needs a factory",
                         "add `factory: package.module:callable` (and `factory_kwargs:`)")
    factory = _import_factory(spec, base_dir)
    try:
        net = factory(**spec.factory_kwargs)
    except Exception as err:
        raise spec_error(spec.name, "factory_kwargs", f"{spec.factory}(**{spec.factory_kwargs}) "
                         f"raised {type(err).__name__}: {err}",
                         "check `factory_kwargs` against the callable's signature") from err
    if not isinstance(net, nn.Module):
        raise spec_error(spec.name, "factory", f"{spec.factory} returned a {type(net).__name__}, "
                         "not an nn.Module", "return the model (an nn.Module producing logits)")
    return net


# --------------------------------------------------------------------------------------------
# robustbench

ROBUSTBENCH_DIR_ENV = "OODBENCH_ROBUSTBENCH_DIR"
DEFAULT_ROBUSTBENCH_DIR = "~/.cache/robustbench"
_ROBUSTBENCH_DEFAULTS = {"dataset": "cifar10", "threat_model": "Linf"}


def ensure_autoattack() -> None:
    """Make ``import autoattack`` work with the PyPI package ``pyautoattack``.

    robustbench 1.1.1 imports ``autoattack`` (only installable from git); ``pyautoattack`` is
    the same code under another name. If ``autoattack`` is missing, alias ``pyautoattack`` and
    its loaded submodules (``autoattack.state`` …) in ``sys.modules``.
    """
    if "autoattack" in sys.modules or importlib.util.find_spec("autoattack") is not None:
        return
    import pyautoattack
    import pyautoattack.state  # noqa: F401  (robustbench imports autoattack.state)

    sys.modules["autoattack"] = pyautoattack
    for name, module in list(sys.modules.items()):
        if name.startswith("pyautoattack."):
            sys.modules["autoattack." + name.split(".", 1)[1]] = module


def robustbench_dir(spec: ModelSpec, base_dir: Path) -> Path:
    """``model_dir`` (relative to the suite), else $OODBENCH_ROBUSTBENCH_DIR, else
    ``~/.cache/robustbench``."""
    if spec.model_dir:
        return resolve_path(spec.model_dir, base_dir)
    return Path(os.environ.get(ROBUSTBENCH_DIR_ENV, DEFAULT_ROBUSTBENCH_DIR)).expanduser()


def robustbench_file(spec: ModelSpec, base_dir: Path) -> Path | None:
    """Where robustbench keeps the checkpoint: ``model_dir/<dataset>/<threat_model>/<model>.pt``."""
    if not spec.model:
        return None
    dataset = spec.dataset or _ROBUSTBENCH_DEFAULTS["dataset"]
    threat = (spec.threat_model or _ROBUSTBENCH_DEFAULTS["threat_model"]).replace("_3d", "")
    return robustbench_dir(spec, base_dir) / dataset / threat / f"{spec.model}.pt"


def _import_robustbench(spec: ModelSpec) -> Any:
    try:
        ensure_autoattack()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*pkg_resources.*")
            warnings.filterwarnings("ignore", category=FutureWarning)
            from robustbench import utils as rb_utils
    except ImportError as err:
        raise spec_error(spec.name, "adapter", f"robustbench is not importable ({err})",
                         "pip install 'oodbench[robustbench]' (robustbench==1.1.1 and "
                         "pyautoattack)") from err
    return rb_utils


@models.register("robustbench", required=("model",), file=robustbench_file,
                 defaults=_ROBUSTBENCH_DEFAULTS)
def load_robustbench(spec: ModelSpec, base_dir: Path) -> nn.Module:
    """A RobustBench model-zoo entry (`model`, `dataset`, `threat_model`, `model_dir`)."""
    if not spec.model:
        raise spec_error(spec.name, "model", "the robustbench adapter needs a model name",
                         "add `model: <RobustBench name>`, e.g. `model: Standard`")
    rb_utils = _import_robustbench(spec)
    dataset = spec.dataset or _ROBUSTBENCH_DEFAULTS["dataset"]
    threat = spec.threat_model or _ROBUSTBENCH_DEFAULTS["threat_model"]
    file = robustbench_file(spec, base_dir)
    assert file is not None
    if file.exists() or spec.url:  # a pinned file (sha256 / url) is checked like any other
        require_file(spec, file, "model_dir")
    try:
        zoo = rb_utils.all_models[rb_utils.BenchmarkDataset(dataset)][
            rb_utils.ThreatModel(threat.replace("_3d", ""))]
    except (ValueError, KeyError) as err:
        raise spec_error(spec.name, "dataset", f"RobustBench has no ({dataset}, {threat}) "
                         f"leaderboard ({err})", "use dataset cifar10 / cifar100 / imagenet and "
                         "threat_model Linf / L2 / corruptions") from err
    if spec.model not in zoo:
        import difflib

        close = difflib.get_close_matches(spec.model, list(zoo), n=3, cutoff=0.5)
        raise spec_error(spec.name, "model",
                         f"RobustBench has no model {spec.model!r} for {dataset}/{threat}"
                         + (f"; did you mean {', '.join(close)}?" if close else ""),
                         "use a name from the RobustBench model zoo for that dataset and threat "
                         "model")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return rb_utils.load_model(model_name=spec.model, model_dir=str(robustbench_dir(
                spec, base_dir)), dataset=dataset, threat_model=threat)
    except Exception as err:
        raise spec_error(spec.name, "model", f"robustbench could not load {spec.model} "
                         f"({dataset}/{threat}) from {file}: {type(err).__name__}: {err}",
                         f"without network, place the checkpoint at {file} (set `model_dir`); "
                         "otherwise check the connection") from err


__all__ = ["WRAPPER_KEYS", "build_arch", "unwrap_checkpoint", "strip_prefix", "load_state_into",
           "torch_load", "ensure_autoattack", "robustbench_file", "robustbench_dir",
           "ModelLoadError"]
