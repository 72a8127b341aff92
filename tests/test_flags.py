"""Trust checks: each flag is raised by a model built to trigger it, the quickstart's model
triggers none, and checks change no metric and no job key (see README, "Trust")."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from oodbench.attacks.base import AttackSpec
from oodbench.attacks.square import square_attack
from oodbench.attacks.threats import ThreatModel
from oodbench.checks import ChecksSpec
from oodbench.checks.base import AttackInputs
from oodbench.checks.classes import TooFewClasses
from oodbench.cli import main
from oodbench.core.registry import attacks, checks
from oodbench.report.data import run_flags
from oodbench.pipeline.run import run_suite
from oodbench.pipeline.store import ResultStore
from oodbench.pipeline.suite import SuiteError, load_suite, parse_suite

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "model_zoo" / "digits-plain.safetensors"
CODES = {"randomised-forward", "softmax-output", "dynamic-forward", "too-few-classes",
         "zero-gradient", "black-box-beats-white-box"}

NETS = '''
"""Digits models built to trigger each trust check (the quickstart's digits-net inside)."""
import torch
import torch.nn.functional as F
from torch import nn


class Wrapped(nn.Module):
    def __init__(self, net, kind):
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, x):
        z = self.net(x)
        if self.kind == "noisy":      # noise that ignores eval mode (gradients stay useful)
            return z + 0.01 * torch.randn_like(z)
        if self.kind == "softmax":    # probabilities instead of logits
            return z.softmax(1)
        if self.kind == "step":       # constant in the input: zero gradient everywhere (and
            return self.net(x * 0)    # nothing for a black-box attack to find either)
        if self.kind == "reversed":   # the value of z with the gradient of -z (masked gradients)
            return (2 * z).detach() - z
        if self.kind == "grad":       # an input gradient computed inside forward (unused, so
            with torch.inference_mode(False), torch.enable_grad():  # the outputs and their
                x2 = x.detach().clone().requires_grad_(True)          # gradients are the net's)
                (g,) = torch.autograd.grad(self.net(x2).logsumexp(1).sum(), x2)
            return z + 0 * g.sum()
        return z


def build(kind, weights, num_classes=5):
    from safetensors.torch import load_file
    from oodbench.core.registry import architectures

    torch.manual_seed(0)
    net = architectures.get("digits-net")(num_classes=num_classes)
    if weights:
        net.load_state_dict(load_file(weights))
    return Wrapped(net.eval(), kind)
