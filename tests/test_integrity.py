"""Results-store integrity (issue 14): no command may print or accept a silently wrong number.

One test (or parametrised family) per defect class found by the fault and tampering campaign:
row-label collisions, checksums that miss an array's dtype/shape/key, display names tied to
content-addressed jobs, unfinished runs that "verify", locked/full/read-only storage, read-only
commands that write, and checkpoint pins that are not checked. Everything runs on the real
SQLite file and real runs of the committed digits model (a few seconds each).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import oodbench
from oodbench.cli import main
from oodbench.report.data import verify_run
from oodbench.pipeline.store import CorruptEntryWarning, ResultStore, StoreError
from oodbench.pipeline.suite import SuiteError, load_suite

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


def sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    with db:
        for s in statements:
            db.execute(s)
    db.close()


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


# --------------------------------------------------------------------------- 2. checksums


@pytest.mark.parametrize("column, value", [
    ("dtype", "'<f8'"),             # same bytes read as half as many doubles
    ("shape", "'[5, 200]'"),        # same bytes, transposed shape
    ("key", "'mask'"),              # the array filed under another name
])
def test_checksum_covers_every_field_of_a_stored_array(tmp_path, column, value):
    store_path = tmp_path / "r.db"
    logits = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
    with ResultStore(store_path) as store:
        store.put_job("h", kind="probe", model="m", probe="p", config={},
                      arrays={"logits": logits, "labels": np.zeros(200, np.int64)}, seconds=0)
    sql(store_path, f"UPDATE arrays SET {column}={value} WHERE job_hash='h' AND key='logits'")
    with ResultStore(store_path, readonly=True) as store:
        assert store.array_problems("h") and "checksum" in store.array_problems("h")[0]
    with ResultStore(store_path) as store:
        with pytest.warns(CorruptEntryWarning, match="fails its checksum"):
            assert store.get_job("h") is None


def test_an_array_with_edited_dtype_and_shape_is_recomputed_and_does_not_verify(honest, tmp_path):
    sql(honest, "UPDATE arrays SET dtype='<f8', shape='[100, 5]' WHERE key='logits' AND job_hash="
                "(SELECT hash FROM jobs WHERE probe='uniform noise')")
    res = cli("verify", honest)
    assert res.exit_code == 1 and "fails its checksum" in res.output, res.output
    with pytest.warns(CorruptEntryWarning):
        again = run(write(tmp_path), honest)
    assert again.computed == ["plain / uniform noise"]
    assert cli("verify", honest).exit_code == 0


def test_old_stores_are_refused_with_the_schema_message(honest):
    sql(honest, "UPDATE meta SET value='1' WHERE key='schema_version'")
    res = cli("show", honest)
    assert res.exit_code == 2 and "schema 1" in res.output and "Traceback" not in res.output


# --------------------------------------------------------------------------- 3. names belong to runs


def test_renamed_model_and_probe_still_verify(honest, tmp_path):
    renamed = write(tmp_path, models=(("renamed", ""),),
                    probes=[PROBES[0], PROBES[1].replace("uniform noise", "noise (renamed)")],
                    name="renamed.yaml")
    result = run(renamed, honest)
    assert result.computed == [] and len(result.cached) == 3
    res = cli("verify", honest)
    assert res.exit_code == 0 and "verifies" in res.output, res.output
    assert cli("verify", honest, "--run", 1).exit_code == 0


def test_one_checkpoint_under_two_names_in_one_run_verifies(tmp_path):
    store = tmp_path / "r.db"
    result = run(write(tmp_path, models=(("a", ""), ("b", ""))), store)
    assert len(result.computed) == 3 and len(result.cached) == 3
    assert set(result.metrics["model"]) == {"a", "b"}
    res = cli("verify", store)
    assert res.exit_code == 0, res.output
    with ResultStore(store, readonly=True) as s:
        names = s.job_names(result.run_id)
    assert all(len(v) == 2 for v in names.values())  # each job recorded under both names


def test_the_run_record_is_still_checked(honest):
    """Names are compared against the run's own record: a metrics row moved to another job of
    the run is caught."""
    sql(honest, "UPDATE metrics SET job_hash=(SELECT job_hash FROM run_jobs WHERE probe='digits 5-9')"
                " WHERE probe='uniform noise'")
    res = cli("verify", honest)
    assert res.exit_code == 1 and "plain / uniform noise: its metrics name job" in res.output


def test_one_checkpoint_under_two_names_on_two_boards_verifies(tmp_path):
    from oodbench.leaderboard import submit, verify_entries

    lb = tmp_path / "lb.db"
    other = write(tmp_path, probes=[PROBES[1].replace("n: 200", "n: 100")], name="other.yaml")
    for name, suite in (("first name", write(tmp_path)), ("second name", other)):
        sub = submit(WEIGHTS, suite=load_suite(suite), name=name, arch="digits-net",
                     arch_options={"num_classes": 5}, leaderboard=lb)
        assert sub.added
    assert verify_entries(lb) == {1: [], 2: []}
    res = cli("leaderboard", "verify", "--leaderboard", lb)
    assert res.exit_code == 0, res.output


# --------------------------------------------------------------------------- 5. unfinished runs


class _Interrupted(Exception):
    pass


def test_an_interrupted_run_does_not_verify_and_show_says_so(honest, tmp_path):
    """A run stopped mid-way (here after its first shard, as by Ctrl-C) leaves a run record
    without ``finished``: it must not pass for a complete one."""
    from oodbench.pipeline.execute import LocalExecutor, SuiteData, Workspace
    from oodbench.pipeline.execute.forward import resolve_device

    class StopsAfterOneShard(LocalExecutor):
        def results(self):
            for outcome in super().results():
                yield outcome
                raise _Interrupted

    suite = load_suite(write(tmp_path, probes=PROBES + ["  - {name: more noise, dataset: uniform-noise, n: 77}"],
                             name="more.yaml"))
    ws = Workspace(suite, SuiteData(suite, suite.resolve_data_root()), resolve_device("cpu"), honest)
    with pytest.raises(_Interrupted):
        oodbench.run_suite(suite, output=honest, progress=False, executor=StopsAfterOneShard(ws))
    res = cli("verify", honest)
    assert res.exit_code == 1 and "did not finish" in res.output, res.output
    shown = cli("show", honest)
    assert shown.exit_code == 1 and "did not finish" in shown.output and "Empty DataFrame" not in shown.output
    res = cli("report", honest, "--format", "md")
    assert res.exit_code == 2 and "did not finish" in res.output


@pytest.mark.parametrize("tamper, message", [
    ("DELETE FROM metrics WHERE probe='uniform noise'", "plain / uniform noise: no metrics stored"),
    ("DELETE FROM metrics WHERE probe='digits 5-9' AND metric='fpr95'",
     "plain / digits 5-9 / fpr95: missing"),
    ("DELETE FROM metrics", "no metrics stored"),
])
def test_partial_metrics_do_not_verify(honest, tamper, message):
    sql(honest, tamper)
    res = cli("verify", honest)
    assert res.exit_code == 1 and message in res.output, res.output
    assert cli("show", honest).exit_code == 1


def test_a_dropped_table_is_a_clear_error(honest):
    sql(honest, "DROP TABLE metrics")
    for command in ("verify", "show"):
        res = cli(command, honest)
        assert res.exit_code == 2 and "table metrics is missing" in res.output, res.output
        assert "Traceback" not in res.output


def test_show_of_an_unknown_run(honest):
    res = cli("show", honest, "--run", 999)
    assert res.exit_code == 2 and "no run 999" in res.output and "runs: 1" in res.output


def test_a_skipped_probe_is_not_missing(honest, tmp_path):
    missing = PROBES + ["  - {name: mnist, dataset: mnist}"]
    suite = load_suite(write(tmp_path, probes=missing, name="missing.yaml"), download=False)
    oodbench.run_suite(suite, output=honest, data_root=tmp_path / "empty", skip_missing=True,
                       progress=False)
    res = cli("verify", honest)
    assert res.exit_code == 0, res.output
    assert cli("show", honest).exit_code == 0


# --------------------------------------------------------------------------- 6. locked, full, read-only


@pytest.fixture
def short_lock_wait(monkeypatch):
    import oodbench.pipeline.store

    monkeypatch.setattr(oodbench.pipeline.store, "LOCK_TIMEOUT_S", 0.2)


@pytest.mark.parametrize("command", ["show", "verify", "run"])
def test_a_locked_store_is_a_clear_error(honest, tmp_path, short_lock_wait, command):
    locker = sqlite3.connect(honest, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        args = ["run", write(tmp_path), "-o", honest, "-q"] if command == "run" else [command, honest]
        res = cli(*args)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert res.exit_code == 2, res.output
    assert "locked" in res.output and "not a results store" not in res.output
    assert "Traceback" not in res.output


def test_a_lock_released_in_time_is_waited_for(honest):
    locker = sqlite3.connect(honest, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")
    threading.Timer(0.3, lambda: (locker.execute("ROLLBACK"), locker.close())).start()
    start = time.monotonic()
    with ResultStore(honest) as store:
        store.start_run(suite_name="x", suite_hash="x", suite_json={}, environment={})
    assert time.monotonic() - start >= 0.25


def test_a_full_store_is_a_clear_error_and_keeps_stored_jobs(tmp_path):
    path = tmp_path / "r.db"
    small = {"logits": np.zeros((10, 5), np.float32)}
    with ResultStore(path) as store:
        store.put_job("first", kind="clean", model="m", probe=None, config={}, arrays=small, seconds=0)
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count={pages + 1}")  # the disk is full: no more room
        big = {"logits": np.ones((100_000, 5), np.float32)}
        with pytest.raises(StoreError, match="full"):
            store.put_job("second", kind="probe", model="m", probe="p", config={}, arrays=big, seconds=0)
    with ResultStore(path, readonly=True) as store:
        assert store.get_job("first") is not None and store.get_job("second") is None


def test_a_read_only_store_is_a_clear_error(tmp_path):
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        store._db.execute("PRAGMA query_only=1")
        with pytest.raises(StoreError, match="read-only"):
            store.start_run(suite_name="x", suite_hash="x", suite_json={}, environment={})


def _full(link: Path) -> Path:
    """``link`` made a symlink to /dev/full, where every write fails with ENOSPC (for real)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("/dev/full")
    return link


needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")


@needs_dev_full
def test_report_to_a_full_disk_is_a_clear_error(honest, tmp_path):
    res = cli("report", honest, "--format", "md", "--out", _full(tmp_path / "t.md"))
    assert res.exit_code == 2 and "No space left on device" in res.output, res.output
    assert "Traceback" not in res.output


@needs_dev_full
@pytest.mark.slow
def test_plot_to_a_full_disk_is_a_clear_error(honest, tmp_path):
    _full(tmp_path / "fig" / "roc-plain.png")
    res = cli("plot", honest, "--out", tmp_path / "fig", "--format", "png")
    assert res.exit_code == 2 and "No space left on device" in res.output, res.output
    assert "Traceback" not in res.output


@needs_dev_full
def test_leaderboard_render_to_a_full_disk_is_a_clear_error(tmp_path):
    from oodbench.leaderboard import Leaderboard

    Leaderboard(tmp_path / "lb.db").close()
    _full(tmp_path / "site" / "index.html")
    res = cli("leaderboard", "render", "--leaderboard", tmp_path / "lb.db", "--out", tmp_path / "site")
    assert res.exit_code == 2 and "No space left on device" in res.output, res.output
    assert "Traceback" not in res.output


@needs_dev_full
def test_a_state_file_on_a_full_disk_warns_instead_of_failing(tmp_path):
    from oodbench.attacks.autoattack import _save_state

    path = tmp_path / "state.npz"
    _full(path.with_name(path.name + ".tmp.npz"))
    with pytest.warns(UserWarning, match="cannot save the state file .*No space left on device"):
        assert _save_state(path, {"done": np.zeros(3, bool)}) is False
    assert not path.exists()
    assert _save_state(path, {"done": np.ones(3, bool)}) is True and path.is_file()


