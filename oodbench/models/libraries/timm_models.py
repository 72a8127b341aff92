"""The ``timm`` adapter: any ``timm.create_model`` name, weights from a local file or the HF cache.

Layouts ``path`` may name:

* a folder as ``timm.models.save_for_hf`` / ``push_to_hub`` writes it: ``config.json``
  (``architecture``, ``num_classes``, ``model_args``, ``pretrained_cfg``) and
  ``model.safetensors`` (or ``pytorch_model.bin``, read with ``weights_only=True``);
* one weights file: ``.safetensors``, or a ``torch.save``'d state dict (``weights_only=True``).

Without ``path`` the weights are timm's pretrained ones from the Hugging Face cache (downloaded
when online; ``HF_HUB_OFFLINE=1`` reads the cache only). The network is always built with
``pretrained=False`` first when a file is given, so nothing but tensors is read from it.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from oodbench.data.transforms import Geometry
from oodbench.models.adapters import config_files_in, load_state_into, spec_path, strip_prefix, torch_load, unwrap_checkpoint
from oodbench.models.errors import spec_error
from oodbench.models.files import require_file
from oodbench.models.libraries.preprocessing import InputConfig, with_input
from oodbench.models.sniff import REDOWNLOAD_FIX, safetensors_problem
from oodbench.models.spec import ModelSpec
from oodbench.core.registry import models

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_INSTALL = "pip install 'oodbench[timm]'"
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def import_timm(spec: ModelSpec) -> Any:
    try:
        import timm
        import timm.data
    except ImportError as err:
        raise spec_error(spec.name, "adapter", f"timm is not importable ({err})", _INSTALL) from err
    return timm


def weights_file(spec: ModelSpec, base_dir: Path) -> Optional[Path]:
    """The file whose bytes are the weights: ``path``, or the weights inside a ``path`` folder."""
    path = spec_path(spec, base_dir)
    if path is not None and path.is_dir():
        return next((path / f for f in WEIGHT_FILES if (path / f).is_file()), path / WEIGHT_FILES[0])
    return path


def read_json(spec: ModelSpec, file: Path) -> dict[str, Any]:
    """A JSON config file, or an error naming it."""
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise spec_error(spec.name, "path", f"{file} is not a readable JSON file ({err})",
                         "save the model again with its library (save_for_hf / save_pretrained)"
                         ) from err
    if not isinstance(data, dict):
        raise spec_error(spec.name, "path", f"{file} holds a {type(data).__name__}, not a JSON "
                         "object", "save the model again with its library")
    return data


def read_state(spec: ModelSpec, file: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``)."""
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        problem = safetensors_problem(file)
        if problem is not None:
            raise spec_error(spec.name, "path", f"{file} {problem}", REDOWNLOAD_FIX)
        return load_file(str(file), device="cpu")
    state = unwrap_checkpoint(torch_load(spec, file))
    if isinstance(state, nn.Module):  # a trusted pickle of a whole module
        state = state.state_dict()
    return strip_prefix(state) if isinstance(state, dict) else state


def classifier_size(state: dict[str, torch.Tensor] | None, classifier: Any) -> Optional[int]:
    """Rows of the checkpoint's classifier weight (timm's ``pretrained_cfg['classifier']``)."""
    if not state or not classifier:
        return None
    names = [classifier] if isinstance(classifier, str) else list(classifier)
    weight = state.get(f"{names[-1]}.weight")
    return int(weight.shape[0]) if weight is not None and weight.ndim >= 1 else None


