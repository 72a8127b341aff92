"""What a registered attack is, and what the runner hands it.

A suite probe with an ``attack:`` entry becomes an attack job. The registered attack says where
its points come from (the probe's data set, or the in-distribution test set), which kind of table
row it produces, and its paper defaults; it returns per-sample arrays that the results store
keeps, so metrics are recomputed later without re-attacking.

Rows (:class:`~oodbench.core.rows.RowKind`): ``probe`` rows are scored like any OOD probe against the model's clean in-distribution
confidences (an optional boolean ``mask`` array selects the points that count, e.g. the
misclassified adversarial samples); ``in`` rows are scored like the in-distribution row (test
error under attack = 1 − robust accuracy); ``summary`` rows report the attack's own quantities
(e.g. the α-scaling experiment) through :meth:`Attack.summarize`. What the row is in a report
(:class:`~oodbench.core.rows.TableKind`: adversarial noise, worst-case AUROC, robust accuracy)
follows from its row kind unless the attack declares it (:attr:`Attack.table_kind`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from oodbench.attacks.members import SINGLE_RUN_FIELDS, VERSIONS, MemberSpec, Version
from oodbench.attacks.threats import ThreatModel
from oodbench.core.cost import Cost
from oodbench.core.rows import RowKind, TableKind
from oodbench.core.registry import UnknownNameError, datasets, objectives
from oodbench.core.validation import (MAX_RESTARTS, MAX_STEPS, FiniteFloat, JsonDict, PositiveFloat, Restarts,
                                 Steps)


def grey_data(in_dataset: str) -> bool:
    """Whether the in-distribution data set is grey: its registry entry declares one channel
    (``shape=(1, H, W)``). The papers' radii differ for grey digits and colour images, so an
    attack's defaults ask this; a data set that declares no shape (a folder, noise) or is not
    registered counts as colour."""
    shape = datasets.meta(in_dataset).get("shape") if in_dataset in datasets else None
    return shape is not None and shape[0] == 1


class AttackSpec(BaseModel):
    """The ``attack:`` entry of a suite probe. Unset fields take the attack's paper defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="registered attack (`oodbench list attacks`)")
    threat: Optional[ThreatModel] = None
    objective: Optional[str] = None
    optimizer: Optional[Literal["pgd", "apgd"]] = None
    steps: Optional[Steps] = Field(None, description=f"iterations per restart (≤ {MAX_STEPS:,})")
    step_size: Optional[PositiveFloat] = None
    restarts: Optional[Restarts] = Field(None, description=f"at most {MAX_RESTARTS:,}")
    random_start: Optional[bool] = None
    momentum: Optional[FiniteFloat] = Field(None, ge=0, lt=1, description="PGD heavy-ball momentum")
    early_stop: Literal["auto", True, False] = Field(
        "auto", description="stop attacking OOD points whose score can no longer change "
        "any metric asked (above every in-distribution score for AUROC/AUPR-in, accepted at "
        "the 95%-TPR threshold for FPR@95); 'auto' does it whenever that is exact, i.e. unless "
        "a metric such as MMC or AUPR-out needs every score as it is")
    options: JsonDict = Field(default_factory=dict, description="attack-specific settings")
    version: Optional[Version] = Field(
        None, description="standard (default): the ensemble of every member; fast: a cheaper "
        "subset; paper: the paper's single run (the fields above); custom: `members`")
    members: Optional[tuple[MemberSpec, ...]] = Field(
        None, description="version custom: the ensemble's members and budgets, in run order")

    def identity(self) -> dict[str, Any]:
        """The resolved spec as it enters a job's key. The early stop is not in it (it changes
        only the work); nor is the version of a single run, so ``paper`` keys are what they
        were before versions existed."""
        exclude = {"early_stop"} | ({"version", "members"} if self.version in (None, "paper")
                                    else set())
        return self.model_dump(mode="json", exclude=exclude)

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, v: Optional[str]) -> Optional[str]:
        """An unknown objective would otherwise be found only when the attack runs."""
        if v is not None:
            try:
                objectives.entry(v)
            except UnknownNameError as err:
                raise ValueError(str(err)) from None
        return v