@needs_dev_full
@pytest.mark.slow
def test_autoattack_state_file_that_cannot_be_saved_only_warns(tmp_path):
    import pyautoattack  # noqa: F401  (a test dependency: never skipped)
    import torch

    from oodbench.attacks import AttackContext
    from oodbench.attacks.autoattack import state_file
    from oodbench.attacks.base import AttackSpec
    from oodbench.data import DataRequest, load_dataset
    from oodbench.models import load_model
    from oodbench.core.registry import attacks

    model = load_model({"name": "d", "adapter": "safetensors", "arch": "digits-net",
                        "arch_options": {"num_classes": 5}, "path": str(WEIGHTS)})
    digits = load_dataset("digits", DataRequest(root=tmp_path, options={"classes": [0, 1, 2, 3, 4]}))
    x, y = digits.images[:10], digits.labels[:10]
    attack = attacks.get("autoattack")()
    spec = attack.resolve(AttackSpec(name="autoattack", threat={"norm": "Linf", "eps": 0.1},
                                     options={"version": "custom", "attacks": ["apgd-ce"]}), "digits")
    path = state_file(tmp_path / "art", "d / aa", 0)
    _full(path.with_name(path.name + ".tmp.npz"))
    with torch.no_grad():
        in_logits = model(x).numpy()
    ctx = AttackContext(model=model, images=x, labels=y, spec=spec, in_logits=in_logits,
                        device=torch.device("cpu"), batch_size=64, artifact_dir=tmp_path / "art",
                        label="d / aa")
    with pytest.warns(UserWarning, match="state file"):
        out = attack.run(ctx)
    assert out["logits"].shape == (10, 5)


# --------------------------------------------------------------------------- 7. read-only commands


def _foreign(path: Path) -> Path:
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE notes (x TEXT)")
        db.execute("INSERT INTO notes VALUES ('mine')")
    db.close()
    return path


READ_ONLY = [("show",), ("verify",), ("report", "--format", "md"), ("plot", "--out", "figs")]


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: c[0])
@pytest.mark.parametrize("kind", ["foreign", "empty"])
def test_read_only_commands_never_write(tmp_path, command, kind):
    path = tmp_path / "file.db"
    if kind == "foreign":
        _foreign(path)
    else:
        path.write_bytes(b"")
    before = path.read_bytes()
    args = [a if a != "figs" else tmp_path / "figs" for a in command[1:]]
    res = cli(command[0], path, *args)
    assert res.exit_code == 2 and "not a results store" in res.output, res.output
    assert "Traceback" not in res.output
    assert path.read_bytes() == before


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: c[0])
def test_read_only_commands_leave_a_store_unchanged(honest, tmp_path, command):
    before = honest.read_bytes()
    args = [a if a != "figs" else tmp_path / "figs" for a in command[1:]]
    if command[0] != "plot":
        assert cli(command[0], honest, *args).exit_code == 0
    assert honest.read_bytes() == before
    with pytest.raises(StoreError, match="no such results store"):
        ResultStore(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()


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
