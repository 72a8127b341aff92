"""Plan → execute → store → score: the plan's table, shards, executors, resuming, progress."""

from __future__ import annotations

import io
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from oodbench.cli import main
from oodbench.pipeline.execute import LocalExecutor, RunProgress, ShardOutcome, Workspace, run_shard
from oodbench.pipeline.plan import JobKind, ShardState
from oodbench.pipeline.run import plan_suite, run_suite
from oodbench.pipeline.store import ResultStore, StoredShard, tile
from oodbench.pipeline.suite import load_suite

from conftest import SUITE_HEADER  # noqa: E402
from stored import assert_same_arrays  # noqa: E402

SHARDED = "name: sharded\nshard_size: {shard}\n" + SUITE_HEADER + """\
probes:
  - {{name: noise, dataset: uniform-noise, n: 70}}
  - {{name: adv. noise, dataset: smoothed-noise, n: 70, attack: {{name: adversarial-noise, steps: 12}}}}
  - {{name: worst-case, dataset: uniform-noise, n: 70, attack: {{name: worst-case, steps: 8}}}}
  - {{name: adv. samples, n: 50, attack: {{name: adversarial-samples, steps: 6}}}}
metrics: [test-error, mmc, auroc, fpr95]
"""


def _suite(write_suite, shard: int, name: str = "suite.yaml"):
    return load_suite(write_suite(SHARDED, name=name, shard=shard))


def _arrays(db: Path, result) -> dict[str, dict[str, np.ndarray]]:
    with ResultStore(db) as store:
        jobs = store.run_jobs(result.run_id)
        return {str(j.probe): store.get_job(j.job_hash) for j in jobs.itertuples()}


def _metrics(result) -> dict:
    return {(r.model, r.probe, r.metric): r.value for r in result.metrics.itertuples()}


def test_plan_names_every_job_with_costs_before_anything_runs(write_suite, tmp_path):
    suite = _suite(write_suite, shard=30)
    plan = plan_suite(suite, output=tmp_path / "r.db")
    assert not (tmp_path / "r.db").exists()  # planning creates no store
    kinds = [(j.kind, j.row, j.n_points, len(j.shards)) for j in plan.jobs]
    assert kinds == [(JobKind.CLEAN, "digits 0-4", 180, 6), (JobKind.PROBE, "noise", 70, 3),
                     (JobKind.ATTACK, "adv. noise", 70, 3), (JobKind.ATTACK, "worst-case", 70, 3),
                     (JobKind.ATTACK, "adv. samples", 50, 2)]
    by_row = {j.row: j for j in plan.jobs}
    # PGD: steps × restarts gradient evaluations per point; the attack depends on the clean pass.
    assert by_row["adv. noise"].cost.gradient == 70 * 12
    assert by_row["adv. samples"].cost.gradient == 50 * 6
    assert by_row["adv. noise"].depends_on == (by_row["digits 0-4"].key,)
    assert plan.remaining_cost.gradient == 70 * 12 + 70 * 8 + 50 * 6

    cli = CliRunner()
    out = cli.invoke(main, ["plan", str(suite.source), "-o", str(tmp_path / "r.db")])
    assert out.exit_code == 0, out.output
    assert "to run" in out.output and "1,700 gradient evaluations" in out.output
    run_suite(suite, output=tmp_path / "r.db", progress=False)
    again = cli.invoke(main, ["run", str(suite.source), "-o", str(tmp_path / "r.db"), "--dry-run"])
    assert again.exit_code == 0, again.output
    assert "5 jobs, 5 cached, 0 to run" in again.output
    assert "0 forward + 0 gradient evaluations" in again.output
    assert all(j.cached for j in plan_suite(suite, output=tmp_path / "r.db").jobs)


class _Killed(Exception):
    pass


class _DiesAfter(LocalExecutor):
    """The local executor, killed after ``n`` shards: what a SIGKILL leaves behind."""

    def __init__(self, workspace, progress=None, *, n: int):
        super().__init__(workspace, progress)
        self.n = n

    def results(self):
        for i, outcome in enumerate(super().results()):
            if i == self.n:
                raise _Killed
            yield outcome


def _executor_of(suite, db, factory):
    from oodbench.pipeline.execute import SuiteData
    from oodbench.pipeline.execute.forward import resolve_device

    ws = Workspace(suite, SuiteData(suite, suite.resolve_data_root()), resolve_device("cpu"), db)
    return factory(ws)


