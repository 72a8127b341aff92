"""The leaderboard: submit (evaluate + record with provenance), deduplication, boards per suite,
and the static site (escaping, client-side sorting)."""

from __future__ import annotations

import re
import os
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner

from oodbench.cli import main
from oodbench.leaderboard import Leaderboard, board_hash, parse_options, submission_suite
from conftest import SUITE_HEADER  # noqa: E402  (tests/ is on sys.path under pytest)

BOARD_SUITE = "name: lb-suite\n" + SUITE_HEADER + """\
probes:
  - {{name: uniform noise, dataset: uniform-noise, n: {n_uniform}}}
metrics: [test-error, mmc, auroc, fpr95]
"""

EVIL = "<script>alert(1)</script>"


def _submit(runner, lb, suite, weights, name="plain", *extra):
    return runner.invoke(main, ["submit", str(weights), "--arch", "digits-net",
                                "--arch-option", "num_classes=5", "--suite", str(suite),
                                "--name", name, "--leaderboard", str(lb), "-q", *extra])


@pytest.fixture
def board(tmp_path, write_suite, digits_weights):
    """One submission of the digits model on the small suite (n: 50 noise)."""
    runner = CliRunner()
    suite = write_suite(BOARD_SUITE, name="board.yaml", n_uniform=50)
    lb = tmp_path / "lb" / "leaderboard.db"
    res = _submit(runner, lb, suite, digits_weights, EVIL, "--paper", "javascript:alert(2)")
    assert res.exit_code == 0, res.output
    return runner, lb, suite


def test_submit_records_entry_with_provenance(board, digits_weights, tmp_path):
    from oodbench.models import file_sha256
    from oodbench.pipeline.run import run_suite
    from oodbench.pipeline.suite import load_suite

    runner, lb, suite_file = board
    assert (lb.parent / "leaderboard-results.db").is_file()  # results store beside the board
    suite = load_suite(suite_file)
    with Leaderboard(lb) as board_db:
        boards, entries = board_db.boards(), board_db.entries()
    assert len(boards) == 1 and len(entries) == 1
    entry = entries[0]
    assert entry["checkpoint_sha256"] == file_sha256(digits_weights)
    assert entry["name"] == EVIL and entry["arch"] == "digits-net"
    assert entry["arch_options"] == {"num_classes": 5} and entry["adapter"] == "safetensors"
    assert entry["device"] == "cpu" and entry["paper"] == "javascript:alert(2)"
    assert entry["oodbench_version"] and entry["torch_version"] and entry["torchvision_version"]
    assert entry["submitted"].endswith("+00:00")
    assert boards[0]["hash"] == entry["suite_hash"] == board_hash(suite)
    assert boards[0]["name"] == "lb-suite"

    # the same numbers as evaluating the model directly (the suite's own model entry)
    direct = run_suite(suite, output=tmp_path / "direct.db", progress=False).metrics
    expected = {(p, m): v for p, m, v in zip(direct["probe"], direct["metric"], direct["value"])}
    assert set(entry["metrics"]) == set(expected)
    for key, value in expected.items():
        assert entry["metrics"][key] == pytest.approx(value, nan_ok=True), key
    assert ("uniform noise", "auroc") in entry["metrics"]


def test_duplicate_adds_nothing_and_changed_suite_is_new_board(board, write_suite, digits_weights):
    runner, lb, suite = board
    again = _submit(runner, lb, suite, digits_weights, "renamed")
    assert again.exit_code == 0, again.output
    assert "already on the leaderboard" in again.output
    with Leaderboard(lb) as board_db:
        assert len(board_db.entries()) == 1 and len(board_db.boards()) == 1

    changed = write_suite(BOARD_SUITE, name="changed.yaml", n_uniform=60)
    res = _submit(runner, lb, changed, digits_weights)
    assert res.exit_code == 0, res.output
    assert "added entry" in res.output
    with Leaderboard(lb) as board_db:
        assert len(board_db.boards()) == 2 and len(board_db.entries()) == 2


