"""Issue 20 item 2: a schema upgrade is one transaction — it completes, or the file is exactly
as before and a later upgrade can still succeed — and a failed upgrade names its reason."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from oodbench.cli import main
from oodbench.pipeline.store import SCHEMA_VERSION, ResultStore, StoreError, migrate

from test_integrity import sql, write

METRIC_V2 = ("CREATE TABLE metrics (run_id INTEGER NOT NULL REFERENCES runs(id), model TEXT "
             "NOT NULL, probe TEXT NOT NULL, metric TEXT NOT NULL, value REAL, job_hash TEXT, "
             "PRIMARY KEY (run_id, model, probe, metric))")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _two_detector_store(path: Path) -> None:
    """A schema-3 store holding the same metrics for two detectors."""
    with ResultStore(path) as store:
        run = store.start_run(suite_name="s", suite_hash="x", suite_json={}, environment={})
        store.put_metrics(run, [("m", det, "noise", "auroc", value, "h1", None)
                                for det, value in (("msp", 0.9), ("energy", 0.8))])
        store.finish_run(run)


def _table_names(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()


@pytest.mark.parametrize("command", ["upgrade", "run"])
def test_a_mislabelled_schema_3_store_is_refused_and_left_unchanged(tmp_path, command):
    """The reported case: schema_version set back to 2 on a schema-3 store with two detectors.
    Upgrading it would merge the detectors' rows (the UNIQUE failure seen before) — it is
    refused before anything changes, naming why, and every retry says the same."""
    path = tmp_path / "r.db"
    _two_detector_store(path)
    sql(path, "UPDATE meta SET value='2' WHERE key='schema_version'")
    before = _digest(path)
    args = (["upgrade", str(path)] if command == "upgrade" else
            ["run", str(write(tmp_path)), "-o", str(path), "-q"])
    for _ in range(2):  # retried: the same clear refusal, never "metrics_v2 already exists"
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert res.output.startswith("error: ") and "says results store schema 2" in res.output
        assert "detector column of schema 3" in res.output and "unchanged" in res.output
        assert _digest(path) == before
    assert "metrics_v2" not in _table_names(path)


def test_a_failing_step_rolls_back_every_earlier_step(tmp_path):
    """A schema-1 store whose first step (1 → 2) runs and whose second (2 → 3) is refused:
    nothing of the first step stays; the file is byte for byte what it was."""
    from test_plan_execute import V1_SCHEMA  # noqa: E402  (tests/ is on sys.path)

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA.replace(
        "PRIMARY KEY (run_id, model, probe, metric)",
        "detector TEXT NOT NULL DEFAULT 'msp', PRIMARY KEY (run_id, model, detector, probe, metric)"))
    db.close()
    before, tables = _digest(path), _table_names(path)
    with pytest.raises(StoreError, match="says results store schema 2, but its metrics table"):
        migrate(path)
    assert _digest(path) == before and _table_names(path) == tables


def test_a_real_schema_2_store_upgrades_after_a_refused_attempt(tmp_path):
    """Retry works: the same file, relabelled correctly, upgrades in one go."""
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        run = store.start_run(suite_name="s", suite_hash="x", suite_json={}, environment={})
        store.put_metrics(run, [("m", "noise", "auroc", 0.9, "h1")])
        store.finish_run(run)
    sql(path, "ALTER TABLE metrics RENAME TO m3", METRIC_V2,
         "INSERT INTO metrics SELECT run_id, model, probe, metric, value, job_hash FROM m3",
         "DROP TABLE m3", "UPDATE meta SET value='1' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="says results store schema 1, but it already has the shards"):
        migrate(path)
    sql(path, "UPDATE meta SET value='2' WHERE key='schema_version'")
    res = CliRunner().invoke(main, ["upgrade", str(path)])
    assert res.exit_code == 0 and "upgraded to the current schema" in res.output, res.output
    with ResultStore(path, readonly=True) as store:
        rows = store.metric_rows(store.latest_run_id())
    assert [(r.detector, r.metric, r.value) for r in rows] == [("msp", "auroc", 0.9)]
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    db.close()