def _create(timm: Any, spec: ModelSpec, name: str, **kwargs: Any) -> nn.Module:
    try:
        return timm.create_model(name, **kwargs)
    except RuntimeError as err:
        if "Unknown model" not in str(err):
            raise spec_error(spec.name, "model", f"timm could not build {name!r} ({err})",
                             "check `model`, `num_classes` and `arch_options` (timm keyword "
                             "arguments), or put the weights in the Hugging Face cache / `path`"
                             ) from err
        base = name.split(".", 1)[0]
        close = difflib.get_close_matches(base, timm.list_models(), n=3, cutoff=0.6)
        raise spec_error(spec.name, "model", f"timm has no model {name!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else ""),
                         "use a name from `timm.list_models()` (optionally with a `.tag`)") from None
    except TypeError as err:
        raise spec_error(spec.name, "arch_options", f"timm model {name!r} rejects the keyword "
                         f"arguments {kwargs} ({err})", "pass only arguments its constructor "
                         "takes") from err
    except (OSError, ValueError) as err:  # hub errors: offline and not cached, gated, missing
        raise spec_error(spec.name, "path", f"timm could not get pretrained weights for {name!r} "
                         f"({type(err).__name__}: {err})",
                         "give `path:` (a weights file or a save_for_hf folder), or run once "
                         "online so the weights reach the Hugging Face cache (then "
                         "HF_HUB_OFFLINE=1 reads them)") from err


def input_config(timm: Any, net: nn.Module) -> InputConfig:
    """Geometry and mean/std from the network's ``pretrained_cfg``; a ViT built for another
    ``img_size`` than its config says gets the size it was built for."""
    cfg = timm.data.resolve_data_config({}, model=net)
    channels, h, w = (int(v) for v in cfg["input_size"])
    fixed = getattr(getattr(net, "patch_embed", None), "img_size", None)
    if fixed is not None and not getattr(net.patch_embed, "dynamic_img_size", False):
        h, w = (int(v) for v in fixed)
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    interpolation = cfg.get("interpolation", "bilinear")
    interpolation = interpolation if interpolation in _INTERPOLATIONS else "bicubic"
    if cfg.get("crop_mode") == "squash":
        geometry = Geometry(channels, (math.floor(h / crop_pct), math.floor(w / crop_pct)), (h, w),
                            interpolation)
    else:  # "center" (and "border", whose padding is approximated by the centre crop)
        geometry = Geometry.center_crop(channels, (h, w), crop_pct, interpolation)
    return InputConfig(geometry, tuple(cfg["mean"]), tuple(cfg["std"]), crop_pct,
                       "timm's pretrained_cfg")


@models.register("timm", required=(), file=weights_file, config_files=config_files_in((CONFIG_FILE,)),
                 config="timm pretrained_cfg")  # `model`, or a timm folder as `path`: checked on load
def load_timm(spec: ModelSpec, base_dir: Path) -> nn.Module:
    """A timm model (`model`, `path`, `num_classes`); preprocessing from its `pretrained_cfg`."""
    timm = import_timm(spec)
    path = spec_path(spec, base_dir)
    saved: dict[str, Any] = {}
    file = None
    if path is not None and path.is_dir():
        saved = read_json(spec, path / CONFIG_FILE) if (path / CONFIG_FILE).is_file() else {}
        file = weights_file(spec, base_dir)
        assert file is not None
        if not file.is_file():
            raise spec_error(spec.name, "path", f"{path} holds none of {', '.join(WEIGHT_FILES)}",
                             "save the model with `timm.models.push_to_hf_hub` or `timm.models._hub.save_for_hf(model, folder, "
                             "safe_serialization=True)`, or point `path` at a weights file")
    elif path is not None:
        file = require_file(spec, path)
    name = spec.model or saved.get("architecture")
    if not name:
        raise spec_error(spec.name, "model", "the timm adapter needs a model name",
                         "add `model: <timm name>`, e.g. `model: convnext_tiny.fb_in1k`")
    state = read_state(spec, file) if file is not None else None
    kwargs: dict[str, Any] = {**saved.get("model_args", {}), **spec.arch_options}
    if saved.get("pretrained_cfg"):
        kwargs["pretrained_cfg_overlay"] = saved["pretrained_cfg"]
    num_classes = (spec.num_classes or saved.get("num_classes")
                   or classifier_size(state, timm.models.get_pretrained_cfg_value(name, "classifier")))
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    net = _create(timm, spec, name, pretrained=state is None, **kwargs)
    if state is not None:
        assert file is not None
        load_state_into(net, state, spec, file, field="model",
                        target=f"timm model {name!r} with num_classes {num_classes} and "
                        f"options {spec.arch_options}")
    return with_input(net, spec, input_config(timm, net))


__all__ = ["load_timm", "weights_file", "read_json", "read_state", "classifier_size"]
