"""The results store: one SQLite file holding every computed array, keyed by content hash.

Why SQLite: it is embedded (nothing to run), transactional (a crash mid-job loses only that job)
and one file a user can copy, attach to a paper or submit. Per-sample outputs (logits and labels)
are stored, not just metrics, so any metric — including ones added later — is recomputed from the
store without touching a model again. Each array carries its sha256; an entry that fails the check
is reported and recomputed, never silently used.

Schema (version in ``meta.schema_version``):

- ``runs``: one row per ``oodbench run`` (suite name, suite content hash, suite JSON, versions,
  device, start/end times).
- ``jobs``: one row per unit of computation (a model's clean pass, a model × probe pass), keyed by
  the sha256 of the canonical JSON of everything that determines its output.
- ``arrays``: the per-sample arrays of a job (``logits`` (N, K) float32, ``labels`` (N,) int64).
- ``run_jobs``: which jobs a run used and whether they came from the cache.
- ``metrics``: the metric values of a run, one row per (model, probe, metric).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pandas as pd

from oodbench.errors import OodbenchError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    suite_name TEXT NOT NULL, suite_hash TEXT NOT NULL, suite_json TEXT NOT NULL,
    environment_json TEXT NOT NULL, started TEXT NOT NULL, finished TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    hash TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, probe TEXT,
    config_json TEXT NOT NULL, created TEXT NOT NULL, seconds REAL NOT NULL);
CREATE TABLE IF NOT EXISTS arrays (
    job_hash TEXT NOT NULL REFERENCES jobs(hash) ON DELETE CASCADE, key TEXT NOT NULL,
    dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (job_hash, key));
CREATE TABLE IF NOT EXISTS run_jobs (
    run_id INTEGER NOT NULL REFERENCES runs(id), job_hash TEXT NOT NULL,
    model TEXT NOT NULL, probe TEXT, cached INTEGER NOT NULL, PRIMARY KEY (run_id, job_hash));
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id), model TEXT NOT NULL, probe TEXT NOT NULL,
    metric TEXT NOT NULL, value REAL, job_hash TEXT,
    PRIMARY KEY (run_id, model, probe, metric));
"""


def canonical_hash(payload: Any) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace): the cache key of a computation."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StoreError(OodbenchError, RuntimeError):
    """A results file that cannot be used: not an oodbench store, damaged, or of another schema."""


class CorruptEntryWarning(UserWarning):
    """A stored array failed its checksum; the job is dropped and will be recomputed."""