def test_sharded_unsharded_and_killed_then_resumed_runs_store_identical_arrays(write_suite, tmp_path):
    whole = run_suite(_suite(write_suite, shard=1000, name="a.yaml"), output=tmp_path / "whole.db",
                      progress=False)
    sharded_suite = _suite(write_suite, shard=30, name="b.yaml")
    sharded = run_suite(sharded_suite, output=tmp_path / "sharded.db", progress=False)
    assert_same_arrays(_arrays(tmp_path / "whole.db", whole), _arrays(tmp_path / "sharded.db", sharded))
    assert _metrics(whole) == _metrics(sharded)

    db = tmp_path / "killed.db"
    dying = _executor_of(sharded_suite, db, lambda ws: _DiesAfter(ws, n=9))
    with pytest.raises(_Killed):
        run_suite(sharded_suite, output=db, progress=False, executor=dying)
    with ResultStore(db) as store:
        stored = store._db.execute("SELECT count(*) FROM shards").fetchone()[0]
    assert stored == 9  # every finished shard was stored; only the one in flight is lost
    plan = plan_suite(sharded_suite, output=db)
    assert sum(s.state is ShardState.CACHED for j in plan.jobs for s in j.shards) == 9
    resumed = run_suite(sharded_suite, output=db, progress=False)
    assert_same_arrays(_arrays(tmp_path / "whole.db", whole), _arrays(db, resumed))
    assert _metrics(whole) == _metrics(resumed)


class _Reversed(LocalExecutor):
    """Runs whatever is queued newest first: results must not depend on the order."""

    def _next(self):
        return self._queue.pop()


class _Threads:
    """An executor that is not the local one: shards in a thread pool, finished in any order."""

    def __init__(self, workspace):
        self.ws, self.pool, self.futures = workspace, ThreadPoolExecutor(2), []

    def submit(self, task):
        self.futures.append((task, self.pool.submit(run_shard, self.ws, task)))

    def results(self):
        while self.futures:
            done = next((f for f in self.futures if f[1].done()), self.futures[-1])
            self.futures.remove(done)
            task, future = done
            yield ShardOutcome(task, future.result())

    def close(self):
        self.pool.shutdown()


@pytest.mark.parametrize("factory", [lambda ws: _Reversed(ws), _Threads], ids=["reversed", "threads"])
def test_any_executor_behind_the_protocol_gives_identical_results(write_suite, tmp_path, factory):
    suite = _suite(write_suite, shard=30)
    reference = run_suite(suite, output=tmp_path / "local.db", progress=False)
    other = run_suite(suite, output=tmp_path / "other.db", progress=False,
                      executor=_executor_of(suite, tmp_path / "other.db", factory))
    assert_same_arrays(_arrays(tmp_path / "local.db", reference), _arrays(tmp_path / "other.db", other))
    assert _metrics(reference) == _metrics(other)


def test_progress_without_a_terminal_is_one_line_per_finished_job(write_suite, tmp_path):
    suite = _suite(write_suite, shard=30)
    plan = plan_suite(suite, output=tmp_path / "r.db")
    stream = io.StringIO()
    bars = RunProgress(plan, stream=stream)
    assert bars.overall is None  # not a terminal: no bars
    from oodbench.pipeline.execute import RunContext, execute

    with ResultStore(tmp_path / "r.db") as store:
        ex = _executor_of(suite, tmp_path / "r.db", lambda ws: LocalExecutor(ws, bars))
        ctx = RunContext.of(suite, data_root=suite.resolve_data_root(), device=ex.workspace.device,
                            store_path=tmp_path / "r.db")
        execute(plan, store, ex, ctx, metrics=list(suite.metrics), progress=bars)
    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"done: plain / {j.row}" for j in plan.jobs]
    quiet = CliRunner().invoke(main, ["run", str(suite.source), "-o", str(tmp_path / "q.db"), "-q"])
    assert quiet.exit_code == 0 and "done:" not in quiet.output


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_count_attack_steps_as_they_happen(write_suite, tmp_path):
    """The plan's bar moves with every gradient evaluation, not once per job, and ends at the
    plan's estimate even when points stop early."""
    suite = _suite(write_suite, shard=1000)
    plan = plan_suite(suite, output=tmp_path / "r.db")
    bars = RunProgress(plan, stream=_Tty())
    seen: list[int] = []
    step = bars.step

    def spy(task, forward, gradient):
        step(task, forward, gradient)
        seen.append(bars.overall.n)

    bars.step = spy  # type: ignore[method-assign]
    from oodbench.pipeline.execute import RunContext, execute

    with ResultStore(tmp_path / "r.db") as store:
        ex = _executor_of(suite, tmp_path / "r.db", lambda ws: LocalExecutor(ws, bars))
        ctx = RunContext.of(suite, data_root=suite.resolve_data_root(), device=ex.workspace.device,
                            store_path=tmp_path / "r.db")
        total = bars.overall.total
        execute(plan, store, ex, ctx, metrics=list(suite.metrics), progress=bars)
    assert len(seen) > 12 + 8 + 6  # at least one update per attack step
    assert seen == sorted(seen) and seen[-1] <= total
    assert total == plan.remaining_cost.work


