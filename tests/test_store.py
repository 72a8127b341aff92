import sqlite3

import numpy as np
import pytest

from oodbench.pipeline.store import SCHEMA_VERSION, CorruptEntryWarning, ResultStore, canonical_hash


def test_canonical_hash_ignores_key_order():
    assert canonical_hash({"a": 1, "b": [1, 2]}) == canonical_hash({"b": [1, 2], "a": 1})
    assert canonical_hash({"a": 1}) != canonical_hash({"a": 2})


def test_arrays_round_trip_exactly(tmp_path):
    logits = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    labels = np.arange(7, dtype=np.int64)
    with ResultStore(tmp_path / "r.db") as store:
        store.put_job("h", kind="clean", model="m", probe=None, config={"x": 1},
                      arrays={"logits": logits, "labels": labels}, seconds=0.1)
    with ResultStore(tmp_path / "r.db") as store:
        out = store.get_job("h")
    assert out is not None
    np.testing.assert_array_equal(out["logits"], logits)
    np.testing.assert_array_equal(out["labels"], labels)
    assert out["logits"].dtype == np.float32 and out["labels"].dtype == np.int64


def test_tampered_array_is_flagged_and_dropped(tmp_path):
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        store.put_job("h", kind="clean", model="m", probe=None, config={},
                      arrays={"logits": np.zeros((2, 2), np.float32)}, seconds=0.0)
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE arrays SET data=? WHERE job_hash='h'", (np.ones((2, 2), np.float32).tobytes(),))
    db.close()
    with ResultStore(path) as store:
        with pytest.warns(CorruptEntryWarning, match="fails its checksum"):
            assert store.get_job("h") is None
        assert not store.has_job("h")


def test_metrics_of_a_run(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        run = store.start_run(suite_name="s", suite_hash="x", suite_json={}, environment={})
        store.put_metrics(run, [("m", "noise", "auroc", 0.9, None), ("m", "noise", "fpr95", 0.1, None)])
        store.finish_run(run)
        frame = store.metrics_frame()
    assert frame.to_dict("records") == [
        {"model": "m", "probe": "noise", "metric": "auroc", "value": 0.9, "detector": "msp"},
        {"model": "m", "probe": "noise", "metric": "fpr95", "value": 0.1, "detector": "msp"},
    ]


def test_zero_dimensional_arrays_keep_their_shape(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        store.put_job("h", kind="attack", model="m", probe="p", config={},
                      arrays={"count": np.array(12345), "flags": np.array([True, False])}, seconds=0)
        out = store.get_job("h")
    assert out["count"].shape == () and int(out["count"]) == 12345
    assert out["flags"].dtype == np.bool_ and out["flags"].tolist() == [True, False]


def test_foreign_or_newer_files_are_refused(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RuntimeError, match="not a results store"):
        ResultStore(junk)
    path = tmp_path / "r.db"
    ResultStore(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.close()
    with pytest.raises(RuntimeError, match=f"results store schema 99, this oodbench reads {SCHEMA_VERSION}"):
        ResultStore(path)


def test_a_schema_2_store_is_upgraded_with_every_metric_as_msp(tmp_path):
    """Schema 2 had no detector column; its metrics are msp's and keep their values and jobs."""
    import sqlite3

    path = tmp_path / "old.db"
    with ResultStore(path) as store:
        run = store.start_run(suite_name="s", suite_hash="x", suite_json={}, environment={})
        store.put_metrics(run, [("m", "noise", "auroc", 0.9, "h1"), ("m", "noise", "fpr95", 0.1, "h1")])
        store.finish_run(run)
    with sqlite3.connect(path) as db:  # the schema-2 layout of the metrics table
        db.execute("ALTER TABLE metrics RENAME TO m3")
        db.execute("CREATE TABLE metrics (run_id INTEGER NOT NULL REFERENCES runs(id), model TEXT "
                   "NOT NULL, probe TEXT NOT NULL, metric TEXT NOT NULL, value REAL, job_hash TEXT,"
                   " PRIMARY KEY (run_id, model, probe, metric))")
        db.execute("INSERT INTO metrics SELECT run_id, model, probe, metric, value, job_hash FROM m3")
        db.execute("DROP TABLE m3")
        db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    with pytest.raises(RuntimeError, match="oodbench upgrade"):
        ResultStore(path, readonly=True)
    with ResultStore(path) as store:
        rows = store.metric_rows(store.latest_run_id())
    assert [(r.model, r.detector, r.probe, r.metric, r.value, r.job_hash, r.recipe) for r in rows] == [
        ("m", "msp", "noise", "auroc", 0.9, "h1", None), ("m", "msp", "noise", "fpr95", 0.1, "h1", None)]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("3",)
