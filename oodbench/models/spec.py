"""The model reference a suite (or the Python API) gives: which adapter, which file, which code.

One flat schema for all adapters keeps suite files readable; each adapter reads the fields it
needs and raises :class:`ModelLoadError` naming the missing one. Paths are relative to
``base_dir`` (the directory of the suite file that names them).
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oodbench.core.validation import FiniteFloat, JsonDict, Label, PositiveFloat, Text

MAX_INPUT_SIDE = 4096
"""Largest ``input_size`` side a model entry may ask for."""

Side = Annotated[int, Field(gt=0, le=MAX_INPUT_SIDE, strict=True)]  # strict: YAML `true` is no 1
Fraction = Annotated[float, Field(gt=0, le=1, strict=True)]


class Normalization(BaseModel):
    """Per-channel mean/std applied inside the model, so attacks work in [0,1] image space."""

    model_config = ConfigDict(extra="forbid")
    mean: list[FiniteFloat] = Field(min_length=1)
    std: list[PositiveFloat] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_value_per_channel(self) -> "Normalization":
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean and std need one value per channel each, got {len(self.mean)} "
                             f"and {len(self.std)}")
        return self


class ModelSpec(BaseModel):
    """A reference to one model to evaluate.

    Examples (YAML)::

        - {name: plain, adapter: checkpoint, arch: resnet18, path: ckpt/plain.pt,
           normalize: {mean: [0.4914, 0.4822, 0.4465], std: [0.2023, 0.1994, 0.2010]}}
        - {name: ratio, adapter: robustbench, model: Augustin2020Adversarial,
           dataset: cifar10, threat_model: L2, model_dir: ~/.cache/robustbench}
        - {name: mine, adapter: python, factory: "mypkg.nets:build", trust_code: true}
        - {name: vit, adapter: timm, model: vit_small_patch16_224.augreg_in21k_ft_in1k}
        - {name: convnext, adapter: huggingface, path: hf/convnext-tiny-224}
        - {name: exported, adapter: torch-export, path: net.pt2}

    ``input_size``, ``crop_pct`` and ``interpolation`` override the input geometry the timm,
    huggingface and torch-export adapters read from the model's own configuration.
    """

    model_config = ConfigDict(extra="forbid")

    name: Label = Field(description="label used in tables and the results store")
    adapter: str = Field("checkpoint", description="registered model adapter (`oodbench list models`)")
    path: Optional[Text] = Field(None, description="checkpoint / safetensors / TorchScript file")
    sha256: Optional[str] = Field(None, description="expected sha256 of `path` (checked before loading)")
    url: Optional[Text] = Field(None, description="where to download `path` from if it is missing")
    arch: Optional[str] = Field(None, description="registered architecture (`oodbench list architectures`)")
    arch_options: JsonDict = Field(default_factory=dict, description="keyword arguments of the architecture")
    normalize: Optional[Normalization] = None
    model: Optional[str] = Field(None, description="RobustBench model name")
    dataset: Optional[str] = Field(None, description="RobustBench dataset (cifar10, cifar100, imagenet)")
    threat_model: Optional[str] = Field(None, description="RobustBench threat model (Linf, L2, corruptions)")
    model_dir: Optional[Text] = Field(None, description="RobustBench model directory")
    factory: Optional[Text] = Field(None, description="`module:callable` returning an nn.Module (python adapter)")
    factory_kwargs: JsonDict = Field(default_factory=dict)
    trust_code: bool = Field(False, description="allow loading that executes code (pickles, python factories)")
    num_classes: Optional[Side] = Field(None, description="timm: classifier size (else the checkpoint's, else the model's default)")
    input_size: Optional[Union[Side, tuple[Side, Side]]] = Field(
        None, description="timm / huggingface / torch-export: the network's input side or [height, width] (overrides its config)")
    crop_pct: Optional[Fraction] = Field(None, description="timm / huggingface: centre-crop fraction (overrides its config)")
    interpolation: Optional[Literal["nearest", "bilinear", "bicubic"]] = Field(
        None, description="timm / huggingface / torch-export: resize interpolation (overrides its config)")
