import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score

from oodbench.data import DatasetNotFoundError
from oodbench.metrics import confidence
from oodbench.pipeline.run import run_suite
from oodbench.pipeline.store import ResultStore
from oodbench.pipeline.suite import load_suite

from conftest import SUITE_HEADER  # noqa: E402  (tests/ is on sys.path under pytest)


def metrics_dict(result):
    return {(r.model, r.probe, r.metric): r.value for r in result.metrics.itertuples()}


def test_run_produces_correct_metrics(write_suite, tmp_path):
    suite = load_suite(write_suite())
    result = run_suite(suite, output=tmp_path / "r.db", progress=False)
    table = result.table()
    assert list(table.index.get_level_values("probe")) == [
        "digits 0-4", "digits 5-9", "uniform noise", "smoothed noise"]
    m = metrics_dict(result)
    assert m[("plain", "digits 0-4", "test-error")] < 0.1
    assert 0.2 <= m[("plain", "digits 0-4", "mmc")] <= 1.0
    # AUROC recomputed independently from the stored logits with scikit-learn.
    with ResultStore(tmp_path / "r.db") as store:
        jobs = store.run_jobs(result.run_id).set_index("probe", drop=False)
        clean = store.get_job(jobs[jobs.probe.isna()].job_hash.iloc[0])
        noise = store.get_job(jobs.loc["uniform noise"].job_hash)
    c_in, c_out = confidence(clean["logits"]), confidence(noise["logits"])
    y = np.r_[np.ones_like(c_in), np.zeros_like(c_out)]
    assert m[("plain", "uniform noise", "auroc")] == pytest.approx(roc_auc_score(y, np.r_[c_in, c_out]))
    assert noise["logits"].shape == (300, 5)


def test_second_run_recomputes_nothing(write_suite, tmp_path):
    suite = load_suite(write_suite())
    first = run_suite(suite, output=tmp_path / "r.db", progress=False)
    assert len(first.computed) == 4 and first.cached == []
    second = run_suite(suite, output=tmp_path / "r.db", progress=False)
    assert second.computed == [] and len(second.cached) == 4
    assert metrics_dict(first) == metrics_dict(second)


def test_changed_probe_setting_recomputes_only_that_probe(write_suite, tmp_path):
    run_suite(load_suite(write_suite()), output=tmp_path / "r.db", progress=False)
    changed = run_suite(load_suite(write_suite(n_uniform=200)), output=tmp_path / "r.db", progress=False)
    assert changed.computed == ["plain / uniform noise"]
    assert len(changed.cached) == 3


def test_changed_checkpoint_recomputes_only_its_jobs(write_suite, digits_weights, tmp_path):
    weights = tmp_path / "copy.safetensors"
    shutil.copy(digits_weights, weights)
    text = write_suite().read_text().replace(
        "probes:",
        "  - {name: other, adapter: safetensors, arch: digits-net, arch_options: {num_classes: 5},"
        f" path: {weights}}}\nprobes:")
    path = tmp_path / "two.yaml"
    path.write_text(text)
    run_suite(load_suite(path), output=tmp_path / "r.db", progress=False)
    state = load_file(weights)
    last = sorted(state)[-1]
    state[last] = state[last] + 0.5
    save_file(state, weights)
    again = run_suite(load_suite(path), output=tmp_path / "r.db", progress=False)
    assert sorted(again.computed) == sorted(f"other / {p}" for p in
                                            ["digits 0-4", "digits 5-9", "uniform noise", "smoothed noise"])
    assert all(label.startswith("plain / ") for label in again.cached)


SUITE_WITH_MISSING = """\
name: missing
device: cpu
download: false
in_distribution: {{name: digits 0-4, dataset: digits, options: {{classes: [0, 1, 2, 3, 4]}}}}
models:
  - {{name: plain, adapter: safetensors, arch: digits-net, arch_options: {{num_classes: 5}}, path: {weights}}}
probes:
  - {{name: uniform noise, dataset: uniform-noise, n: 50}}
  - {{name: FMNIST, dataset: fashion-mnist}}
metrics: [test-error, auroc]
"""


