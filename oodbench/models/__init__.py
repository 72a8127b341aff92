"""Models: references (:class:`ModelSpec`) → ``nn.Module`` returning logits on [0, 1] inputs.

``load_model`` resolves a reference through a registered adapter (``oodbench list models``:
checkpoint, safetensors, torchscript, robustbench, python, timm, huggingface, torch-export), puts the entry's normalisation in
front of the network and returns it in eval mode. ``model_fingerprint`` says what determines the
outputs (spec fields + checkpoint sha256) without loading anything; it keys the results cache.

Torch-dependent names are imported on first use, so reading a suite stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oodbench.models.errors import ModelLoadError
from oodbench.models.spec import ModelSpec, Normalization

__all__ = ["ModelSpec", "Normalization", "ModelLoadError", "load_model", "model_fingerprint",
           "parse_model_ref", "Normalize", "with_normalization", "file_sha256"]

if TYPE_CHECKING:  # pragma: no cover
    from oodbench.models.files import file_sha256
    from oodbench.models.loading import load_model, model_fingerprint, parse_model_ref
    from oodbench.models.normalize import Normalize, with_normalization

_LAZY = {
    "load_model": "oodbench.models.loading",
    "model_fingerprint": "oodbench.models.loading",
    "parse_model_ref": "oodbench.models.loading",
    "Normalize": "oodbench.models.normalize",
    "with_normalization": "oodbench.models.normalize",
    "file_sha256": "oodbench.models.files",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'oodbench.models' has no attribute {name!r}")
