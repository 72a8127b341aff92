"""Detectors in a run: their rows, jobs, adaptive attacks, early stop, store, verify and reports."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from oodbench.cli import main
from oodbench.data.common import subsample_indices
from oodbench.metrics import auroc
from oodbench.detectors import build_detector
from oodbench.pipeline.plan import JobKind
from oodbench.report import render
from oodbench.report.data import full_verification
from oodbench.pipeline.run import plan_suite, run_suite
from oodbench.pipeline.store import ResultStore
from oodbench.pipeline.suite import SuiteError, load_suite

from conftest import SUITE_HEADER  # noqa: E402

try:
    from tests import formats
except ImportError:  # pytest run from tests/ itself
    import formats  # type: ignore[no-redef]

DETECTORS = "name: detectors\n" + SUITE_HEADER + """\
detectors: [{detectors}]
fit: {{n: 300}}
probes:
  - {{name: uniform, dataset: uniform-noise, n: 60}}
  - {{name: adv. uniform, dataset: uniform-noise, n: 40, attack: {{name: adversarial-noise, steps: {steps}, step_size: 0.03}}}}
  - {{name: adv. samples, n: 20, attack: {{name: adversarial-samples, steps: 4}}}}
  - {{name: in attacked, n: 40, versus: uniform, attack: {{name: in-distribution-attack, steps: 8}}}}
  - {{name: both attacked, n: 40, versus: adv. uniform, attack: {{name: in-distribution-attack, steps: 8}}}}
