"""Results-store integrity (issue 14): no command may print or accept a silently wrong number.

One test (or parametrised family) per defect class found by the fault and tampering campaign:
row-label collisions and checkpoint pins that are not checked. Everything runs on real suite
files and real runs of the committed digits model (a few seconds each).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import oodbench
from oodbench.cli import main
from oodbench.suite import SuiteError, load_suite

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "model_zoo" / "digits-plain.safetensors"

SUITE = """\
name: integrity
seed: 0
batch_size: 256
device: cpu
in_distribution: {{name: digits 0-4, dataset: digits, options: {{classes: [0, 1, 2, 3, 4]}}}}
models:
{models}
probes:
{probes}
metrics: [test-error, mmc, auroc, fpr95]
"""
MODEL = ("  - {{name: {name}, adapter: safetensors, arch: digits-net, arch_options: {{num_classes: 5}},"
         " path: {path}{extra}}}")
PROBES = ["  - {name: digits 5-9, dataset: digits, options: {classes: [5, 6, 7, 8, 9]}}",
          "  - {name: uniform noise, dataset: uniform-noise, n: 200}"]


def write(tmp_path: Path, *, models=(("plain", ""),), probes=PROBES, name="suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(SUITE.format(
        models="\n".join(MODEL.format(name=n, path=WEIGHTS, extra=extra) for n, extra in models),
        probes="\n".join(probes)))
    return path


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def run(suite_file: Path, store: Path):
    return oodbench.run_suite(load_suite(suite_file), output=store, progress=False)


@pytest.fixture
def honest(tmp_path) -> Path:
    """A finished, honest run of the two-probe suite."""
    store = tmp_path / "r.db"
    run(write(tmp_path), store)
    return store


# --------------------------------------------------------------------------- 1. unique row labels


@pytest.mark.parametrize("probe, field, line", [
    ("  - {name: digits 0-4, dataset: uniform-noise, n: 300}", "probes[1].name", 10),
    ("  - {dataset: digits, options: {classes: [5]}}", "probes[1].dataset", 10),
])
def test_a_probe_labelled_like_the_in_distribution_set_is_refused(tmp_path, probe, field, line):
    in_spec = "{dataset: digits, options: {classes: [0, 1, 2, 3, 4]}}" if "name" not in probe else None
    path = write(tmp_path, probes=[PROBES[0], probe])
    if in_spec:  # unnamed in-distribution set: its label is its dataset, `digits`
        path.write_text(path.read_text().replace(
            "{name: digits 0-4, dataset: digits, options: {classes: [0, 1, 2, 3, 4]}}", in_spec))
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    text = str(err.value)
    assert f"{path}:{line}: field `{field}`" in text, text
    assert "in_distribution" in text and "unique" in text
    res = cli("validate", path)
    assert res.exit_code == 2 and f"field `{field}`" in res.output


def test_repeated_model_names_point_at_the_second_entry(tmp_path):
    path = write(tmp_path, models=(("plain", ""), ("plain", "")))
    with pytest.raises(SuiteError, match=rf"{path}:8: field `models\[1\].name`"):
        load_suite(path)


# --------------------------------------------------------------------------- 8. sha256 pins


def test_a_wrong_pin_is_caught_even_when_every_job_is_cached(honest, tmp_path):
    pinned = write(tmp_path, models=(("plain", f", sha256: '{'0' * 64}'"),), name="pinned.yaml")
    res = cli("run", pinned, "-o", honest, "-q")
    assert res.exit_code == 2 and "sha256" in res.output and "0" * 64 in res.output, res.output
    from oodbench.models import file_sha256

    good = write(tmp_path, models=(("plain", ", sha256: " + file_sha256(WEIGHTS)),), name="good.yaml")
    res = cli("run", good, "-o", honest, "-q")
    assert res.exit_code == 0 and "0 jobs computed" in res.output, res.output


@pytest.mark.parametrize("pin", ["xyz", "0" * 63, "g" * 64])
def test_a_malformed_pin_is_refused_at_validation(tmp_path, pin):
    path = write(tmp_path, models=(("plain", f", sha256: '{pin}'"),))
    res = cli("validate", path)
    assert res.exit_code == 2 and f"{path}:7: field `models[0].sha256`" in res.output, res.output
    assert "64 hex" in res.output
