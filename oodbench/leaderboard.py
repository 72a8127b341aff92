"""The leaderboard: submit a checkpoint (evaluate it on a suite and record it with provenance),
and render the boards as a static, offline, sortable HTML site.

A *board* is a suite without its models: every field of the suite that defines the results
(in-distribution set, probes and attacks, metrics, seed, batch size, ...) except ``models``,
``device``, ``download``, ``output``, ``data_root`` and ``description``; its key is
:func:`board_hash`. Submitting evaluates the suite with its ``models`` replaced by the submitted
checkpoint. A changed suite (say a probe with another ``n``) is a different board. One
checkpoint (by sha256) appears at most once per board: submitting it again adds nothing.

The leaderboard is one SQLite file (``leaderboard.db`` by default); the results store of the
evaluations lies beside it (``<stem>-results.db``), so a resubmission of a known job is reused.

Schema (version in ``meta.schema_version``):

- ``boards``: suite hash, suite name, suite JSON (without models), metric order, created (UTC).
- ``entries``: one per (board, checkpoint sha256): name, adapter, arch + options, paper URL,
  oodbench / torch / torchvision versions, device, environment JSON, submitted (UTC), and the
  results-store run it came from.
- ``entry_metrics``: the full metrics of an entry in long format (probe, metric, value).
- ``recomputations``: each recomputation audit of an entry (``oodbench leaderboard verify
  --recompute``): when, the fraction, seed and tolerance, whether the stack was the run's, how
  many shards were re-executed of how many, and the problems found (JSON; empty: all match).
  Added within schema 1: a read-only reader treats a file without it as never audited.

Rendering checks every entry first, as ``report`` checks a run: the entry's run must verify, its
metrics must recompute from the stored arrays, and the leaderboard's copy must equal them; an
entry that fails is a :class:`LeaderboardError` naming it (an entry whose results store is
missing is rendered, and its page says its numbers could not be checked).

A ``model_zoo`` card (:mod:`oodbench.zoo`) can be submitted by name (:func:`submit_card`): it
supplies the checkpoint (downloaded and sha256-verified if remote), architecture, options,
normalisation, name and paper. The site's entry pages show the entry's ROC curves and confidence
histograms, drawn from its results-store run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union
from urllib.parse import quote

from oodbench.core.errors import MissingFileError, OodbenchError
from oodbench.pipeline.store import open_versioned_db, storage_errors
from oodbench.pipeline.suite import Suite, parse_suite

if TYPE_CHECKING:  # pragma: no cover
    from oodbench.models import Normalization
    from oodbench.pipeline.recompute import Recomputation
    from oodbench.zoo import ZooCard

SCHEMA_VERSION = 1
DEFAULT_LEADERBOARD = "leaderboard.db"

# Suite fields that do not define a board: the models (the submissions), and how/where it runs.
BOARD_EXCLUDE = {"models", "device", "download", "output", "data_root", "description"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS boards (
    suite_hash TEXT PRIMARY KEY, suite_name TEXT NOT NULL, suite_json TEXT NOT NULL,
    metric_order TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    suite_hash TEXT NOT NULL REFERENCES boards(suite_hash),
    checkpoint_sha256 TEXT NOT NULL, name TEXT NOT NULL, adapter TEXT NOT NULL,
    arch TEXT NOT NULL, arch_options TEXT NOT NULL, paper TEXT,
    oodbench_version TEXT NOT NULL, torch_version TEXT NOT NULL, torchvision_version TEXT NOT NULL,
    device TEXT NOT NULL, environment_json TEXT NOT NULL, submitted TEXT NOT NULL,
    results_store TEXT NOT NULL, run_id INTEGER NOT NULL,
    UNIQUE (suite_hash, checkpoint_sha256));
CREATE TABLE IF NOT EXISTS entry_metrics (
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    probe TEXT NOT NULL, metric TEXT NOT NULL, value REAL,
    PRIMARY KEY (entry_id, probe, metric));
CREATE TABLE IF NOT EXISTS recomputations (
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    checked TEXT NOT NULL, fraction REAL NOT NULL, seed INTEGER NOT NULL, tolerance REAL NOT NULL,
    same_stack INTEGER NOT NULL, shards_checked INTEGER NOT NULL, shards_total INTEGER NOT NULL,
    problems_json TEXT NOT NULL);
"""
OPTIONAL_TABLES = ("recomputations",)
"""Tables a read-only reader does without (added within schema 1)."""


