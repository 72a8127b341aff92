"""The results store: one SQLite file holding every computed array, keyed by content hash.

Why SQLite: it is embedded (nothing to run), transactional (a crash mid-job loses only that job)
and one file a user can copy, attach to a paper or submit. Per-sample outputs (logits and labels)
are stored, not just metrics, so any metric — including ones added later — is recomputed from the
store without touching a model again. Each array carries a sha256 over everything that determines
it (:func:`array_checksum`: its key, dtype, shape and bytes) and each job the list of its array
keys; an entry that fails either check is reported and recomputed, never silently used.

A job is content-addressed: its display names (model, probe) belong to the runs that used it
(``run_jobs``), not to the job — the same checkpoint may be called differently in two suites, or
twice in one. ``jobs.model`` / ``jobs.probe`` only record the names it was first computed under.

Commands that only read (``show``, ``verify``, ``report``, ``plot``) open the file read-only
(``ResultStore(path, readonly=True)``): they never create a store or change a file. Every SQLite
failure that a user can cause (a store locked by another process — waited for up to
:data:`LOCK_TIMEOUT_S` —, a full disk, a read-only file, a file that is not a store) is a
:class:`StoreError` with a message that says what happened and what to do.

Schema (version in ``meta.schema_version``):

- ``runs``: one row per ``oodbench run`` (suite name, suite content hash, suite JSON, versions,
  device, start/end times; ``finished`` is empty for a run that was interrupted or failed;
  ``skipped_json``: probes skipped for missing data).
- ``jobs``: one row per unit of computation (a model's clean pass, a model × probe pass), keyed by
  the sha256 of the canonical JSON of everything that determines its output; ``array_keys``:
  the JSON list of its arrays.
- ``arrays``: the per-sample arrays of a job (``logits`` (N, K) float32, ``labels`` (N,) int64).
- ``run_jobs``: which jobs a run used, under which model and probe name, and whether they came
  from the cache; unique per (run, job, model, probe).
- ``metrics``: the metric values of a run, one row per (model, probe, metric), with the job.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence
from urllib.parse import quote

import numpy as np
import pandas as pd

SCHEMA_VERSION = 2
"""2: checksums cover key, dtype and shape; ``jobs.array_keys``; ``runs.skipped_json``;
``run_jobs`` keyed by name too. Version-1 files are refused (re-run the suite into a new file)."""

LOCK_TIMEOUT_S = 30.0
"""How long to wait for another process's lock on a store before giving up with a clear error."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    suite_name TEXT NOT NULL, suite_hash TEXT NOT NULL, suite_json TEXT NOT NULL,
    environment_json TEXT NOT NULL, started TEXT NOT NULL, finished TEXT, skipped_json TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    hash TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, probe TEXT,
    config_json TEXT NOT NULL, created TEXT NOT NULL, seconds REAL NOT NULL,
    array_keys TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS arrays (
    job_hash TEXT NOT NULL REFERENCES jobs(hash) ON DELETE CASCADE, key TEXT NOT NULL,
    dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (job_hash, key));
CREATE TABLE IF NOT EXISTS run_jobs (
    run_id INTEGER NOT NULL REFERENCES runs(id), job_hash TEXT NOT NULL,
    model TEXT NOT NULL, probe TEXT, cached INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS run_jobs_key ON run_jobs (run_id, job_hash, model, ifnull(probe, ''));
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id), model TEXT NOT NULL, probe TEXT NOT NULL,
    metric TEXT NOT NULL, value REAL, job_hash TEXT,
    PRIMARY KEY (run_id, model, probe, metric));
