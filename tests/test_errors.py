"""One error root (issue 13 item 4): every error a user can cause is an ``OodbenchError``, still
an instance of the builtin type it was before; the CLI prints it without a traceback (exit 2)
unless ``--debug`` is given; a damaged results file is such an error for every command."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from oodbench.cli import main
from oodbench.data import DatasetError, DatasetNotFoundError
from oodbench.core.devices import DeviceError
from oodbench.core.errors import MissingFileError, OodbenchError
from oodbench.leaderboard import LeaderboardError
from oodbench.models import ModelLoadError
from oodbench.models.output_check import ModelOutputError
from oodbench.core.registry import UnknownNameError
from oodbench.report import ReportError, UnverifiedResultsError
from oodbench.pipeline.store import ResultStore, StoreError
from oodbench.pipeline.suite import SuiteError
from oodbench.train.recipe import RecipeError
from oodbench.zoo import ZooError


@pytest.mark.parametrize("error,builtin", [
    (SuiteError, ValueError), (RecipeError, ValueError), (ModelLoadError, Exception),
    (ModelOutputError, ValueError), (DatasetNotFoundError, FileNotFoundError),
    (DatasetError, ValueError), (DeviceError, ValueError), (ReportError, ValueError),
    (UnverifiedResultsError, ReportError), (StoreError, RuntimeError),
    (LeaderboardError, ValueError), (ZooError, ValueError), (UnknownNameError, KeyError),
    (MissingFileError, FileNotFoundError),
])
def test_every_user_error_has_the_one_root_and_keeps_its_old_base(error, builtin):
    assert issubclass(error, OodbenchError) and issubclass(error, builtin)


def _bad_suite(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nin_distribution: {dataset: digitz}\nmodels: [{name: m}]\n")
    return path


def test_user_error_is_one_message_and_exit_2(tmp_path):
    res = CliRunner().invoke(main, ["validate", str(_bad_suite(tmp_path))])
    assert res.exit_code == 2 and res.output.startswith("error: invalid suite")
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    res = CliRunner().invoke(main, ["--debug", "validate", str(_bad_suite(tmp_path))])
    assert isinstance(res.exception, SuiteError)  # re-raised: Python prints its traceback
    assert res.exit_code == 1


def test_debug_is_documented_in_help():
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0 and "--debug" in res.output and "traceback" in res.output


def test_a_missing_leaderboard_is_a_user_error(tmp_path):
    res = CliRunner().invoke(main, ["leaderboard", "verify", "--leaderboard", str(tmp_path / "no.db")])
    assert res.exit_code == 2 and "no such leaderboard" in res.output and "Traceback" not in res.output


# ---------------------------------------------------------------------------- damaged stores


def _store(tmp_path: Path) -> Path:
    path = tmp_path / "good.db"
    with ResultStore(path) as store:  # a real store with a run and enough rows for many pages
        run = store.start_run(suite_name="s", suite_hash="h", suite_json={}, environment={})
        store.put_metrics(run, [("m", f"p{i}", "auroc", 0.5, None) for i in range(2000)])
    return path


def _garbage(good: Path, path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 64)


def _truncated(good: Path, path: Path) -> None:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) - 4096])  # the last page gone: the header says more


def _half(good: Path, path: Path) -> None:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zeroed_header(good: Path, path: Path) -> None:
    data = good.read_bytes()
    path.write_bytes(b"\0" * 100 + data[100:])


def _schema(value: str):
    def write(good: Path, path: Path) -> None:
        path.write_bytes(good.read_bytes())
        db = sqlite3.connect(path)
        with db:
            db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (value,))
        db.close()
    return write


DAMAGE = [("garbage", _garbage, "not a results store"),
          ("truncated by a page", _truncated, "not a results store (database disk image is malformed)"),
          ("truncated by half", _half, "not a results store"),
          ("zeroed header", _zeroed_header, "not a results store"),
          ("schema_version not an integer", _schema("one"), "schema version 'one' is not an integer"),
          ("schema_version empty", _schema(""), "schema version '' is not an integer")]


@pytest.mark.parametrize("case,damage,words", DAMAGE, ids=[d[0] for d in DAMAGE])
@pytest.mark.parametrize("command", [["show"], ["verify"], ["report", "--format", "md"],
                                     ["plot", "-o", "figs"]])
def test_damaged_results_file_is_refused_by_every_command(tmp_path, case, damage, words, command):
    path = tmp_path / "damaged.db"
    damage(_store(tmp_path), path)
    args = [command[0], str(path), *command[1:]]
    if command[0] == "plot":
        args = ["plot", str(path), "-o", str(tmp_path / "figs")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert res.output.startswith(f"error: {path}: ") and words in res.output, res.output


def test_run_refuses_a_damaged_results_file(tmp_path, write_suite):
    path = tmp_path / "damaged.db"
    _zeroed_header(_store(tmp_path), path)
    res = CliRunner().invoke(main, ["run", str(write_suite()), "-o", str(path), "-q"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"error: {path}: not a results store" in res.output


def test_an_intact_store_still_opens(tmp_path):
    with ResultStore(_store(tmp_path)) as store:
        assert len(store.metrics_frame()) == 2000
