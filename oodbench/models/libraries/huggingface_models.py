"""The ``huggingface`` adapter: ``AutoModelForImageClassification``, safetensors only.

``path`` names the folder ``model.save_pretrained(folder)`` and
``image_processor.save_pretrained(folder)`` write: ``config.json``, ``model.safetensors`` (or
sharded ``model-*.safetensors`` with their index) and ``preprocessor_config.json``. Without
``path``, ``model`` is a hub id (``facebook/convnext-tiny-224``), fetched when online or read
from the Hugging Face cache. Pickled ``pytorch_model.bin`` weights are refused (they can run
code), and so is a config that asks for remote code (``auto_map``) unless the entry says
``trust_code: true``. The image processor is read as JSON, never instantiated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from oodbench.data.transforms import Geometry
from oodbench.models.adapters import config_files_in, spec_path
from oodbench.models.errors import spec_error
from oodbench.models.libraries.preprocessing import InputConfig, with_input
from oodbench.models.libraries.timm_models import read_json
from oodbench.models.spec import ModelSpec
from oodbench.core.registry import models

CONFIG_FILE = "config.json"
PROCESSOR_FILE = "preprocessor_config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_INSTALL = "pip install 'oodbench[huggingface]'"
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
"""PIL resampling codes; LANCZOS (1), BOX (4) and HAMMING (5) are approximated by bicubic."""
CONVNEXT_WARP_FROM = 384
"""ConvNeXt's processor warps to (size, size) from this shortest edge on, else resizes and crops."""


class Logits(nn.Module):
    """A transformers classifier as a module returning the ``.logits`` tensor."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values=x).logits


def weights_file(spec: ModelSpec, base_dir: Path) -> Optional[Path]:
    """The safetensors file (or shard index) in the ``path`` folder."""
    path = spec_path(spec, base_dir)
    if path is None or not path.is_dir():
        return path
    return next((path / f for f in WEIGHT_FILES if (path / f).is_file()), path / WEIGHT_FILES[0])


def _hub_json(spec: ModelSpec, filename: str) -> Optional[dict[str, Any]]:
    """A JSON file of hub repo ``spec.model`` (cache first, network when allowed)."""
    from huggingface_hub import hf_hub_download

    assert spec.model is not None
    try:
        return read_json(spec, Path(hf_hub_download(spec.model, filename)))
    except Exception as err:
        if filename == PROCESSOR_FILE:
            return None
        raise spec_error(spec.name, "model", f"cannot get {filename} of hub model {spec.model!r} "
                         f"({type(err).__name__}: {err})",
                         "check the id, go online once so it reaches the Hugging Face cache, or "
                         "save it with `save_pretrained` and give `path:`") from err


def _size(spec: ModelSpec, value: Any, key: str) -> tuple[int, int] | int | None:
    """A processor size: ``{"height", "width"}`` → (h, w); ``{"shortest_edge"}`` → int."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, dict) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    if isinstance(value, dict) and "shortest_edge" in value:
        return int(value["shortest_edge"])
    raise spec_error(spec.name, "path", f"{PROCESSOR_FILE}: `{key}` {value!r} is not a size "
                     "oodbench reads (height/width or shortest_edge)",
                     "give `input_size:` (and `crop_pct:`) in the model entry")


def input_config(spec: ModelSpec, processor: dict[str, Any], config: dict[str, Any]) -> InputConfig:
    """Geometry and mean/std from the saved image-processor config (``preprocessor_config.json``).

    Inputs are in [0, 1]; the processor rescales uint8 pixels by ``rescale_factor`` and then
    standardises, so on [0, 1] images the mean and std are divided by ``255·rescale_factor``.
    """
    channels = int(config.get("num_channels", 3))
    interpolation = _RESAMPLE.get(processor.get("resample", 2), "bicubic")
    size = _size(spec, processor.get("size"), "size")
    crop = _size(spec, processor.get("crop_size"), "crop_size")
    crop_pct = processor.get("crop_pct")
    if isinstance(crop, int):
        crop = (crop, crop)
    if not processor.get("do_resize", True) or size is None:
        side = config.get("image_size")
        if side is None:
            raise spec_error(spec.name, "input_size", f"neither {PROCESSOR_FILE} nor "
                             f"{CONFIG_FILE} gives the input size", "add `input_size:` to the "
                             "model entry")
        size = (int(side), int(side)) if isinstance(side, int) else tuple(side)  # type: ignore[assignment]
    do_crop = bool(processor.get("do_center_crop", crop is not None)) and crop is not None
    if isinstance(size, int) and crop_pct is not None:  # ConvNeXt's rule
        if size < CONVNEXT_WARP_FROM:
            geometry = Geometry(channels, int(size / crop_pct), (size, size), interpolation)
        else:
            geometry = Geometry(channels, (size, size), (size, size), interpolation)
    elif isinstance(size, int):  # shorter side, then the crop (a square one when none is given)
        geometry = Geometry(channels, size, crop if do_crop else (size, size), interpolation)  # type: ignore[arg-type]
    else:
        geometry = Geometry(channels, size, crop if do_crop else size, interpolation)  # type: ignore[arg-type]
    scale = 255.0 * float(processor.get("rescale_factor", 1 / 255)) if processor.get(
        "do_rescale", True) else 255.0
    if processor.get("do_normalize", True):
        mean = processor.get("image_mean", [0.5] * channels)
        std = processor.get("image_std", [0.5] * channels)
    else:
        mean, std = [0.0] * channels, [1.0] * channels
    return InputConfig(geometry, [m / scale for m in mean], [s / scale for s in std],
                       float(crop_pct or 1.0), f"the image processor ({PROCESSOR_FILE})")


