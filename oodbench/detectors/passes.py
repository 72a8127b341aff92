"""Which forward passes a set of detectors needs: the one rule a suite's plan and the in-memory
:func:`oodbench.pipeline.run.evaluate` share.

Detectors multiply as little as possible: one forward pass per (model, data set) serves every
detector that reads logits or features, and stores the penultimate features only when one of
them reads them; a detector that needs the model at scoring time (ODIN's input step) gets its
own pass, at a gradient evaluation per point; a fitted detector reads its statistics of
labelled in-distribution training data, computed once.
"""

from __future__ import annotations

from dataclasses import dataclass

from oodbench.detectors.base import Detector


@dataclass(frozen=True)
class ForwardPasses:
    """The passes of ``detectors`` (in the order they are asked)."""

    detectors: tuple[Detector, ...]

    @property
    def shared_features(self) -> bool:
        """Whether the shared pass stores penultimate features beside the logits."""
        return any(d.needs_features for d in self.detectors)

    @staticmethod
    def own_pass(detector: Detector) -> bool:
        """Whether ``detector`` scores from a pass of its own instead of the shared one."""
        return detector.needs_model

    @staticmethod
    def fitted(detector: Detector) -> bool:
        """Whether ``detector`` reads a fit of labelled training data."""
        return detector.needs_fit

    @property
    def first_fitted(self) -> "Detector | None":
        """The first detector that needs a fit (None: no fit is needed)."""
        return next((d for d in self.detectors if self.fitted(d)), None)


__all__ = ["ForwardPasses"]
