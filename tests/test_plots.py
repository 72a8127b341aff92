"""`oodbench plot`: ROC curves, confidence histograms and mean confidence vs attack radius from a
stored run, and the HTML report that links them."""

import html
import math
import os
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from click.testing import CliRunner

from oodbench.cli import main
from oodbench.metrics import auroc
from oodbench.report import render
from oodbench.report.plots import (RADIUS_SECTION, plot_data, roc_points, slugify, write_figures,
                                   write_plots)
from oodbench.pipeline.run import run_suite
from oodbench.pipeline.store import ResultStore
from oodbench.pipeline.suite import load_suite

from conftest import SUITE_HEADER  # noqa: E402  (tests/ is on sys.path under pytest)

PLOT_SUITE = "name: plot-suite\n" + SUITE_HEADER + """\
probes:
  - {{name: uniform noise, dataset: uniform-noise, n: 50}}
  - {{name: adv. noise, dataset: uniform-noise, n: 20, attack: {{name: adversarial-noise, steps: 5}}}}
metrics: [test-error, mmc, auroc]
"""

_trapz = getattr(np, "trapezoid", None) or np.trapz


@pytest.fixture(scope="module")
def store_path(digits_weights, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plots")
    text = PLOT_SUITE.format(weights=digits_weights)
    # a model name that is not a safe file name
    text = text.replace("{name: plain,", "{name: 'my org/plain model',")
    (tmp / "suite.yaml").write_text(text)
    result = run_suite(load_suite(tmp / "suite.yaml"), output=tmp / "r.db", progress=False)
    return result.store_path


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _is_pdf(path):
    return path.read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize("seed", range(5))
def test_roc_area_equals_auroc_with_ties(seed):
    rng = np.random.default_rng(seed)
    cin = rng.integers(0, 6, size=rng.integers(1, 40)) / 5.0  # few values: many ties
    cout = rng.integers(0, 6, size=rng.integers(1, 40)) / 5.0
    fpr, tpr = roc_points(cin, cout)
    assert fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert abs(_trapz(tpr, fpr) - auroc(cin, cout)) < 1e-9
    cont_in, cont_out = rng.random(30), rng.random(25)
    fpr, tpr = roc_points(cont_in, cont_out)
    assert abs(_trapz(tpr, fpr) - auroc(cont_in, cont_out)) < 1e-9


def test_slugify_is_filesystem_safe():
    assert slugify("my org/plain model") == "my-org-plain-model"
    assert slugify("../..") == "model"
    for name in ["a/b", "x y", "C:\\evil", "ü*?<>|"]:
        assert all(c.isalnum() or c in "._-" for c in slugify(name)) and "/" not in slugify(name)


def test_plot_data_matches_stored_auroc(store_path):
    with ResultStore(store_path) as store:
        data = plot_data(store)
        stored = {(m, p): v for m, p, k, v, _ in store.metrics_frame().itertuples(index=False)
                  if k == "auroc"}
    (model,) = data.models
    assert model.slug == "my-org-plain-model"
    assert [(label, kind) for label, kind, _ in model.probes] == [
        ("uniform noise", "noise"), ("adv. noise", "adversarial")]
    assert len(model.probe_scores) == len(model.probes)
    for (label, _, conf), score in zip(model.probes, model.probe_scores):
        value = auroc(model.in_score, score)
        assert math.isclose(value, stored[(model.model, label)], abs_tol=1e-12)
        fpr, tpr = roc_points(model.in_score, score)
        assert abs(_trapz(tpr, fpr) - value) < 1e-9
        np.testing.assert_allclose(np.exp(score), conf, rtol=1e-12)  # histograms: the confidence


def test_write_plots_writes_valid_files(store_path, tmp_path):
    paths = write_plots(store_path, tmp_path / "figs")
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{kind}-my-org-plain-model.{fmt}" for kind in ("roc", "hist")
                           for fmt in ("png", "pdf"))
    for p in paths:
        assert p.parent == tmp_path / "figs" and p.is_file()
        assert _is_png(p) if p.suffix == ".png" else _is_pdf(p)


def test_cli_plot(store_path, tmp_path):
    out = tmp_path / "cli"
    res = CliRunner().invoke(main, ["plot", str(store_path), "--out", str(out), "--format", "png"])
    assert res.exit_code == 0, res.output
    printed = res.output.split()
    assert printed == [str(out / "roc-my-org-plain-model.png"), str(out / "hist-my-org-plain-model.png")]
    assert all(_is_png(out / name) for name in ("roc-my-org-plain-model.png", "hist-my-org-plain-model.png"))
    assert not list(out.glob("*.pdf"))


