"""Training: recipes (YAML), the papers' losses, registered methods and one resumable loop.

- :mod:`oodbench.train.recipe` — :class:`Recipe` and :func:`load_recipe`;
- :mod:`oodbench.train.losses` — CE, CEDA, ACET, OE, AT, RATIO as pure functions;
- :mod:`oodbench.train.methods` — the ``trainers`` registry entries (plain, ceda, acet, oe, at,
  ratio) that map a recipe and a batch to one of those losses;
- :mod:`oodbench.train.loop` — :func:`train_from_recipe`, the one training loop (checkpoints,
  AMP on CUDA, safetensors + model card).

Names are imported lazily, so that registering the trainers (which imports this package) stays
light and free of import cycles.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Recipe": "oodbench.train.recipe",
    "RecipeError": "oodbench.train.recipe",
    "load_recipe": "oodbench.train.recipe",
    "train_from_recipe": "oodbench.train.loop",
    "evaluate_model": "oodbench.train.loop",
    "Method": "oodbench.train.methods",
    "Batch": "oodbench.train.methods",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'oodbench.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