metrics: [{metrics}]
"""

ALL = "msp, energy, odin, {name: knn, k: 5}, mahalanobis, rmd, vim, react, gen, entropy, max-logit"


def _run(write_suite, tmp_path, detectors: str = ALL, metrics: str = "test-error, mmc, auroc, fpr95",
         steps: int = 10, name: str = "suite.yaml", db: str = "r.db"):
    suite = load_suite(write_suite(DETECTORS, name=name, detectors=detectors, metrics=metrics,
                                   steps=steps))
    return suite, run_suite(suite, output=tmp_path / db, progress=False)


def _values(result) -> dict[tuple[str, str, str], float]:
    m = result.metrics
    return {(d, p, k): v for d, p, k, v in zip(m["detector"], m["probe"], m["metric"], m["value"])}


@pytest.fixture(scope="module")
def every_detector(tmp_path_factory, digits_weights):
    """One run of the digits model with every built-in detector (a few seconds)."""
    tmp = tmp_path_factory.mktemp("detectors")

    def write(text, name="suite.yaml", **fmt):
        path = tmp / name
        path.write_text(text.format(weights=digits_weights, **fmt))
        return path

    suite, result = _run(write, tmp)
    return tmp, suite, result


def test_msp_numbers_do_not_change_when_other_detectors_join(write_suite, tmp_path, every_detector):
    _, _, result = every_detector
    _, alone = _run(write_suite, tmp_path, detectors="msp", db="msp.db")
    together = _values(result)
    only = _values(alone)
    assert set(only) == {k for k in together if k[0] == "msp"}
    assert all(together[k] == only[k] or (np.isnan(only[k]) and np.isnan(together[k])) for k in only)
    # and a msp-only table looks as it always did: no detector level
    assert alone.table().index.names == ["model", "probe"]
    assert result.table().index.names == ["model", "detector", "probe"]


def test_every_detector_gets_its_rows_and_the_attack_lowers_its_auroc(every_detector):
    _, suite, result = every_detector
    values = _values(result)
    for spec in suite.detectors:
        det = spec.display
        clean, attacked = values[(det, "uniform", "auroc")], values[(det, "adv. uniform", "auroc")]
        assert attacked < clean, det  # the adaptive attack on its own score hurts every detector
        # attacking the in-distribution side too can only make it worse
        assert values[(det, "both attacked", "auroc")] <= values[(det, "in attacked", "auroc")], det
        logit_only = not (build_detector(spec.name, spec.params).needs_features
                          or build_detector(spec.name, spec.params).needs_model)
        # adversarial samples ignore the detector: scored from their logits only where possible
        assert ((det, "adv. samples", "auroc") in values) == logit_only, det


def test_attacks_raise_or_lower_each_detectors_own_score(every_detector):
    tmp, suite, result = every_detector
    plan = plan_suite(suite, output=tmp / "r.db")
    assert all(j.cached for j in plan.jobs)  # the second plan finds every job stored
    with ResultStore(tmp / "r.db") as store:
        for row in plan.table:
            if row.label not in ("adv. uniform", "in attacked"):
                continue
            det = build_detector(**row.detector_spec)
            fit = None if row.fit is None else store.get_job(row.fit)
            attacked = det.scores(store.get_job(row.points), fit)
            if row.label == "adv. uniform":  # the same 40 noise points, clean
                clean_job = next(r.points for r in plan.table
                                 if r.label == "uniform" and r.detector == row.detector)
                clean = det.scores(store.get_job(clean_job), fit)[:40]
                assert np.all(attacked >= clean) and np.mean(attacked > clean) > 0.9, row.detector
            else:  # lowered: below the clean scores of the same 40 test points
                reference = det.scores(store.get_job(row.reference), fit)
                same = subsample_indices(len(reference), 40, suite.seed).numpy()
                assert np.all(attacked <= reference[same]), row.detector
                assert np.mean(attacked < reference[same]) > 0.9, row.detector
                ood = det.scores(store.get_job(row.versus), fit)
                assert auroc(attacked, ood) < auroc(reference[same], ood), row.detector


def test_fit_jobs_are_stored_once_and_reused(every_detector, write_suite, tmp_path):
    tmp, suite, result = every_detector
    plan = plan_suite(suite, output=tmp / "r.db")
    fits = [j for j in plan.jobs if j.kind is JobKind.FIT]
    assert sorted(j.detector["name"] for j in fits) == ["knn", "mahalanobis", "react", "rmd", "vim"]
    odin = [j for j in plan.jobs if j.detector and j.detector["name"] == "odin" and j.kind is not JobKind.ATTACK]
    assert {j.kind for j in odin} == {JobKind.CLEAN, JobKind.PROBE}  # ODIN needs the model to score
    with ResultStore(tmp / "r.db") as store:
        bank = store.get_job(next(j.key for j in fits if j.detector["name"] == "knn"))
    assert bank["bank"].shape[0] == 300  # fit.n training points
    again = run_suite(suite, output=tmp / "r.db", progress=False)
    assert again.computed == []


def test_a_detector_run_verifies_shows_and_reports(every_detector):
    tmp, _, result = every_detector
    with ResultStore(tmp / "r.db", readonly=True) as store:
        assert full_verification(store, result.run_id) == []
    out = CliRunner().invoke(main, ["show", str(tmp / "r.db")])
    assert out.exit_code == 0, out.output
    assert "mahalanobis" in out.output and "detector" in out.output
    text = render(tmp / "r.db", fmt="md", layout="hein2019-table1")
    assert "plain · knn" in text and "plain · msp" in text


def test_an_edited_detector_metric_fails_verification(every_detector):
    tmp, _, result = every_detector
    import shutil
    import sqlite3

    copy = tmp / "edited.db"
    shutil.copy(tmp / "r.db", copy)
    with sqlite3.connect(copy) as db:
        db.execute("UPDATE metrics SET value = value + 0.01 WHERE detector='knn' AND "
                   "probe='uniform' AND metric='auroc'")
    with ResultStore(copy, readonly=True) as store:
        problems = full_verification(store, result.run_id)
    assert len(problems) == 1 and "knn" in problems[0] and "auroc" in problems[0]


def test_early_stop_on_a_detector_score_is_exact(write_suite, tmp_path):
    """AUROC and FPR@95 only: the energy attack may stop settled points; the table is the same
    as with the full attack, and less work is done."""
    metrics = "test-error, auroc, fpr95"
    suite = load_suite(write_suite(DETECTORS.replace("step_size: 0.03}", "step_size: 0.03, early_stop: {stop}}"),
                                   detectors="energy", metrics=metrics, steps=40, stop="auto"))
    auto = run_suite(suite, output=tmp_path / "a.db", progress=False)
    suite_full = load_suite(write_suite(DETECTORS.replace("step_size: 0.03}", "step_size: 0.03, early_stop: {stop}}"),
                                        name="full.yaml", detectors="energy", metrics=metrics,
                                        steps=40, stop="false"))
    full = run_suite(suite_full, output=tmp_path / "f.db", progress=False)
    assert _values(auto) == _values(full)

    def work(db):
        with ResultStore(db) as store:
            plan = plan_suite(load_suite(suite.source), output=db)
            job = next(j for j in plan.jobs if j.kind is JobKind.ATTACK and j.row == "adv. uniform")
            return int(store.get_job(job.key)["gradient_evaluations"])

    assert work(tmp_path / "a.db") < work(tmp_path / "f.db") == 40 * 40


def test_bad_detector_entries_name_the_field(write_suite):
    for entry, message in [("{name: knn, k: 0}", "k"), ("nope", "unknown detectors"),
                           ("{name: energy, temp: 2}", "temp"), ("msp, msp", "already used")]:
        with pytest.raises(SuiteError, match=message) as err:
            load_suite(write_suite(DETECTORS, detectors=entry, metrics="auroc", steps=2))
        assert "detectors" in str(err.value)
    bad_versus = DETECTORS.replace("versus: uniform", "versus: nowhere")
    with pytest.raises(SuiteError, match="versus"):
        load_suite(write_suite(bad_versus, detectors="msp", metrics="auroc", steps=2))


def test_list_detectors_says_what_each_needs(every_detector):
    out = CliRunner().invoke(main, ["list", "detectors"])
    assert out.exit_code == 0
    lines = {line.split()[0]: line for line in out.output.splitlines() if line.strip()}
    assert {"msp", "max-logit", "energy", "entropy", "gen", "odin", "mahalanobis", "rmd", "knn",
            "vim", "react"} <= set(lines)
    assert "needs: logits, features, fit" in lines["knn"] and "attack: exact" in lines["knn"]
    assert "model" in lines["odin"]


def test_roc_curves_rank_by_each_detectors_score(every_detector):
    from oodbench.report.plots import plot_data, roc_points

    tmp, _, result = every_detector
    values = _values(result)
    with ResultStore(tmp / "r.db", readonly=True) as store:
        data = plot_data(store)
    shown = {m.model: m for m in data.models}
    assert {"plain · msp", "plain · knn", "plain · odin"} <= set(shown)
    for detector in ("msp", "knn", "odin", "vim"):
        curves = shown[f"plain · {detector}"]
        for (label, _, _), scores in zip(curves.probes, curves.probe_scores):
            fpr, tpr = roc_points(curves.in_score, scores)
            area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
            assert area == pytest.approx(values[(detector, label, "auroc")], abs=1e-12), (detector, label)


def test_a_detector_without_useful_gradients_is_attacked_through_its_surrogate():
    """A step-function score has zero gradients everywhere: ascending it directly cannot move a
    point; its declared surrogate does, and iterates are still judged by the score itself."""
    import torch

    from oodbench.attacks.engine import AttackConfig, run_attack
    from oodbench.detectors import Detector
    from oodbench.detectors.attack import detector_head

    class Rounded(Detector):
        """max logit rounded down to a multiple of 0.05 (piecewise constant)."""

        name = "rounded"
        exact_gradient = False
        surrogate = "max logit"

        def score(self, out, fit):
            return torch.floor(20 * out.logits.max(dim=1).values) / 20

        def surrogate_score(self, out, fit):
            return out.logits.max(dim=1).values

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 3)).eval()
    x = torch.rand(32, 1, 4, 4)
    det = Rounded()
    config = AttackConfig(threat={"norm": "Linf", "eps": 0.5}, steps=20, step_size=0.05)
    result = run_attack(model, x, config, head=detector_head(det, None, torch.device("cpu")))
    clean = det.scores({"logits": model(x).detach().numpy()})
    attacked = det.scores({"logits": result.logits.numpy()})
    assert np.all(attacked >= clean) and np.mean(attacked > clean) > 0.5
    assert "surrogate (max logit)" in Rounded.describe()
    Rounded.exact_gradient = True  # the same attack on the step function itself goes nowhere
    stuck = run_attack(model, x, config.model_copy(update={"random_start": False}),
                       head=detector_head(det, None, torch.device("cpu")))
    assert np.array_equal(det.scores({"logits": stuck.logits.numpy()}), clean)


def test_evaluate_api_scores_each_detector(digits_weights):
    """The in-memory API: energy's AUROC is scikit-learn's on logsumexp of the logits."""
    from pathlib import Path

    import torch
    from sklearn.metrics import roc_auc_score

    from oodbench import evaluate
    from oodbench.data import DataRequest, load_dataset
    from oodbench.models import ModelSpec, load_model

    model = load_model(ModelSpec(name="d", adapter="safetensors", path=str(digits_weights),
                                 arch="digits-net", arch_options={"num_classes": 5}), Path("."))
    request = dict(root=Path("."), options={"classes": [0, 1, 2, 3, 4]})
    ind = load_dataset("digits", DataRequest(**request))
    train = load_dataset("digits", DataRequest(split="train", **request))
    ood = load_dataset("digits", DataRequest(root=Path("."), options={"classes": [5, 6, 7, 8, 9]}))
    table = evaluate(model, ind, {"5-9": ood}, metrics=["test-error", "auroc"], device="cpu",
                     detectors=["msp", "energy", "knn"], fit=train)
    with torch.no_grad():
        s_in = torch.logsumexp(model(ind.images[:]), 1).numpy()
        s_out = torch.logsumexp(model(ood.images[:]), 1).numpy()
    expected = roc_auc_score(np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out])
    assert table.loc[("energy", "5-9"), "auroc"] == pytest.approx(expected, abs=1e-6)
    assert table.loc[("msp", "5-9"), "auroc"] != table.loc[("energy", "5-9"), "auroc"]
    with pytest.raises(ValueError, match="fit"):
        evaluate(model, ind, {"5-9": ood}, metrics=["auroc"], device="cpu", detectors=["knn"])


def test_detectors_layout_has_a_row_per_detector(every_detector):
    from oodbench.cli import report
    from oodbench.core.registry import layouts

    tmp, suite, result = every_detector
    layout_option = next(p for p in report.params if p.name == "layout")
    assert list(layout_option.type.choices) == layouts.names()  # the CLI offers every layout
    text = render(tmp / "r.db", fmt="md", layout="detectors", percent=True, precision=1)
    lines = [line for line in text.splitlines() if line.startswith("| plain · ")]
    assert [line.split("|")[1].strip() for line in lines] == [f"plain · {d.display}" for d in suite.detectors]
    values = _values(result)
    knn = next(line for line in lines if line.startswith("| plain · knn "))
    cells = [c.strip().strip("*") for c in knn.split("|")[2:-1]]
    # uniform: AUROC, FPR@95; adv. uniform: AUROC; in attacked: AUROC; both attacked: AUROC
    assert cells[0] == f"{100 * values[('knn', 'uniform', 'auroc')]:.1f}"
    assert cells[2] == f"{100 * values[('knn', 'adv. uniform', 'auroc')]:.1f}"


def test_bootstrap_intervals_resample_each_detectors_scores(every_detector):
    """The knn row's AUROC interval is the hand-rolled bootstrap of knn's scores (both sides
    resampled, in-distribution first, the run's seed)."""
    from oodbench.report.data import load_run, with_intervals

    tmp, suite, result = every_detector
    with ResultStore(tmp / "r.db", readonly=True) as store:
        run = with_intervals(store, load_run(store, result.run_id), 0.9, n_resamples=200)
        plan = plan_suite(suite, output=tmp / "r.db")
        row = next(r for r in plan.table if r.detector == "knn" and r.label == "uniform")
        det = build_detector(**row.detector_spec)
        fit = store.get_job(row.fit)
        s_in = det.scores(store.get_job(row.reference), fit)
        s_out = det.scores(store.get_job(row.points), fit)
    rng = np.random.default_rng(suite.seed)
    values = []
    for _ in range(200):
        i = rng.integers(0, len(s_in), len(s_in))
        j = rng.integers(0, len(s_out), len(s_out))
        values.append(auroc(s_in[i], s_out[j]))
    expected = tuple(np.percentile(values, [5, 95]))
    assert run.intervals[("plain · knn", "uniform", "auroc")] == pytest.approx(expected, abs=1e-12)
    assert run.intervals[("plain · knn", "uniform", "auroc")] != run.intervals[("plain · msp", "uniform", "auroc")]


ONE_PATH = "name: one-path\n" + SUITE_HEADER + """\
shard_size: 70
detectors: [msp, energy, odin, mahalanobis]
fit: {{n: 300}}
probes:
  - {{name: pngs, dataset: image-folder, options: {{path: {pngs}}}}}
  - {{name: uniform, dataset: uniform-noise, n: 50}}
metrics: [test-error, mmc, ece, auroc, fpr95, aupr-in]
"""


def test_evaluate_and_a_suite_run_give_the_same_numbers(write_suite, tmp_path, digits_model):
    """One evaluation path: the in-memory ``evaluate`` and a suite run (sharded, stored, scored
    from the store) of the same model, data and detectors — a shared forward pass, ODIN's own
    pass and Mahalanobis' fit — agree on every metric. The probe is a folder of PNG files (16×16
    RGB digits 5-9) that both convert to the model's 8×8 grey input."""
    from pathlib import Path

    import torch
    import torch.nn.functional as F

    from oodbench import evaluate
    from oodbench.data import DataRequest, load_dataset

    options = {"classes": [0, 1, 2, 3, 4]}
    far = load_dataset("digits", DataRequest(root=Path("."), options={"classes": [5, 6, 7, 8, 9]}))
    big = F.interpolate(far.images[:60], size=(16, 16), mode="nearest").repeat(1, 3, 1, 1)
    pixels = (big * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    pngs = formats.write_png_folder(tmp_path / "pngs", {"far": list(pixels)})
    suite = load_suite(write_suite(ONE_PATH, pngs=pngs))
    result = run_suite(suite, output=tmp_path / "r.db", progress=False)

    ind = load_dataset("digits", DataRequest(root=Path("."), options=options))
    fit = load_dataset("digits", DataRequest(root=Path("."), split="train", n=300, options=options))
    probes = {"pngs": load_dataset("image-folder", DataRequest(root=tmp_path, options={"path": str(pngs)})),
              "uniform": load_dataset("uniform-noise", DataRequest(root=tmp_path, n=50, reference=ind))}
    table = evaluate(digits_model, ind, probes, metrics=list(suite.metrics), device="cpu",
                     detectors=["msp", "energy", "odin", "mahalanobis"], fit=fit)

    run = result.table().droplevel("model")
    ood = [(d, p) for d in ("msp", "energy", "odin", "mahalanobis") for p in probes]
    assert {(d, p) for d, p in run.index if p != "digits 0-4"} == set(ood)
    for det, probe in ood:
        for metric in ("auroc", "fpr95", "aupr-in"):
            assert table.loc[(det, probe), metric] == pytest.approx(run.loc[(det, probe), metric],
                                                                    rel=1e-6, abs=1e-9), (det, probe, metric)
    assert 0.6 < run.loc[("mahalanobis", "pngs"), "auroc"] < 1  # real numbers, not a degenerate 0.5
    in_row = run.xs("digits 0-4", level="probe")
    for metric in ("test-error", "mmc", "ece"):
        assert table.loc[("msp", ind.name), metric] == pytest.approx(in_row[metric].iloc[0], rel=1e-6)
