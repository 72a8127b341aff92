"""What a job costs (:class:`~oodbench.core.cost.Cost`, defined in the bottom layer because the
attacks and checks estimate it); this module keeps the import path ``oodbench.pipeline.plan.cost``."""

from oodbench.core.cost import FORWARD_PER_GRADIENT, Cost

__all__ = ["Cost", "FORWARD_PER_GRADIENT"]
