"""The model reference a suite (or the Python API) gives: which adapter, which file, which code.

One flat schema for all adapters keeps suite files readable; each adapter reads the fields it
needs and raises :class:`ModelLoadError` naming the missing one. Paths are relative to
``base_dir`` (the directory of the suite file that names them).
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field


class Normalization(BaseModel):
    """Per-channel mean/std applied inside the model, so attacks work in [0,1] image space."""

    model_config = ConfigDict(extra="forbid")
    mean: list[float]
    std: list[float]


class ModelSpec(BaseModel):
    """A reference to one model to evaluate.

    Examples (YAML)::

        - {name: plain, adapter: checkpoint, arch: resnet18, path: ckpt/plain.pt,
           normalize: {mean: [0.4914, 0.4822, 0.4465], std: [0.2023, 0.1994, 0.2010]}}
        - {name: ratio, adapter: robustbench, model: Augustin2020Adversarial,
           dataset: cifar10, threat_model: L2, model_dir: ~/.cache/robustbench}
        - {name: mine, adapter: python, factory: "mypkg.nets:build", trust_code: true}
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="label used in tables and the results store")
    adapter: str = Field("checkpoint", description="registered model adapter (`oodbench list models`)")
    path: Optional[str] = Field(None, description="checkpoint / safetensors / TorchScript file")
    sha256: Optional[str] = Field(None, description="expected sha256 of `path` (checked before loading)")
    url: Optional[str] = Field(None, description="where to download `path` from if it is missing")
    arch: Optional[str] = Field(None, description="registered architecture (`oodbench list architectures`)")
    arch_options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the architecture")
    normalize: Optional[Normalization] = None
    model: Optional[str] = Field(None, description="RobustBench model name")
    dataset: Optional[str] = Field(None, description="RobustBench dataset (cifar10, cifar100, imagenet)")
    threat_model: Optional[str] = Field(None, description="RobustBench threat model (Linf, L2, corruptions)")
    model_dir: Optional[str] = Field(None, description="RobustBench model directory")
    factory: Optional[str] = Field(None, description="`module:callable` returning an nn.Module (python adapter)")
    factory_kwargs: dict[str, Any] = Field(default_factory=dict)
    trust_code: bool = Field(False, description="allow loading that executes code (pickles, python factories)")