def test_missing_data_stops_loudly_before_any_work(write_suite, tmp_path):
    """Missing data is found while planning, so the run stops before it spends anything."""
    suite = load_suite(write_suite(SUITE_WITH_MISSING))
    empty_root = tmp_path / "no-data"
    with pytest.raises(DatasetNotFoundError) as err:
        run_suite(suite, data_root=empty_root, output=tmp_path / "r.db", progress=False)
    assert "fashion-mnist" in str(err.value) and str(empty_root) in str(err.value)
    with ResultStore(tmp_path / "r.db") as store:
        assert store.runs().empty
    with pytest.warns(UserWarning, match="skipping probe 'FMNIST'"):
        skipping = run_suite(suite, data_root=empty_root, output=tmp_path / "r.db", progress=False,
                             skip_missing=True)
    assert len(skipping.computed) == 2 and skipping.skipped == ["FMNIST"]
    assert "FMNIST" not in set(skipping.metrics.probe)
    with pytest.warns(UserWarning, match="skipping probe 'FMNIST'"):
        again = run_suite(suite, data_root=empty_root, output=tmp_path / "r.db", progress=False,
                          skip_missing=True)
    assert len(again.cached) == 2 and again.computed == []


def test_same_seed_same_numbers_in_a_fresh_store(write_suite, tmp_path):
    suite = load_suite(write_suite())
    a = run_suite(suite, output=tmp_path / "a.db", progress=False)
    b = run_suite(suite, output=tmp_path / "b.db", progress=False)
    assert metrics_dict(a) == metrics_dict(b)


ATTACK_SUITE = "name: attacks\n" + SUITE_HEADER + """\
probes:
  - {{name: noise, dataset: smoothed-noise, n: 100}}
  - {{name: adv. noise, dataset: smoothed-noise, n: 100, attack: {{name: adversarial-noise, steps: {steps}}}}}
  - {{name: adv. samples, n: 60, attack: {{name: adversarial-samples, steps: 10}}}}
metrics: {metrics}
"""


def test_attack_probes_raise_confidence_and_are_cached(write_suite, tmp_path):
    path = write_suite(ATTACK_SUITE, steps=40, metrics="[test-error, mmc, auroc, fpr95]")
    result = run_suite(load_suite(path), output=tmp_path / "r.db", progress=False)
    m = metrics_dict(result)
    # Adversarial noise starts from the same noise images and can only raise the confidence.
    assert m[("plain", "adv. noise", "mmc")] > m[("plain", "noise", "mmc")]
    assert m[("plain", "adv. noise", "auroc")] < m[("plain", "noise", "auroc")]
    assert ("plain", "adv. samples", "auroc") in m
    again = run_suite(load_suite(path), output=tmp_path / "r.db", progress=False)
    assert again.computed == [] and metrics_dict(again) == m
    more = run_suite(load_suite(write_suite(ATTACK_SUITE, steps=41, metrics="[test-error, mmc, auroc, fpr95]")),
                     output=tmp_path / "r.db", progress=False)
    assert more.computed == ["plain / adv. noise"]


def _adv_noise_run(write_suite, db: Path, metrics: str, suite: str = ATTACK_SUITE):
    """Run ATTACK_SUITE asking ``metrics`` into ``db``: the result, its metrics and the stored
    arrays of the adversarial-noise job."""
    result = run_suite(load_suite(write_suite(suite, steps=40, metrics=metrics)),
                       output=db, progress=False)
    with ResultStore(db) as store:
        jobs = store.run_jobs(result.run_id).set_index("probe")
        arrays = store.get_job(jobs.loc["adv. noise"].job_hash)
    return result, metrics_dict(result), arrays


def test_early_stop_auto_only_with_rank_metrics(write_suite, tmp_path):
    _, full_m, full = _adv_noise_run(write_suite, tmp_path / "full.db", "[auroc, fpr95, aupr-out]")
    _, fast_m, fast = _adv_noise_run(write_suite, tmp_path / "fast.db", "[auroc, fpr95]")
    assert fast["stopped_early"].sum() > full["stopped_early"].sum()
    assert int(fast["gradient_evaluations"]) < int(full["gradient_evaluations"])
    for metric in ("auroc", "fpr95"):
        assert fast_m[("plain", "adv. noise", metric)] == full_m[("plain", "adv. noise", metric)]


