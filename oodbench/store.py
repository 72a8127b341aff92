"""The results store: one SQLite file holding every computed array, keyed by content hash.

Why SQLite: it is embedded (nothing to run), transactional (a crash mid-job loses only that job)
and one file a user can copy, attach to a paper or submit. Per-sample outputs (logits and labels)
are stored, not just metrics, so any metric — including ones added later — is recomputed from the
store without touching a model again. Each array carries its sha256; an entry that fails the check
is reported and recomputed, never silently used.

Schema (version in ``meta.schema_version``):

- ``runs``: one row per ``oodbench run`` (suite name, suite content hash, suite JSON, versions,
  device, start/end times).
- ``jobs``: one row per unit of computation (a model's clean pass, a model × probe pass, an
  attack), keyed by the sha256 of the canonical JSON of everything that determines its output,
  with its number of points.
- ``shards``: the stored parts of a job, points ``[start, stop)``; a job is complete when its
  shards cover all its points. An attack shard records the early-stop threshold it ran with
  (``stop_above``, NULL: every point attacked with the full budget), so a later run can tell
  whether it is exact for the metrics it asks.
- ``arrays``: the per-sample arrays of a shard (``logits`` (n, K) float32, ``labels`` (n,) int64).
- ``run_jobs``: which jobs a run used and whether they came from the cache.
- ``metrics``: the metric values of a run, one row per (model, probe, metric).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pandas as pd

from oodbench.errors import OodbenchError
from oodbench.score.arrays import ADDITIVE, ArrayKey

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    suite_name TEXT NOT NULL, suite_hash TEXT NOT NULL, suite_json TEXT NOT NULL,
    environment_json TEXT NOT NULL, started TEXT NOT NULL, finished TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    hash TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, probe TEXT,
    config_json TEXT NOT NULL, created TEXT NOT NULL, seconds REAL NOT NULL,
    n_points INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS shards (
    job_hash TEXT NOT NULL REFERENCES jobs(hash) ON DELETE CASCADE,
    start INTEGER NOT NULL, stop INTEGER NOT NULL, stop_above REAL,
    created TEXT NOT NULL, seconds REAL NOT NULL, PRIMARY KEY (job_hash, start, stop));
CREATE TABLE IF NOT EXISTS arrays (
    job_hash TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL, key TEXT NOT NULL,
    dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (job_hash, start, stop, key),
    FOREIGN KEY (job_hash, start, stop) REFERENCES shards(job_hash, start, stop) ON DELETE CASCADE);
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


@dataclass(frozen=True)
class StoredShard:
    """A stored shard: points ``[start, stop)`` and the early-stop threshold it ran with."""

    start: int
    stop: int
    stop_above: Optional[float] = None


def tile(shards: list[StoredShard], n_points: int) -> tuple[list[StoredShard], list[tuple[int, int]]]:
    """A non-overlapping choice of ``shards`` (sorted by start) from point 0 on, preferring the
    longest at each position, and the ``[start, stop)`` gaps it leaves in ``[0, n_points)``."""
    used: list[StoredShard] = []
    gaps: list[tuple[int, int]] = []
    cursor = 0
    while cursor < n_points:
        here = [s for s in shards if s.start == cursor and s.stop <= n_points]
        if here:
            best = max(here, key=lambda s: s.stop)
            used.append(best)
            cursor = best.stop
            continue
        later = [s.start for s in shards if s.start > cursor]
        nxt = min(later + [n_points])
        gaps.append((cursor, nxt))
        cursor = nxt
    return used, gaps


def _points_of(arrays: dict[str, np.ndarray]) -> int:
    if ArrayKey.LOGITS.value in arrays:
        return int(np.shape(arrays[ArrayKey.LOGITS.value])[0])
    sizes = [np.shape(a)[0] for a in arrays.values() if np.ndim(a) > 0]
    return int(max(sizes)) if sizes else 1


def join_shards(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One job's arrays from its shards in point order: per-point arrays are concatenated,
    totals (:data:`oodbench.score.arrays.ADDITIVE`) added up."""
    if len(parts) == 1:
        return parts[0]
    out: dict[str, np.ndarray] = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        out[key] = (np.sum(values, axis=0).astype(values[0].dtype) if key in ADDITIVE
                    else np.concatenate(values))
    return out


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