def test_cli_plot_unknown_run(store_path, tmp_path):
    res = CliRunner().invoke(main, ["plot", str(store_path), "--out", str(tmp_path), "--run", "99"])
    assert res.exit_code == 2 and "error:" in res.output


# --------------------------------------------------------------------------- radius sweeps

# A radius sweep: the same attack on the same points, listed once per eps, each with its own
# `name:` (table labels are unique). The clean probe on the same points (same dataset, split, n
# and options) is the radius-0 point. Two models, so that a figure has one line per model.
RADIUS_SUITE = "name: radius-suite\n" + SUITE_HEADER + """\
  - {{name: sharp, adapter: safetensors, arch: digits-net, arch_options: {{num_classes: 5}}, path: {sharp}}}
probes:
  - {{name: noise, dataset: uniform-noise, n: 40}}
  - {{name: adv. noise 0.05, dataset: uniform-noise, n: 40, attack: {{name: adversarial-noise, steps: 5, threat: {{norm: Linf, eps: 0.05}}}}}}
  - {{name: adv. noise 0.1, dataset: uniform-noise, n: 40, attack: {{name: adversarial-noise, steps: 5, threat: {{norm: Linf, eps: 0.1}}}}}}
  - {{name: adv. noise 0.3, dataset: uniform-noise, n: 40, attack: {{name: adversarial-noise, steps: 5, threat: {{norm: Linf, eps: 0.3}}}}}}
  - {{name: adv. samples 0.2, n: 60, attack: {{name: adversarial-samples, steps: 5, threat: {{norm: Linf, eps: 0.2}}}}}}
  - {{name: adv. samples 0.4, n: 60, attack: {{name: adversarial-samples, steps: 5, threat: {{norm: Linf, eps: 0.4}}}}}}
  - {{name: lone attack, dataset: smoothed-noise, n: 20, attack: {{name: adversarial-noise, steps: 3}}}}
metrics: [test-error, mmc, auroc]
"""
NOISE_SWEEP = ["noise", "adv. noise 0.05", "adv. noise 0.1", "adv. noise 0.3"]


@pytest.fixture(scope="module")
def radius_store(digits_weights, tmp_path_factory):
    """A real run of RADIUS_SUITE; the second model is the first with its logits doubled (a
    different checkpoint, so its own jobs, and a more confident model)."""
    from safetensors.torch import load_file, save_file

    tmp = tmp_path_factory.mktemp("radius")
    weights = load_file(str(digits_weights))
    sharp = tmp / "sharp.safetensors"
    save_file({k: v * 2 if k.startswith("fc2.") else v for k, v in weights.items()}, str(sharp))
    (tmp / "suite.yaml").write_text(RADIUS_SUITE.format(weights=digits_weights, sharp=sharp))
    return run_suite(load_suite(tmp / "suite.yaml"), output=tmp / "r.db", progress=False).store_path


def _stored_mmc(store_path):
    with ResultStore(store_path) as store:
        return {(m, p): v for m, p, k, v, _ in store.metrics_frame().itertuples(index=False) if k == "mmc"}


def test_suite_sweep_needs_a_name_per_radius(digits_weights, tmp_path):
    """Validation permits a sweep; unnamed entries (same default label) are refused with a hint."""
    from oodbench.pipeline.suite import SuiteError

    path = tmp_path / "s.yaml"
    path.write_text(RADIUS_SUITE.format(weights=digits_weights, sharp=digits_weights))
    sweep = [p.attack.threat.eps for p in load_suite(path).probes if p.label in NOISE_SWEEP[1:]]
    assert sweep == [0.05, 0.1, 0.3]
    text = path.read_text()
    path.write_text(text.replace("name: adv. noise 0.1, ", "").replace("name: adv. noise 0.3, ", ""))
    with pytest.raises(SuiteError, match="row label 'uniform-noise' is already used.*distinct `name:`"):
        load_suite(path)


