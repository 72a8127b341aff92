"""Issue 20 items 3–5: what `run` is given and what a stored run holds.

3. a suite's name is not a path: the default store name is a safe file name inside results/;
4. `run` refuses an existing file that is not a results store (a 0-byte one included) instead of
   writing into it;
5. a stored suite of the wrong types, and a checkpoint of meta or sparse tensors, are one
   ``error:`` line naming the file, exit 2 — not a TypeError / RuntimeError traceback.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from oodbench.core.registry import architectures
from oodbench.pipeline.suite import load_suite

from test_integrity import PROBES, WEIGHTS, cli, sql, write


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- 3. safe default name


@pytest.mark.parametrize("name, file", [("../../escaped-store", "escaped-store.db"),
                                        ("/etc/passwd", "etc-passwd.db"),
                                        ("my suite: v2", "my-suite-v2.db"),
                                        ("..", "suite.db"), ("quickstart", "quickstart.db")])
def test_the_default_store_name_is_a_file_name_inside_results(tmp_path, name, file):
    path = write(tmp_path)
    path.write_text(path.read_text().replace("name: integrity", f"name: {name!r}"))
    assert load_suite(path).resolve_output() == Path("results") / file


def test_a_suite_named_like_a_path_writes_inside_results(tmp_path, monkeypatch):
    """The reported case, run end to end without `-o` from a working directory two levels deep."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    path = write(work, probes=PROBES[1:])
    path.write_text(path.read_text().replace("name: integrity", "name: ../../escaped-store"))
    res = cli("run", path, "-q")
    assert res.exit_code == 0, res.output
    assert (work / "results" / "escaped-store.db").is_file()
    assert not list(tmp_path.rglob("escaped-store.db"))[1:]  # that one only, nowhere above


# --------------------------------------------------------------------------- 4. not a store


@pytest.mark.parametrize("content, kind", [(b"", "an empty file"),
                                           (b"model weights, not a database\n" * 40, "file is not a database")])
def test_run_refuses_an_existing_file_that_is_not_a_store(tmp_path, content, kind):
    target = tmp_path / "existing.db"
    target.write_bytes(content)
    res = cli("run", write(tmp_path, probes=PROBES[1:]), "-o", target, "-q")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert res.output.startswith(f"error: {target}: not a results store") and kind in res.output
    assert target.read_bytes() == content  # nothing written into it
    assert cli("run", write(tmp_path, probes=PROBES[1:]), "-o", tmp_path / "new.db", "-q").exit_code == 0


def test_an_sqlite_file_without_tables_is_not_a_new_store(tmp_path):
    import sqlite3

    target = tmp_path / "blank.db"
    sqlite3.connect(target).execute("VACUUM")  # a valid SQLite header, no tables
    before = _digest(target)
    res = cli("run", write(tmp_path, probes=PROBES[1:]), "-o", target, "-q")
    assert res.exit_code == 2 and "not a results store" in res.output, res.output
    assert _digest(target) == before


# --------------------------------------------------------------------------- 5. one error line


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory) -> Path:
    """One finished run, copied by each test that damages it (a run takes seconds)."""
    folder = tmp_path_factory.mktemp("finished")
    store = folder / "r.db"
    assert cli("run", write(folder), "-o", store, "-q").exit_code == 0
    return store


DAMAGED_SUITES = [
    ('{"probes": 5, "metrics": 3}', "`probes` is an integer, not a list; `metrics` is an integer"),
    ('{"probes": [5], "metrics": ["auroc"]}', "`probes[0]` is an integer, not a mapping"),
    ('{"probes": [{"attack": "pgd"}]}', "`probes[0].attack` is a string, not a mapping or null"),
    ('{"in_distribution": [1], "seed": "zero"}', "`seed` is a string, not an integer"),
]
COMMANDS = {"show": [], "verify": [], "report": ["--format", "md"], "plot": ["--out", "figs"]}


@pytest.mark.parametrize("command, suite_json, words",
                         [(c, *DAMAGED_SUITES[0]) for c in COMMANDS]
                         + [("verify", *case) for case in DAMAGED_SUITES[1:]])
def test_a_stored_suite_of_wrong_types_is_one_error_line(finished_store, tmp_path, command,
                                                         suite_json, words):
    store = tmp_path / "r.db"
    shutil.copy(finished_store, store)
    sql(store, f"UPDATE runs SET suite_json='{suite_json}'")
    before = _digest(store)
    args = [a if a != "figs" else tmp_path / a for a in COMMANDS[command]]
    res = cli(command, store, *args)
    assert res.exit_code == 2 and "Traceback" not in res.output, (res.output, res.exception)
    assert res.output.startswith(f"error: {store}: run 1: its stored suite is damaged")
    assert words in res.output and res.output.count("\n") == 1, res.output
    assert _digest(store) == before


@pytest.mark.parametrize("change, words", [
    (lambda t: torch.empty(t.shape, device="meta"), "fc2.weight (meta: a shape without values)"),
    (lambda t: t.to_sparse(), "fc2.weight (sparse_coo)"),
    (lambda t: t.to(torch.complex64), "1 complex tensor(s)")])
def test_run_on_a_checkpoint_of_unusable_tensors_is_an_error_line(tmp_path, change, words):
    state = architectures.get("digits-net")(num_classes=5).state_dict()
    torch.save({**state, "fc2.weight": change(state["fc2.weight"])}, tmp_path / "w.pt")
    path = write(tmp_path, probes=PROBES[1:])
    path.write_text(path.read_text().replace("adapter: safetensors", "adapter: checkpoint")
                    .replace(str(WEIGHTS), str(tmp_path / "w.pt")))
    res = cli("run", path, "-o", tmp_path / "r.db", "-q")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert res.output.startswith("error: model 'plain', field `path`: ") and str(tmp_path / "w.pt") in res.output
    assert words in res.output and "integer or boolean" not in res.output, res.output