@dataclass
class AttackContext:
    """Everything an attack may use. ``images``/``labels`` are its source points (already in the
    in-distribution's shape); ``in_logits`` are the model's clean in-distribution logits;
    ``stop_above``: the score (:func:`oodbench.scores.msp_score` units) above which an OOD point
    cannot change any metric asked (:func:`oodbench.metrics.settled_above`), or ``None`` to
    attack every point fully."""

    model: nn.Module
    images: torch.Tensor
    labels: Optional[torch.Tensor]
    spec: AttackSpec
    in_logits: np.ndarray
    device: torch.device
    batch_size: int = 256
    seed: int = 0
    stop_above: Optional[float] = None
    progress: bool = False
    artifact_dir: Optional[Path] = None
    label: str = "attack"
    extra: dict[str, Any] = field(default_factory=dict)
    #: Global indices of ``images`` in the attack's full source set (None: 0..N-1). A point's
    #: random draws depend on its index only, so a shard gives the same arrays as the whole job.
    indices: Optional[torch.Tensor] = None
    #: Told the number of gradient evaluations as they are done (progress bars).
    on_progress: Optional[Callable[[int], None]] = None
    #: The engine head of a detector-aware attack on a detector other than msp (or any
    #: score-lowering attack): :class:`oodbench.detectors.attack.DetectorHead`; None: msp.
    head: Optional[Any] = None


@dataclass
class GradientObjective:
    """What a gradient attack ascends, for the trust checks (:mod:`oodbench.checks`): the engine
    ``head`` (:class:`oodbench.attacks.engine.Head`: the objective, and the score that picks
    iterates), the ``target`` it needs (true labels for ``ce``) and the engine ``config``
    (threat model, random start)."""

    head: Any
    target: Optional[torch.Tensor]
    config: Any


class AttackFieldError(ValueError):
    """A :meth:`Attack.resolve` error about one field of the ``attack:`` entry (``loc``, e.g.
    ``("options",)``), so a suite error points at that line."""

    def __init__(self, loc: tuple[Any, ...], message: str):
        super().__init__(message)
        self.loc = loc