def _refuse_remote_code(spec: ModelSpec, config: dict[str, Any], where: str) -> None:
    if config.get("auto_map") and not spec.trust_code:
        raise spec_error(spec.name, "trust_code", f"{where} asks for remote code "
                         f"({sorted(config['auto_map'])}): loading it runs Python code from the "
                         "model's files, which oodbench refuses by default",
                         "if you trust its source, add `trust_code: true` to the model entry")


@models.register("huggingface", required=(("path", "model"),), file=weights_file,
                 config_files=config_files_in((CONFIG_FILE, PROCESSOR_FILE)),
                 config=f"image-processor config ({PROCESSOR_FILE})")
def load_huggingface(spec: ModelSpec, base_dir: Path) -> nn.Module:
    """A transformers image classifier (`path` folder or hub `model` id); safetensors only."""
    try:
        from transformers import AutoModelForImageClassification
    except ImportError as err:
        raise spec_error(spec.name, "adapter", f"transformers is not importable ({err})",
                         _INSTALL) from err
    path = spec_path(spec, base_dir)
    if path is not None:
        if not path.is_dir():
            raise spec_error(spec.name, "path", f"{path} is not a folder",
                             "point `path` at the folder `model.save_pretrained(folder)` wrote")
        where = path / CONFIG_FILE
        if not where.is_file():
            raise spec_error(spec.name, "path", f"{path} has no {CONFIG_FILE}",
                             "save the model with `model.save_pretrained(folder)`")
        config = read_json(spec, where)
        if not any((path / f).is_file() for f in WEIGHT_FILES):
            extra = " (it holds pytorch_model.bin, a pickle)" if (path / "pytorch_model.bin").exists() else ""
            raise spec_error(spec.name, "path", f"{path} has no model.safetensors{extra}",
                             "save with `model.save_pretrained(folder)` (safetensors is its "
                             "default); oodbench does not unpickle weights")
        processor = (read_json(spec, path / PROCESSOR_FILE) if (path / PROCESSOR_FILE).is_file()
                     else None)
        source = str(path)
    elif spec.model:
        config = _hub_json(spec, CONFIG_FILE) or {}
        where = Path(f"{spec.model}/{CONFIG_FILE}")
        processor, source = _hub_json(spec, PROCESSOR_FILE), spec.model
    else:
        raise spec_error(spec.name, "path", "the huggingface adapter needs a folder or a hub id",
                         "add `path: FOLDER` (from save_pretrained) or `model: org/name`")
    _refuse_remote_code(spec, config, str(where))
    if processor is None and (spec.input_size is None or spec.normalize is None):
        raise spec_error(spec.name, "path", f"{source} has no {PROCESSOR_FILE}, so its input "
                         "size and normalisation are unknown",
                         "save the image processor beside the model "
                         "(`AutoImageProcessor...save_pretrained(folder)`), or give `input_size:` "
                         "and `normalize:` in the entry")
    try:
        net = AutoModelForImageClassification.from_pretrained(
            source, use_safetensors=True, trust_remote_code=spec.trust_code, dtype=torch.float32)
    except Exception as err:
        raise spec_error(spec.name, "path", f"transformers could not load {source} "
                         f"({type(err).__name__}: {err})",
                         "save the model with `save_pretrained` (safetensors) from a transformers "
                         "image-classification class") from err
    return with_input(Logits(net), spec, input_config(spec, processor or {"do_normalize": False},
                                                      config))


__all__ = ["load_huggingface", "Logits", "input_config", "weights_file"]