def _points_of_blob(dtype: str, shape: str) -> Optional[int]:
    dims = json.loads(shape)
    return int(dims[0]) if dims else None


def migrate_v1(path: Path) -> bool:
    """Upgrade a schema-1 results store in place (one transaction): each job becomes one shard
    covering all its points, so every stored run still shows, verifies and is reused. Returns
    whether it migrated. Checksums are verified with the old rule before they are carried over,
    so a damaged entry is not laundered into a valid one (it is left out and recomputed)."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    db = sqlite3.connect(path)
    try:
        try:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError:
            return False  # not ours, or not SQLite: open_versioned_db says so
        if row is None or row[0] != "1":
            return False
        with db:
            db.execute("ALTER TABLE jobs ADD COLUMN n_points INTEGER NOT NULL DEFAULT 0")
            db.execute("ALTER TABLE arrays RENAME TO arrays_v1")
            db.executescript(_SCHEMA)
            for job_hash, seconds, created, config in db.execute(
                    "SELECT hash, seconds, created, config_json FROM jobs").fetchall():
                rows = db.execute("SELECT key, dtype, shape, data, sha256 FROM arrays_v1 WHERE "
                                  "job_hash=?", (job_hash,)).fetchall()
                if any(hashlib.sha256(d).hexdigest() != h for _, _, _, d, h in rows) or not rows:
                    db.execute("DELETE FROM jobs WHERE hash=?", (job_hash,))
                    continue
                sizes = {k: _points_of_blob(t, sh) for k, t, sh, _, _ in rows}
                n = sizes.get(ArrayKey.LOGITS.value) or max((v for v in sizes.values() if v), default=1)
                db.execute("UPDATE jobs SET n_points=? WHERE hash=?", (n, job_hash))
                try:  # schema 1 kept an attack's early-stop threshold in its config
                    stop_above = json.loads(config).get("stop_above")
                except (json.JSONDecodeError, AttributeError):
                    stop_above = None
                db.execute("INSERT INTO shards VALUES (?,?,?,?,?,?)",
                           (job_hash, 0, n, stop_above, created, seconds))
                db.executemany("INSERT INTO arrays VALUES (?,?,?,?,?,?,?,?)",
                               [(job_hash, 0, n, k, t, sh, d, h) for k, t, sh, d, h in rows])
            db.execute("DROP TABLE arrays_v1")
            db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
        return True
    finally:
        db.close()


class ResultStore:
    """A results store on disk. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        migrate_v1(self.path)
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

    # ------------------------------------------------------------------ jobs, shards and arrays

    def put_job_record(self, job_hash: str, *, kind: str, model: str, probe: Optional[str],
                       config: dict[str, Any], n_points: int) -> None:
        """Record a job (what it is, how many points) before its shards arrive; keeps an
        existing record, whose shards stay valid: the key says they are the same computation."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO jobs VALUES (?,?,?,?,?,?,?,?)",
                       (job_hash, kind, model, probe, json.dumps(config, sort_keys=True, default=str),
                        _now(), 0.0, int(n_points)))

    def put_shard(self, job_hash: str, start: int, stop: int, arrays: dict[str, np.ndarray], *,
                  seconds: float, stop_above: Optional[float] = None) -> None:
        """Store one shard of a recorded job atomically (all its arrays or none), replacing a
        stored shard of the same points."""
        with self._transaction() as db:
            db.execute("DELETE FROM shards WHERE job_hash=? AND start=? AND stop=?",
                       (job_hash, start, stop))
            db.execute("INSERT INTO shards VALUES (?,?,?,?,?,?)",
                       (job_hash, start, stop, stop_above, _now(), seconds))
            for key, arr in arrays.items():
                arr = np.require(arr, requirements="C")  # keeps 0-d arrays 0-d
                data = arr.tobytes()
                db.execute("INSERT INTO arrays VALUES (?,?,?,?,?,?,?,?)",
                           (job_hash, start, stop, key, arr.dtype.str, json.dumps(list(arr.shape)),
                            data, hashlib.sha256(data).hexdigest()))
            db.execute("UPDATE jobs SET seconds=(SELECT coalesce(sum(seconds), 0) FROM shards "
                       "WHERE job_hash=?) WHERE hash=?", (job_hash, job_hash))

    def put_job(self, job_hash: str, *, kind: str, model: str, probe: Optional[str],
                config: dict[str, Any], arrays: dict[str, np.ndarray], seconds: float,
                n_points: Optional[int] = None) -> None:
        """Store a whole job as one shard (its points: ``n_points``, or the logits' rows)."""
        if n_points is None:
            n_points = _points_of(arrays)
        with self._transaction() as db:
            db.execute("DELETE FROM jobs WHERE hash=?", (job_hash,))
        self.put_job_record(job_hash, kind=kind, model=model, probe=probe, config=config,
                            n_points=n_points)
        self.put_shard(job_hash, 0, n_points, arrays, seconds=seconds)

    def job_points(self, job_hash: str) -> Optional[int]:
        """The number of points of a recorded job, or None if it is not recorded."""
        row = self._db.execute("SELECT n_points FROM jobs WHERE hash=?", (job_hash,)).fetchone()
        return None if row is None else int(row[0])

    def shards(self, job_hash: str) -> list[StoredShard]:
        """The stored shards of a job, by start."""
        rows = self._db.execute("SELECT start, stop, stop_above FROM shards WHERE job_hash=? "
                                "ORDER BY start, stop DESC", (job_hash,)).fetchall()
        return [StoredShard(int(a), int(b), None if t is None else float(t)) for a, b, t in rows]

    def get_shard(self, job_hash: str, start: int, stop: int) -> Optional[dict[str, np.ndarray]]:
        """The arrays of a stored shard, or None if absent or corrupt (then it is deleted, so
        that the next run recomputes it)."""
        rows = self._db.execute("SELECT key, dtype, shape, data, sha256 FROM arrays WHERE "
                                "job_hash=? AND start=? AND stop=?", (job_hash, start, stop)).fetchall()
        if not rows:
            return None
        out: dict[str, np.ndarray] = {}
        for key, dtype, shape, data, digest in rows:
            if hashlib.sha256(data).hexdigest() != digest:
                warnings.warn(f"{self.path}: job {job_hash[:12]} points {start}-{stop} array "
                              f"{key!r} fails its checksum (file modified or damaged); "
                              "recomputing it", CorruptEntryWarning)
                with self._transaction() as db:
                    db.execute("DELETE FROM shards WHERE job_hash=? AND start=? AND stop=?",
                               (job_hash, start, stop))
                return None
            out[key] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(json.loads(shape)).copy()
        return out

    def covering_shards(self, job_hash: str) -> tuple[list[StoredShard], list[tuple[int, int]]]:
        """Stored shards that tile the job's points without overlap, and the gaps between them.

        Shards of runs with other shard sizes are used as they are (a point's result does not
        depend on which shard it was computed in), so changing ``shard_size`` recomputes nothing.
        """
        n = self.job_points(job_hash)
        if n is None:
            return [], []
        return tile(self.shards(job_hash), n)

    def get_job(self, job_hash: str) -> Optional[dict[str, np.ndarray]]:
        """The arrays of a complete stored job (its shards joined), or None if it is absent,
        incomplete or corrupt (a corrupt shard is deleted and will be recomputed)."""
        used, gaps = self.covering_shards(job_hash)
        if not used or gaps:
            return None
        parts = []
        for shard in used:
            arrays = self.get_shard(job_hash, shard.start, shard.stop)
            if arrays is None:
                return None
            parts.append(arrays)
        return join_shards(parts)

    def has_job(self, job_hash: str) -> bool:
        used, gaps = self.covering_shards(job_hash)
        return bool(used) and not gaps

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
