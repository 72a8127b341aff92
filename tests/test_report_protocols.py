"""Every report names the protocol that produced each attacked row (oodbench.report.protocols)."""

from __future__ import annotations

from pathlib import Path

import oodbench
from oodbench.report.protocols import describe_attack

ROOT = Path(__file__).resolve().parents[1]

PAPER = {"name": "adversarial-noise", "optimizer": "pgd", "steps": 200, "step_size": 0.0075,
         "restarts": 1, "random_start": True, "threat": {"norm": "Linf", "eps": 0.3}}
STANDARD = dict(PAPER, version="standard", members=[
    {"name": "apgd", "steps": 500, "restarts": 2},
    {"name": "apgd-surrogate", "steps": 500, "restarts": 1},
    {"name": "pgd-starts", "steps": 200, "starts": ["contrast", "uniform", "gaussian"]},
    {"name": "square", "steps": 5000}])


def test_a_single_run_and_an_ensemble_are_told_apart_with_their_budgets():
    assert describe_attack(PAPER) == ("adversarial-noise, Linf 0.3; single run (version paper): "
                                      "PGD 200 steps of 0.0075")
    assert describe_attack(STANDARD) == (
        "adversarial-noise, Linf 0.3; ensemble (version standard), per point the best of: "
        "APGD 500 steps \u00d7 2 restarts, APGD on the detector's smooth surrogate 500 steps, "
        "monotone PGD 200 steps from 3 starts (contrast, uniform, gaussian), Square 5,000 queries")
    samples = dict(PAPER, name="adversarial-samples", steps=80)
    assert describe_attack(samples) == ("adversarial-samples, Linf 0.3; single run: "
                                        "PGD 80 steps of 0.0075")  # an attack without versions
    certified = describe_attack({"name": "certified", "threat": {"norm": "Linf", "eps": 0.3}})
    assert certified.startswith("certified, Linf 0.3; certified upper bound")


def test_every_format_of_a_real_run_names_each_attacked_rows_protocol(tmp_path, write_suite):
    from conftest import SUITE

    text = SUITE.replace("metrics:", """  - {{name: adv paper, dataset: uniform-noise, n: 8,
     attack: {{name: adversarial-noise, version: paper, steps: 3}}}}
  - {{name: adv fast, dataset: uniform-noise, n: 8, attack: {{name: adversarial-noise, version: custom,
     members: [{{name: apgd, steps: 4}}, {{name: square, steps: 5}}]}}}}
checks: {{enabled: false}}
metrics:""")
    suite = oodbench.load_suite(write_suite(text, n_uniform=50))
    result = oodbench.run_suite(suite, output=tmp_path / "run.db", progress=False)
    from oodbench.report import render

    paper = "adv paper: adversarial-noise, Linf 0.3; single run (version paper): PGD 3 steps of 0.0075"
    ensemble = ("adv fast: adversarial-noise, Linf 0.3; ensemble (version custom), per point the "
                "best of: APGD 4 steps, Square 5 queries")
    for fmt in ("md", "html", "latex"):
        out = render(result.store_path, fmt=fmt)
        assert paper in out and ensemble in out, fmt
    # a run without attacks has no protocol notes
    clean = oodbench.run_suite(oodbench.load_suite(write_suite(name="clean.yaml")),
                               output=tmp_path / "clean.db", progress=False)
    assert "single run" not in render(clean.store_path, fmt="md")
