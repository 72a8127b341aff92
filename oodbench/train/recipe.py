"""Training recipes: one YAML file per trained model, so a checkpoint's origin is reproducible.

A recipe names a registered training method (``oodbench list trainers``: plain, ceda, acet, oe,
at, ratio) and everything the method needs. Unset method settings are filled from the method's
paper defaults when the recipe is validated, so the resolved recipe (what the model card stores)
always spells out λ, the out-distribution, the out-loss and the attack budgets::

    name: hein2019-mnist-acet
    method: acet
    arch: lenet
    dataset: {dataset: mnist}          # in-distribution: split train for training, test for eval
    epochs: 100
    batch_size: 128                    # B in-distribution samples per step (+ ceil(λB) out)
    optimizer: adam                    # adam | sgd (momentum, nesterov)
    lr: 0.001
    weight_decay: 0.0005
    schedule: {milestones: [0.5, 0.75, 0.9], gamma: 0.1, per: step}
    augment: {crop_padding: 4, hflip: false}
    out_distribution: {dataset: smoothed-noise, loss: max-log-conf, lambda: 1.0}
    out_attack: {threat: {norm: Linf, eps: 0.3}, steps: 40, step_size: 0.0075}
    output: ../hein2019-mnist-acet.safetensors

Paths are relative to the recipe file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from oodbench.attacks.threats import ThreatModel
from oodbench.models.spec import Normalization
from oodbench.core.registry import architectures, datasets, objectives, trainers
from oodbench.pipeline.suite import DataSpec, SuiteError
from oodbench.core.validation import check_registered, read_yaml

OutLoss = Literal["max-log-conf", "ce-uniform", "logit-spread"]


class RecipeError(SuiteError):
    """A recipe (or its checkpoint) that cannot be used; the message says why and how to fix it."""


class TrainAttack(BaseModel):
    """An inner maximisation run by the attack engine at every training step.

    ``objective`` defaults to what the method maximises: the out-loss on out-distribution points
    (ACET, RATIO), the cross-entropy on in-distribution points (AT, RATIO). ``steps_increase``
    adds that many steps after every learning-rate drop, up to ``max_steps`` (Augustin et al.
    grow the ACET attack from 20 towards 40 steps this way).
    """

    model_config = ConfigDict(extra="forbid")

    threat: ThreatModel
    objective: Optional[str] = None
    optimizer: Literal["pgd", "apgd"] = "pgd"
    steps: int = Field(gt=0)
    step_size: Optional[float] = Field(None, gt=0, description="PGD step; default 2.5·eps/steps")
    restarts: int = Field(1, gt=0)
    random_start: bool = True
    momentum: float = Field(0.0, ge=0, lt=1, description="PGD heavy-ball momentum (RATIO: 0.9)")
    steps_increase: int = Field(0, ge=0, description="steps added after each learning-rate drop")
    max_steps: Optional[int] = Field(None, gt=0)

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else check_registered(objectives, v)

    def steps_after(self, lr_drops: int) -> int:
        steps = self.steps + self.steps_increase * lr_drops
        return min(steps, self.max_steps) if self.max_steps is not None else steps


class TrainBound(BaseModel):
    """The certified part of GOOD (Bitterwolf, Meinke, Hein 2020): the upper bound of the
    confidence over an Linf ball around each out-distribution sample, by interval bound
    propagation, is what the out-loss penalises.

    ``eps`` grows linearly from 0 to the threat's ε between the fractions ``ramp`` of training
    (bounds of a random network over a large ball are vacuous and give no gradient; GOOD ramps
    ε up the same way). ``quantile``: the fraction of each out batch, those with the lowest
    bounds, that is trained on the bound; the rest on the clean out-loss (GOOD's quantile
    variant, GOOD80 = 0.8), so hard out samples do not push the in-distribution accuracy down.
    """

    model_config = ConfigDict(extra="forbid")

    threat: ThreatModel
    ramp: tuple[float, float] = Field((0.1, 0.5), description="fractions of training between "
                                      "which ε grows linearly from 0 to the threat's")
    quantile: float = Field(1.0, gt=0, le=1, description="fraction of each out batch (lowest "
                            "bounds) trained on the bound")

    @field_validator("threat")
    @classmethod
    def _linf(cls, v: ThreatModel) -> ThreatModel:
        if v.norm != "Linf":
            raise ValueError(f"interval bounds are computed over Linf balls; got {v.norm}")
        return v

    @field_validator("ramp")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] <= v[1] <= 1:
            raise ValueError(f"`ramp` is [start, end] with 0 <= start <= end <= 1, got {list(v)}")
        return v

    def eps_at(self, progress: float) -> float:
        """ε after the fraction ``progress`` of training."""
        start, end = self.ramp
        if progress >= end:
            return self.threat.eps
        if progress <= start:
            return 0.0
        return self.threat.eps * (progress - start) / (end - start)


class OutDistribution(BaseModel):
    """Where the out-distribution samples come from and how they are penalised.

    ``dataset`` is any registered data set. Synthetic ones (``smoothed-noise``, ``uniform-noise``)
    are generated afresh at every step from the current training batch (the papers' noise);
    real ones (CIFAR-100, an ``image-folder``, …) are loaded once from ``split`` (``n`` caps
    them) and converted to the in-distribution's shape. Data sets with random access
    (``tiny-images``: 80M Tiny Images, memory-mapped) are never loaded whole when ``n`` is unset:
    every step reads its samples from the file.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    dataset: str
    split: str = "train"
    n: Optional[int] = Field(None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    loss: Optional[OutLoss] = Field(None, description="max-log-conf (Hein et al.), ce-uniform "
                                    "(Augustin et al.) or logit-spread (GOOD); default: the "
                                    "method's")
    lam: float = Field(1.0, gt=0, alias="lambda",
                       description="weight of the out-loss; ceil(λB) out samples per step")

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        return check_registered(datasets, v)

    @property
    def synthetic(self) -> bool:
        return datasets.meta(self.dataset).get("kind") == "synthetic"


class Augment(BaseModel):
    """Data augmentation of training images (never of test images or generated noise).

    Applied per image in the order of Augustin et al.'s CIFAR pipeline: random crop, horizontal
    flip, AutoAugment (Cubuk et al. 2019), Cutout (DeVries & Taylor 2017). Every draw comes from
    the step's seed, so a step is reproducible and a resumed run equals an uninterrupted one.
    """

    model_config = ConfigDict(extra="forbid")

    crop_padding: int = Field(0, ge=0, description="random crop after padding by this many "
                              "pixels (0: off; the papers use 4)")
    hflip: bool = Field(False, description="random horizontal flip (CIFAR in the papers)")
    autoaugment: Optional[Literal["cifar10", "svhn", "imagenet"]] = Field(
        None, description="torchvision's AutoAugment with this learned policy (Augustin et al.: "
        "cifar10 on CIFAR)")
    cutout: int = Field(0, ge=0, description="side of one square per image set to 0, centred "
                        "anywhere, clipped at the border (DeVries & Taylor; 16 on CIFAR; 0: off)")
    fill: Union[float, list[float]] = Field(0.0, description="value (or [r, g, b]) of the pixels "
                                            "that crop padding and AutoAugment's shifts bring in")
    out: bool = Field(True, description="augment real out-distribution images the same way")

    @field_validator("fill")
    @classmethod
    def _unit_fill(cls, v: Union[float, list[float]]) -> Union[float, list[float]]:
        values = v if isinstance(v, list) else [v]
        if len(values) not in (1, 3) or any(not 0 <= f <= 1 for f in values):
            raise ValueError(f"`fill` is one value or [r, g, b] in [0, 1], got {v!r}")
        return v

    @property
    def enabled(self) -> bool:
        """Whether anything changes the images (the loop skips augmentation otherwise)."""
        return bool(self.crop_padding or self.hflip or self.autoaugment or self.cutout)


class Schedule(BaseModel):
    """Step learning-rate schedule: multiply by ``gamma`` at each milestone.

    ``milestones`` are fractions of training (Hein et al.: ÷10 at 50/75/90 %); with ``per:
    epoch`` the drop happens after epoch ``int(f·epochs)``, with ``per: step`` at optimizer step
    ``round(f·total_steps)`` (as the authors' code does). ``epochs`` lists epoch numbers instead
    (Augustin et al.: 100, 150, 200 of 220).
    """

    model_config = ConfigDict(extra="forbid")

    milestones: Optional[list[float]] = Field(default_factory=lambda: [0.5, 0.75, 0.9])
    epochs: Optional[list[int]] = None
    gamma: float = Field(0.1, gt=0)
    per: Literal["epoch", "step"] = "epoch"

    @model_validator(mode="after")
    def _one_kind(self) -> "Schedule":
        if self.epochs is not None:
            if "milestones" in self.model_fields_set and self.milestones is not None:
                raise ValueError("give either `milestones` (fractions) or `epochs`, not both")
            self.milestones = None
            if self.per != "epoch":
                raise ValueError("`epochs` milestones need `per: epoch`")
            if any(e < 1 for e in self.epochs):
                raise ValueError(f"epoch milestones must be >= 1, got {self.epochs}")
        elif self.milestones is None:
            raise ValueError("give `milestones` (fractions of training) or `epochs`")
        elif any(not 0 < f <= 1 for f in self.milestones):
            raise ValueError(f"milestones are fractions of training in (0, 1], got {self.milestones}")
        return self

    def points(self, epochs: int, steps_per_epoch: int) -> list[int]:
        """Milestones in the scheduler's unit (epochs or optimizer steps)."""
        if self.epochs is not None:
            return sorted(self.epochs)
        assert self.milestones is not None
        if self.per == "epoch":
            return [int(epochs * f) for f in self.milestones]
        return [round(epochs * steps_per_epoch * f) for f in self.milestones]


class FinalEval(BaseModel):
    """What the model card reports besides the test error (all on the in-distribution test set)."""

    model_config = ConfigDict(extra="forbid")

    noise_n: int = Field(1000, ge=0, description="smoothed and uniform noise images (0: skip)")
    adversarial_noise_n: int = Field(0, ge=0, description="adversarial noise images (the "
                                     "registered `adversarial-noise` attack; 0: skip)")
    adversarial_noise_steps: Optional[int] = Field(None, gt=0, description="default: the "
                                                   "attack's (200)")


class Recipe(BaseModel):
    """How to train one model. Paths are relative to the recipe file."""

    model_config = ConfigDict(extra="forbid")

    name: str
    method: str = Field("plain", description="registered trainer (`oodbench list trainers`)")
    arch: str
    arch_options: dict[str, Any] = Field(default_factory=dict)
    normalize: Optional[Normalization] = Field(None, description="input normalisation layer in "
                                               "front of the network (not in the weights file)")
    dataset: DataSpec
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(128, gt=0)
    drop_last: bool = Field(False, description="skip the last incomplete batch of each epoch")
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Schedule = Field(default_factory=Schedule)
    augment: Augment = Field(default_factory=Augment)
    out_distribution: Optional[OutDistribution] = None
    in_attack: Optional[TrainAttack] = None
    out_attack: Optional[TrainAttack] = None
    out_bound: Optional[TrainBound] = Field(None, description="certified out-loss (GOOD)")
    amp: Union[bool, Literal["bfloat16"]] = Field(
        True, description="true: bfloat16 (or float16 + grad scaler) autocast on CUDA, none on the "
        "CPU; 'bfloat16': bfloat16 autocast on any device, so the AMP path also runs on a CPU")
    evaluate: FinalEval = Field(default_factory=FinalEval)
    seed: int = 0
    device: str = "auto"
    data_root: Optional[str] = None
    output: str = Field(description="weights file (.safetensors); the card goes beside it as .yaml")
    source: Optional[Path] = Field(None, exclude=True)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        return check_registered(architectures, v)

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        return check_registered(trainers, v)

    @model_validator(mode="after")
    def _method_settings(self) -> "Recipe":
        """Check the settings against the method and fill in its paper defaults."""
        trainers.get(self.method).resolve(self)
        return self

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def dump(self) -> dict[str, Any]:
        """The resolved recipe as plain data (YAML keys, e.g. ``lambda``)."""
        return self.model_dump(mode="json", by_alias=True)


def load_recipe(path: Union[str, Path]) -> Recipe:
    path = Path(path)
    data = read_yaml(path, RecipeError, "recipe file")[0] or {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}:1: a recipe must be a YAML mapping (name:, arch:, dataset:, …)")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        msgs = [f"{path}: field `{'.'.join(map(str, e['loc'])) or '(recipe)'}`: {e['msg']}"
                for e in err.errors()]
        raise RecipeError("invalid recipe\n  " + "\n  ".join(msgs)) from None
    recipe.source = path
    return recipe
