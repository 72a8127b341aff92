"""The members of an attack ensemble and the versions that name a list of them.

An attack gives only an upper bound on the worst case, and one optimiser run with one budget can
be far from tight (issue 19: knn's attacked AUROC on MNIST noise fell from 20% to 6% under
stronger attacks on the same points). The ensemble runs several attacks on the detector's own
score in the same ball and keeps, per point, the best iterate of all of them (AutoAttack's idea
for robust accuracy, ProoD's protocol for OOD confidence). A *version* names a member list, as
AutoAttack's do:

- ``paper``: the single run of the paper the attack comes from (its optimiser, steps, step
  size; the fields of the ``attack:`` entry). Its arrays and job keys are what they always were.
- ``standard``: every member below at full budget; the default.
- ``fast``: APGD and its surrogate run at a fifth of the budget, no restarts.
- ``custom``: the entry's own ``members:`` list.

Members (each run only on points that are not yet settled for the suite's metrics):

- ``apgd``: APGD (Croce & Hein 2020) on the score, ``restarts`` random starts;
- ``apgd-surrogate``: APGD on the smooth surrogate the detector declares (softmin over classes,
  mean of the k nearest, …), the point still chosen by the true score; skipped for detectors
  without one;
- ``pgd-starts``: monotone PGD from ProoD's three starts (the contrast-reduced image, uniform
  noise, Gaussian noise in the ball);
- ``square``: the Square attack (black box: score evaluations only), ``steps`` queries.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from oodbench.core.validation import Restarts, Steps

Version = Literal["standard", "fast", "paper", "custom"]
MemberName = Literal["apgd", "apgd-surrogate", "pgd-starts", "square"]
Start = Literal["contrast", "uniform", "gaussian"]


class MemberSpec(BaseModel):
    """One member of an ensemble: which attack and its budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: MemberName = Field(description="apgd, apgd-surrogate, pgd-starts or square")
    steps: Steps = Field(description="iterations per run (square: queries)")
    restarts: Restarts = Field(1, description="apgd / apgd-surrogate: random starts")
    starts: tuple[Start, ...] = Field(("contrast", "uniform", "gaussian"),
                                      description="pgd-starts: its start points, one run each")


VERSIONS: dict[str, tuple[MemberSpec, ...]] = {
    "standard": (MemberSpec(name="apgd", steps=500, restarts=2),
                 MemberSpec(name="apgd-surrogate", steps=500),
                 MemberSpec(name="pgd-starts", steps=200),
                 MemberSpec(name="square", steps=5000)),
    "fast": (MemberSpec(name="apgd", steps=100),
             MemberSpec(name="apgd-surrogate", steps=100)),
}
"""The member lists of the named versions (``paper`` has none: it is the single run)."""

SINGLE_RUN_FIELDS = ("objective", "optimizer", "steps", "step_size", "restarts", "random_start",
                     "momentum")
"""The ``attack:`` fields that describe the ``paper`` version's single run."""


def members_of(version: Optional[str], members: Optional[tuple[MemberSpec, ...]]
               ) -> tuple[MemberSpec, ...]:
    """The member list a version runs (empty for ``paper``)."""
    if version == "custom":
        return members or ()
    return VERSIONS.get(version or "paper", ())


def gradient_steps(member: MemberSpec) -> int:
    """Gradient evaluations per point at most (Square uses none)."""
    if member.name == "square":
        return 0
    runs = len(member.starts) if member.name == "pgd-starts" else member.restarts
    return member.steps * runs


__all__ = ["MemberSpec", "SINGLE_RUN_FIELDS", "VERSIONS", "Version", "gradient_steps", "members_of"]