def open_versioned_db(path: Path, schema: str, version: int, what: str,
                      error: type[Exception] = StoreError) -> sqlite3.Connection:
    """Open (or create) one of oodbench's SQLite files: apply ``schema`` (which must define the
    ``meta`` table), record ``version`` in a new file, and refuse a file of another kind or
    version with ``error`` naming it, so an old file is never misread.

    A file that is not SQLite (garbage, a zeroed header), a truncated copy (SQLite finds its
    header promising more pages than the file holds) or one whose recorded version is not an
    integer is refused here with ``error`` — by default a :class:`StoreError`, which the CLI
    prints as one message — rather than failing later in some query with a traceback.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA foreign_keys = ON")
        db.executescript(schema)
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.DatabaseError as err:
        db.close()
        raise error(f"{path}: not a {what} ({err})") from None
    if row is None:
        with db:
            db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
        return db
    try:
        stored = int(row[0])
    except (TypeError, ValueError):
        db.close()
        raise error(f"{path}: {what} schema version {row[0]!r} is not an integer; the file is "
                    "damaged or was not written by oodbench") from None
    if stored != version:
        db.close()
        raise error(f"{path}: {what} schema {row[0]}, this oodbench reads {version}; "
                    "use a new file")
    return db


class ResultStore:
    """A results store on disk. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db = open_versioned_db(self.path, _SCHEMA, SCHEMA_VERSION, "results store")

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._db:
            yield self._db

    # ------------------------------------------------------------------ jobs and arrays

    def put_job(self, job_hash: str, *, kind: str, model: str, probe: Optional[str],
                config: dict[str, Any], arrays: dict[str, np.ndarray], seconds: float) -> None:
        """Store a finished job and its arrays atomically (all or nothing)."""
        with self._transaction() as db:
            db.execute("DELETE FROM jobs WHERE hash=?", (job_hash,))
            db.execute("INSERT INTO jobs VALUES (?,?,?,?,?,?,?)",
                       (job_hash, kind, model, probe, json.dumps(config, sort_keys=True, default=str),
                        _now(), seconds))
            for key, arr in arrays.items():
                arr = np.require(arr, requirements="C")  # keeps 0-d arrays 0-d
                data = arr.tobytes()
                db.execute("INSERT INTO arrays VALUES (?,?,?,?,?,?)",
                           (job_hash, key, arr.dtype.str, json.dumps(list(arr.shape)), data,
                            hashlib.sha256(data).hexdigest()))

    def get_job(self, job_hash: str) -> Optional[dict[str, np.ndarray]]:
        """The arrays of a stored job, or None if absent or corrupt (then it is deleted)."""
        rows = self._db.execute("SELECT key, dtype, shape, data, sha256 FROM arrays WHERE job_hash=?",
                                (job_hash,)).fetchall()
        if not rows:
            return None
        out: dict[str, np.ndarray] = {}
        for key, dtype, shape, data, digest in rows:
            if hashlib.sha256(data).hexdigest() != digest:
                warnings.warn(f"{self.path}: job {job_hash[:12]} array {key!r} fails its checksum "
                              "(file modified or damaged); recomputing it", CorruptEntryWarning)
                with self._transaction() as db:
                    db.execute("DELETE FROM jobs WHERE hash=?", (job_hash,))
                return None
            out[key] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(json.loads(shape)).copy()
        return out

    def has_job(self, job_hash: str) -> bool:
        return self._db.execute("SELECT 1 FROM jobs WHERE hash=?", (job_hash,)).fetchone() is not None

    # ------------------------------------------------------------------ runs and metrics

    def start_run(self, *, suite_name: str, suite_hash: str, suite_json: dict[str, Any],
                  environment: dict[str, Any]) -> int:
        with self._transaction() as db:
            cur = db.execute("INSERT INTO runs (suite_name, suite_hash, suite_json, environment_json, started)"
                             " VALUES (?,?,?,?,?)",
                             (suite_name, suite_hash, json.dumps(suite_json, sort_keys=True),
                              json.dumps(environment, sort_keys=True), _now()))
            return int(cur.lastrowid)

    def record_job_use(self, run_id: int, job_hash: str, *, model: str, probe: Optional[str],
                       cached: bool) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO run_jobs VALUES (?,?,?,?,?)",
                       (run_id, job_hash, model, probe, int(cached)))

    def put_metrics(self, run_id: int, rows: list[tuple[str, str, str, float, Optional[str]]]) -> None:
        """rows: (model, probe, metric, value, job_hash)."""
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?,?)",
                           [(run_id, *r) for r in rows])

    def finish_run(self, run_id: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE runs SET finished=? WHERE id=?", (_now(), run_id))

    def latest_run_id(self, suite_name: Optional[str] = None) -> Optional[int]:
        query = "SELECT max(id) FROM runs" + (" WHERE suite_name=?" if suite_name else "")
        row = self._db.execute(query, (suite_name,) if suite_name else ()).fetchone()
        return None if row[0] is None else int(row[0])

    def metrics_frame(self, run_id: Optional[int] = None) -> pd.DataFrame:
        """Long-format metrics (model, probe, metric, value) of a run (default: the latest)."""
        run_id = self.latest_run_id() if run_id is None else run_id
        return pd.read_sql_query("SELECT model, probe, metric, value FROM metrics WHERE run_id=?"
                                 " ORDER BY rowid", self._db, params=(run_id,))

    def run_jobs(self, run_id: int) -> pd.DataFrame:
        return pd.read_sql_query("SELECT job_hash, model, probe, cached FROM run_jobs WHERE run_id=?",
                                 self._db, params=(run_id,))

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT id, suite_name, suite_hash, started, finished FROM runs",
                                 self._db)
