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
- ``jobs``: one row per unit of computation (a model's clean pass, a model × probe pass, an
  attack), keyed by the sha256 of the canonical JSON of everything that determines its output,
  with its number of points. A job is recorded when a run plans it; its results are its shards.
- ``shards``: the stored parts of a job, points ``[start, stop)``; a job is complete when its
  shards cover all its points. An attack shard records the early-stop threshold it ran with
  (``stop_above``, NULL: every point attacked with the full budget), so a later run can tell
  whether it is exact for the metrics it asks; ``array_keys``: the JSON list of its arrays.
- ``arrays``: the per-sample arrays of a shard (``logits`` (n, K) float32, ``labels`` (n,) int64).
- ``run_jobs``: which jobs a run used, under which model and probe name, and whether they came
  from the cache; unique per (run, job, model, probe).
- ``metrics``: the metric values of a run, one row per (model, detector, probe, metric), with
  the job of the row's points and the row's recipe (``recipe_json``: which jobs and which
  detector score it), so ``verify`` recomputes every value from the store alone.
- ``checks``: one row per trust check that ran (:mod:`oodbench.checks`), keyed by its content
  hash, with the job it checked and the codes it ran (``codes_json``): a check that is stored is
  not run again.
- ``flags``: the verdicts of the checks, one row per (job, code) that was flagged, with a detail
  text and the check that found it. Flags never enter a job's key or a metric.

``checks`` and ``flags`` were added within schema 3 (before its release); a read-only reader
treats a store without them as one without flags.
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
from typing import Any, Callable, Iterator, Optional, Sequence, Union
from urllib.parse import quote

import numpy as np
import pandas as pd

from oodbench.core.errors import OodbenchError
from oodbench.core.arrays import ADDITIVE, ArrayKey
from oodbench.core.jobs import JobKind
from oodbench.core.detectors import DEFAULT_DETECTOR  # the detector of every schema-2 metric

SCHEMA_VERSION = 3
"""3: ``metrics`` gain ``detector`` (part of the key) and ``recipe_json``.
2: jobs stored as shards (``shards``, ``jobs.n_points``); checksums cover key, dtype and shape;
``shards.array_keys``; ``runs.skipped_json``; ``run_jobs`` keyed by name too. Older files are
upgraded in place, in one transaction, when they are opened for writing (:func:`migrate`)."""

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
    n_points INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS shards (
    job_hash TEXT NOT NULL REFERENCES jobs(hash) ON DELETE CASCADE,
    start INTEGER NOT NULL, stop INTEGER NOT NULL, stop_above REAL,
    created TEXT NOT NULL, seconds REAL NOT NULL, array_keys TEXT NOT NULL,
    PRIMARY KEY (job_hash, start, stop));
CREATE TABLE IF NOT EXISTS arrays (
    job_hash TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL, key TEXT NOT NULL,
    dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (job_hash, start, stop, key),
    FOREIGN KEY (job_hash, start, stop) REFERENCES shards(job_hash, start, stop) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS run_jobs (
    run_id INTEGER NOT NULL REFERENCES runs(id), job_hash TEXT NOT NULL,
    model TEXT NOT NULL, probe TEXT, cached INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS run_jobs_key ON run_jobs (run_id, job_hash, model, ifnull(probe, ''));
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id), model TEXT NOT NULL, probe TEXT NOT NULL,
    metric TEXT NOT NULL, value REAL, job_hash TEXT,
    detector TEXT NOT NULL DEFAULT 'msp', recipe_json TEXT,
    PRIMARY KEY (run_id, model, detector, probe, metric));
CREATE TABLE IF NOT EXISTS checks (
    hash TEXT PRIMARY KEY, job_hash TEXT NOT NULL, codes_json TEXT NOT NULL,
    created TEXT NOT NULL, seconds REAL NOT NULL);
CREATE TABLE IF NOT EXISTS flags (
    job_hash TEXT NOT NULL, code TEXT NOT NULL, detail TEXT NOT NULL, check_hash TEXT NOT NULL,
    created TEXT NOT NULL, PRIMARY KEY (job_hash, code));
"""

OPTIONAL_TABLES = ("checks", "flags")
"""Tables a read-only reader does without (added within schema 3: no flags stored)."""


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
    totals (:data:`oodbench.core.arrays.ADDITIVE`) added up."""
    if len(parts) == 1:
        return parts[0]
    out: dict[str, np.ndarray] = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        out[key] = (np.sum(values, axis=0).astype(values[0].dtype) if key in ADDITIVE
                    else np.concatenate(values))
    return out


