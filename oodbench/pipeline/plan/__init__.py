"""Planning: a suite and a results store become a typed, sharded, costed :class:`Plan`."""

from oodbench.pipeline.plan.cost import Cost
from oodbench.pipeline.plan.jobs import Job, JobKind, Plan, Shard, ShardState, format_plan
from oodbench.pipeline.plan.planner import make_plan

__all__ = ["Cost", "Job", "JobKind", "Plan", "Shard", "ShardState", "format_plan", "make_plan"]
