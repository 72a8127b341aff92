"""What a job computes and what state its shards are in: the words the planner, the executor,
the store and the scorer share.

The values are the strings the results store records (a job's ``kind`` column and the
``"kind"`` of its config, from which its key is hashed), so an enum member and the string it
replaces serialise alike and every stored key stays what it was.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Mapping, Optional


class JobKind(str, Enum):
    """What a job computes. The values are what the results store records."""

    CLEAN = "clean"      # the model on the in-distribution test set: every other row needs it
    PROBE = "probe"      # the model on a probe's (converted) data set
    ATTACK = "attack"    # an attack on a probe's points or on in-distribution test points
    FIT = "fit"          # a detector's statistics of in-distribution training data
    CHECK = "check"      # trust checks of another job (flags); never stored as a job

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Optional["JobKind"]:
        """The kind a stored job's config records (None: none, or one this version does not
        know, which no stage then treats as any of its own)."""
        try:
            return cls(config.get("kind"))
        except ValueError:
            return None


class ShardState(str, Enum):
    CACHED = "cached"          # stored, and exact for what this run asks
    PARTIAL = "partial"        # stored with a looser early stop: some points are re-attacked
    MISSING = "missing"        # to compute


__all__ = ["JobKind", "ShardState"]
