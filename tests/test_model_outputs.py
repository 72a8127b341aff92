"""Model outputs that cannot be scored (issue 13 item 3, issue 14 defect 4): NaN or infinite
logits, the wrong number of classes, a scalar. ``check_outputs`` refuses them with a message
naming the model, the data and what was expected; the runner calls it before anything is
stored, so a rerun does not reuse a poisoned job."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from oodbench.cli import main
from oodbench.core.errors import OodbenchError
from oodbench.models.output_check import ModelOutputError, check_outputs, check_shape
from oodbench.core.registry import architectures


def test_finite_logits_of_the_right_shape_pass_unchanged():
    logits = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert check_outputs(logits, model="m", data="d", n_classes=3) is logits
    tensor = torch.zeros(2, 3)
    assert check_outputs(tensor, model="m", data="d", n_classes=None) is tensor


@pytest.mark.parametrize("value,kind", [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite")])
def test_non_finite_logits_are_counted_per_point(value, kind):
    logits = np.zeros((10, 3), dtype=np.float32)
    logits[[1, 4, 7], 2] = value
    with pytest.raises(ModelOutputError) as err:
        check_outputs(logits, model="net", data="digits 0-4", n_classes=3)
    msg = str(err.value)
    assert "model 'net' on digits 0-4: 3 of 10 points" in msg and kind in msg
    assert isinstance(err.value, OodbenchError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("logits,got", [
    (np.float32(1.0), "a scalar"), (torch.tensor(3.0), "a scalar"),
    (np.zeros(5, dtype=np.float32), "shape (5,)"), (np.zeros((4, 7), dtype=np.float32), "shape (4, 7)"),
    (np.zeros((2, 3, 5), dtype=np.float32), "shape (2, 3, 5)"),
])
def test_wrong_shapes_name_expected_and_actual(logits, got):
    with pytest.raises(ModelOutputError) as err:
        check_shape(logits, model="net", data="digits 0-4", n_classes=5)
    assert f"model 'net' on digits 0-4: returned {got}, expected logits (N, 5)" in str(err.value)


def test_not_a_tensor_is_refused():
    with pytest.raises(ModelOutputError, match="returned a tuple"):
        check_shape((1, 2), model="net", data="d", n_classes=None)


# ---------------------------------------------------------------------------------------- runner


SUITE = """\
name: outputs
device: cpu
in_distribution: {{name: digits 0-4, dataset: digits, n: 50, options: {{classes: [0, 1, 2, 3, 4]}}}}
models:
  - {model}
probes:
  - {{name: digits 5-9, dataset: digits, n: 20, options: {{classes: [5, 6, 7, 8, 9]}}}}
  - {{name: worst-case 5-9, dataset: digits, n: 8, options: {{classes: [5, 6, 7, 8, 9]}},
     attack: {{name: worst-case, steps: 2}}}}
metrics: [test-error, auroc]
"""


def _weights(path: Path, *, num_classes: int = 5, poison: str | None = None) -> Path:
    state = architectures.get("digits-net")(num_classes=num_classes).state_dict()
    if poison == "nan":
        state["fc2.weight"][0, 0] = float("nan")
    elif poison == "inf":
        state["fc2.bias"][1] = float("inf")
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _run(tmp_path: Path, model: str, suite_text: str = SUITE) -> tuple[object, Path]:
    suite = tmp_path / "suite.yaml"
    suite.write_text(suite_text.format(model=model))
    store = tmp_path / "r.db"
    return CliRunner().invoke(main, ["run", str(suite), "-o", str(store), "-q"]), store


def _stored_jobs(store: Path) -> int:
    """Stored results (shards); the jobs table also records jobs the run planned."""
    db = sqlite3.connect(store)
    try:
        return db.execute("SELECT count(*) FROM shards").fetchone()[0]
    finally:
        db.close()


@pytest.mark.parametrize("poison,kind", [("nan", "NaN"), ("inf", "infinite")])
def test_non_finite_model_is_an_error_before_anything_is_stored(tmp_path, poison, kind):
    w = _weights(tmp_path / "w.safetensors", poison=poison)
    model = f"{{name: poisoned, adapter: safetensors, arch: digits-net, arch_options: {{num_classes: 5}}, path: {w}}}"
    for _ in range(2):  # a rerun meets the same clear error, not a stored job that crashes
        res, store = _run(tmp_path, model)
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert f"model 'poisoned' on digits 0-4: 50 of 50 points have {kind} logits" in res.output
        assert _stored_jobs(store) == 0


def test_wrong_number_of_classes_names_expected_and_actual(tmp_path):
    w = _weights(tmp_path / "w7.safetensors", num_classes=7)
    model = f"{{name: seven, adapter: safetensors, arch: digits-net, arch_options: {{num_classes: 7}}, path: {w}}}"
    res, store = _run(tmp_path, model)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "model 'seven' on digits 0-4: returned shape (50, 7), expected logits (N, 5)" in res.output
    assert _stored_jobs(store) == 0


FACTORIES = """\
import torch
from torch import nn


class Scalar(nn.Module):
    def forward(self, x):
        return x.sum()


class NanAfterFirstCall(nn.Module):
    '''Finite on its first batch (the clean pass), NaN on every later one (the attack's).'''

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 5)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        logits = self.fc(x.flatten(1))
        return logits if self.calls == 1 else torch.full_like(logits, float("nan"))


def scalar():
    return Scalar()


def nan_after_first_call():
    torch.manual_seed(0)
    return NanAfterFirstCall()
"""


def test_scalar_output_is_an_error_naming_the_model(tmp_path):
    (tmp_path / "nets.py").write_text(FACTORIES)
    res, store = _run(tmp_path, "{name: scalar, adapter: python, factory: nets.py:scalar, trust_code: true}")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "model 'scalar' on digits 0-4: returned a scalar, expected logits (N, 5)" in res.output
    assert _stored_jobs(store) == 0


def test_non_finite_attack_logits_are_refused_before_storing_the_attack(tmp_path):
    """The clean pass is finite (and stored); the attack's logits are not: that job is refused,
    naming the probe, and is not stored."""
    (tmp_path / "nets.py").write_text(FACTORIES)
    model = "{name: fragile, adapter: python, factory: nets.py:nan_after_first_call, trust_code: true}"
    attack_only = SUITE.replace("  - {{name: digits 5-9, dataset: digits, n: 20, options: {{classes: [5, 6, 7, 8, 9]}}}}\n", "")
    assert attack_only != SUITE
    res, store = _run(tmp_path, model, attack_only)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    # The engine calls the model on fixed chunks of 128 rows (the 8 points and their padding).
    assert ("model 'fragile' on worst-case 5-9 (attacked): 128 of 128 rows of one model call "
            "have NaN logits") in res.output
    assert _stored_jobs(store) == 1  # the clean pass, not the attack
