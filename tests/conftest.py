"""Shared fixtures (a small digits model trained by the project's own training code) and an
opt-in report of each test's peak-memory growth.

``OODBENCH_RSS_REPORT=N python -m pytest ...`` lists, after the run, the N tests that raised the
peak resident set the most (of this process, and of waited-for child processes such as CLI
runs): the way to find the test behind a memory peak without changing normal output.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

import pytest

_RSS_TOP = int(os.environ.get("OODBENCH_RSS_REPORT", "0") or 0)
_RSS_GROWTH: list[tuple[int, int, int, str]] = []  # (growth KiB, self peak, children peak, test id)


def _peaks() -> tuple[int, int]:
    """Peak resident sets so far in KiB (Linux's ru_maxrss unit): this process, its children."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Setup, call and teardown of one test: by how much did it raise either peak?"""
    if not _RSS_TOP:
        yield
        return
    before = _peaks()
    yield
    after = _peaks()
    growth = max(after[0] - before[0], after[1] - before[1])
    _RSS_GROWTH.append((growth, after[0], after[1], item.nodeid))


def pytest_terminal_summary(terminalreporter):
    if not _RSS_TOP or not _RSS_GROWTH:
        return
    mib = 1024
    self_peak, children_peak = _peaks()
    terminalreporter.section(f"peak RSS growth, top {_RSS_TOP} (OODBENCH_RSS_REPORT)")
    terminalreporter.write_line(f"run peak: this process {self_peak / mib:.0f} MiB, "
                                f"largest child {children_peak / mib:.0f} MiB")
    for growth, own, children, nodeid in sorted(_RSS_GROWTH, reverse=True)[:_RSS_TOP]:
        if growth < mib:  # the peak barely moved: noise, not a cause
            break
        terminalreporter.write_line(f"+{growth / mib:7.0f} MiB  (self {own / mib:.0f}, "
                                    f"children {children / mib:.0f})  {nodeid}")


@pytest.fixture(scope="module")
def digits_model(digits_weights):
    """The digits network (5 classes) of :func:`digits_weights`, loaded as a suite would."""
    from oodbench.models import load_model

    return load_model({"name": "d", "adapter": "safetensors", "arch": "digits-net",
                       "arch_options": {"num_classes": 5}, "path": str(digits_weights)})


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