def test_attack_stopped_for_fpr95_reattacks_only_unsettled_points_for_auroc(write_suite, tmp_path):
    """FPR@95 alone settles points earlier than AUROC does. The stop threshold is stored with
    the shard, not in the job's key: asking AUROC later re-attacks exactly the points that
    stopped below the AUROC threshold, and gives a fresh run's arrays and numbers."""
    from oodbench.metrics import settled_above
    from oodbench.scores import msp_score

    # Large steps: some points jump past every in-distribution score in the step that takes them
    # over the FPR@95 threshold, so both kinds of stopped point occur.
    big = ATTACK_SUITE.replace("steps: {steps}", "steps: {steps}, step_size: 0.3")
    _, fpr_only, fpr_arrays = _adv_noise_run(write_suite, tmp_path / "shared.db", "[fpr95]", big)
    with ResultStore(tmp_path / "shared.db") as store:
        clean_hash = store.run_jobs(1).set_index("probe", drop=False).loc[
            lambda d: d.probe.isna()].job_hash.iloc[0]
        clean = store.get_job(clean_hash)
    auroc_stop = settled_above(["auroc", "fpr95"], msp_score(clean["logits"]))
    unsettled = fpr_arrays["stopped_early"] & ~(msp_score(fpr_arrays["logits"]) > auroc_stop)
    assert 0 < unsettled.sum() < len(unsettled)

    later, both, both_arrays = _adv_noise_run(write_suite, tmp_path / "shared.db", "[auroc, fpr95]", big)
    assert "plain / adv. noise" in later.computed
    _, fresh, fresh_arrays = _adv_noise_run(write_suite, tmp_path / "fresh.db", "[auroc, fpr95]", big)
    key = ("plain", "adv. noise")
    assert both[key + ("auroc",)] == fresh[key + ("auroc",)]
    assert fpr_only[key + ("fpr95",)] == both[key + ("fpr95",)] == fresh[key + ("fpr95",)]
    # Points already settled for AUROC kept their stored iterate; the others are a fresh run's.
    np.testing.assert_array_equal(both_arrays["logits"][unsettled], fresh_arrays["logits"][unsettled])
    np.testing.assert_array_equal(both_arrays["logits"][~unsettled], fpr_arrays["logits"][~unsettled])
    # The second run paid only for the re-attacked points: less than a fresh AUROC attack.
    extra = int(both_arrays["gradient_evaluations"]) - int(fpr_arrays["gradient_evaluations"])
    assert 0 < extra < int(fresh_arrays["gradient_evaluations"])


def test_the_plan_decides_which_points_to_reattack(write_suite, tmp_path):
    """The planner decides what a run re-attacks, once: with the clean job stored, the attack
    job's early stop is decided when it is planned (the AUROC threshold of the clean scores) and
    its shards name exactly the points that stopped below it; before the clean job is stored the
    decision waits for it (the driver asks the plan's rule once it is)."""
    from oodbench.core.jobs import JobKind
    from oodbench.metrics import settled_above
    from oodbench.pipeline.run import plan_suite
    from oodbench.scores import msp_score

    big = ATTACK_SUITE.replace("steps: {steps}", "steps: {steps}, step_size: 0.3")
    db = tmp_path / "shared.db"
    auroc = load_suite(write_suite(big, steps=40, metrics="[auroc, fpr95]"))
    fresh = next(j for j in plan_suite(auroc, output=db).jobs
                 if j.kind is JobKind.ATTACK and j.row == "adv. noise")
    assert fresh.early_stop is None and not fresh.decided  # no clean scores to decide from yet
    _, _, fpr_arrays = _adv_noise_run(write_suite, db, "[fpr95]", big)
    job = next(j for j in plan_suite(auroc, output=db).jobs
               if j.kind is JobKind.ATTACK and j.row == "adv. noise")
    with ResultStore(db) as store:
        clean = store.get_job(job.reference_key)
    auroc_stop = settled_above(["auroc", "fpr95"], msp_score(clean["logits"]))
    assert job.decided and job.early_stop.threshold == auroc_stop
    unsettled = fpr_arrays["stopped_early"] & ~(msp_score(fpr_arrays["logits"]) > auroc_stop)
    planned = np.concatenate([s.start + np.asarray(s.positions, dtype=np.int64) for s in job.shards])
    np.testing.assert_array_equal(planned, np.flatnonzero(unsettled))
    assert sum(s.reattack for s in job.shards) == unsettled.sum() > 0


def test_forced_early_stop_with_aupr_out_is_refused(write_suite):
    text = ATTACK_SUITE.replace("name: adversarial-noise,", "name: adversarial-noise, early_stop: true,")
    with pytest.raises(Exception, match="early_stop: true.*would change aupr-out"):
        load_suite(write_suite(text, steps=5, metrics="[auroc, mmc, aupr-out]"))
    load_suite(write_suite(text, steps=5, metrics="[auroc, mmc, fpr95]"))  # exact: allowed