def test_board_hash_ignores_models_and_device(write_suite, digits_weights):
    from oodbench.pipeline.suite import load_suite

    suite = load_suite(write_suite(BOARD_SUITE, n_uniform=50))
    other = submission_suite(suite, digits_weights, name="x", arch="digits-net",
                             arch_options={"num_classes": 5})
    assert board_hash(other) == board_hash(suite)
    assert board_hash(suite.model_copy(update={"device": "cuda"})) == board_hash(suite)
    assert board_hash(suite.model_copy(update={"seed": 1})) != board_hash(suite)


def test_render_site_escapes_and_sorts(board, tmp_path):
    runner, lb, _ = board
    site = tmp_path / "site"
    res = runner.invoke(main, ["leaderboard", "render", "--leaderboard", str(lb), "--out", str(site)])
    assert res.exit_code == 0, res.output
    index = (site / "index.html").read_text()
    boards = sorted(site.glob("board-*.html"))
    entries = sorted(site.glob("entry-*.html"))
    assert len(boards) == 1 and len(entries) == 1
    assert boards[0].name in index and "lb-suite" in index
    page = boards[0].read_text()
    for html in (page, entries[0].read_text()):
        assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert 'href="javascript:' not in html
        assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    # exactly one script (ours, inline) and it sorts on header clicks
    assert page.count("<script") == 1 and "<script src" not in page
    assert 'addEventListener("click"' in page and "rows.sort" in page
    header = re.search(r"<thead>(.*?)</thead>", page, re.S).group(1)
    assert "uniform noise" in header and "auroc" in header and "test-error" in header
    assert header.count('class="sortable"') == len(re.findall(r"<th ", header))
    # numeric cells carry the full value to sort by
    assert re.search(r'<td class="num" data-sort="[0-9.e-]+">', page)


