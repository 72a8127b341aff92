"""``load_model`` and ``model_fingerprint``: the two entry points the runner and users call."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Union

from torch import nn

from oodbench.models.errors import ModelLoadError, spec_error
from oodbench.models.files import expected_sha256, file_sha256, resolve_path, verify_sha256
from oodbench.models.normalize import with_normalization
from oodbench.models.spec import ModelSpec
from oodbench.core.registry import UnknownNameError, architectures, models

ModelRef = Union[ModelSpec, Mapping[str, Any], str]

FINGERPRINT_FIELDS = ("adapter", "arch", "arch_options", "normalize", "model", "dataset",
                      "threat_model", "factory", "factory_kwargs")
"""Spec fields that change a model's outputs (``name``, paths, urls and trust do not)."""

GEOMETRY_FIELDS = ("num_classes", "input_size", "crop_pct", "interpolation")
"""Output-relevant fields of the library adapters; fingerprinted only when set, so the
fingerprints (and job keys) of every entry that does not use them stay as they were."""

_STATE_DICT_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar", ".bin", ".safetensors")


def parse_model_ref(ref: str) -> ModelSpec:
    """A spec from a string shorthand.

    * ``robustbench:NAME`` (cifar10, Linf) or ``robustbench:DATASET/THREAT/NAME``
    * ``torchscript:PATH``
    * ``python:module:factory`` is refused: it runs code, so it needs a dict with
      ``trust_code: true``
    * a state-dict file (``.pt``, ``.safetensors`` …) is refused: it needs ``arch``
    """
    kind, sep, rest = ref.partition(":")
    if sep and kind == "robustbench" and rest:
        parts = rest.split("/")
        if len(parts) == 1:
            return ModelSpec(name=rest, adapter="robustbench", model=rest)
        if len(parts) == 3 and all(parts):
            return ModelSpec(name=parts[2], adapter="robustbench", dataset=parts[0],
                             threat_model=parts[1], model=parts[2])
    elif sep and kind == "torchscript" and rest:
        return ModelSpec(name=Path(rest).stem, adapter="torchscript", path=rest)
    elif sep and kind == "python":
        raise ModelLoadError(
            f"model reference {ref!r}: the python adapter runs code, which a string reference "
            "cannot allow. Fix: pass a dict (or a suite entry) "
            f"{{name: ..., adapter: python, factory: {rest!r}, trust_code: true}}",
            model=ref, field="trust_code")
    path_part = rest if sep and kind in ("checkpoint", "safetensors") else ref
    if (sep and kind in ("checkpoint", "safetensors")) or ref.lower().endswith(_STATE_DICT_SUFFIXES):
        adapter = "safetensors" if path_part.lower().endswith(".safetensors") else "checkpoint"
        raise ModelLoadError(
            f"model reference {ref!r}: a weights file needs the architecture it belongs to "
            "(field `arch`). Fix: pass a dict, e.g. {name: ..., adapter: "
            f"{adapter}, path: {path_part!r}, arch: resnet18}} (`oodbench list architectures`), "
            "or use `torchscript:PATH` for a TorchScript file",
            model=ref, field="arch")
    raise ModelLoadError(
        f"model reference {ref!r} is not understood. Fix: use robustbench:NAME, "
        "robustbench:DATASET/THREAT/NAME, torchscript:PATH, or a dict / suite entry with "
        "`adapter:` (`oodbench list models`)", model=ref, field="adapter")


def as_spec(ref: ModelRef) -> ModelSpec:
    """A :class:`ModelSpec` from a spec, a dict (validated) or a string shorthand."""
    if isinstance(ref, ModelSpec):
        return ref
    if isinstance(ref, Mapping):
        return ModelSpec.model_validate(ref)
    if isinstance(ref, (str, os.PathLike)):
        return parse_model_ref(os.fspath(ref))
    raise TypeError(f"a model reference is a ModelSpec, dict or str, not {type(ref).__name__}")



