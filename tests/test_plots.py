"""`oodbench plot`: ROC curves and confidence histograms from a stored run."""

import math

import numpy as np
import pytest
from click.testing import CliRunner

from oodbench.cli import main
from oodbench.metrics import auroc
from oodbench.report.plots import plot_data, roc_points, slugify, write_plots
from oodbench.runner import run_suite
from oodbench.store import ResultStore
from oodbench.suite import load_suite

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
        stored = {(m, p): v for m, p, k, v in store.metrics_frame().itertuples(index=False)
                  if k == "auroc"}
    (model,) = data.models
    assert model.slug == "my-org-plain-model"
    assert [(label, kind) for label, kind, _ in model.probes] == [
        ("uniform noise", "noise"), ("adv. noise", "adversarial")]
    for label, _, conf in model.probes:
        value = auroc(model.in_conf, conf)
        assert math.isclose(value, stored[(model.model, label)], abs_tol=1e-12)
        fpr, tpr = roc_points(model.in_conf, conf)
        assert abs(_trapz(tpr, fpr) - value) < 1e-9


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