class CorruptEntryWarning(UserWarning):
    """A stored array failed its checksum; the job is dropped and will be recomputed."""


class StoreError(OodbenchError, RuntimeError):
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
        elif any(w in text for w in ("not a database", "malformed", "no such table", "no such column")):
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
                      readonly: bool = False, optional: Sequence[str] = ()) -> sqlite3.Connection:
    """Open one of oodbench's SQLite files and refuse a file of another kind or version with
    ``error`` naming it, so an old or foreign file is never misread — nor written: the schema
    (which must define the ``meta`` table) is applied only to a file that is empty or already
    of this kind and version. ``readonly``: open with ``mode=ro``, never create the file, and
    require every table of ``schema`` but the ``optional`` ones (a store missing one is damaged)."""
    path = Path(path)
    if readonly and not path.is_file():
        raise error(f"{path}: no such {what}")
    existed = path.exists()
    if not readonly:
        path.parent.mkdir(parents=True, exist_ok=True)
    with storage_errors(path, what, error):
        db = _connect(path, readonly)
    try:
        with storage_errors(path, what, error):
            present = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            # only a file this call creates becomes a new store: an existing empty file (a
            # placeholder, a failed copy) is not one, and writing into it would hide that
            if present and "meta" not in present or existed and not present:
                kind = ("an SQLite file without oodbench's tables" if present else "an empty file"
                        if path.stat().st_size == 0 else "an SQLite file without tables")
                fix = "" if readonly else "; give a new path, or delete the file first"
                raise error(f"{path}: not a {what} ({kind}){fix}")
            row = (db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                   if "meta" in present else None)
            if row is not None and not str(row[0]).strip().isdigit():
                raise error(f"{path}: {what} schema version {row[0]!r} is not an integer; the file "
                            "is damaged or was not written by oodbench")
            if row is not None and row[0] != str(version):
                raise error(f"{path}: {what} schema {row[0]}, this oodbench reads {version}; "
                            "use a new file (or run the suite again into one)")
            if readonly:
                missing = [t for t in _tables(schema) if t not in present and t not in optional]
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
    #: Versions and device the run recorded (:func:`oodbench.core.provenance.environment`).
    environment: dict[str, Any] = field(default_factory=dict)
    #: The suite's content hash when it ran (:meth:`oodbench.pipeline.suite.Suite.content_hash`).
    suite_hash: str = ""


@dataclass(frozen=True)
class MetricRow:
    """One stored metric value and the job it was computed from."""

    model: str
    probe: str
    metric: str
    value: Optional[float]
    job_hash: Optional[str]
    detector: str = DEFAULT_DETECTOR
    recipe: Optional[dict[str, Any]] = None


@dataclass(frozen=True)
class JobRecord:
    """A stored job without its arrays: kind, the names it was first computed under, config."""

    hash: str
    kind: JobKind
    model: str
    probe: Optional[str]
    config: dict[str, Any]