def _adapter_entry(spec: ModelSpec) -> Any:
    try:
        return models.entry(spec.adapter)
    except UnknownNameError as err:
        raise spec_error(spec.name, "adapter", str(err), "use a registered adapter") from None


def load_model(spec: ModelRef, base_dir: Path | str = ".") -> nn.Module:
    """The model a reference names, in eval mode, normalisation inside, on the CPU.

    ``base_dir`` is the folder relative paths are resolved against (the suite file's folder).
    Parameters keep their ``requires_grad``; attacks need gradients w.r.t. the input only and
    run under ``torch.no_grad`` / ``enable_grad`` as they see fit.

    Raises :class:`ModelLoadError` (message: model name, field, fix) for anything wrong with
    the reference or its files.
    """
    spec = as_spec(spec)
    adapter: Callable[[ModelSpec, Path], nn.Module] = _adapter_entry(spec).load()
    net = adapter(spec, Path(base_dir).expanduser())
    if not isinstance(net, nn.Module):
        raise spec_error(spec.name, "adapter", f"adapter {spec.adapter!r} returned a "
                         f"{type(net).__name__}, not an nn.Module", "fix the adapter")
    return with_normalization(net, spec.normalize).eval()


def model_fingerprint(spec: ModelRef, base_dir: Path | str = ".") -> dict[str, Any]:
    """What determines the model's outputs, as a JSON-able dict, computed without loading it.

    The output-relevant spec fields (adapter defaults filled in; not ``name``), the version of
    the registered architecture, and ``file_sha256`` of the file the adapter reads (checkpoint,
    robustbench ``model_dir/<dataset>/<threat_model>/<model>.pt``, or a ``factory`` ``.py``
    file), plus ``config_sha256`` of the config files read beside it when the adapter has any
    (a timm folder's ``config.json``; a Hugging Face folder's ``config.json`` and
    ``preprocessor_config.json``): they set the architecture and preprocessing, so a changed
    config is a new job, not a cached one. The sha256 is cached per (path, size, mtime), so calling this per job is cheap. If the
    file is not there yet, ``file_sha256`` is the entry's ``sha256`` (what a verified download
    will have), else None plus the ``url`` it will come from. A file that is there is checked
    against the entry's ``sha256`` pin (:class:`ModelLoadError` on a mismatch): the runner
    computes the fingerprint on every run, so the pin holds even when every job is cached and
    the model is never loaded. Code behind an importable
    ``factory`` module is not hashed: bump a ``factory_kwargs`` entry when it changes.
    """
    spec = as_spec(spec)
    entry = _adapter_entry(spec)
    fp: dict[str, Any] = {}
    for key in FINGERPRINT_FIELDS:
        value = getattr(spec, key)
        fp[key] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    for key in GEOMETRY_FIELDS:
        if getattr(spec, key) is not None:
            fp[key] = list(value) if isinstance(value := getattr(spec, key), tuple) else value
    for key, value in entry.meta.get("defaults", {}).items():
        if fp.get(key) is None:
            fp[key] = value
    if spec.arch and spec.arch in architectures:
        fp["arch_version"] = architectures.meta(spec.arch).get("version")
    file_of = entry.meta.get("file", lambda s, b: resolve_path(s.path, b) if s.path else None)
    path = file_of(spec, Path(base_dir).expanduser())
    if path is not None and path.is_file():
        verify_sha256(spec, path)  # every run, cached jobs or not: a wrong pin is never ignored
        fp["file_sha256"] = file_sha256(path)
    else:
        fp["file_sha256"] = expected_sha256(spec)
        if fp["file_sha256"] is None and spec.url:
            fp["url"] = spec.url
    configs = entry.meta.get("config_files")
    hashes = {} if configs is None else {f.name: file_sha256(f) for f in configs(spec, Path(base_dir).expanduser())}
    if hashes:  # absent otherwise, so the keys of models without config files stay as they were
        fp["config_sha256"] = hashes
    return fp
