"""Issue 20, items 1 and 7: no wrong number leaves oodbench.

Item 1: ``report`` (every format), ``show`` and ``plot`` print only values recomputed from the
stored arrays by the scorer, and refuse a run whose stored metrics differ from them: an edited
value, a value set to NULL, a stored suite whose metric list was cut (with or without the rows
it no longer asks for). Item 7: ``verify --recompute`` re-executes stored shards and catches an
array forged together with its checksum and metrics, which every other check passes.

Everything runs on real runs of the committed digits model (a few seconds for the module).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import oodbench
from oodbench.cli import main
from oodbench.pipeline.recompute import DEFAULT_TOLERANCE, array_differences, recompute_run
from oodbench.report.data import recompute_metrics
from oodbench.pipeline.store import ResultStore, array_checksum
from oodbench.pipeline.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "model_zoo" / "digits-plain.safetensors"

SUITE = f"""\
name: audit
seed: 0
batch_size: 128
device: cpu
shard_size: 100
in_distribution: {{name: digits 0-4, dataset: digits, options: {{classes: [0, 1, 2, 3, 4]}}}}
models:
  - {{name: plain, adapter: safetensors, arch: digits-net, arch_options: {{num_classes: 5}}, path: {WEIGHTS}}}
detectors: [msp, energy]
probes:
  - {{name: uniform noise, dataset: uniform-noise, n: 200}}
  - {{name: adv. noise, dataset: uniform-noise, n: 20, attack: {{name: adversarial-noise, steps: 3}}}}
metrics: [test-error, mmc, auroc, fpr95]
"""
EDIT = "UPDATE metrics SET value={value} WHERE probe='adv. noise' AND metric='auroc' AND detector='msp'"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One honest run of the small suite (two detectors, a probe and an attack)."""
    tmp = tmp_path_factory.mktemp("audit")
    (tmp / "suite.yaml").write_text(SUITE)
    oodbench.run_suite(load_suite(tmp / "suite.yaml"), output=tmp / "r.db", progress=False)
    return tmp / "r.db"


@pytest.fixture
def store(finished, tmp_path) -> Path:
    """A copy of the honest run to tamper with."""
    shutil.copy(finished, tmp_path / "r.db")
    return tmp_path / "r.db"


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def sql(path: Path, *statements: str, params: tuple = ()) -> None:
    db = sqlite3.connect(path)
    with db:
        for s in statements:
            db.execute(s, params)
    db.close()


def cut_metric_list(path: Path, keep: list[str], *, rows_too: bool) -> None:
    """Shorten the stored suite's metric list (and, ``rows_too``, delete the other metrics)."""
    db = sqlite3.connect(path)
    with db:
        suite = json.loads(db.execute("SELECT suite_json FROM runs").fetchone()[0])
        suite["metrics"] = keep
        db.execute("UPDATE runs SET suite_json=?", (json.dumps(suite, sort_keys=True),))
        if rows_too:
            db.execute(f"DELETE FROM metrics WHERE metric NOT IN ({','.join('?' * len(keep))})", keep)
    db.close()


# --------------------------------------------------------------------------- item 1


def test_an_honest_run_is_printed_by_every_product(finished, tmp_path):
    for fmt in ("latex", "html", "md", "csv"):
        res = cli("report", finished, "--format", fmt)
        assert res.exit_code == 0, res.output
    assert cli("show", finished).exit_code == 0
    assert cli("plot", finished, "--out", tmp_path / "figs", "--format", "png").exit_code == 0


@pytest.mark.parametrize("fmt", ["latex", "html", "md", "csv"])
@pytest.mark.parametrize("value, shown", [("0.999", "0.999"), ("NULL", "None")])
def test_report_refuses_an_edited_or_nulled_metric(store, fmt, value, shown):
    honest = cli("report", store, "--format", "csv").stdout
    sql(store, EDIT.format(value=value))
    res = cli("report", store, "--format", fmt)
    assert res.exit_code == 2 and res.stdout == "", res.output
    assert f"plain / msp / adv. noise / auroc: stored {shown}, but the stored arrays give 0." in res.stderr
    assert f"oodbench verify {store}" in res.stderr and "re-run the suite" in res.stderr
    # the opt-in prints the stored values and says why they are not verified
    forced = cli("report", store, "--format", "csv", "--allow-unverified")
    assert forced.exit_code == 0 and forced.stdout != honest and "warning:" in forced.stderr