def _refuse_v1(path: Path) -> None:
    """A read-only reader cannot upgrade a schema-1 store: say how to."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        con = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return  # open_versioned_db says what the file is
    if row is not None and row[0] in ("1", "2"):
        raise StoreError(f"{path}: a results store of an older oodbench (schema {row[0]}); upgrade it in "
                         f"place with `oodbench upgrade {path}` (every stored job is kept), then "
                         "run this again")


def _json(text: Optional[str], default: Any) -> Any:
    try:
        value = json.loads(text) if text is not None else default
    except json.JSONDecodeError:
        return default
    return value if isinstance(value, type(default)) else default


_STORED_SUITE_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "description": (str,), "seed": (int,), "ci": (int, float, type(None)),
    "in_distribution": (dict,), "fit": (dict,), "checks": (dict,),
    "models": (list,), "probes": (list,), "metrics": (list,), "detectors": (list,)}
"""The types the readers of a stored suite rely on (as ``Suite.model_dump`` writes them)."""
_STORED_ITEM_TYPES: dict[str, tuple[type, ...]] = {
    "models": (dict,), "probes": (dict,), "metrics": (str,), "detectors": (str, dict)}
_STORED_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str, type(None)), "dataset": (str, type(None)), "attack": (dict, type(None)),
    "versus": (str, type(None))}
"""Fields of a model, in-distribution or probe entry that the readers label rows with."""


_TYPE_NAMES = {dict: "a mapping", list: "a list", str: "a string", type(None): "null",
               bool: "a boolean", int: "an integer", float: "a number"}


def _wrong(where: str, value: Any, allowed: tuple[type, ...]) -> Optional[str]:
    """``"`where` is an integer, not a list"``, or None when ``value`` has an allowed type."""
    if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
        return None
    return (f"`{where}` is {_TYPE_NAMES.get(type(value), type(value).__name__)}, not "
            + " or ".join(_TYPE_NAMES[t] for t in allowed))


def stored_suite_problems(suite: dict[str, Any]) -> list[str]:
    """Why a run's stored suite cannot be read (empty when it can): a field of the wrong type —
    ``probes: 5`` — that ``show``, ``verify`` and ``report`` would otherwise trip over."""
    problems = [p for key, allowed in _STORED_SUITE_TYPES.items() if key in suite
                and (p := _wrong(key, suite[key], allowed))]
    entries = [("in_distribution", suite.get("in_distribution"))]
    for key, allowed in _STORED_ITEM_TYPES.items():
        items = suite.get(key)
        if isinstance(items, list):
            problems += [p for i, item in enumerate(items) if (p := _wrong(f"{key}[{i}]", item, allowed))]
            if key in ("models", "probes"):
                entries += [(f"{key}[{i}]", item) for i, item in enumerate(items)]
    for where, entry in entries:
        if isinstance(entry, dict):
            problems += [p for field_, allowed in _STORED_ENTRY_TYPES.items() if field_ in entry
                         and (p := _wrong(f"{where}.{field_}", entry[field_], allowed))]
            attack = entry.get("attack")
            if isinstance(attack, dict) and "name" in attack:
                problems += [p for p in [_wrong(f"{where}.attack.name", attack["name"], (str,))] if p]
    return problems


def _points_of_blob(dtype: str, shape: str) -> Optional[int]:
    dims = json.loads(shape)
    return int(dims[0]) if dims else None


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _mislabelled(path: Path, version: int, problem: str) -> StoreError:
    return StoreError(f"{path}: says results store schema {version}, but {problem}: its version "
                      "label does not match its tables (the file was edited or damaged). It was "
                      "not upgraded and is unchanged; use a new file, or restore a copy")


def _migrate_v1(db: sqlite3.Connection, path: Path) -> None:
    """Schema 1 → 2: each job becomes one shard covering all its points, so every stored run
    still shows, verifies and is reused. Checksums are verified with the old rule before they
    are carried over, so a damaged entry is not laundered into a valid one (it is left out and
    recomputed)."""
    if "n_points" in _columns(db, "jobs") or "shards" in {
            n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}:
        raise _mislabelled(path, 1, "it already has the shards of schema 2")
    db.execute("ALTER TABLE jobs ADD COLUMN n_points INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE runs ADD COLUMN skipped_json TEXT")
    db.execute("ALTER TABLE arrays RENAME TO arrays_v1")
    db.execute("ALTER TABLE run_jobs RENAME TO run_jobs_v1")
    for statement in _SCHEMA.split(";"):  # not executescript: it would commit midway
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT INTO run_jobs SELECT * FROM run_jobs_v1")
    db.execute("DROP TABLE run_jobs_v1")
    # a finished schema-1 run computed every row it did not skip; it did not record those
    db.execute("UPDATE runs SET skipped_json='[]' WHERE finished IS NOT NULL")
    for job_hash, seconds, created, config in db.execute(
            "SELECT hash, seconds, created, config_json FROM jobs").fetchall():
        rows = db.execute("SELECT key, dtype, shape, data, sha256 FROM arrays_v1 WHERE "
                          "job_hash=?", (job_hash,)).fetchall()
        # schema 1 checksummed the bytes only: check that, then store today's checksum
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
        db.execute("INSERT INTO shards VALUES (?,?,?,?,?,?,?)",
                   (job_hash, 0, n, stop_above, created, seconds,
                    json.dumps(sorted(k for k, *_ in rows))))
        db.executemany("INSERT INTO arrays VALUES (?,?,?,?,?,?,?,?)",
                       [(job_hash, 0, n, k, t, sh, d, array_checksum(k, t, sh, d))
                        for k, t, sh, d, _ in rows])
    db.execute("DROP TABLE arrays_v1")


def _migrate_v2(db: sqlite3.Connection, path: Path) -> None:
    """Schema 2 → 3: every stored metric is the msp detector's (the only one there was), its
    recipe unknown (``verify`` recomputes it the old way)."""
    if "detector" in _columns(db, "metrics"):  # a schema-3 table: copying it would merge detectors
        raise _mislabelled(path, 2, "its metrics table already has the detector column of schema 3")
    db.execute("ALTER TABLE metrics RENAME TO metrics_v2")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT INTO metrics (run_id, model, probe, metric, value, job_hash) "
               "SELECT run_id, model, probe, metric, value, job_hash FROM metrics_v2")
    db.execute("DROP TABLE metrics_v2")


_UPGRADES: dict[int, Callable[[sqlite3.Connection, Path], None]] = {1: _migrate_v1, 2: _migrate_v2}
"""The step from each old schema version to the next."""


def _old_version(db: sqlite3.Connection) -> Optional[int]:
    """The schema version of an older results store that :func:`migrate` upgrades, else None
    (current, newer, not ours, not SQLite: :func:`open_versioned_db` says what it is)."""
    try:  # fetchall: no statement stays open (and holds a read lock) in autocommit mode
        rows = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchall()
    except sqlite3.DatabaseError:
        return None
    label = str(rows[0][0]) if rows else ""
    return int(label) if label in {str(v) for v in _UPGRADES} else None


def migrate(path: Path) -> bool:
    """Bring a results store of any older schema to this one, in place; whether it changed.

    Every step runs in one SQLite transaction (DDL is transactional in SQLite; the connection is
    in autocommit mode so that Python's sqlite3 issues no implicit BEGIN/COMMIT around it): the
    upgrade either completes or leaves the file exactly as it was, so a failed upgrade can be
    retried. A file whose tables contradict its version label is refused before anything is
    changed; any other failure is a :class:`StoreError` naming the step and the reason."""
    if not path.is_file() or path.stat().st_size == 0:
        return False  # nothing to upgrade: open_versioned_db says what the file is
    db = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
    try:
        if _old_version(db) is None:
            return False
        db.execute("BEGIN IMMEDIATE")  # the write lock: no other writer sees a half step
        start = _old_version(db)  # again under the lock: another process may have upgraded it
        if start is None:
            db.execute("ROLLBACK")
            return False
        version = start
        try:
            while version < SCHEMA_VERSION:
                _UPGRADES[version](db, path)
                version += 1
            db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
            db.execute("COMMIT")
        except BaseException as err:
            db.execute("ROLLBACK")
            if isinstance(err, (StoreError, KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(err, sqlite3.DatabaseError) and any(
                    w in str(err) for w in ("locked", "busy", "full", "readonly", "read-only")):
                raise  # storage_errors says what to do about those
            raise StoreError(f"{path}: upgrading the results store from schema {start} to "
                             f"{SCHEMA_VERSION} failed at the step from schema {version} "
                             f"({type(err).__name__}: {err}); the file is unchanged") from err
        return True
    finally:
        db.close()


class ResultStore:
    """A results store on disk. Use as a context manager or call :meth:`close`.

    ``readonly=True`` opens an existing store with SQLite's ``mode=ro``: nothing is created or
    written (a corrupt job is reported, not deleted); a missing or foreign file is a
    :class:`StoreError`.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        # Shards read and checksummed once per open store: a run plans from them, the driver
        # decides re-attacks from them and the scorer scores them, without reading them thrice.
        # Writes and deletions through this object drop their entries; arrays are read-only.
        self._verified: dict[tuple[str, int, int], dict[str, np.ndarray]] = {}
        if readonly:
            _refuse_v1(self.path)
        else:
            with storage_errors(self.path, "results store"):
                migrate(self.path)
        self._db = open_versioned_db(self.path, _SCHEMA, SCHEMA_VERSION, "results store",
                                     StoreError, readonly=readonly, optional=OPTIONAL_TABLES)
        self._has_flags = bool(self._rows("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                                          "name='flags'"))

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

    # ------------------------------------------------------------------ jobs, shards and arrays

    def put_job_record(self, job_hash: str, *, kind: Union[JobKind, str], model: str,
                       probe: Optional[str], config: dict[str, Any], n_points: int) -> None:
        """Record a job (what it is, how many points) before its shards arrive; keeps an
        existing record, whose shards stay valid: the key says they are the same computation."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO jobs VALUES (?,?,?,?,?,?,?,?)",
                       (job_hash, JobKind(kind).value, model, probe, json.dumps(config, sort_keys=True, default=str),
                        _now(), 0.0, int(n_points)))

    def put_shard(self, job_hash: str, start: int, stop: int, arrays: dict[str, np.ndarray], *,
                  seconds: float, stop_above: Optional[float] = None) -> None:
        """Store one shard of a recorded job atomically (all its arrays or none), replacing a
        stored shard of the same points. A full disk or a lock is a :class:`StoreError` that
        leaves every stored shard as it was."""
        self._verified.pop((job_hash, start, stop), None)
        with self._transaction() as db:
            db.execute("DELETE FROM shards WHERE job_hash=? AND start=? AND stop=?",
                       (job_hash, start, stop))
            db.execute("DELETE FROM arrays WHERE job_hash=? AND start=? AND stop=?",
                       (job_hash, start, stop))  # orphans of an edit
            db.execute("INSERT INTO shards VALUES (?,?,?,?,?,?,?)",
                       (job_hash, start, stop, stop_above, _now(), seconds,
                        json.dumps(sorted(arrays))))
            for key, arr in arrays.items():
                arr = np.require(arr, requirements="C")  # keeps 0-d arrays 0-d
                data, dtype, shape = arr.tobytes(), arr.dtype.str, json.dumps(list(arr.shape))
                db.execute("INSERT INTO arrays VALUES (?,?,?,?,?,?,?,?)",
                           (job_hash, start, stop, key, dtype, shape, data,
                            array_checksum(key, dtype, shape, data)))
            db.execute("UPDATE jobs SET seconds=(SELECT coalesce(sum(seconds), 0) FROM shards "
                       "WHERE job_hash=?) WHERE hash=?", (job_hash, job_hash))

    def put_job(self, job_hash: str, *, kind: Union[JobKind, str], model: str, probe: Optional[str],
                config: dict[str, Any], arrays: dict[str, np.ndarray], seconds: float,
                n_points: Optional[int] = None) -> None:
        """Store a whole job as one shard (its points: ``n_points``, or the logits' rows)."""
        if n_points is None:
            n_points = _points_of(arrays)
        self._verified = {k: v for k, v in self._verified.items() if k[0] != job_hash}
        with self._transaction() as db:
            db.execute("DELETE FROM jobs WHERE hash=?", (job_hash,))
            db.execute("DELETE FROM arrays WHERE job_hash=?", (job_hash,))
        self.put_job_record(job_hash, kind=kind, model=model, probe=probe, config=config,
                            n_points=n_points)
        self.put_shard(job_hash, 0, n_points, arrays, seconds=seconds)

    def job_points(self, job_hash: str) -> Optional[int]:
        """The number of points of a recorded job, or None if it is not recorded."""
        rows = self._rows("SELECT n_points FROM jobs WHERE hash=?", (job_hash,))
        return None if not rows else int(rows[0][0])

    def shards(self, job_hash: str) -> list[StoredShard]:
        """The stored shards of a job, by start."""
        rows = self._rows("SELECT start, stop, stop_above FROM shards WHERE job_hash=? "
                          "ORDER BY start, stop DESC", (job_hash,))
        return [StoredShard(int(a), int(b), None if t is None else float(t)) for a, b, t in rows]

    def _checked_shard(self, job_hash: str, start: int,
                       stop: int) -> tuple[dict[str, np.ndarray], list[str]]:
        rows = self._rows("SELECT key, dtype, shape, data, sha256 FROM arrays WHERE job_hash=? "
                          "AND start=? AND stop=? ORDER BY key", (job_hash, start, stop))
        keys = self._rows("SELECT array_keys FROM shards WHERE job_hash=? AND start=? AND stop=?",
                          (job_hash, start, stop))
        expected = sorted(_json(keys[0][0], [])) if keys else None
        problems: list[str] = []
        out: dict[str, np.ndarray] = {}
        for key, dtype, shape, data, digest in rows:
            if array_checksum(key, dtype, shape, data) != digest:
                problems.append(f"array {key!r} fails its checksum (its data, dtype, shape or key "
                                "was modified or damaged)")
                continue
            try:
                out[key] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(json.loads(shape)).copy()
            except (TypeError, ValueError) as err:  # a checksum recomputed over nonsense
                problems.append(f"array {key!r} cannot be read ({err})")
        if expected is not None and not problems and sorted(out) != expected:
            problems.append(f"arrays {sorted(out)} stored, the shard lists {expected}")
        if not rows:
            problems.append("no stored arrays")
        return out, problems

    def _shard_problems(self, job_hash: str, shard: StoredShard) -> tuple[dict[str, np.ndarray], list[str]]:
        arrays, problems = self._checked_shard(job_hash, shard.start, shard.stop)
        where = f"points {shard.start}-{shard.stop}: "
        return arrays, [where + p for p in problems]

    def array_problems(self, job_hash: str) -> list[str]:
        """What is wrong with the stored arrays of a job (empty: every point stored, every
        checksum matches). Reads only; the check :meth:`get_job` and the report-side
        verification share."""
        used, gaps = self.covering_shards(job_hash)
        problems = [f"points {a}-{b} are not stored" for a, b in gaps]
        if not used and not gaps:
            problems.append("no stored arrays")
        for shard in used:
            problems += self._shard_problems(job_hash, shard)[1]
        return problems

    def get_shard(self, job_hash: str, start: int, stop: int) -> Optional[dict[str, np.ndarray]]:
        """The arrays of a stored shard, or None if absent or corrupt (then it is reported and,
        unless the store is read-only, deleted so that the next run recomputes it)."""
        cached = self._verified.get((job_hash, start, stop))
        if cached is not None:
            return dict(cached)
        if not self._rows("SELECT 1 FROM shards WHERE job_hash=? AND start=? AND stop=?",
                          (job_hash, start, stop)):
            return None
        arrays, problems = self._checked_shard(job_hash, start, stop)
        if problems:
            warnings.warn(f"{self.path}: job {job_hash[:12]} points {start}-{stop}: "
                          f"{'; '.join(problems)}; " + ("not used" if self.readonly else "recomputing it"),
                          CorruptEntryWarning)
            if not self.readonly:
                with self._transaction() as db:
                    db.execute("DELETE FROM shards WHERE job_hash=? AND start=? AND stop=?",
                               (job_hash, start, stop))
                    db.execute("DELETE FROM arrays WHERE job_hash=? AND start=? AND stop=?",
                               (job_hash, start, stop))
            return None
        for arr in arrays.values():
            arr.flags.writeable = False  # shared by every reader of this store object
        self._verified[(job_hash, start, stop)] = arrays
        return dict(arrays)

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
        incomplete or corrupt (a corrupt shard is reported and, unless read-only, deleted)."""
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
        """Whether every point of the job is stored (checksums are checked on reading)."""
        used, gaps = self.covering_shards(job_hash)
        return bool(used) and not gaps

    def job_record(self, job_hash: str) -> Optional[JobRecord]:
        """The stored job without its arrays, or None if there is none."""
        rows = self._rows("SELECT hash, kind, model, probe, config_json FROM jobs WHERE hash=?",
                          (job_hash,))
        if not rows:
            return None
        h, kind, model, probe, config = rows[0]
        return JobRecord(h, JobKind(kind), model, probe, _json(config, {}))

    # ------------------------------------------------------------------ checks and flags

    def has_check(self, check_hash: str) -> bool:
        """Whether the trust check with this key ran and its verdicts are stored."""
        return self._has_flags and bool(self._rows("SELECT 1 FROM checks WHERE hash=?", (check_hash,)))

    def put_check(self, check_hash: str, *, job_hash: str, codes: Sequence[str],
                  flags: dict[str, str], seconds: float) -> None:
        """Store one check's verdicts atomically: every code it ran loses its old flag on the
        job, and each code in ``flags`` (code → detail) is flagged with its detail."""
        unknown = sorted(set(flags) - set(codes))
        if unknown:
            raise ValueError(f"flags {unknown} of codes the check did not run ({list(codes)})")
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO checks VALUES (?,?,?,?,?)",
                       (check_hash, job_hash, json.dumps(list(codes)), _now(), float(seconds)))
            db.executemany("DELETE FROM flags WHERE job_hash=? AND code=?",
                           [(job_hash, c) for c in codes])
            db.executemany("INSERT INTO flags VALUES (?,?,?,?,?)",
                           [(job_hash, c, str(d), check_hash, _now()) for c, d in flags.items()])

    def flags(self, job_hashes: Optional[Sequence[str]] = None) -> list[tuple[str, str, str]]:
        """(job hash, code, detail) of the stored flags (of these jobs), by job and code."""
        if not self._has_flags:
            return []
        rows = self._rows("SELECT job_hash, code, detail FROM flags ORDER BY job_hash, code")
        wanted = None if job_hashes is None else set(job_hashes)
        return [(h, c, d) for h, c, d in rows if wanted is None or h in wanted]

    def checked_codes(self, job_hashes: Optional[Sequence[str]] = None) -> dict[str, set[str]]:
        """job hash → the codes some stored check ran on it (flagged or not)."""
        if not self._has_flags:
            return {}
        out: dict[str, set[str]] = {}
        wanted = None if job_hashes is None else set(job_hashes)
        for h, codes in self._rows("SELECT job_hash, codes_json FROM checks"):
            if wanted is None or h in wanted:
                out.setdefault(h, set()).update(str(c) for c in _json(codes, []))
        return out

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

    def put_metrics(self, run_id: int, rows: Sequence[Sequence[Any]]) -> None:
        """rows: (model, probe, metric, value, job_hash) for the msp detector, or (model,
        detector, probe, metric, value, job_hash, recipe) with the row's recipe (a dict)."""
        def full(r: Sequence[Any]) -> tuple[Any, ...]:
            if len(r) == 5:
                model, probe, metric, value, job = r
                return (run_id, model, probe, metric, value, job, DEFAULT_DETECTOR, None)
            model, detector, probe, metric, value, job, recipe = r
            return (run_id, model, probe, metric, value, job, detector,
                    None if recipe is None else json.dumps(recipe, sort_keys=True))

        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?,?,?,?)",
                           [full(r) for r in rows])

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
        rows = self._rows("SELECT id, suite_name, suite_json, started, finished, skipped_json, "
                          "environment_json, suite_hash FROM runs WHERE id=?", (run_id,))
        if not rows:
            return None
        rid, name, suite, started, finished, skipped, env, suite_hash = rows[0]
        suite = _json(suite, {})
        problems = stored_suite_problems(suite)
        if problems:
            raise StoreError(f"{self.path}: run {rid}: its stored suite is damaged ("
                             + "; ".join(problems) + "), so its rows cannot be told apart; it "
                             "cannot be shown, verified or reported (run the suite again)")
        return RunRecord(int(rid), name, suite, started, finished,
                         [str(s) for s in _json(skipped, [])], _json(env, {}), str(suite_hash))

    def metric_rows(self, run_id: int) -> list[MetricRow]:
        """Every metric value of a run with its job, in the order they were stored."""
        return [MetricRow(m, p, k, v, j, d, None if r is None else _json(r, {}))
                for m, p, k, v, j, d, r in self._rows(
            "SELECT model, probe, metric, value, job_hash, detector, recipe_json FROM metrics "
            "WHERE run_id=? ORDER BY rowid", (run_id,))]

    def job_names(self, run_id: int) -> dict[str, set[tuple[str, Optional[str]]]]:
        """job hash -> the (model, probe) names run ``run_id`` used it under (probe None: the
        in-distribution row). The run's own record, which is what its metrics must match."""
        out: dict[str, set[tuple[str, Optional[str]]]] = {}
        for h, model, probe in self._rows("SELECT job_hash, model, probe FROM run_jobs WHERE run_id=?",
                                          (run_id,)):
            out.setdefault(h, set()).add((model, probe))
        return out

    def metrics_frame(self, run_id: Optional[int] = None) -> pd.DataFrame:
        """Long-format metrics (model, probe, metric, value, detector) of a run (default: the
        latest)."""
        run_id = self.latest_run_id() if run_id is None else run_id
        with storage_errors(self.path, "results store"):
            return pd.read_sql_query("SELECT model, probe, metric, value, detector FROM metrics "
                                     "WHERE run_id=? ORDER BY rowid", self._db, params=(run_id,))

    def run_jobs(self, run_id: int) -> pd.DataFrame:
        with storage_errors(self.path, "results store"):
            return pd.read_sql_query("SELECT job_hash, model, probe, cached FROM run_jobs "
                                     "WHERE run_id=? ORDER BY rowid", self._db, params=(run_id,))

    def runs(self) -> pd.DataFrame:
        with storage_errors(self.path, "results store"):
            return pd.read_sql_query("SELECT id, suite_name, suite_hash, started, finished FROM runs",
                                     self._db)
