"""Resumable training checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint is one file (default: the weights path with suffix ``.ckpt.pt``) written at the end
of every epoch, atomically (temporary file + rename), holding only tensors, numbers, strings,
lists and dicts:

``format``, ``fingerprint`` (sha256 of the training-relevant recipe fields), ``data_sha256``,
``epoch`` (epochs completed), ``step`` (optimizer steps taken), ``model``, ``optimizer``,
``scheduler`` (its state dict, with the milestone Counter as a plain dict), ``scaler`` (AMP
grad scaler or None), ``rng`` (torch CPU and CUDA generator states and the state of the
generator that shuffles the epochs), ``history`` (per-epoch loss/accuracy/lr) and
``elapsed_s``. All other randomness of a step is derived from (seed, step), see
:func:`oodbench.train.data.step_seed`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Union

import torch

FORMAT = "oodbench-train-checkpoint/1"

# Recipe fields that do not change the trained weights: a checkpoint may be resumed across them.
_NOT_TRAINING = {"name", "output", "device", "data_root", "evaluate"}


def recipe_fingerprint(recipe_dump: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the recipe fields that determine the training."""
    relevant = {k: v for k, v in recipe_dump.items() if k not in _NOT_TRAINING}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def default_path(weights: Path) -> Path:
    return weights.with_name(weights.stem + ".ckpt.pt")


def scheduler_state(sched: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    state = dict(sched.state_dict())
    if isinstance(state.get("milestones"), Counter):
        state["milestones"] = {int(k): int(v) for k, v in state["milestones"].items()}
    return state


def load_scheduler_state(sched: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any]) -> None:
    state = dict(state)
    if isinstance(state.get("milestones"), dict):
        state["milestones"] = Counter({int(k): int(v) for k, v in state["milestones"].items()})
    sched.load_state_dict(state)


def rng_state(order_generator: torch.Generator) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "order": order_generator.get_state()}


def load_rng_state(state: dict[str, Any], order_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    order_generator.set_state(state["order"])


def save_checkpoint(path: Union[str, Path], state: dict[str, Any]) -> None:
    """Write ``state`` atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Union[str, Path]) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code is executed); check its format."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not an oodbench training checkpoint ({FORMAT})")
    return state