class LeaderboardError(OodbenchError, ValueError):
    """A submission or render that cannot proceed (bad option, unreadable leaderboard)."""


def _board_fields(suite: Suite) -> set[str]:
    """What a board leaves out: :data:`BOARD_EXCLUDE`, and the trust-check settings while they
    are the defaults (boards made before checks existed keep their hash)."""
    return BOARD_EXCLUDE | ({"checks"} if suite.checks.is_default else set())


def board_hash(suite: Suite) -> str:
    """sha256 of the canonical JSON of the suite without its models (see the module doc)."""
    payload = suite.hashed_dump(_board_fields(suite))
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def default_results_store(leaderboard: Union[str, Path]) -> Path:
    """The results store beside a leaderboard: ``<dir>/<stem>-results.db``."""
    lb = Path(leaderboard)
    return lb.with_name(lb.stem + "-results.db")


def adapter_for(checkpoint: Union[str, Path]) -> str:
    """``safetensors`` for ``*.safetensors``, else ``checkpoint`` (a torch state dict)."""
    return "safetensors" if str(checkpoint).lower().endswith(".safetensors") else "checkpoint"


def parse_options(pairs: Any) -> dict[str, Any]:
    """``["num_classes=5", "width=2.5"]`` → ``{"num_classes": 5, "width": 2.5}`` (values as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise LeaderboardError(f"--arch-option {pair!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Leaderboard:
    """A leaderboard file on disk. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Union[str, Path], *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise MissingFileError(f"{self.path}: no such leaderboard")
        # create=False is for readers (render, verify): opened read-only, never written
        self._db = open_versioned_db(self.path, _SCHEMA, SCHEMA_VERSION, "leaderboard",
                                     LeaderboardError, readonly=not create,
                                     optional=OPTIONAL_TABLES)
        self._audited = bool(self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='recomputations'").fetchone())

    def _errors(self) -> Any:
        """A locked, full or read-only file as a :class:`LeaderboardError`."""
        return storage_errors(self.path, "leaderboard", LeaderboardError)

    def __enter__(self) -> "Leaderboard":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def find_entry(self, suite_hash: str, sha256: str) -> Optional[int]:
        with self._errors():
            return self._find_entry(suite_hash, sha256)

    def _find_entry(self, suite_hash: str, sha256: str) -> Optional[int]:
        row = self._db.execute("SELECT id FROM entries WHERE suite_hash=? AND checkpoint_sha256=?",
                               (suite_hash, sha256)).fetchone()
        return None if row is None else int(row[0])

    def add_entry(self, *, suite: Suite, suite_hash: str, entry: dict[str, Any],
                  metrics: list[tuple[str, str, Optional[float]]]) -> int:
        """Record a board (if new), an entry and its long-format metrics in one transaction."""
        with self._errors(), self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO boards VALUES (?,?,?,?,?)",
                (suite_hash, suite.name,
                 json.dumps(suite.model_dump(mode="json", exclude=_board_fields(suite)), sort_keys=True),
                 json.dumps(list(suite.metrics)), _now()))
            cols = list(entry)
            cur = self._db.execute(
                f"INSERT INTO entries (suite_hash, {', '.join(cols)}) VALUES (?{', ?' * len(cols)})",
                (suite_hash, *entry.values()))
            entry_id = int(cur.lastrowid)
            self._db.executemany("INSERT OR REPLACE INTO entry_metrics VALUES (?,?,?,?)",
                                 [(entry_id, p, m, v) for p, m, v in metrics])
        return entry_id

    def add_recomputation(self, entry_id: int, audit: "Recomputation") -> None:
        """Record a recomputation audit of an entry (:func:`recompute_entries`)."""
        with self._errors(), self._db:
            self._db.execute("INSERT INTO recomputations VALUES (?,?,?,?,?,?,?,?,?)",
                             (entry_id, _now(), audit.fraction, audit.seed, audit.tolerance,
                              int(audit.same_stack), len(audit.checked), audit.total,
                              json.dumps(audit.problems)))

    def last_recomputation(self, entry_id: int) -> Optional[dict[str, Any]]:
        """The latest recomputation audit of an entry, or None if it was never audited."""
        if not self._audited:
            return None
        with self._errors():
            cur = self._db.execute("SELECT * FROM recomputations WHERE entry_id=? "
                                   "ORDER BY rowid DESC LIMIT 1", (entry_id,))
            row = cur.fetchone()
            if row is None:
                return None
            out = dict(zip([d[0] for d in cur.description], row))
        out["problems"] = json.loads(out.pop("problems_json"))
        return out

    def boards(self) -> list[dict[str, Any]]:
        with self._errors():
            return self._boards()

    def _boards(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT suite_hash, suite_name, suite_json, metric_order, created "
                                "FROM boards ORDER BY created, suite_hash").fetchall()
        out = []
        for h, name, sj, order, created in rows:
            n = self._db.execute("SELECT count(*) FROM entries WHERE suite_hash=?", (h,)).fetchone()[0]
            out.append({"hash": h, "name": name, "suite": json.loads(sj), "metric_order": json.loads(order),
                        "created": created, "n_entries": int(n)})
        return out

    def entries(self, suite_hash: Optional[str] = None) -> list[dict[str, Any]]:
        """Entries (all, or of one board) with their metrics as ``{(probe, metric): value}``."""
        with self._errors():
            return self._entries(suite_hash)

    def _entries(self, suite_hash: Optional[str] = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM entries" + (" WHERE suite_hash=?" if suite_hash else "") + " ORDER BY id"
        cur = self._db.execute(query, (suite_hash,) if suite_hash else ())
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            e = dict(zip(names, row))
            e["arch_options"] = json.loads(e["arch_options"])
            e["environment"] = json.loads(e.pop("environment_json"))
            e["metrics"] = {(p, m): v for p, m, v in self._db.execute(
                "SELECT probe, metric, value FROM entry_metrics WHERE entry_id=? ORDER BY rowid",
                (e["id"],))}
            out.append(e)
        return out


@dataclass
class Submission:
    """What :func:`submit` did: the entry id, whether it was added now, and the keys."""

    entry_id: int
    added: bool
    suite_hash: str
    checkpoint_sha256: str
    run_id: Optional[int] = None
    results_store: Optional[Path] = None


def submission_suite(suite: Suite, checkpoint: Union[str, Path], *, name: str, arch: str,
                     arch_options: Optional[dict[str, Any]] = None,
                     adapter: Optional[str] = None,
                     normalize: Optional["Normalization"] = None) -> Suite:
    """``suite`` with its ``models`` replaced by the one checkpoint (validated like a suite file)."""
    data = suite.model_dump(mode="json")
    model: dict[str, Any] = {"name": name, "adapter": adapter or adapter_for(checkpoint),
                             "path": str(Path(checkpoint).expanduser().resolve()), "arch": arch,
                             "arch_options": dict(arch_options or {})}
    if normalize is not None:
        model["normalize"] = normalize.model_dump()
    data["models"] = [model]
    return parse_suite(data, source=suite.source)


def submit(checkpoint: Union[str, Path], *, suite: Suite, name: str, arch: str,
           arch_options: Optional[dict[str, Any]] = None, adapter: Optional[str] = None,
           normalize: Optional["Normalization"] = None,
           paper: Optional[str] = None, leaderboard: Union[str, Path] = DEFAULT_LEADERBOARD,
           results: Union[str, Path, None] = None, data_root: Union[str, Path, None] = None,
           device: Optional[str] = None, progress: bool = False) -> Submission:
    """Evaluate ``checkpoint`` on ``suite`` (its models replaced) and record it on the board.

    If the board already has this checkpoint (same sha256), nothing is run or added
    (``added=False``). The results store defaults to :func:`default_results_store`.
    """
    from oodbench.models import file_sha256
    from oodbench.pipeline.run import run_suite

    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise MissingFileError(f"{path}: no such checkpoint")
    if adapter is not None and adapter not in ("checkpoint", "safetensors"):
        raise LeaderboardError(f"adapter must be checkpoint or safetensors, not {adapter!r}")
    sub_suite = submission_suite(suite, path, name=name, arch=arch, arch_options=arch_options,
                                 adapter=adapter, normalize=normalize)
    digest = file_sha256(path)
    key = board_hash(sub_suite)
    with Leaderboard(leaderboard) as lb:
        existing = lb.find_entry(key, digest)
        if existing is not None:
            return Submission(existing, False, key, digest)
    store = Path(results) if results is not None else default_results_store(leaderboard)
    result = run_suite(sub_suite, data_root=data_root, output=store, device=device, progress=progress)
    from oodbench.core.provenance import environment
    from oodbench.pipeline.run import resolve_device

    dev = resolve_device(device or sub_suite.device)
    env = environment(dev)
    model = sub_suite.models[0]
    entry = {
        "checkpoint_sha256": digest, "name": name, "adapter": model.adapter, "arch": arch,
        "arch_options": json.dumps(model.arch_options, sort_keys=True), "paper": paper,
        "oodbench_version": env["oodbench"], "torch_version": env["torch"],
        "torchvision_version": env["torchvision"], "device": str(dev),
        "environment_json": json.dumps(env, sort_keys=True), "submitted": _now(),
        "results_store": str(Path(result.store_path).resolve()), "run_id": result.run_id,
    }
    from oodbench.report.tables import fold_detectors
    from oodbench.pipeline.score.groups import with_group_rows

    long = fold_detectors(with_group_rows(result.metrics, result.groups), into="probe")
    metrics = [(str(p), str(m), None if v != v else float(v))
               for p, m, v in zip(long["probe"], long["metric"], long["value"])]
    with Leaderboard(leaderboard) as lb:
        entry_id = lb.add_entry(suite=sub_suite, suite_hash=key, entry=entry, metrics=metrics)
    return Submission(entry_id, True, key, digest, result.run_id, result.store_path)


def submit_card(card: "ZooCard", *, suite: Suite, name: Optional[str] = None,
                paper: Optional[str] = None, cache_dir: Union[str, Path, None] = None,
                **kwargs: Any) -> Submission:
    """Submit a ``model_zoo`` card's model: the card gives the checkpoint (downloaded into the
    cache and sha256-verified if remote), arch, options, adapter and normalisation, so these
    cannot disagree with the weights; ``name`` and ``paper`` default to the card's.
    ``kwargs`` go to :func:`submit` (leaderboard, results, data_root, device, progress)."""
    return submit(card.checkpoint(cache_dir=cache_dir), suite=suite, name=name or card.name,
                  arch=card.arch, arch_options=card.arch_options, adapter=card.adapter_name,
                  normalize=card.normalize, paper=paper or card.paper_ref, **kwargs)


# --------------------------------------------------------------------------- the static site

def board_page(suite_hash: str) -> str:
    return f"board-{suite_hash[:16]}.html"


def entry_page(entry_id: int) -> str:
    return f"entry-{entry_id}.html"


def _fmt(value: Optional[float], metric: str) -> str:
    from oodbench.pipeline.score.groups import COUNTS, count_text

    if value is None or value != value:
        return "–"
    return count_text(value) if metric in COUNTS else f"{value:.4f}"


def _columns(entries: list[dict[str, Any]], metric_order: list[str]) -> list[tuple[str, str]]:
    """(probe, metric) columns: probes in order of appearance, metrics in the suite's order."""
    seen = list(dict.fromkeys(k for e in entries for k, v in e["metrics"].items() if v is not None))
    probes = list(dict.fromkeys(p for p, _ in seen))
    rank = {m: i for i, m in enumerate(metric_order)}
    return sorted(seen, key=lambda pm: (probes.index(pm[0]), rank.get(pm[1], len(rank)), pm[1]))


# Captions of the figures :func:`oodbench.report.plots.write_plots` draws, by file-name prefix.
PLOT_CAPTIONS = {"roc": "ROC curves: in-distribution against each OOD set",
                 "hist": "Confidence histograms (log scale)",
                 "radius": "Mean confidence (MMC) against the attack radius"}


def entry_dir(entry_id: int) -> str:
    """The site folder of an entry's figures (relative to the site root)."""
    return f"entries/{entry_id}"


def entry_results_store(entry: dict[str, Any], leaderboard: Union[str, Path]) -> Optional[Path]:
    """The entry's results store: the recorded path, else the file of that name beside the
    leaderboard (a leaderboard folder copied elsewhere, or a path recorded relative to another
    working directory); None if neither exists."""
    recorded = Path(entry["results_store"]).expanduser()
    for candidate in (recorded, Path(leaderboard).parent / recorded.name):
        if candidate.is_file():
            return candidate
    return None


def entry_plots(entry: dict[str, Any], leaderboard: Union[str, Path],
                out: Path) -> tuple[list[dict[str, str]], str]:
    """Draw an entry's figures (PNG) into ``out/entries/<id>/`` from its results-store run.

    Returns ``(figures, note)``: each figure's ``src`` (URL-quoted, relative to the site root),
    ``alt`` and ``caption``; ``note`` says why there are none. A missing or unreadable store
    costs that entry its plots, not the whole site (its metrics are in the leaderboard)."""
    from oodbench.report.data import ReportError
    from oodbench.report.plots import write_plots

    store = entry_results_store(entry, leaderboard)
    if store is None:
        return [], (f"No plots: the results store {entry['results_store']} is missing "
                    "(the metrics above come from the leaderboard).")
    try:
        paths = write_plots(store, out / entry_dir(entry["id"]), run_id=entry["run_id"],
                            formats=["png"])
    except (ReportError, FileNotFoundError, RuntimeError) as err:  # RuntimeError: not a store
        return [], f"No plots: {err}"
    figures = []
    for path in paths:
        caption = PLOT_CAPTIONS.get(path.stem.split("-", 1)[0], path.stem)
        figures.append({"src": quote(path.relative_to(out).as_posix()), "caption": caption,
                        "alt": f"{caption}, {entry['name']}"})
    return figures, "" if figures else "No plots: the run has nothing to plot."


def entry_flags(entry: dict[str, Any], leaderboard: Union[str, Path]) -> Optional[list[Any]]:
    """The trust-check flags (:class:`oodbench.report.data.RowFlag`) of an entry's run, read from
    its results store; None when the store is missing or unreadable (unknown, not "none")."""
    from oodbench.report.data import run_flags
    from oodbench.pipeline.store import ResultStore, StoreError

    store = entry_results_store(entry, leaderboard)
    if store is None:
        return None
    try:
        with ResultStore(store, readonly=True) as results:
            return run_flags(results, entry["run_id"])
    except StoreError:
        return None


def flags_cell(flags: Optional[list[Any]]) -> str:
    """The board's ``flags`` column: the codes, ``none``, or ``?`` when unknown."""
    if flags is None:
        return "?"
    return ", ".join(dict.fromkeys(f.code for f in flags)) or "none"


def entry_problems(entry: dict[str, Any], leaderboard: Union[str, Path]) -> Optional[list[str]]:
    """What is wrong with an entry (empty: nothing; None: its results store is missing, so it
    cannot be checked): its run must verify and every metric recompute from the stored arrays
    (:func:`oodbench.report.data.full_verification`), and the entry's metrics must be exactly
    the run's metrics of its model."""
    from oodbench.report.data import full_verification
    from oodbench.report.tables import fold_detectors
    from oodbench.pipeline.score.groups import probe_groups, with_group_rows
    from oodbench.pipeline.store import ResultStore

    path = entry_results_store(entry, leaderboard)
    if path is None:
        return None
    with ResultStore(path, readonly=True) as store:
        problems = full_verification(store, entry["run_id"])
        record = store.run_record(entry["run_id"])
        groups = probe_groups(record.suite) if record is not None else {}
        frame = fold_detectors(with_group_rows(store.metrics_frame(entry["run_id"]), groups),
                               into="probe")
    stored = {(r.probe, r.metric): r.value for r in frame.itertuples() if r.model == entry["name"]}
    for key in sorted(set(stored) | set(entry["metrics"]), key=str):
        a, b = entry["metrics"].get(key), stored.get(key)
        if not (a == b or (a is None or a != a) and (b is None or b != b)):  # NaN-safe equality
            problems.append(f"{key[0]} / {key[1]}: leaderboard {a!r}, results store {b!r}")
    return problems


def verify_entries(leaderboard: Union[str, Path]) -> dict[int, list[str]]:
    """Problems per entry (empty list: it verifies) of re-checking every entry against its
    results store (:func:`entry_problems`). A leaderboard is only as trustworthy as this check."""
    with Leaderboard(leaderboard, create=False) as board:
        entries = board.entries()
    out: dict[int, list[str]] = {}
    for entry in entries:
        problems = entry_problems(entry, leaderboard)
        out[entry["id"]] = ([f"results store {entry['results_store']} is missing"]
                            if problems is None else problems)
    return out


def recompute_entries(leaderboard: Union[str, Path], fraction: float, *, seed: int = 0,
                      tolerance: Optional[float] = None, data_root: Union[str, Path, None] = None,
                      device: Optional[str] = None) -> dict[int, Union["Recomputation", str]]:
    """Re-execute a seeded sample of every entry's stored shards
    (:func:`oodbench.pipeline.recompute.recompute_run`) and record each audit on the leaderboard, so its
    page says when the entry was last recomputed and with what result. An entry whose results
    store is missing gets the reason instead (and no record)."""
    from oodbench.pipeline.recompute import recompute_run
    from oodbench.pipeline.store import ResultStore

    with Leaderboard(leaderboard, create=False) as board:
        entries = board.entries()
    out: dict[int, Union["Recomputation", str]] = {}
    for entry in entries:
        path = entry_results_store(entry, leaderboard)
        if path is None:
            out[entry["id"]] = f"results store {entry['results_store']} is missing"
            continue
        with ResultStore(path, readonly=True) as store:
            audit = recompute_run(store, entry["run_id"], fraction, seed=seed,
                                  tolerance=tolerance, data_root=data_root, device=device)
        with Leaderboard(leaderboard) as board:
            board.add_recomputation(entry["id"], audit)
        out[entry["id"]] = audit
    return out


def render_site(leaderboard: Union[str, Path], out: Union[str, Path]) -> list[Path]:
    """Write ``index.html``, one page per board and one per entry into ``out``; return the paths
    of the pages (each entry's figures go to ``entries/<id>/``, see :func:`entry_plots`).

    Every user string is escaped by Jinja2 autoescape (the report package's HTML environment);
    the pages need no network (inline CSS, a small inline sorting script, local images).
    """
    from oodbench.report.output import write_text
    from oodbench.report.render import environment

    env = environment("html")
    out = Path(out)
    written: list[Path] = []

    def write(name: str, template: str, **ctx: Any) -> None:
        path = out / name
        write_text(path, env.get_template(template).render(**ctx), LeaderboardError)
        written.append(path)

    with Leaderboard(leaderboard, create=False) as lb:
        checked = {}  # every entry first: no number is printed that does not recompute
        for e in lb.entries():
            problems = entry_problems(e, leaderboard)
            if problems:
                raise LeaderboardError(
                    f"{leaderboard}: entry {e['id']} ({e['name']}) does not verify, refusing "
                    f"to render the site ({len(problems)} problem(s)):\n"
                    + "\n".join(f"  - {p}" for p in problems)
                    + "\n`oodbench leaderboard verify` lists every entry's problems; "
                    "remove the entry or submit its checkpoint again to a new leaderboard file")
            checked[e["id"]] = problems is not None
        boards = lb.boards()
        for board in boards:
            board["page"] = board_page(board["hash"])
            entries = lb.entries(board["hash"])
            for e in entries:  # link only web addresses (never javascript: or data: URLs)
                paper = e["paper"] or ""
                e["paper_href"] = paper if paper.lower().startswith(("https://", "http://")) else None
            cols = _columns(entries, board["metric_order"])
            for e in entries:
                e["checked"] = checked[e["id"]]
                e["recomputed"] = lb.last_recomputation(e["id"])
                e["flags"] = entry_flags(e, leaderboard)
                e["flags_cell"] = flags_cell(e["flags"])
            rows = [{"entry": e, "page": entry_page(e["id"]),
                     "cells": [(_fmt(e["metrics"].get(c), c[1]),
                                "" if e["metrics"].get(c) is None else repr(float(e["metrics"][c])))
                               for c in cols]} for e in entries]
            write(board["page"], "leaderboard_board.html.j2", board=board, columns=cols, rows=rows)
            for e in entries:
                metrics = [(p, m, _fmt(v, m)) for (p, m), v in e["metrics"].items()]
                figures, note = entry_plots(e, leaderboard, out)
                write(entry_page(e["id"]), "leaderboard_entry.html.j2", board=board, entry=e,
                      metrics=metrics, figures=figures, plots_note=note)
    write("index.html", "leaderboard_index.html.j2", boards=boards)
    return written