@pytest.mark.parametrize("value", ["0.999", "NULL"])
def test_show_and_plot_refuse_an_edited_metric(store, tmp_path, value):
    sql(store, EDIT.format(value=value))
    shown = cli("show", store)
    assert shown.exit_code == 1 and "its table is not shown" in shown.stderr, shown.output
    assert "plain / msp / adv. noise / auroc: stored" in shown.stderr and "0.999" not in shown.stdout
    plotted = cli("plot", store, "--out", tmp_path / "figs")
    assert plotted.exit_code == 2 and "adv. noise / auroc" in plotted.output
    assert not (tmp_path / "figs").exists()


@pytest.mark.parametrize("rows_too, message", [
    (False, "plain / msp / uniform noise / fpr95: stored 0."),  # rows kept: not asked any more
    (True, "its stored suite (runs.suite_json) was edited"),    # a consistent, smaller run
])
def test_a_cut_metric_list_is_refused(store, rows_too, message):
    cut_metric_list(store, ["test-error", "auroc"], rows_too=rows_too)
    for command in (("report", store, "--format", "md"), ("show", store), ("verify", store)):
        res = cli(*command)
        assert res.exit_code in (1, 2) and message in res.output, (command, res.output)


def test_report_prints_the_recomputed_values(finished):
    """The csv's values are the scorer's (equal to the stored ones on an honest run)."""
    with ResultStore(finished, readonly=True) as results:
        values, problems = recompute_metrics(results, 1)
    assert problems == [] and len(values) > 0
    lines = cli("report", finished, "--format", "csv", "--precision", "12").stdout.splitlines()
    printed = {tuple(line.split(",")[:3]): line.split(",")[3] for line in lines[1:]}
    for (model, detector, probe, metric), value in values.items():
        cell = printed[(f"{model} · {detector}", probe, metric)]
        assert cell == ("" if value is None or value != value else f"{value:.12f}")


# --------------------------------------------------------------------------- item 7


def forge_uniform_noise(path: Path) -> str:
    """Scale the uniform-noise probe's stored logits by 0.1, store them with a checksum made by
    the project's own function, and store the metrics the forged arrays give: every check but
    recomputation passes. Returns the forged job's hash."""
    db = sqlite3.connect(path)
    with db:
        job = db.execute("SELECT hash FROM jobs WHERE kind='probe' AND probe='uniform noise'").fetchone()[0]
        for start, stop, dtype, shape, data in db.execute(
                "SELECT start, stop, dtype, shape, data FROM arrays WHERE job_hash=? AND key='logits'",
                (job,)).fetchall():
            forged = (np.frombuffer(data, dtype=np.dtype(dtype)) * np.float32(0.1)).astype(dtype).tobytes()
            db.execute("UPDATE arrays SET data=?, sha256=? WHERE job_hash=? AND start=? AND stop=? "
                       "AND key='logits'", (forged, array_checksum("logits", dtype, shape, forged),
                                            job, start, stop))
    db.close()
    with ResultStore(path, readonly=True) as results:
        values, _ = recompute_metrics(results, 1)
    for (model, detector, probe, metric), value in values.items():
        sql(path, "UPDATE metrics SET value=? WHERE model=? AND detector=? AND probe=? AND metric=?",
            params=(value, model, detector, probe, metric))
    return job