"""


def canonical_hash(payload: Any) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace): the cache key of a computation."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def array_checksum(key: str, dtype: str, shape: str, data: bytes) -> str:
    """The sha256 stored with an array: over its key, dtype and shape (as stored, text) and its
    bytes — everything that determines the array a reader gets back, so an edit of any one field
    is caught. The one checksum function of the store and of the report-side checks."""
    digest = hashlib.sha256(json.dumps([key, dtype, shape]).encode())
    digest.update(b"\0")
    digest.update(data)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class CorruptEntryWarning(UserWarning):
    """A stored array failed its checksum; the job is dropped and will be recomputed."""


class StoreError(RuntimeError):
    """A results store (or another oodbench SQLite file) that cannot be used as asked: missing,
    not such a file, of another schema version, locked, on a full disk or read-only."""


def _tables(schema: str) -> list[str]:
    return re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", schema)


@contextmanager
def storage_errors(path: Path, what: str, error: type[Exception] = StoreError) -> Iterator[None]:
    """Turn the SQLite failures a user can cause into ``error`` with a message that names the
    file, what happened and what to do (a traceback says none of that)."""
    try:
        yield
    except sqlite3.DatabaseError as err:
        text = str(err)
        if "locked" in text or "busy" in text:
            msg = (f"{path}: the {what} is locked by another process (waited {LOCK_TIMEOUT_S:g} s); "
                   "run again once that process has finished")
        elif "full" in text:
            msg = (f"{path}: the disk is full (SQLite: {text}); nothing of the operation that failed "
                   "was stored, everything stored before is kept. Free space and run again "
                   "(stored jobs are reused)")
        elif "readonly" in text or "read-only" in text:
            msg = (f"{path}: the {what} is read-only (SQLite: {text}); make it writable or "
                   "write to another file")
        elif "not a database" in text or "no such table" in text or "no such column" in text:
            msg = f"{path}: not a {what} ({text})"
        else:
            msg = f"{path}: cannot use the {what} (SQLite: {text})"
        raise error(msg) from None


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=LOCK_TIMEOUT_S)
    return sqlite3.connect(path, timeout=LOCK_TIMEOUT_S)


def open_versioned_db(path: Path, schema: str, version: int, what: str,
                      error: type[Exception] = StoreError, *,
                      readonly: bool = False) -> sqlite3.Connection:
    """Open one of oodbench's SQLite files and refuse a file of another kind or version with
    ``error`` naming it, so an old or foreign file is never misread — nor written: the schema
    (which must define the ``meta`` table) is applied only to a file that is empty or already
    of this kind and version. ``readonly``: open with ``mode=ro``, never create the file, and
    require every table of ``schema`` (a store missing one is damaged)."""
    path = Path(path)
    if readonly and not path.is_file():
        raise error(f"{path}: no such {what}")
    if not readonly:
        path.parent.mkdir(parents=True, exist_ok=True)
    with storage_errors(path, what, error):
        db = _connect(path, readonly)
    try:
        with storage_errors(path, what, error):
            present = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if present and "meta" not in present or readonly and not present:
                raise error(f"{path}: not a {what} (an SQLite file without oodbench's tables)"
                            if present else f"{path}: not a {what} (an empty file)")
            row = (db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                   if "meta" in present else None)
            if row is not None and row[0] != str(version):
                raise error(f"{path}: {what} schema {row[0]}, this oodbench reads {version}; "
                            "use a new file (or run the suite again into one)")
            if readonly:
                missing = [t for t in _tables(schema) if t not in present]
                if row is None or missing:
                    raise error(f"{path}: damaged {what}: "
                                + (f"table {', '.join(missing)} is missing" if missing
                                   else "no schema version"))
            else:
                db.execute("PRAGMA foreign_keys = ON")
                db.executescript(schema)
                if row is None:
                    with db:
                        db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
    except BaseException:
        db.close()
        raise
    return db


@dataclass(frozen=True)
class RunRecord:
    """One stored run: its suite (as it was run), whether it finished, what it skipped."""

    id: int
    suite_name: str
    suite: dict[str, Any]
    started: str
    finished: Optional[str]
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MetricRow:
    """One stored metric value and the job it was computed from."""

    model: str
    probe: str
    metric: str
    value: Optional[float]
    job_hash: Optional[str]


@dataclass(frozen=True)
class JobRecord:
    """A stored job without its arrays: kind, the names it was first computed under, config."""

    hash: str
    kind: str
    model: str
    probe: Optional[str]
    config: dict[str, Any]


def _json(text: Optional[str], default: Any) -> Any:
    try:
        value = json.loads(text) if text is not None else default
    except json.JSONDecodeError:
        return default
    return value if isinstance(value, type(default)) else default


class ResultStore:
    """A results store on disk. Use as a context manager or call :meth:`close`.

    ``readonly=True`` opens an existing store with SQLite's ``mode=ro``: nothing is created or
    written (a corrupt job is reported, not deleted); a missing or foreign file is a
    :class:`StoreError`.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._db = open_versioned_db(self.path, _SCHEMA, SCHEMA_VERSION, "results store",
                                     StoreError, readonly=readonly)

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing writes; a locked, full or read-only file is a :class:`StoreError`."""
        with storage_errors(self.path, "results store"):
            with self._db:
                yield self._db

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with storage_errors(self.path, "results store"):
            return self._db.execute(sql, params).fetchall()

    # ------------------------------------------------------------------ jobs and arrays

    def put_job(self, job_hash: str, *, kind: str, model: str, probe: Optional[str],
                config: dict[str, Any], arrays: dict[str, np.ndarray], seconds: float) -> None:
        """Store a finished job and its arrays atomically (all or nothing)."""
        with self._transaction() as db:
            db.execute("DELETE FROM jobs WHERE hash=?", (job_hash,))
            db.execute("DELETE FROM arrays WHERE job_hash=?", (job_hash,))  # orphans of an edit
            db.execute("INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?)",
                       (job_hash, kind, model, probe, json.dumps(config, sort_keys=True, default=str),
                        _now(), seconds, json.dumps(sorted(arrays))))
            for key, arr in arrays.items():
                arr = np.require(arr, requirements="C")  # keeps 0-d arrays 0-d
                data, dtype, shape = arr.tobytes(), arr.dtype.str, json.dumps(list(arr.shape))
                db.execute("INSERT INTO arrays VALUES (?,?,?,?,?,?)",
                           (job_hash, key, dtype, shape, data, array_checksum(key, dtype, shape, data)))

    def array_problems(self, job_hash: str) -> list[str]:
        """What is wrong with the stored arrays of a job (empty: all there, every checksum
        matches). Reads only; the check :meth:`get_job` and the report-side verification share."""
        return self._checked_arrays(job_hash)[1]

    def _checked_arrays(self, job_hash: str) -> tuple[dict[str, np.ndarray], list[str]]:
        rows = self._rows("SELECT key, dtype, shape, data, sha256 FROM arrays WHERE job_hash=? "
                          "ORDER BY key", (job_hash,))
        keys = self._rows("SELECT array_keys FROM jobs WHERE hash=?", (job_hash,))
        expected = sorted(_json(keys[0][0], [])) if keys else None
        problems: list[str] = []
        out: dict[str, np.ndarray] = {}
        for key, dtype, shape, data, digest in rows:
            if array_checksum(key, dtype, shape, data) != digest:
                problems.append(f"array {key!r} fails its checksum (its data, dtype, shape or key "
                                "was modified or damaged)")
                continue
            out[key] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(json.loads(shape)).copy()
        if expected is not None and not problems and sorted(out) != expected:
            problems.append(f"arrays {sorted(out)} stored, the job lists {expected}")
        if not rows:
            problems.append("no stored arrays")
        return out, problems

    def get_job(self, job_hash: str) -> Optional[dict[str, np.ndarray]]:
        """The arrays of a stored job, or None if absent or corrupt (then it is reported and,
        unless the store is read-only, deleted so that the next run recomputes it)."""
        if not self.has_job(job_hash):
            return None
        arrays, problems = self._checked_arrays(job_hash)
        if problems:
            warnings.warn(f"{self.path}: job {job_hash[:12]}: {'; '.join(problems)}; "
                          + ("not used" if self.readonly else "recomputing it"), CorruptEntryWarning)
            if not self.readonly:
                with self._transaction() as db:
                    db.execute("DELETE FROM jobs WHERE hash=?", (job_hash,))
                    db.execute("DELETE FROM arrays WHERE job_hash=?", (job_hash,))
            return None
        return arrays

    def has_job(self, job_hash: str) -> bool:
        return bool(self._rows("SELECT 1 FROM jobs WHERE hash=?", (job_hash,)))

    def job_record(self, job_hash: str) -> Optional[JobRecord]:
        """The stored job without its arrays, or None if there is none."""
        rows = self._rows("SELECT hash, kind, model, probe, config_json FROM jobs WHERE hash=?",
                          (job_hash,))
        if not rows:
            return None
        h, kind, model, probe, config = rows[0]
        return JobRecord(h, kind, model, probe, _json(config, {}))

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
        """Record that run ``run_id`` used a job under these names (once per name pair)."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO run_jobs VALUES (?,?,?,?,?)",
                       (run_id, job_hash, model, probe, int(cached)))

    def put_metrics(self, run_id: int, rows: list[tuple[str, str, str, float, Optional[str]]]) -> None:
        """rows: (model, probe, metric, value, job_hash)."""
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?,?)",
                           [(run_id, *r) for r in rows])

    def finish_run(self, run_id: int, skipped: Sequence[str] = ()) -> None:
        """Mark a run complete; ``skipped``: the probes it skipped (missing data), so that
        their rows are not expected."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET finished=?, skipped_json=? WHERE id=?",
                       (_now(), json.dumps(list(skipped)), run_id))

    def latest_run_id(self, suite_name: Optional[str] = None) -> Optional[int]:
        query = "SELECT max(id) FROM runs" + (" WHERE suite_name=?" if suite_name else "")
        row = self._rows(query, (suite_name,) if suite_name else ())[0]
        return None if row[0] is None else int(row[0])

    def run_ids(self) -> list[int]:
        return [int(i) for (i,) in self._rows("SELECT id FROM runs ORDER BY id")]

    def run_record(self, run_id: int) -> Optional[RunRecord]:
        """The run as stored (suite JSON parsed; ``{}`` if unreadable), or None if absent."""
        rows = self._rows("SELECT id, suite_name, suite_json, started, finished, skipped_json "
                          "FROM runs WHERE id=?", (run_id,))
        if not rows:
            return None
        rid, name, suite, started, finished, skipped = rows[0]
        return RunRecord(int(rid), name, _json(suite, {}), started, finished,
                         [str(s) for s in _json(skipped, [])])

    def metric_rows(self, run_id: int) -> list[MetricRow]:
        """Every metric value of a run with its job, in the order they were stored."""
        return [MetricRow(*r) for r in self._rows(
            "SELECT model, probe, metric, value, job_hash FROM metrics WHERE run_id=? ORDER BY rowid",
            (run_id,))]

    def job_names(self, run_id: int) -> dict[str, set[tuple[str, Optional[str]]]]:
        """job hash -> the (model, probe) names run ``run_id`` used it under (probe None: the
        in-distribution row). The run's own record, which is what its metrics must match."""
        out: dict[str, set[tuple[str, Optional[str]]]] = {}
        for h, model, probe in self._rows("SELECT job_hash, model, probe FROM run_jobs WHERE run_id=?",
                                          (run_id,)):
            out.setdefault(h, set()).add((model, probe))
        return out

    def metrics_frame(self, run_id: Optional[int] = None) -> pd.DataFrame:
        """Long-format metrics (model, probe, metric, value) of a run (default: the latest)."""
        run_id = self.latest_run_id() if run_id is None else run_id
        with storage_errors(self.path, "results store"):
            return pd.read_sql_query("SELECT model, probe, metric, value FROM metrics WHERE run_id=?"
                                     " ORDER BY rowid", self._db, params=(run_id,))

    def run_jobs(self, run_id: int) -> pd.DataFrame:
        with storage_errors(self.path, "results store"):
            return pd.read_sql_query("SELECT job_hash, model, probe, cached FROM run_jobs "
                                     "WHERE run_id=? ORDER BY rowid", self._db, params=(run_id,))

    def runs(self) -> pd.DataFrame:
        with storage_errors(self.path, "results store"):
            return pd.read_sql_query("SELECT id, suite_name, suite_hash, started, finished FROM runs",
                                     self._db)
