"""The suite's ``checks:`` field: which trust checks run beside a suite's jobs, on how many points.

Kept free of torch and of the check modules, so the suite can validate it cheaply. The codes in
``skip`` are checked against the ``checks`` registry when the suite is validated.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from oodbench.core.validation import Count

CHECKS_VERSION = 1
"""Part of every check's key: bump it when a check's rule changes, so stored verdicts are redone."""


class BlackBoxCheckSpec(BaseModel):
    """The black-box comparison (``black-box-beats-white-box``): Square (Andriushchenko et al.
    2020) on ``n`` points of each ``adversarial-noise`` / ``worst-case`` job, in the same ball and
    on the same score, with ``queries`` model calls per point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: Count = Field(50, le=10_000, description="points compared (the first ones the gradient "
                     "attack did not stop early on)")
    queries: int = Field(300, gt=0, le=100_000, description="Square iterations per point")
    p_init: Optional[float] = Field(None, gt=0, le=1, description="Square's initial share of "
                                    "pixels changed per step (default: 0.05 for Linf, 0.1 for L2, "
                                    "as in the paper)")


class ChecksSpec(BaseModel):
    """``checks:`` of a suite. Checks never change a metric or a job key: their verdicts (flags)
    are stored beside the jobs they concern."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="run the trust checks (gradient masking and other "
                          "reasons to distrust a row)")
    n: Count = Field(32, le=10_000, description="points each model and gradient check uses")
    zero_gradient_share: float = Field(0.5, gt=0, le=1, description="flag `zero-gradient` when "
                                       "at least this share of the checked points has a zero "
                                       "gradient at the attack's start")
    skip: list[str] = Field(default_factory=list, description="check codes not to run "
                            "(`oodbench list checks`)")
    black_box_check: Optional[BlackBoxCheckSpec] = Field(
        default_factory=lambda: BlackBoxCheckSpec(),
        description="the Square comparison; null: do not run it")

    @field_validator("skip")
    @classmethod
    def _known_codes(cls, codes: list[str]) -> list[str]:
        from oodbench.core.registry import UnknownNameError, checks

        for code in codes:
            try:
                checks.entry(code)
            except UnknownNameError as err:
                raise ValueError(str(err)) from None
        return codes

    def identity(self) -> dict[str, Any]:
        """What determines a check's verdict (part of its key): everything but ``skip`` (which
        decides which checks run, each keyed by its own code) and ``enabled``."""
        return self.model_dump(mode="json", exclude={"skip", "enabled"})

    @property
    def is_default(self) -> bool:
        return self == ChecksSpec()


__all__ = ["BlackBoxCheckSpec", "CHECKS_VERSION", "ChecksSpec"]
