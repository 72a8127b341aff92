"""The versions and hardware recorded with every run and every leaderboard entry.

A run records them when it starts (:func:`oodbench.pipeline.run.run_suite`), a recomputation audit
beside its verdict, a leaderboard entry with its numbers; it is one function, below all three.
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import torch

from oodbench.core.version import VERSION


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and hardware recorded with every run, for provenance."""
    # The installed version, read from its metadata: importing torchvision only to read it
    # takes about 2 s, which a run on embedded data would otherwise pay for nothing.
    from importlib.metadata import PackageNotFoundError, version

    try:
        torchvision_version = version("torchvision")
    except PackageNotFoundError:
        torchvision_version = "not installed"
    env: dict[str, Any] = {
        "oodbench": VERSION, "torch": str(torch.__version__),
        "torchvision": torchvision_version, "numpy": np.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    return env


__all__ = ["environment"]
