"""Planning: a suite and a results store become a typed, sharded, costed :class:`Plan`.

``make_plan`` is imported lazily: the attacks import :mod:`oodbench.plan.cost`, and the planner
imports the attacks.
"""

from typing import Any

from oodbench.plan.cost import Cost
from oodbench.plan.jobs import Job, JobKind, Plan, Shard, ShardState, format_plan

__all__ = ["Cost", "Job", "JobKind", "Plan", "Shard", "ShardState", "format_plan", "make_plan"]


def __getattr__(name: str) -> Any:
    if name == "make_plan":
        from oodbench.plan.planner import make_plan

        return make_plan
    raise AttributeError(name)
