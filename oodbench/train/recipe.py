"""Training recipes: one YAML file per trained model, so a checkpoint's origin is reproducible."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from oodbench.suite import DataSpec, SuiteError, _check_registered
from oodbench.registry import architectures


class Recipe(BaseModel):
    """How to train one model. Paths are relative to the recipe file."""

    model_config = ConfigDict(extra="forbid")

    name: str
    method: Literal["plain"] = Field("plain", description="training objective (more in later versions)")
    arch: str
    arch_options: dict[str, Any] = Field(default_factory=dict)
    dataset: DataSpec
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(128, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = 0.9
    weight_decay: float = Field(5e-4, ge=0)
    seed: int = 0
    device: str = "auto"
    data_root: Optional[str] = None
    output: str = Field(description="weights file (.safetensors); the card goes beside it as .yaml")
    source: Optional[Path] = Field(None, exclude=True)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        return _check_registered(architectures, v)

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()


def load_recipe(path: Union[str, Path]) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: no such recipe file")
    data = yaml.safe_load(path.read_text()) or {}
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        msgs = [f"{path}: field `{'.'.join(map(str, e['loc']))}`: {e['msg']}" for e in err.errors()]
        raise SuiteError("invalid recipe\n  " + "\n  ".join(msgs)) from None
    recipe.source = path
    return recipe