def merge_options(attack: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """An attack's ``options`` over its defaults; an unknown key is an error naming the known ones
    (a typo would otherwise silently fall back to the default)."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise AttackFieldError(("options",), f"{attack}: unknown option(s) {', '.join(unknown)}; "
                               + (f"known: {', '.join(defaults)}" if defaults else
                                  "it takes no options (its settings are the fields of `attack:`)"))
    return {**defaults, **given}


class Attack:
    """Base class of registered attacks: override :meth:`run` (and :meth:`summarize` for
    ``summary`` rows). Class attributes declare how the runner treats it."""

    source: ClassVar[Literal["probe", "in-distribution"]] = "probe"
    row: ClassVar[RowKind] = RowKind.OOD
    #: What its row is in a report, which layouts choose rows by (``worst-case``: the rows
    #: whose AUROC is a worst-case AUROC); None: by :attr:`row` (:meth:`shown_as`).
    table_kind: ClassVar[Optional[TableKind]] = None
    supports_early_stop: ClassVar[bool] = False
    #: Whether the job may be cut into shards of points: each point's result must depend on
    #: that point (and its index) only, never on which other points share its batch or shard.
    shardable: ClassVar[bool] = False
    #: Whether the attack optimises the detector's own score (one job per detector, through
    #: :attr:`AttackContext.head`); otherwise one job serves every detector that can score its
    #: stored logits.
    detector_aware: ClassVar[bool] = False
    #: Whether it lowers the detector's score (an attack on in-distribution points) instead of
    #: raising it.
    lowers_score: ClassVar[bool] = False

    #: Whether its row holds certified upper bounds of the score over the ball instead of
    #: attacked points (``certified``; :mod:`oodbench.pipeline.score.bracket` orders the rows by it).
    certifies: ClassVar[bool] = False

    #: Whether the trust checks compare it with a score-based black-box attack (Square) in the
    #: same ball on the same score (``black-box-beats-white-box``): OOD attacks that raise it.
    black_box_checked: ClassVar[bool] = False
    #: Whether the attack has versions (:mod:`oodbench.attacks.members`): its ``paper`` single
    #: run, or an ensemble of members on the same score in the same ball.
    has_versions: ClassVar[bool] = False

    @classmethod
    def shown_as(cls) -> TableKind:
        """Its row's kind in a report: the declared :attr:`table_kind`, else by how the row is
        scored (``robust`` like the in-distribution set, ``summary``, else ``adversarial``)."""
        return cls.table_kind or TableKind.of_attack(cls.row)

    def min_classes(self, spec: AttackSpec) -> tuple[int, str]:
        """The fewest classes the attack is meaningful for, and why (``too-few-classes``)."""
        return 2, "a softmax over one class is constant: no input changes its confidence"

    def has_row_for(self, detector: Any) -> bool:
        """Whether the attack gives a row for this detector (``certified``: only for detectors
        whose score it can bound)."""
        return True

    def gradient_objective(self, ctx: AttackContext) -> Optional[GradientObjective]:
        """What the attack ascends by gradient (``zero-gradient`` checks it at the start
        point); None for attacks without one (the check is then not run)."""
        return None

    def estimate_cost(self, spec: AttackSpec, n_points: int) -> Cost:
        """Model evaluations the attack needs at most (the plan's cost column; early stops and
        broken points make the real figure smaller). Default: one forward pass per point."""
        return Cost(forward=n_points)

    def defaults(self, in_dataset: str) -> dict[str, Any]:
        """Paper settings for an in-distribution data set; the suite's fields override them."""
        return {}

    def resolve(self, spec: AttackSpec, in_dataset: str) -> AttackSpec:
        """The spec with every unset field filled from :meth:`defaults` (part of the cache key)."""
        defaults = self.defaults(in_dataset)
        # the options an attack declares are its defaults' keys: any other is a typo that would
        # otherwise be ignored while the attack runs for minutes with its default settings
        merge_options(spec.name, spec.options, defaults.get("options", {}))
        given = {k: v for k, v in spec.model_dump(exclude_unset=True).items() if v is not None}
        values = {**defaults, **given,
                  "options": {**defaults.get("options", {}), **given.get("options", {})}}
        values.update(self._version(spec, given, defaults))
        return AttackSpec.model_validate(values)

    def _version(self, spec: AttackSpec, given: Mapping[str, Any],
                 defaults: Mapping[str, Any]) -> dict[str, Any]:
        """The version and member list of a resolved spec. Without ``version:`` an entry that
        sets a single-run field (``steps``, ``optimizer``, …) to other than its default describes
        the ``paper`` run; any other defaults to ``standard``. Resolving a resolved spec gives
        it back."""
        if not self.has_versions:
            if spec.version is not None or spec.members is not None:
                raise ValueError(f"{spec.name} has no versions: `version` and `members` are for "
                                 "adversarial-noise, worst-case and in-distribution-attack")
            return {}
        single = [f for f in SINGLE_RUN_FIELDS if f in given and given[f] != defaults.get(f)]
        version = spec.version or ("paper" if single else "standard")
        if version == "paper":
            if spec.members is not None:
                raise ValueError("`members` are for version: custom; version paper is one run")
            return {"version": "paper", "members": None}
        if single:
            raise ValueError(f"{', '.join(single)} set(s) the single run of version: paper; the "
                             f"{version} ensemble has its own budgets (list them with version: "
                             "custom and `members`)")
        if version == "custom":
            if not spec.members:
                raise ValueError("version: custom needs `members`, e.g. [{name: apgd, steps: "
                                 "500}, {name: square, steps: 5000}]")
            return {"version": "custom", "members": spec.members}
        if spec.members is not None and spec.members != VERSIONS[version]:
            raise ValueError(f"`members` are for version: custom, not {version}")
        return {"version": version, "members": VERSIONS[version]}

    def run(self, ctx: AttackContext) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def summarize(self, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        """Values of a ``summary`` row, computed from the stored arrays."""
        raise NotImplementedError(f"{type(self).__name__} has no summary row")
