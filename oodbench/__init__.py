"""oodbench: evaluate the reliability of classifier confidence — OOD detection, adversarial
robustness and worst-case OOD detection — from declarative suites.

Public API::

    suite = oodbench.load_suite("suites/quickstart.yaml")
    result = oodbench.run_suite(suite)          # cached in a SQLite results store
    model = oodbench.load_model({"name": "m", "arch": "resnet18", "path": "ckpt.pt"})
    table = oodbench.evaluate(model, in_set, {"noise": noise_set})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oodbench.core.version import VERSION as __version__

__all__ = ["__version__", "load_suite", "run_suite", "load_model", "evaluate"]

if TYPE_CHECKING:  # pragma: no cover
    from oodbench.models import load_model
    from oodbench.pipeline.run import evaluate, run_suite
    from oodbench.pipeline.suite import load_suite

_LAZY = {
    "load_suite": "oodbench.pipeline.suite",
    "run_suite": "oodbench.pipeline.run",
    "evaluate": "oodbench.pipeline.run",
    "load_model": "oodbench.models",
}


def __getattr__(name: str) -> Any:
    """Import the heavy parts (torch) on first use, so `oodbench --help` stays instant."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'oodbench' has no attribute {name!r}")
