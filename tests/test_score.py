"""The pure scorer: row kinds, masks, and bootstrap intervals checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from oodbench.metrics import confidence
from oodbench.pipeline.score import RowKind, bootstrap_intervals, score_row


def _logits(rng, n, scale):
    return (rng.normal(size=(n, 4)) * scale).astype(np.float32)


@pytest.fixture
def arrays():
    rng = np.random.default_rng(7)
    clean = {"logits": _logits(rng, 60, 3.0), "labels": rng.integers(0, 4, 60)}
    ood = {"logits": _logits(rng, 40, 1.0)}
    return clean, ood


def test_ood_row_scores_only_masked_points_against_the_clean_row(arrays):
    clean, ood = arrays
    mask = np.arange(40) % 3 == 0
    values = score_row(RowKind.OOD, {**ood, "mask": mask}, clean, ["auroc", "mmc"], seed=0)
    c_in, c_out = confidence(clean["logits"]), confidence(ood["logits"][mask])
    y = np.r_[np.ones(60), np.zeros(mask.sum())]
    assert values["auroc"] == pytest.approx(roc_auc_score(y, np.r_[c_in, c_out]))
    assert values["mmc"] == pytest.approx(c_out.mean())


def test_bootstrap_interval_equals_a_hand_rolled_bootstrap(arrays):
    clean, ood = arrays
    got = bootstrap_intervals(RowKind.OOD, ood, clean, ["auroc", "mmc"], level=0.9,
                              n_resamples=200, seed=3)
    rng = np.random.default_rng(3)
    c_in, c_out = confidence(clean["logits"]), confidence(ood["logits"])
    aurocs, mmcs = [], []
    for _ in range(200):
        i = rng.integers(0, 60, 60)
        o = rng.integers(0, 40, 40)
        y = np.r_[np.ones(60), np.zeros(40)]
        aurocs.append(roc_auc_score(y, np.r_[c_in[i], c_out[o]]))
        mmcs.append(c_out[o].mean())
    assert got["auroc"] == pytest.approx(tuple(np.percentile(aurocs, [5, 95])), abs=1e-12)
    assert got["mmc"] == pytest.approx(tuple(np.percentile(mmcs, [5, 95])), abs=1e-12)
    point = score_row(RowKind.OOD, ood, clean, ["auroc"], seed=3)["auroc"]
    assert got["auroc"][0] < point < got["auroc"][1]


def test_in_distribution_interval_resamples_the_test_points(arrays):
    clean, _ = arrays
    got = bootstrap_intervals(RowKind.IN_DISTRIBUTION, clean, clean, ["test-error"],
                              n_resamples=300, seed=0)
    rng = np.random.default_rng(0)
    wrong = clean["logits"].argmax(1) != clean["labels"]
    errors = [wrong[rng.integers(0, 60, 60)].mean() for _ in range(300)]
    assert got["test-error"] == pytest.approx(tuple(np.percentile(errors, [2.5, 97.5])))
    assert bootstrap_intervals(RowKind.SUMMARY, clean, clean, ["auroc"]) == {}
    with pytest.raises(ValueError, match="level"):
        bootstrap_intervals(RowKind.OOD, clean, clean, ["auroc"], level=1.5)


def test_report_ci_prints_the_intervals_of_the_stored_arrays(write_suite, tmp_path):
    from click.testing import CliRunner

    from oodbench.cli import main
    from oodbench.pipeline.run import run_suite
    from oodbench.pipeline.store import ResultStore
    from oodbench.pipeline.suite import load_suite

    result = run_suite(load_suite(write_suite()), output=tmp_path / "r.db", progress=False)
    with ResultStore(tmp_path / "r.db") as store:
        jobs = store.run_jobs(result.run_id).set_index("probe", drop=False)
        clean = store.get_job(jobs[jobs.probe.isna()].job_hash.iloc[0])
        noise = store.get_job(jobs.loc["uniform noise"].job_hash)
    low, high = bootstrap_intervals(RowKind.OOD, noise, clean, ["auroc"], level=0.9, seed=0)["auroc"]
    cli = CliRunner()
    res = cli.invoke(main, ["report", str(tmp_path / "r.db"), "--format", "csv", "--ci", "0.9"])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if line.startswith("plain,uniform noise,auroc,"))
    assert row.split(",")[-2:] == [f"{low:.3f}", f"{high:.3f}"]
    md = cli.invoke(main, ["report", str(tmp_path / "r.db"), "--format", "md", "--ci", "0.9",
                           "--ci-style", "interval"])
    assert f"\\[{low:.3f}, {high:.3f}\\]" in md.output  # Markdown escapes the brackets
    pm = cli.invoke(main, ["report", str(tmp_path / "r.db"), "--format", "md", "--ci", "0.9"])
    assert f"\u00b1 {(high - low) / 2:.3f}" in pm.output
    plain = cli.invoke(main, ["report", str(tmp_path / "r.db"), "--format", "md"])
    assert "\u00b1" not in plain.output and "\\[" not in plain.output
    bad = cli.invoke(main, ["report", str(tmp_path / "r.db"), "--format", "md", "--ci", "95"])
    assert bad.exit_code != 0 and "between 0 and 1" in bad.output