def test_radius_points_equal_stored_mmc(radius_store):
    stored = _stored_mmc(radius_store)
    with ResultStore(radius_store) as store:
        data = plot_data(store)
    groups = {(g.attack, g.norm, g.source): g for g in data.radius}
    # the lone attack (one radius, no clean probe on its points) is no sweep
    assert set(groups) <= {("adversarial-noise", "Linf", "noise"),
                           ("adversarial-samples", "Linf", "digits 0-4 test points (n=60)")}
    noise = groups["adversarial-noise", "Linf", "noise"]
    assert noise.slug == "radius-adversarial-noise-Linf-noise"
    assert [c.model for c in noise.curves] == ["plain", "sharp"]
    for curve in noise.curves:
        assert [(e, label) for e, label, _ in curve.points] == list(zip([0, 0.05, 0.1, 0.3], NOISE_SWEEP))
        for eps, label, mmc in curve.points:
            assert mmc == pytest.approx(stored[curve.model, label], abs=1e-12), (curve.model, label)
        # radius 0 is the clean probe's MMC; attacking raises it (not monotone in eps in general:
        # each radius is a separate attack from its own random start)
        assert curve.points[0][2] == stored[curve.model, "noise"]
        assert curve.points[-1][2] > curve.points[0][2]
    # adversarial samples: MMC over the misclassified points only (the stored mask), no radius 0
    samples = [(c.model, eps, label, mmc) for g in data.radius if g.attack == "adversarial-samples"
               for c in g.curves for eps, label, mmc in c.points]
    for model, eps, label, mmc in samples:
        assert eps > 0 and mmc == pytest.approx(stored[model, label], abs=1e-12)


def test_radius_figures_are_written(radius_store, tmp_path):
    figures = write_figures(radius_store, tmp_path / "figs")
    names = [p.name for f in figures for p in f.paths]
    assert names[:8] == [f"{kind}-{m}.{fmt}" for m in ("plain", "sharp") for kind in ("roc", "hist")
                         for fmt in ("png", "pdf")]
    assert {f"radius-adversarial-noise-Linf-noise.{fmt}" for fmt in ("png", "pdf")} <= set(names)
    assert not any("smoothed" in n or "lone" in n for n in names)
    radius = [f for f in figures if f.section == RADIUS_SECTION]
    assert radius and all(f.paths[0].name.startswith("radius-") for f in radius)
    for f in figures:
        for p in f.paths:
            assert _is_png(p) if p.suffix == ".png" else _is_pdf(p)


def test_radius_axis_label(radius_store, tmp_path, monkeypatch):
    """The x axis names the norm: 'attack radius ε (Linf)'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = []
    monkeypatch.setattr(plt, "close", lambda fig: labels.append(fig.axes[0].get_xlabel()))
    write_figures(radius_store, tmp_path, formats=["png"])
    assert "attack radius ε (Linf)" in labels


def _links(html_text):
    return [unquote(h) for h in re.findall(r'(?:src|href)="([^"]*)"', html.unescape(html_text))]


def test_html_report_links_every_figure(radius_store, tmp_path):
    page_dir = tmp_path / "site" / "pages"
    text = render(radius_store, fmt="html", plots=tmp_path / "site" / "my figs#1", link_from=page_dir)
    links = _links(text)
    assert links and all(not os.path.isabs(h) and "://" not in h for h in links)
    assert all((page_dir / h).resolve().is_file() for h in links)
    assert all(h.startswith("../my figs#1/") for h in links)
    assert 'href="../my%20figs%231/roc-plain.pdf"' in text  # quoted, so '#' does not cut the link
    names = {Path(h).name for h in links}
    for stem in ("roc-plain", "hist-plain", "roc-sharp", "hist-sharp", "radius-adversarial-noise-Linf-noise"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert "<h3>Mean confidence vs attack radius</h3>" in text and "<h3>sharp</h3>" in text


def test_cli_report_with_plots(radius_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["report", str(radius_store), "--format", "html",
                                    "--plots", "figs", "--out", "out/report.html"])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "out" / "report.html").read_text()
    links = _links(text)
    assert "../figs/radius-adversarial-noise-Linf-noise.png" in links
    assert all((tmp_path / "out" / h).is_file() for h in links)
    # printed to standard output: links relative to the working directory
    res = CliRunner().invoke(main, ["report", str(radius_store), "--format", "html", "--plots", "figs2"])
    assert res.exit_code == 0 and 'src="figs2/roc-plain.png"' in res.output
    # without --plots the page is the plain table, unchanged
    res = CliRunner().invoke(main, ["report", str(radius_store), "--format", "html"])
    assert res.output == render(radius_store, fmt="html") and "<img" not in res.output
    res = CliRunner().invoke(main, ["report", str(radius_store), "--format", "md", "--plots", "figs3"])
    assert res.exit_code == 2 and "only from html" in res.output and not (tmp_path / "figs3").exists()