'''

HEADER = """\
name: {name}
seed: 0
batch_size: 128
device: cpu
in_distribution: {{name: digits, dataset: digits, options: {{classes: {classes}}}}}
"""


def _model(kind: str, weights, num_classes: int = 5) -> str:
    w = "null" if weights is None else str(weights)
    return (f"  - {{name: {kind}, adapter: python, factory: nets.py:build, trust_code: true, "
            f"factory_kwargs: {{kind: {kind}, weights: {w}, num_classes: {num_classes}}}}}\n")


def _flags(store_path: Path, run_id: int) -> dict[tuple[str, str | None], dict[str, str]]:
    with ResultStore(store_path, readonly=True) as store:
        out: dict[tuple[str, str | None], dict[str, str]] = {}
        for f in run_flags(store, run_id):
            out.setdefault((f.model, f.row), {})[f.code] = f.detail
    return out


@pytest.fixture(scope="module")
def flagged(tmp_path_factory):
    """One run of models that each trigger a flag (and a plain one), attacked by adversarial
    noise; the results store and the run."""
    root = tmp_path_factory.mktemp("flags")
    (root / "nets.py").write_text(NETS)
    text = (HEADER.format(name="flags", classes="[0, 1, 2, 3, 4]") + "models:\n"
            + "".join(_model(k, ZOO) for k in ("plain", "noisy", "softmax", "step", "reversed", "grad"))
            + textwrap.dedent("""\
                probes:
                  - {name: adv. noise, dataset: smoothed-noise, n: 60,
                     attack: {name: adversarial-noise, steps: 20, step_size: 0.03}}
                metrics: [test-error, auroc, fpr95]
                """))
    (root / "suite.yaml").write_text(text)
    suite = load_suite(root / "suite.yaml")
    result = run_suite(suite, output=root / "r.db", progress=False)
    return root, suite, result


@pytest.mark.parametrize("model, row, code", [
    ("noisy", None, "randomised-forward"),
    ("softmax", None, "softmax-output"),
    ("grad", None, "dynamic-forward"),
    ("step", "adv. noise", "zero-gradient"),
    ("reversed", "adv. noise", "black-box-beats-white-box"),
])
def test_a_model_built_to_trigger_a_flag_triggers_it(flagged, model, row, code):
    root, _, result = flagged
    flags = _flags(root / "r.db", result.run_id)
    assert code in flags.get((model, row), {}), flags


def test_flag_details_carry_the_numbers(flagged):
    root, _, result = flagged
    flags = _flags(root / "r.db", result.run_id)
    assert "sum to 1" in flags[("softmax", None)]["softmax-output"]
    assert "calls grad" in flags[("grad", None)]["dynamic-forward"]
    detail = flags[("step", "adv. noise")]["zero-gradient"]
    assert detail.startswith("32 of 32 checked points (100%) have a zero gradient"), detail
    bb = flags[("reversed", "adv. noise")]["black-box-beats-white-box"]
    assert "AUROC" in bb and "Square (Linf ε=0.3, 300 queries) on 50 points" in bb, bb


def test_the_plain_model_and_unrelated_codes_are_not_flagged(flagged):
    """The quickstart's network, unwrapped, gets no flag; the reversed-gradient model is not
    taken for a zero-gradient one, nor the deterministic ones for randomised ones."""
    root, _, result = flagged
    flags = _flags(root / "r.db", result.run_id)
    assert ("plain", None) not in flags and ("plain", "adv. noise") not in flags
    assert "zero-gradient" not in flags.get(("reversed", "adv. noise"), {})
    assert not any("randomised-forward" in f for (m, _), f in flags.items() if m != "noisy")


def test_every_job_is_checked_once_and_a_rerun_checks_nothing(flagged):
    root, suite, result = flagged
    with ResultStore(root / "r.db", readonly=True) as store:
        checked = store.checked_codes()
        n_checks = len(store._rows("SELECT hash FROM checks"))
    assert set().union(*checked.values()) == CODES
    assert n_checks == 12  # per model: its clean job and its attack job
    from oodbench.pipeline.run import plan_suite

    plan = plan_suite(suite, output=root / "r.db")
    assert len(plan.checks) == 12 and all(c.cached for c in plan.checks)


def test_show_lists_the_flags_after_the_table(flagged):
    root, _, result = flagged
    shown = CliRunner().invoke(main, ["show", str(root / "r.db")])
    assert shown.exit_code == 0, shown.output
    table, _, flags = shown.output.partition("flags (")
    assert "adv. noise" in table and "- softmax: softmax-output:" in flags
    assert "- reversed / adv. noise: black-box-beats-white-box:" in flags


def test_report_marks_flagged_rows_and_lists_the_flags(flagged):
    from oodbench.report.render import render

    root, _, result = flagged
    md = render(root / "r.db", fmt="md", layout="hein2019-table1")
    assert "| adv. noise \u2020 |" in md and "| digits \u2020 |" in md
    assert "flagged by a trust check, reversed / adv. noise: black-box-beats-white-box" in md
    tex = render(root / "r.db", fmt="latex", layout="hein2019-table1")
    assert r"adv. noise \ensuremath{^\dagger}" in tex and "\u2020" not in tex


def test_leaderboard_flags_column_reads_the_entry_store(flagged, tmp_path):
    from oodbench.leaderboard import entry_flags, flags_cell

    root, _, result = flagged
    entry = {"results_store": str(root / "r.db"), "run_id": result.run_id}
    flags = entry_flags(entry, tmp_path / "leaderboard.db")
    assert flags is not None and "softmax-output" in flags_cell(flags)
    missing = entry_flags({"results_store": str(tmp_path / "gone.db"), "run_id": 1},
                          tmp_path / "leaderboard.db")
    assert missing is None and flags_cell(missing) == "?" and flags_cell([]) == "none"


def test_too_few_classes_one_class_model(tmp_path):
    (tmp_path / "nets.py").write_text(NETS)
    text = (HEADER.format(name="one-class", classes="[0]") + "models:\n" + _model("plain", None, 1)
            + "probes:\n  - {name: adv. noise, dataset: smoothed-noise, n: 20, "
              "attack: {name: adversarial-noise, steps: 5}}\nmetrics: [test-error, auroc]\n")
    (tmp_path / "suite.yaml").write_text(text)
    result = run_suite(load_suite(tmp_path / "suite.yaml"), output=tmp_path / "r.db", progress=False)
    flags = _flags(tmp_path / "r.db", result.run_id)
    assert flags == {("plain", "adv. noise"): {"too-few-classes": flags[("plain", "adv. noise")]["too-few-classes"]}}
    assert "needs at least 2 classes, the model has 1" in flags[("plain", "adv. noise")]["too-few-classes"]


@pytest.mark.parametrize("options, n_classes, flagged_", [
    ({}, 3, True),                                                     # standard: APGD-T needs 4
    ({}, 4, False),
    ({"version": "rand"}, 2, True),                                    # APGD-DLR needs 3
    ({"version": "rand"}, 3, False),
    ({"version": "custom", "attacks": ["apgd-ce"]}, 2, False),
])
def test_too_few_classes_for_autoattack(options, n_classes, flagged_):
    attack = attacks.get("autoattack")()
    spec = attack.resolve(AttackSpec(name="autoattack", options=options), "cifar10")
    inputs = AttackInputs(model=torch.nn.Identity(), attack=attack, spec=spec, n_classes=n_classes,
                          images=torch.zeros(0, 1, 2, 2), indices=torch.zeros(0, dtype=torch.long),
                          objective=None, device=torch.device("cpu"), seed=0, score_name="msp")
    assert (TooFewClasses().run(inputs) is not None) is flagged_


def test_quickstart_model_triggers_no_flag(tmp_path):
    """The quickstart's model and attacks (its settings, fewer points), both detectors: every
    check runs on every job, and none flags."""
    suite = load_suite(ROOT / "suites" / "quickstart.yaml")
    data = suite.model_dump(mode="json")
    data["models"][0]["path"] = str(ZOO)
    keep = {"adv. noise": 200, "adv. samples": 60, "digits 5-9 worst-case": 200}
    data["probes"] = [dict(p, n=keep[p["name"]]) for p in data["probes"] if p["name"] in keep]
    result = run_suite(parse_suite(data), output=tmp_path / "q.db", progress=False)
    with ResultStore(tmp_path / "q.db", readonly=True) as store:
        assert set().union(*store.checked_codes().values()) == CODES
        assert store.flags() == []
        assert run_flags(store, result.run_id) == []


def test_checks_change_no_metric_and_no_job_key(tmp_path, digits_weights):
    text = (HEADER.format(name="keys", classes="[0, 1, 2, 3, 4]")
            + f"models:\n  - {{name: m, adapter: safetensors, arch: digits-net, "
              f"arch_options: {{num_classes: 5}}, path: {digits_weights}}}\n"
            + "probes:\n  - {name: adv, dataset: uniform-noise, n: 30, "
              "attack: {name: worst-case, steps: 5}}\nmetrics: [auroc, fpr95]\n{extra}")
    on = tmp_path / "on.yaml"
    off = tmp_path / "off.yaml"
    on.write_text(text.replace("{extra}", ""))
    off.write_text(text.replace("{extra}", "checks: {enabled: false}\n"))
    a = run_suite(load_suite(on), output=tmp_path / "on.db", progress=False)
    b = run_suite(load_suite(off), output=tmp_path / "off.db", progress=False)
    assert a.metrics.equals(b.metrics)
    keys = [sorted(r[0] for r in sqlite3.connect(tmp_path / p).execute("SELECT hash FROM jobs"))
            for p in ("on.db", "off.db")]
    assert keys[0] == keys[1]
    with ResultStore(tmp_path / "off.db", readonly=True) as store:
        assert store.checked_codes() == {}
    with ResultStore(tmp_path / "on.db", readonly=True) as store:
        assert store.checked_codes()  # the checks ran, stored apart
    # a suite that does not mention checks keeps its content hash and board
    assert load_suite(on).content_hash() != load_suite(off).content_hash()
    plain = load_suite(on)
    explicit = parse_suite({**plain.model_dump(mode="json"), "checks": {}})
    assert plain.content_hash() == explicit.content_hash()


def test_unknown_check_code_is_a_suite_error(tmp_path):
    from conftest import VALID_SUITE

    with pytest.raises(SuiteError, match="unknown checks 'zero-gradients'.*Did you mean 'zero-gradient'"):
        parse_suite({**VALID_SUITE, "checks": {"skip": ["zero-gradients"]}})


def test_square_stays_in_the_ball_improves_and_is_per_point():
    torch.manual_seed(0)
    x = torch.rand(6, 1, 8, 8)
    weights = torch.randn(1, 1, 8, 8)

    def score(z):
        return (z * weights).flatten(1).sum(1).double()

    for threat in (ThreatModel(norm="Linf", eps=0.1), ThreatModel(norm="L2", eps=0.5)):
        best, found, used = square_attack(score, x, threat, queries=200, seed=3, indices=range(6))
        assert threat.contains(best, x).all()
        assert torch.allclose(found, score(best))
        assert (found > score(x)).all() and (used == 201).all()
        # a point's result depends on the point and its index only
        sub, found_sub, _ = square_attack(score, x[[4, 1]], threat, queries=200, seed=3, indices=[4, 1])
        assert torch.equal(sub, best[[4, 1]]) and torch.equal(found_sub, found[[4, 1]])


def test_a_store_without_the_flag_tables_reads_as_unflagged(tmp_path):
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        store.put_check("c1", job_hash="j1", codes=["zero-gradient", "softmax-output"],
                        flags={"zero-gradient": "all of them"}, seconds=0.1)
        store.put_check("c2", job_hash="j1", codes=["zero-gradient"], flags={}, seconds=0.1)
        assert store.flags() == [] and store.has_check("c1")
        with pytest.raises(ValueError, match="did not run"):
            store.put_check("c3", job_hash="j1", codes=[], flags={"x": "y"}, seconds=0)
    con = sqlite3.connect(path)
    con.executescript("DROP TABLE flags; DROP TABLE checks;")
    con.close()
    with ResultStore(path, readonly=True) as store:
        assert store.flags() == [] and store.checked_codes() == {} and not store.has_check("c1")


def test_every_check_is_registered_with_a_meaning():
    assert set(checks.names()) == CODES
    for entry in checks:
        check = entry.load()
        assert check.code == entry.name and check.scope in ("model", "attack") and check.meaning
    assert ChecksSpec().black_box_check is not None


@pytest.fixture(scope="module")
def plain_checked(tmp_path_factory):
    """A small run of the quickstart network attacked by adversarial noise (a gradient attack),
    every registered check on a few points; the results store, the suite and the run."""
    root = tmp_path_factory.mktemp("checked")
    (root / "nets.py").write_text(NETS)
    text = (HEADER.format(name="checked", classes="[0, 1, 2, 3, 4]") + "models:\n" + _model("plain", ZOO)
            + "probes:\n  - {name: adv. noise, dataset: smoothed-noise, n: 16, "
              "attack: {name: adversarial-noise, steps: 5, step_size: 0.03}}\n"
              "metrics: [test-error, auroc]\n"
              "checks: {n: 8, black_box_check: {n: 8, queries: 30}}\n")
    (root / "suite.yaml").write_text(text)
    suite = load_suite(root / "suite.yaml")
    return root, suite, run_suite(suite, output=root / "r.db", progress=False)


@pytest.mark.parametrize("code", checks.names())
def test_every_registered_check_gives_the_plain_model_a_verdict(plain_checked, code):
    """Registry-parametrised (a new check is one file in ``oodbench/checks/``): in a real run the
    check ran on the plain network's job of its scope — its clean job for a model check, its
    adversarial-noise job for an attack check — and stored its verdict there: not flagged."""
    from oodbench.core.jobs import JobKind
    from oodbench.pipeline.run import plan_suite

    root, suite, _ = plain_checked
    kind = JobKind.CLEAN if checks.get(code).scope == "model" else JobKind.ATTACK
    jobs = [j.key for j in plan_suite(suite, output=root / "r.db").jobs
            if j.kind is kind and j.detector is None]
    with ResultStore(root / "r.db", readonly=True) as store:
        checked, flags = store.checked_codes(jobs), store.flags(jobs)
    assert sorted(h for h, codes in checked.items() if code in codes) == sorted(jobs)
    assert [f for f in flags if f[1] == code] == []


def test_each_models_flags_are_exactly_its_own(flagged):
    """Every model built for one flag triggers that flag and no other (the issue's rule)."""
    root, _, result = flagged
    flags = _flags(root / "r.db", result.run_id)
    by_model: dict[str, set[str]] = {}
    for (model, _), codes in flags.items():
        by_model.setdefault(model, set()).update(codes)
    assert by_model == {"noisy": {"randomised-forward"}, "softmax": {"softmax-output"},
                        "grad": {"dynamic-forward"}, "step": {"zero-gradient"},
                        "reversed": {"black-box-beats-white-box"}}