def test_an_honest_run_recomputes_bit_identically(finished):
    res = cli("verify", finished, "--recompute", "1.0")
    assert res.exit_code == 0, res.output
    assert "bit-identical (same stack as the run): all match" in res.output
    with ResultStore(finished, readonly=True) as results:
        audit = recompute_run(results, 1, 1.0)
    # every stored shard of the run, the attacks on both detectors' scores among them
    assert audit.total == len(audit.checked) and audit.tolerance == 0 and audit.same_stack
    labels = [c.label for c in audit.checked]
    assert labels.count("plain / uniform noise") == 2
    assert {"plain / adv. noise", "plain / adv. noise [energy]"} <= set(labels)
    assert audit.problems == []


def test_recompute_catches_a_forged_shard_with_a_recomputed_checksum(store):
    honest = cli("report", store, "--format", "csv").stdout
    job = forge_uniform_noise(store)
    assert cli("verify", store).exit_code == 0  # checksums and metrics are consistent
    forged = cli("report", store, "--format", "csv").stdout
    assert forged != honest  # the forgery moves the AUROC, and no other check sees it
    res = cli("verify", store, "--recompute", "1.0")
    assert res.exit_code == 1, res.output
    assert f"job {job[:12]} (plain / uniform noise) points 0-100: array 'logits' differs" in res.output
    assert "points 100-200: array 'logits' differs" in res.output and "2 differ" in res.output


def test_the_sample_is_seeded_and_sized_by_the_fraction(finished):
    with ResultStore(finished, readonly=True) as results:
        first = recompute_run(results, 1, 0.4, seed=3)
        again = recompute_run(results, 1, 0.4, seed=3)
    picked = [(c.job, c.start) for c in first.checked]
    assert first.total >= 5 and len(picked) == int(np.ceil(0.4 * first.total)) < first.total
    assert picked == [(c.job, c.start) for c in again.checked] and first.problems == []


def test_another_stack_compares_within_the_default_tolerance(store):
    db = sqlite3.connect(store)
    env = json.loads(db.execute("SELECT environment_json FROM runs").fetchone()[0])
    with db:
        db.execute("UPDATE runs SET environment_json=?", (json.dumps({**env, "torch": "0.0.1"}),))
    db.close()
    res = cli("verify", store, "--recompute", "1.0")
    assert res.exit_code == 0 and f"within tolerance {DEFAULT_TOLERANCE:g} (another stack" in res.output
    loose = cli("verify", store, "--recompute", "1", "--tolerance", "0.5")
    assert loose.exit_code == 0 and "within tolerance 0.5 (another stack" in loose.output


def test_array_differences_by_hand():
    stored = {"logits": np.array([[1.0, 2.0]], np.float32), "labels": np.array([3], np.int64)}
    close = {"logits": np.array([[1.00001, 2.0]], np.float32), "labels": np.array([3], np.int64)}
    assert array_differences(stored, stored, 0.0) == []
    (exact,) = array_differences(stored, close, 0.0)
    assert "'logits' differs" in exact and "max |difference| 1e-05" in exact
    assert array_differences(stored, close, 1e-4) == []
    (label,) = array_differences(stored, {**close, "labels": np.array([4])}, 1e-4)
    assert "'labels' differs" in label  # integers: exactly, whatever the tolerance
    (shape,) = array_differences(stored, {**stored, "labels": np.array([3, 3])}, 0.0)
    assert "stored int64 (1,), recomputed int64 (2,)" in shape


def test_a_job_the_suite_no_longer_plans_is_reported(store):
    """A job key the stored suite does not produce here (another checkpoint, data options or
    oodbench version) cannot be recomputed: that is a problem, not a pass."""
    sql(store, "UPDATE runs SET suite_json=replace(suite_json, '\"seed\": 0', '\"seed\": 1')")
    with ResultStore(store, readonly=True) as results:
        audit = recompute_run(results, 1, 1.0)
    assert audit.total == 0 and len(audit.other) == 4
    assert all("is not a job the stored suite plans here" in p for p in audit.problems)


@pytest.mark.parametrize("fraction", ["0", "1.5"])
def test_a_fraction_outside_0_1_is_refused(finished, fraction):
    res = cli("verify", finished, "--recompute", fraction)
    assert res.exit_code == 2 and "--recompute" in res.output
