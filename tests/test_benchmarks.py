"""OpenOOD v1.5 and NINCO: image lists, the OOD unit tests, group rows, and the suites end to end
on fixture trees written in the benchmarks' on-disk layouts (``tests/benchmark_trees.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

try:
    from tests import benchmark_trees as trees
except ImportError:  # run from inside tests/
    import benchmark_trees as trees  # type: ignore[no-redef]

from oodbench.data import DataRequest, DatasetNotFoundError, ImageSet, load_dataset, materialise
from oodbench.data.unit_tests import UNIT_TESTS, blur_wrap, stripes
from oodbench.pipeline.run import run_suite
from oodbench.pipeline.score.table import TableScorer
from oodbench.scores import msp_score
from oodbench.pipeline.store import ResultStore
from sklearn.metrics import roc_auc_score
from oodbench.pipeline.score.bootstrap import bootstrap_mean_intervals, bootstrap_samples
from oodbench.pipeline.score.groups import with_group_rows
from oodbench.pipeline.score.rows import RowKind
from oodbench.pipeline.suite import SuiteError, load_suite, parse_suite

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "suites"


# --- image-list ---------------------------------------------------------------------------------


def test_image_list_reads_openood_lists_in_order_with_labels(tmp_path):
    from PIL import Image

    trees.write_openood(tmp_path, "cifar10", per_list=4, size=(8, 6))
    out = load_dataset("image-list", DataRequest(root=tmp_path, options={
        "list": "benchmark_imglist/cifar10/test_cifar10.txt", "images": "images_classic"}))
    assert out.shape == (3, 8, 6) and out.labels.tolist() == [0, 1, 2, 3]
    first = Path(tmp_path, "images_classic", "cifar10/test/test_cifar10_001.png")
    with Image.open(first) as img:
        expected = torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1) / 255.0
    assert torch.equal(out.images[1], expected.float())  # PNG: exact, in the list's order
    ood = load_dataset("image-list", DataRequest(root=tmp_path, n=2, seed=1, options={
        "list": "benchmark_imglist/cifar10/test_svhn.txt", "images": "images_classic", "size": 4}))
    assert ood.labels is None and ood.shape == (3, 4, 4) and len(ood) == 2  # -1: OOD, no labels


def test_image_list_missing_files_name_list_line_image_and_download(tmp_path):
    trees.write_openood(tmp_path, "cifar10", skip=("test_tin.txt",))
    hint = "OpenOOD's cifar10 benchmark"
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("image-list", DataRequest(root=tmp_path, options={
            "list": "benchmark_imglist/cifar10/test_tin.txt", "images": "images_classic",
            "hint": hint}))
    message = str(err.value)
    assert "test_tin.txt:1" in message and "tin/test/test_tin_000.jpg" in message and hint in message
    with pytest.raises(DatasetNotFoundError, match="list file .*test_nothing.txt not found.*OpenOOD"):
        load_dataset("image-list", DataRequest(root=tmp_path, options={
            "list": "benchmark_imglist/cifar10/test_nothing.txt", "hint": hint}))
    (tmp_path / "bad.txt").write_text("a.png zero\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: expected `relative/path label`"):
        load_dataset("image-list", DataRequest(root=tmp_path, options={"list": "bad.txt"}))


# --- the OOD unit tests -------------------------------------------------------------------------


def test_seventeen_unit_tests_named_as_ninco():
    assert len(UNIT_TESTS) == 17
    assert sorted(ninco for ninco, _ in UNIT_TESTS.values()) == sorted(trees.NINCO_UNIT_TESTS)


@pytest.mark.parametrize("sigma", [0.6, 3.0, 40.0])
def test_wrap_blur_is_scipys_gaussian_filter_in_wrap_mode(sigma):
    from scipy.ndimage import gaussian_filter

    x = np.random.default_rng(0).random((3, 11, 7))
    assert np.allclose(blur_wrap(x, sigma), gaussian_filter(x, (0, sigma, sigma), mode="wrap"),
                       atol=1e-12)


def test_stripes_follow_nincos_rule():
    colours = np.array([[0.1], [0.5], [0.9]])
    image = stripes((1, 8, 2), colours, horizontal=True)  # 8 // 3 = 2 rows each, rest: last colour
    assert image[0, :, 0].tolist() == [0.1, 0.1, 0.5, 0.5, 0.9, 0.9, 0.9, 0.9]


def test_unit_tests_stream_per_image_for_any_shape_and_seed():
    reference = ImageSet("ref", torch.rand(6, 1, 12, 10), torch.zeros(6, dtype=torch.int64))
    for name in UNIT_TESTS:
        out = load_dataset(name, DataRequest(root=Path("."), n=5, seed=3, reference=reference))
        whole = materialise(out.images)
        assert whole.shape == (5, 1, 12, 10) and out.labels is None
        assert torch.equal(out.images[[4, 1]], whole[[4, 1]])  # image i is the same in any batch
        assert torch.equal(whole * 255, (whole * 255).round())  # quantised as NINCO's files
    black = materialise(load_dataset("unit-black", DataRequest(root=Path("."), n=2, reference=reference)).images)
    assert float(black.max()) == 0.0
    default = load_dataset("unit-uniform", DataRequest(root=Path("."), reference=reference))
    assert len(default) == 400  # NINCO's count per test


def test_unit_tests_summary_row_counts_fpr95_above_a_tenth_on_digits(tmp_path):
    suite = load_suite(SUITES / "quickstart.yaml", output=str(tmp_path / "r.db"), probes=[
        {"name": name, "dataset": name, "n": 60} for name in UNIT_TESTS])
    result = run_suite(suite, progress=False)
    table = result.table()
    for detector in ("msp", "energy"):
        rows = table.xs(("digits-plain", detector), level=("model", "detector"))
        fprs = rows.loc[list(UNIT_TESTS), "fpr95"]
        assert rows.loc["unit-tests", "failed"] == int((fprs > 0.1).sum())
        assert rows.loc["unit-tests", "tests"] == 17


# --- group rows ---------------------------------------------------------------------------------


def test_group_rows_are_means_of_their_members():
    long = pd.DataFrame([("m", "msp", p, metric, v) for p, metric, v in [
        ("a", "auroc", 0.9), ("b", "auroc", 0.7), ("c", "auroc", 0.5),
        ("a", "fpr95", 0.2), ("b", "fpr95", 0.4), ("c", "fpr95", 0.8), ("in", "test-error", 0.1)]],
        columns=["model", "detector", "probe", "metric", "value"])
    out = with_group_rows(long, {"a": "near", "b": "near", "c": "far"})
    values = {(p, m): v for p, m, v in zip(out["probe"], out["metric"], out["value"])}
    assert values[("near (mean)", "auroc")] == pytest.approx(0.8)
    assert values[("near (mean)", "fpr95")] == pytest.approx(0.3)
    assert values[("far (mean)", "auroc")] == 0.5
    assert with_group_rows(long, {}) is long


def test_show_prints_the_unit_test_counts_as_integers():
    from oodbench.report.tables import format_table
    from oodbench.pipeline.score.wide import wide_table

    long = pd.DataFrame([("m", "msp", p, metric, v) for p, metric, v in [
        ("in", "test-error", 0.1), ("blobs", "fpr95", 0.5), ("black", "fpr95", 0.05),
        ("grey", "fpr95", 0.25)]], columns=["model", "detector", "probe", "metric", "value"])
    text = format_table(wide_table(long, groups={"blobs": "unit-tests", "black": "unit-tests",
                                                 "grey": "unit-tests"}))
    line = next(line for line in text.splitlines() if "unit-tests" in line)
    assert line.split()[-2:] == ["2", "3"]  # failed (FPR@95 > 0.1: blobs, grey), tests
    assert "2.000" not in text and "0.250" in text


def test_group_interval_resamples_each_set_and_covers_the_mean():
    rng = np.random.default_rng(0)
    clean = {"logits": rng.normal(size=(80, 3)) * 3, "labels": rng.integers(0, 3, 80)}
    sets = [{"logits": rng.normal(size=(40, 3)) * s} for s in (1.0, 2.0)]
    samples = [bootstrap_samples(RowKind.OOD, s, clean, ["auroc"], n_resamples=200) for s in sets]
    low, high = bootstrap_mean_intervals(samples)["auroc"]
    by_hand = np.mean([samples[0]["auroc"], samples[1]["auroc"]], axis=0)
    assert (low, high) == tuple(np.percentile(by_hand, [2.5, 97.5]))
    from oodbench.pipeline.score import score_row

    mean = np.mean([score_row(RowKind.OOD, s, clean, ["auroc"], seed=0)["auroc"] for s in sets])
    assert low <= mean <= high


# --- the suites ---------------------------------------------------------------------------------

OPENOOD_SUITES = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet200": "imagenet200",
                  "imagenet1k": "imagenet"}


@pytest.mark.parametrize("name", [*OPENOOD_SUITES, "ninco"])
def test_benchmark_suites_validate(name):
    file = SUITES / (f"openood-v1.5-{name}.yaml" if name != "ninco" else "ninco.yaml")
    suite = load_suite(file)
    groups = {p.group for p in suite.probes}
    assert ({"near", "far"} <= groups) if name != "ninco" else ({"ninco", "unit-tests"} <= groups)
    if name == "ninco":
        assert sum(p.group == "ninco" for p in suite.probes) == 64
        assert sum(p.group == "unit-tests" for p in suite.probes) == 17
        assert sum(p.group is None for p in suite.probes) == 11


def _tiny(classes: int) -> list[dict]:
    return [{"name": "tiny", "adapter": "python", "factory": f"{trees.__file__}:tiny_net",
             "factory_kwargs": {"num_classes": classes}, "trust_code": True}]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OPENOOD_SUITES))
def test_openood_suites_run_on_openood_layout(tmp_path, name):
    benchmark = OPENOOD_SUITES[name]
    trees.write_openood(tmp_path / "data", benchmark, per_list=3)
    suite = load_suite(SUITES / f"openood-v1.5-{name}.yaml", output=str(tmp_path / "r.db"),
                       models=_tiny(10), batch_size=3)  # batches are padded to batch_size rows
    table = run_suite(suite, data_root=tmp_path / "data", progress=False).table()
    rows = table.xs(("tiny", "msp"), level=("model", "detector"))
    near = [p.label for p in suite.probes if p.group == "near"]
    assert rows.loc["near (mean)", "auroc"] == pytest.approx(rows.loc[near, "auroc"].mean())
    assert "far (mean)" in rows.index
    assert not any(p.label in rows.index for p in suite.probes if p.group == "csid")
    if any(p.group == "csid" for p in suite.probes):  # full spectrum: csid joins the ID side
        full = suite.model_copy(update={"full_spectrum": True, "output": str(tmp_path / "f.db")})
        result = run_suite(full, data_root=tmp_path / "data", progress=False)
        fs_rows = result.table().xs(("tiny", "msp"), level=("model", "detector"))
        csid = sum(p.group == "csid" for p in suite.probes)
        with ResultStore(result.store_path) as store:
            recipe = next(r.recipe for r in store.metric_rows(result.run_id)
                          if r.probe == near[0] and r.detector == "msp")
            assert len(recipe["extra_references"]) == csid
            scorer = TableScorer(store, [], 0)
            inside = scorer.reference(recipe["reference"], recipe["extra_references"])
            outside = scorer.arrays(recipe["points"])
        assert len(inside["logits"]) == 3 * (1 + csid)  # the ID test set and every csid set
        scores = np.concatenate([msp_score(inside["logits"]), msp_score(outside["logits"])])
        truth = np.r_[np.ones(len(inside["logits"])), np.zeros(len(outside["logits"]))]
        assert fs_rows.loc[near[0], "auroc"] == pytest.approx(roc_auc_score(truth, scores))


@pytest.mark.slow
def test_ninco_suite_runs_on_nincos_layout(tmp_path):
    trees.write_ninco(tmp_path / "data")
    suite = load_suite(SUITES / "ninco.yaml", output=str(tmp_path / "r.db"), models=_tiny(1000),
                       detectors=["msp"], batch_size=2)  # batches are padded to batch_size rows
    table = run_suite(suite, data_root=tmp_path / "data", progress=False).table()
    classes = [p.label for p in suite.probes if p.group == "ninco"]
    units = [p.label for p in suite.probes if p.group == "unit-tests"]
    assert table.loc[("tiny", "ninco (mean)"), "auroc"] == pytest.approx(
        table.loc[[("tiny", c) for c in classes], "auroc"].mean())  # NINCO's per-class average
    fprs = table.loc[[("tiny", u) for u in units], "fpr95"]
    assert table.loc[("tiny", "unit-tests"), "failed"] == int((fprs > 0.1).sum())
    assert ("tiny", "360OpenSet") in table.index


def test_missing_benchmark_folder_names_the_download(tmp_path):
    suite = load_suite(SUITES / "openood-v1.5-cifar10.yaml", output=str(tmp_path / "r.db"),
                       models=_tiny(10))
    with pytest.raises(DatasetNotFoundError, match="download.py --contents datasets --datasets cifar10"):
        run_suite(suite, data_root=tmp_path, progress=False)
    ninco = load_suite(SUITES / "ninco.yaml", output=str(tmp_path / "n.db"), models=_tiny(1000))
    trees.write_image(tmp_path / "imagenet" / "val" / "n01" / "a.png", np.random.default_rng(0), (8, 8))
    with pytest.raises(DatasetNotFoundError, match="zenodo.org/record/8013288"):
        run_suite(ninco, data_root=tmp_path, progress=False)


def test_group_and_full_spectrum_are_validated():
    base = {"name": "s", "in_distribution": {"dataset": "digits"},
            "models": [{"name": "m", "adapter": "safetensors", "arch": "digits-net", "path": "x"}]}
    with pytest.raises(SuiteError, match="full_spectrum"):
        parse_suite({**base, "full_spectrum": True, "probes": [{"dataset": "uniform-noise"}]})
    with pytest.raises(SuiteError, match="group"):
        parse_suite({**base, "probes": [{"dataset": "uniform-noise", "group": "Near OOD"}]})
    suite = parse_suite({**base, "probes": [{"dataset": "unit-blobs"}]})
    assert suite.probes[0].group == "unit-tests"  # a unit test joins its group by default


@pytest.mark.slow
def test_group_rows_in_every_layout_show_and_leaderboard_with_intervals(tmp_path):
    """On the quickstart's digits: `near`/`far` groups reach show, every report layout in every
    format (each mean with its bootstrap interval, which covers it), and a leaderboard board;
    the unit-tests row's count prints as an integer everywhere."""
    import re

    from click.testing import CliRunner

    from oodbench.cli import main
    from oodbench.leaderboard import Leaderboard, render_site, submit, verify_entries
    from oodbench.report import render
    from oodbench.report.data import load_run, with_intervals

    wc = {"name": "worst-case", "version": "paper", "steps": 5}
    probes = [{"name": "digits 5-9", "dataset": "digits", "group": "near",
               "options": {"classes": [5, 6, 7, 8, 9]}},
              {"name": "uniform noise", "dataset": "uniform-noise", "n": 300, "group": "far"},
              {"name": "smoothed noise", "dataset": "smoothed-noise", "n": 300, "group": "far"},
              {"name": "uniform noise worst-case", "dataset": "uniform-noise", "n": 20,
               "group": "far-wc", "attack": wc},
              {"name": "smoothed noise worst-case", "dataset": "smoothed-noise", "n": 20,
               "group": "far-wc", "attack": wc},
              {"name": "blobs", "dataset": "unit-blobs", "n": 60},
              {"name": "grey", "dataset": "unit-grey", "n": 60}]
    store = tmp_path / "r.db"
    suite = load_suite(SUITES / "quickstart.yaml", output=str(store), probes=probes,
                       metrics=["test-error", "mmc", "auroc", "fpr95"])
    run_suite(suite, progress=False)
    shown = CliRunner().invoke(main, ["show", str(store)])
    assert shown.exit_code == 0 and "far (mean)" in shown.output and "near (mean)" in shown.output
    with ResultStore(store, readonly=True) as s:
        run = with_intervals(s, load_run(s, None), 0.95)  # render's resamples and seed
    model = "digits-plain · energy"
    failed = run.value(model, "unit-tests", "failed")
    assert failed == sum(run.value(model, p, "fpr95") > 0.1 for p in ("blobs", "grey"))
    unit_line = next(line for line in shown.output.splitlines() if "unit-tests" in line)
    assert unit_line.split()[-2:] == [f"{failed:.0f}", "2"]  # failed, tests: integers
    mean = run.value(model, "far (mean)", "auroc")
    low, high = run.interval(model, "far (mean)", "auroc")
    assert low <= mean <= high and high - low > 0
    assert mean == pytest.approx(np.mean([run.value(model, p, "auroc")
                                          for p in ("uniform noise", "smoothed noise")]))
    wc_mean = run.value(model, "far-wc (mean)", "auroc")
    wc_low, wc_high = run.interval(model, "far-wc (mean)", "auroc")
    assert wc_low <= wc_mean <= wc_high
    with_ci = f"{mean:.3f} [{low:.3f}, {high:.3f}]"
    for layout in ("hein2019-table1", "ratio-summary", "per-probe", "detectors"):
        for fmt in ("md", "html", "latex"):
            text = render(store, fmt=fmt, layout=layout, ci=0.95, ci_style="interval")
            text = text.replace("\\[", "[").replace("\\]", "]")  # Markdown escapes brackets
            assert "far (mean)" in text and with_ci in text, (layout, fmt)
    paired = next(line for line in render(store, fmt="md", layout="per-probe", ci=0.95,
                                          ci_style="interval").splitlines()
                  if line.startswith("| far (mean) |")).replace("\\[", "[").replace("\\]", "]")
    assert f"{wc_mean:.3f} [{wc_low:.3f}, {wc_high:.3f}]" in paired  # WC mean beside the clean one
    detectors = render(store, fmt="md", layout="detectors")
    energy_row = next(line for line in detectors.splitlines() if line.startswith(f"| {model} |"))
    assert f" {failed:.0f} |" in energy_row or f"**{failed:.0f}**" in energy_row
    csv = render(store, fmt="csv", ci=0.95).splitlines()
    assert f"{model},far (mean),auroc,{mean:.3f},group,{low:.3f},{high:.3f}" in csv
    assert f"{model},unit-tests,failed,{failed:.0f},unit-tests,," in csv
    board = tmp_path / "board.db"
    submit(ROOT / "model_zoo" / "digits-plain.safetensors", suite=suite, name="plain",
           arch="digits-net", arch_options={"num_classes": 5}, leaderboard=board,
           results=tmp_path / "board-results.db", progress=False)
    with Leaderboard(board, create=False) as lb:
        (entry,) = lb.entries()
    board_mean = entry["metrics"][("far (mean) · energy", "auroc")]
    assert board_mean == pytest.approx(np.mean([entry["metrics"][(f"{p} · energy", "auroc")]
                                                for p in ("uniform noise", "smoothed noise")]))
    assert verify_entries(board) == {entry["id"]: []}
    site = tmp_path / "site"
    render_site(board, site)
    page = next(site.glob("board-*.html")).read_text()
    cells = re.findall(r'<td class="num" data-sort="([^"]*)">([^<]*)</td>', page)
    assert (repr(board_mean), f"{board_mean:.4f}") in cells
    count = entry["metrics"][("unit-tests · energy", "failed")]
    assert (repr(count), f"{count:.0f}") in cells  # an integer, not 1.0000