def test_entry_page_shows_its_plots(board, tmp_path):
    """Each entry page shows the ROC curves and histograms of its own run, as local PNGs."""
    runner, lb, _ = board
    site = tmp_path / "site"
    assert runner.invoke(main, ["leaderboard", "render", "--leaderboard", str(lb),
                                "--out", str(site)]).exit_code == 0
    with Leaderboard(lb) as board_db:
        (entry,) = board_db.entries()
    html = (site / f"entry-{entry['id']}.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert any("/roc-" in s for s in srcs) and any("/hist-" in s for s in srcs), html
    for src in srcs:
        assert src.startswith(f"entries/{entry['id']}/") and src.endswith(".png")
        image = site / unquote(src)
        assert image.is_file() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert entry["results_store"] in html and "No plots" not in html
    assert EVIL not in html  # in the alt text too

    # without its results store the page says so, and the site still renders
    Path(entry["results_store"]).rename(tmp_path / "moved.db")
    site2 = tmp_path / "site2"
    res = runner.invoke(main, ["leaderboard", "render", "--leaderboard", str(lb), "--out", str(site2)])
    assert res.exit_code == 0, res.output
    html = (site2 / f"entry-{entry['id']}.html").read_text()
    assert "<img" not in html and "No plots: the results store" in html and "is missing" in html
    assert "entries" not in {p.name for p in site2.iterdir()}


def test_errors(tmp_path, write_suite, digits_weights):
    runner = CliRunner()
    res = runner.invoke(main, ["leaderboard", "render", "--leaderboard", str(tmp_path / "none.db"),
                               "--out", str(tmp_path / "site")])
    assert res.exit_code == 2 and "error:" in res.output and "no such leaderboard" in res.output
    suite = write_suite(BOARD_SUITE, n_uniform=50)
    res = _submit(runner, tmp_path / "lb.db", suite, tmp_path / "missing.safetensors")
    assert res.exit_code == 2 and "no such checkpoint" in res.output
    res = runner.invoke(main, ["submit", str(digits_weights), "--arch", "digits-net",
                               "--arch-option", "oops", "--suite", str(suite), "--name", "x",
                               "--leaderboard", str(tmp_path / "lb.db")])
    assert res.exit_code == 2 and "KEY=VALUE" in res.output
    assert parse_options(["num_classes=5", "w=2.5", "s=abc"]) == {"num_classes": 5, "w": 2.5, "s": "abc"}


def test_sorting_in_browser(board, tmp_path, digits_weights):
    """Clicking a header re-sorts the rows (headless Chromium); screenshot under tmp_path."""
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        if os.environ.get("CI"):  # .ci/run installs them: in CI this test must run, not skip
            pytest.fail("CI without headless Chromium: .ci/run should have installed it")
        pytest.skip("needs headless Chromium and its driver: apt-get install chromium chromium-driver "
                    "(.ci/run installs them)")
    from selenium import webdriver  # a test dependency: never skipped
    runner, lb, suite = board
    # a second, honest entry to sort against: the same network with random weights (render
    # refuses entries whose numbers do not recompute, so a hand-written entry would not do)
    import torch
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    weak = tmp_path / "weak.safetensors"
    save_file({k: torch.randn_like(v) * 0.1 if v.is_floating_point() else v
               for k, v in load_file(str(digits_weights)).items()}, str(weak))
    res = _submit(runner, lb, suite, weak, "aaa-weak")
    assert res.exit_code == 0, res.output
    with Leaderboard(lb) as board_db:
        first = board_db.entries()[0]
    site = tmp_path / "site"
    assert runner.invoke(main, ["leaderboard", "render", "--leaderboard", str(lb),
                                "--out", str(site)]).exit_code == 0
    page = next(site.glob("board-*.html"))
    opts = webdriver.ChromeOptions()
    opts.add_argument("--headless=new")
    opts.add_argument("--no-sandbox")
    driver = webdriver.Chrome(options=opts)
    try:
        driver.get(page.as_uri())

        def names():
            return [th.text.split(" paper")[0] for th in
                    driver.find_elements("css selector", "tbody th")]

        assert names() == [EVIL, "aaa-weak"]
        headers = driver.find_elements("css selector", "thead th")
        auroc = next(h for h in headers if h.text.endswith("auroc"))
        auroc.click()
        assert names() == ["aaa-weak", EVIL] and auroc.get_attribute("aria-sort") == "ascending"
        auroc.click()
        assert names() == [EVIL, "aaa-weak"] and auroc.get_attribute("aria-sort") == "descending"
        driver.save_screenshot(str(tmp_path / "board.png"))
        driver.get((site / f"entry-{first['id']}.html").as_uri())  # its figures load
        images = driver.find_elements("css selector", "figure img")
        assert images and all(int(img.get_attribute("naturalWidth")) > 0 for img in images)
    finally:
        driver.quit()
    assert (tmp_path / "board.png").stat().st_size > 0


def test_a_file_that_is_not_a_leaderboard_is_refused(tmp_path):
    from oodbench.leaderboard import Leaderboard, LeaderboardError

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(LeaderboardError, match="not a leaderboard"):
        Leaderboard(junk)


def test_verify_catches_edited_values_in_leaderboard_and_results_store(board):
    """`leaderboard verify` recomputes every metric from the stored logits: an honest board
    verifies; a value edited in the leaderboard, or in the results store, is named."""
    import sqlite3

    from oodbench.leaderboard import default_results_store

    runner, lb, _ = board
    ok = runner.invoke(main, ["leaderboard", "verify", "--leaderboard", str(lb)])
    assert ok.exit_code == 0 and "entry 1: ok" in ok.output, ok.output

    with sqlite3.connect(lb) as db:
        db.execute("UPDATE entry_metrics SET value=0.999 WHERE probe='uniform noise' AND metric='auroc'")
    bad = runner.invoke(main, ["leaderboard", "verify", "--leaderboard", str(lb)])
    assert bad.exit_code == 1
    assert "uniform noise / auroc: leaderboard 0.999" in bad.output, bad.output

    store = default_results_store(lb)
    with sqlite3.connect(store) as db:  # the same edit in the store: now it fails recomputation
        db.execute("UPDATE metrics SET value=0.999 WHERE probe='uniform noise' AND metric='auroc'")
    bad = runner.invoke(main, ["leaderboard", "verify", "--leaderboard", str(lb)])
    assert bad.exit_code == 1 and "stored 0.999, but the stored arrays give" in bad.output, bad.output
    direct = runner.invoke(main, ["verify", str(store)])
    assert direct.exit_code == 1 and "uniform noise / auroc" in direct.output, direct.output


def test_render_refuses_an_entry_whose_metrics_do_not_recompute(board, tmp_path):
    """The site prints no number that differs from its recomputation (issue 20, item 1)."""
    import sqlite3

    from oodbench.leaderboard import default_results_store

    runner, lb, _ = board
    with sqlite3.connect(default_results_store(lb)) as db:
        db.execute("UPDATE metrics SET value=0.999 WHERE probe='uniform noise' AND metric='auroc'")
    with sqlite3.connect(lb) as db:  # the leaderboard's copy agrees with the edit
        db.execute("UPDATE entry_metrics SET value=0.999 WHERE probe='uniform noise' AND metric='auroc'")
    site = tmp_path / "site"
    res = runner.invoke(main, ["leaderboard", "render", "--leaderboard", str(lb), "--out", str(site)])
    assert res.exit_code == 2 and "entry 1" in res.output, res.output
    assert "uniform noise / auroc: stored 0.999, but the stored arrays give" in res.output
    assert "oodbench leaderboard verify" in res.output and not (site / "index.html").exists()


def test_recompute_audit_is_recorded_and_shown_on_the_entry_page(board, tmp_path):
    """`leaderboard verify --recompute` re-executes the entries' shards: an honest entry
    matches, a shard forged with a recomputed checksum (and consistent metrics everywhere) is
    named, and the entry page says when it was last recomputed and with what result."""
    import sqlite3

    from oodbench.leaderboard import default_results_store
    from test_audit import forge_uniform_noise

    runner, lb, _ = board

    def page() -> str:
        site = tmp_path / "site"
        res = runner.invoke(main, ["leaderboard", "render", "--leaderboard", str(lb), "--out", str(site)])
        assert res.exit_code == 0, res.output
        return (site / "entry-1.html").read_text()

    assert "Never recomputed" in page()
    ok = runner.invoke(main, ["leaderboard", "verify", "--leaderboard", str(lb), "--recompute", "1"])
    assert ok.exit_code == 0 and "entry 1: ok" in ok.output and "all match" in ok.output, ok.output
    text = page()
    assert "Last recomputed" in text and "bit-identical" in text and "<strong>all match</strong>" in text

    store = default_results_store(lb)
    job = forge_uniform_noise(store)
    with sqlite3.connect(store) as db:
        forged = db.execute("SELECT metric, value FROM metrics WHERE probe='uniform noise'").fetchall()
    with sqlite3.connect(lb) as db:
        db.executemany("UPDATE entry_metrics SET value=? WHERE probe='uniform noise' AND metric=?",
                       [(v, m) for m, v in forged])
    plain = runner.invoke(main, ["leaderboard", "verify", "--leaderboard", str(lb)])
    assert plain.exit_code == 0, plain.output  # checksums and metrics agree: only recomputing tells
    bad = runner.invoke(main, ["leaderboard", "verify", "--leaderboard", str(lb), "--recompute", "1"])
    assert bad.exit_code == 1 and f"job {job[:12]}" in bad.output, bad.output
    assert "array 'logits' differs from its recomputation" in bad.output
    text = page()
    assert "<strong>1 problem(s)</strong>" in text and f"job {job[:12]}" in text
