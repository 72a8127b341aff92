"""The input side of a library's pretrained network: geometry and normalisation from its config.

oodbench models take [0, 1] images of the data set's own size. A timm or Hugging Face network
was trained on images resized, centre-cropped and standardised by its library's preprocessing;
that preprocessing becomes the first layer of the module (:class:`ModelInput`), so a 224×224
network takes 32×32 or 299×299 probes with no suite field, every image stays in [0, 1] image
space for attacks (the ε-ball is in the data's pixels, and the gradient flows through the resize),
and one suite can hold networks of different input sizes. A model entry's ``input_size``,
``crop_pct``, ``interpolation`` or ``normalize`` replaces what the config says; the replacement is
logged with the value it replaced, and every table of the run says so in a note
(:func:`suite_overrides`, read from the stored suite, so a report needs no model).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from oodbench.data.transforms import Geometry, to_model_input
from oodbench.models.normalize import Normalize
from oodbench.models.spec import ModelSpec

log = logging.getLogger(__name__)

SUITE_FIELDS = ("normalize", "input_size", "crop_pct", "interpolation")
"""A model entry's fields that replace what a library's preprocessing config says."""
OVERRIDE_MARK = "\u2021"
"""Marks the table note of a model whose preprocessing the suite set over its library config."""


@dataclass(frozen=True)
class InputConfig:
    """What a library's configuration says about its network's input."""

    geometry: Geometry
    mean: Sequence[float]
    std: Sequence[float]
    crop_pct: float = 1.0
    source: str = "the model's config"


class ModelInput(nn.Module):
    """[0, 1] NCHW images of any size → the network's geometry, then its normalisation."""

    def __init__(self, geometry: Geometry, normalize: Optional[Normalize]):
        super().__init__()
        self.geometry, self.normalize = geometry, normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_model_input(x, self.geometry)
        return x if self.normalize is None else self.normalize(x)

    def extra_repr(self) -> str:
        return self.geometry.describe()


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resolved_geometry(spec: ModelSpec, config: InputConfig) -> tuple[Geometry, list[str]]:
    """The config's geometry with the entry's overrides, and one note per override."""
    geometry, notes = config.geometry, []
    if spec.input_size is not None or spec.crop_pct is not None:
        size = _pair(spec.input_size) if spec.input_size is not None else geometry.crop
        crop_pct = spec.crop_pct if spec.crop_pct is not None else config.crop_pct
        geometry = Geometry.center_crop(geometry.channels, size, crop_pct,
                                        spec.interpolation or geometry.interpolation)
        notes.append(f"input {size[0]}×{size[1]}, crop_pct {crop_pct:g} from the suite "
                     f"(config: {config.geometry.describe()})")
    elif spec.interpolation is not None and spec.interpolation != geometry.interpolation:
        geometry = dataclasses.replace(geometry, interpolation=spec.interpolation)
    if spec.interpolation is not None and spec.interpolation != config.geometry.interpolation:
        notes.append(f"interpolation {spec.interpolation} from the suite "
                     f"(config: {config.geometry.interpolation})")
    return geometry, notes


def with_input(net: nn.Module, spec: ModelSpec, config: InputConfig) -> nn.Module:
    """``nn.Sequential(ModelInput, net)`` for the config and the entry's overrides.

    The entry's ``normalize`` replaces the config's mean/std: :func:`oodbench.models.load_model`
    puts it in front of the whole module (a per-channel affine map commutes with resizing and
    cropping, so the order does not change the outputs beyond rounding).
    """
    geometry, notes = resolved_geometry(spec, config)
    normalize = None
    if spec.normalize is None:
        normalize = Normalize(config.mean, config.std)
    else:
        notes.append(f"normalize {spec.normalize.mean}/{spec.normalize.std} from the suite "
                     f"(config: {list(config.mean)}/{list(config.std)})")
    for note in notes:
        log.warning("model %r: %s overrides %s", spec.name, note, config.source)
    log.info("model %r: input %s (%s)", spec.name, geometry.describe(), config.source)
    return nn.Sequential(ModelInput(geometry, normalize), net)


def suite_overrides(entries: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, list[str]]]:
    """``{model name: (its library config, the fields the suite set)}`` of a suite's model
    entries (as stored: ``runs.suite_json``) whose adapter reads its preprocessing from a
    library config (registered with ``config=``) and whose entry sets any of
    :data:`SUITE_FIELDS`: those values, not the config's, made the model's numbers."""
    from oodbench.core.registry import UnknownNameError, models

    out: dict[str, tuple[str, list[str]]] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        try:
            config = models.meta(str(entry.get("adapter"))).get("config")
        except UnknownNameError:
            continue
        fields = [f for f in SUITE_FIELDS if entry.get(f) is not None]
        if config and fields:
            out[str(entry.get("name"))] = (str(config), fields)
    return out


def override_notes(overrides: Mapping[str, tuple[str, list[str]]]) -> list[str]:
    """One line per model of :func:`suite_overrides`, as tables print it under themselves."""
    return [f"{OVERRIDE_MARK} {model}: {', '.join(fields)} set by the suite, overriding its "
            f"{config}" for model, (config, fields) in overrides.items()]


__all__ = ["InputConfig", "ModelInput", "SUITE_FIELDS", "override_notes", "resolved_geometry",
           "suite_overrides", "with_input"]