def test_tile_prefers_stored_shards_of_any_size_and_reports_gaps():
    shards = [StoredShard(0, 30), StoredShard(0, 50), StoredShard(50, 60), StoredShard(55, 70),
              StoredShard(80, 100)]
    used, gaps = tile(shards, 100)
    assert [(s.start, s.stop) for s in used] == [(0, 50), (50, 60), (80, 100)]
    assert gaps == [(60, 80)]
    assert tile([], 10) == ([], [(0, 10)])


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, suite_name TEXT NOT NULL,
    suite_hash TEXT NOT NULL, suite_json TEXT NOT NULL, environment_json TEXT NOT NULL,
    started TEXT NOT NULL, finished TEXT);
CREATE TABLE jobs (hash TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, probe TEXT,
    config_json TEXT NOT NULL, created TEXT NOT NULL, seconds REAL NOT NULL);
CREATE TABLE arrays (job_hash TEXT NOT NULL REFERENCES jobs(hash) ON DELETE CASCADE,
    key TEXT NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL,
    sha256 TEXT NOT NULL, PRIMARY KEY (job_hash, key));
CREATE TABLE run_jobs (run_id INTEGER NOT NULL REFERENCES runs(id), job_hash TEXT NOT NULL,
    model TEXT NOT NULL, probe TEXT, cached INTEGER NOT NULL, PRIMARY KEY (run_id, job_hash));
CREATE TABLE metrics (run_id INTEGER NOT NULL REFERENCES runs(id), model TEXT NOT NULL,
    probe TEXT NOT NULL, metric TEXT NOT NULL, value REAL, job_hash TEXT,
    PRIMARY KEY (run_id, model, probe, metric));
INSERT INTO meta VALUES ('schema_version', '1');
"""


def test_a_schema_1_store_is_upgraded_with_its_jobs_intact(tmp_path):
    import hashlib
    import json

    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(V1_SCHEMA)
    logits = np.arange(12, dtype=np.float32).reshape(4, 3)
    rows = [("good", logits), ("damaged", logits)]
    for job, arr in rows:
        con.execute("INSERT INTO jobs VALUES (?,?,?,?,?,?,?)",
                    (job, "attack", "m", "p", json.dumps({"stop_above": 0.5}), "t", 1.0))
        digest = hashlib.sha256(arr.tobytes()).hexdigest() if job == "good" else "0" * 64
        con.execute("INSERT INTO arrays VALUES (?,?,?,?,?,?)",
                    (job, "logits", arr.dtype.str, json.dumps(list(arr.shape)), arr.tobytes(), digest))
    con.commit()
    con.close()
    with ResultStore(db) as store:
        np.testing.assert_array_equal(store.get_job("good")["logits"], logits)
        assert store.shards("good") == [StoredShard(0, 4, 0.5)]
        assert store.get_job("damaged") is None and store.job_points("damaged") is None


KILL_SUITE = "name: kill\nshard_size: 15\n" + SUITE_HEADER + """\
probes:
  - {{name: adv. noise, dataset: smoothed-noise, n: 150, attack: {{name: adversarial-noise, steps: 60}}}}
metrics: [mmc, auroc]
"""


@pytest.mark.slow
def test_sigkill_mid_run_loses_only_the_shards_in_flight(write_suite, tmp_path):
    """A real ``kill -9`` of ``oodbench run`` while it attacks: every stored shard is whole, the
    rerun computes only the rest, and the arrays equal an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    suite_file = write_suite(KILL_SUITE, name="kill.yaml")
    db = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, "-m", "oodbench.cli", "run", str(suite_file), "-o",
                             str(db), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stored, deadline = 0, time.time() + 300
    while stored < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1)
            stored = con.execute("SELECT count(*) FROM shards s JOIN jobs j ON s.job_hash=j.hash "
                                 "WHERE j.kind='attack'").fetchone()[0]
            con.close()
        except sqlite3.Error:
            continue
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    suite = load_suite(suite_file)
    with ResultStore(db) as store:
        attack = next(j for j in plan_suite(suite, output=db).jobs if j.kind is JobKind.ATTACK)
        shards = store.shards(attack.key)
        assert 4 <= len(shards) < 10
        for s in shards:  # each stored shard is complete: all its arrays, of its length
            arrays = store.get_shard(attack.key, s.start, s.stop)
            assert arrays is not None and len(arrays["logits"]) == s.stop - s.start == 15
    resumed = run_suite(suite, output=db, progress=False)
    assert resumed.computed == ["plain / adv. noise"]
    fresh = run_suite(suite, output=tmp_path / "fresh.db", progress=False)
    assert_same_arrays(_arrays(db, resumed), _arrays(tmp_path / "fresh.db", fresh))


def test_read_only_commands_name_the_upgrade_of_a_schema_1_store(tmp_path):
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(V1_SCHEMA)
    con.close()
    before = db.read_bytes()
    cli = CliRunner()
    shown = cli.invoke(main, ["show", str(db)])
    assert shown.exit_code == 2 and f"oodbench upgrade {db}" in shown.output
    assert db.read_bytes() == before  # a read-only command changed nothing
    up = cli.invoke(main, ["upgrade", str(db)])
    assert up.exit_code == 0 and "upgraded" in up.output, up.output
    assert "already current" in cli.invoke(main, ["upgrade", str(db)]).output
