"""The one error type of model loading."""

from __future__ import annotations

from oodbench.core.errors import OodbenchError


class ModelLoadError(OodbenchError):
    """A model reference that cannot be turned into a module.

    The message names the model (``ModelSpec.name``), the field of the model entry at fault and
    what to change. ``model`` and ``field`` are kept as attributes for callers that want them.
    """

    def __init__(self, message: str, *, model: str | None = None, field: str | None = None):
        self.model, self.field = model, field
        super().__init__(message)


def spec_error(spec_name: str, field: str, problem: str, fix: str) -> ModelLoadError:
    """``model 'NAME', field `FIELD`: PROBLEM. Fix: FIX`` — the shape of every loading message."""
    return ModelLoadError(f"model {spec_name!r}, field `{field}`: {problem}. Fix: {fix}",
                          model=spec_name, field=field)
