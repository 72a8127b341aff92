"""Shared fixtures: a small digits model trained by the project's own training code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def digits_weights(tmp_path_factory) -> Path:
    """A digits-net trained (plain) on scikit-learn digits 0-4 for a few epochs: seconds on CPU."""
    from oodbench.train import Recipe, train_from_recipe

    out = tmp_path_factory.mktemp("zoo") / "digits.safetensors"
    recipe = Recipe(name="digits-test", arch="digits-net", arch_options={"num_classes": 5},
                    dataset={"dataset": "digits", "options": {"classes": [0, 1, 2, 3, 4]}},
                    epochs=8, batch_size=64, lr=3e-3, device="cpu", output=str(out))
    train_from_recipe(recipe, progress=False)
    return out


SUITE_HEADER = """\
seed: 0
batch_size: 128
device: cpu
in_distribution: {{name: digits 0-4, dataset: digits, options: {{classes: [0, 1, 2, 3, 4]}}}}
models:
  - {{name: plain, adapter: safetensors, arch: digits-net, arch_options: {{num_classes: 5}}, path: {weights}}}
"""
"""The common part of the test suites: the digits model on digits 0-4 (format with `weights`)."""

SUITE = "name: test-suite\n" + SUITE_HEADER + """\
probes:
  - {{name: digits 5-9, dataset: digits, options: {{classes: [5, 6, 7, 8, 9]}}}}
  - {{name: uniform noise, dataset: uniform-noise, n: {n_uniform}}}
  - {{name: smoothed noise, dataset: smoothed-noise, n: 300}}
metrics: [test-error, mmc, ece, auroc, fpr95]
"""


@pytest.fixture
def write_suite(tmp_path, digits_weights):
    """Write a suite file evaluating the trained digits model; returns its path."""

    def write(text: str | None = None, name: str = "suite.yaml", **fmt) -> Path:
        fmt = {"weights": digits_weights, "n_uniform": 300, **fmt}
        path = tmp_path / name
        path.write_text((text or SUITE).format(**fmt))
        return path

    return write


VALID_SUITE: dict[str, Any] = {
    "name": "bad-input",
    "seed": 0,
    "device": "cpu",
    "in_distribution": {"name": "digits 0-4", "dataset": "digits",
                        "options": {"classes": [0, 1, 2, 3, 4]}},
    "models": [{"name": "m", "adapter": "safetensors", "arch": "digits-net",
                "arch_options": {"num_classes": 5}, "path": "m.safetensors"}],
    "probes": [
        {"name": "noise", "dataset": "uniform-noise", "n": 10},
        {"name": "adv", "dataset": "uniform-noise", "n": 10,
         "attack": {"name": "adversarial-noise", "steps": 2}},
    ],
    "metrics": ["auroc", "fpr95"],
}
"""A small valid suite (validation only: its weights file need not exist) that the bad-input
tests and the fuzzer mutate."""
