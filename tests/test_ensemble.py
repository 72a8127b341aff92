"""The attack ensemble (issue 19): versions, members, attribution, cost, and `paper` unchanged.

Numbers a wrong ensemble would get wrong: per point its score is at least every member's run
alone on the same points with the same seed (and equals the best of them), the stored winner
is the member that found the reported score, each member raises the score it attacks, the
surrogates are what they say (hand-computed), `paper` gives the very arrays and job key of the
single run, and the plan's cost is each version's sum of member budgets.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from oodbench.attacks import AttackConfig, AttackContext, AttackSpec, ThreatModel, run_attack
from oodbench.attacks.engine import STARTS, point_generators
from oodbench.attacks.ensemble import CLEAN, run_ensemble
from oodbench.attacks.members import VERSIONS, MemberSpec
from oodbench.data import DataRequest, load_dataset
from oodbench.detectors import FitData, build_detector
from oodbench.detectors.attack import detector_head
from oodbench.detectors.base import Outputs, soft_minimum
from oodbench.models.features import logits_and_features
from oodbench.pipeline.plan.cost import Cost
from oodbench.core.registry import attacks
from oodbench.pipeline.score import ArrayKey

from conftest import SUITE_HEADER  # noqa: E402  (tests/ is on sys.path under pytest)

CPU = torch.device("cpu")
LINF = ThreatModel(norm="Linf", eps=0.3)
SMALL = (MemberSpec(name="apgd", steps=10, restarts=2), MemberSpec(name="apgd-surrogate", steps=10),
         MemberSpec(name="pgd-starts", steps=8), MemberSpec(name="square", steps=40))


@pytest.fixture(scope="module")
def model(digits_model):
    return digits_model


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble-data")
    digits = load_dataset("digits", DataRequest(root=root, split="test",
                                                options={"classes": [0, 1, 2, 3, 4]}))
    train = load_dataset("digits", DataRequest(root=root, split="train",
                                               options={"classes": [0, 1, 2, 3, 4]}))
    noise = load_dataset("smoothed-noise", DataRequest(root=root, n=12, reference=digits))
    return digits, train, noise


def _head(model, train, name: str, *, lower: bool = False):
    det = build_detector(name)
    fit = None
    if det.needs_fit:
        logits, features = logits_and_features(model, train.images)
        arrays = {"logits": logits.detach().numpy(), "features": features.detach().numpy()}
        fit = det.fit(FitData.of(arrays, train.labels.numpy(), model))
    return detector_head(det, fit, CPU, lower=lower)


def _base() -> AttackConfig:
    return AttackConfig(threat=LINF, select="confidence")


# --------------------------------------------------------------------------------------------
# 1. pointwise at least as strong as each member; attribution; every member raises its score
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("detector", ["knn", "mahalanobis", "energy"])
def test_ensemble_is_pointwise_at_least_each_member(model, data, detector):
    _, train, noise = data
    head = _head(model, train, detector)
    x = noise.images
    ens = run_ensemble(model, x, SMALL, _base(), head, seed=3)
    clean = head.select(head.forward(model, x), None).double()
    assert torch.all(ens.score >= clean)
    for m, member in enumerate(SMALL):
        alone = run_ensemble(model, x, (member,), _base(), head, seed=3)
        if member.name == "apgd-surrogate" and not head.detector.surrogate:
            assert torch.isnan(alone.member_scores).all() and (alone.member == CLEAN).all()
            continue
        # the same member on the same points with the same seed: the same per-point scores
        torch.testing.assert_close(alone.member_scores[:, 0], ens.member_scores[:, m],
                                   rtol=0, atol=0, equal_nan=True)
        assert torch.all(ens.score >= alone.score)
        # and it does what it is there for: raises the detector's own score somewhere
        assert (alone.score > clean).sum() >= len(x) // 2, member.name
    # the reported score is the best of the clean point and every member
    best = torch.cat([clean[:, None], ens.member_scores.nan_to_num(-np.inf)], dim=1).max(dim=1).values
    torch.testing.assert_close(ens.score, best, rtol=0, atol=0)
    # and it is the score of the reported outputs
    out = Outputs(ens.logits, ens.features)
    torch.testing.assert_close(head.select(out, None), ens.score, rtol=1e-9, atol=1e-9)


def test_winner_is_the_first_member_that_found_the_reported_score(model, data):
    _, train, noise = data
    head = _head(model, train, "knn")
    ens = run_ensemble(model, noise.images, SMALL, _base(), head, seed=1)
    clean = head.select(head.forward(model, noise.images), None).double()
    scores = ens.member_scores.nan_to_num(-np.inf)
    for i, winner in enumerate(ens.member.tolist()):
        if winner == CLEAN:
            assert torch.all(scores[i] <= clean[i])
            continue
        assert scores[i, winner] == ens.score[i] > clean[i]
        assert torch.all(scores[i, :winner] < ens.score[i])  # earlier members found less
    assert ens.member.dtype == torch.int8
    assert len(set(ens.member.tolist()) - {CLEAN}) >= 2  # more than one member contributes here


def test_later_members_attack_only_unsettled_points(model, data):
    """With a level (the exact early stop), a point settled by a member is not attacked again:
    later members' scores are NaN there, and points never settled got every member."""
    _, train, noise = data
    head = _head(model, train, "energy")
    free = run_ensemble(model, noise.images, SMALL, _base(), head, seed=0)
    level = float(free.member_scores[:, 0].median())
    ens = run_ensemble(model, noise.images, SMALL, _base(), head, seed=0, stop_above=level)
    threshold = head.stop_threshold(level)
    settled_first = ens.member_scores[:, 0] >= threshold
    assert 0 < settled_first.sum() < len(settled_first)
    assert torch.isnan(ens.member_scores[settled_first, 1:]).all()
    assert torch.equal(ens.stopped_early, ens.score >= threshold)
    never = ~ens.stopped_early
    assert not torch.isnan(ens.member_scores[never][:, [0, 1, 2, 3]][:, [0, 2, 3]]).any()
    # the exact stop changes the work, not which points end above the level
    assert torch.equal(ens.score >= threshold, free.score >= threshold)
    assert ens.gradient_evaluations < free.gradient_evaluations


def test_lowering_ensemble_lowers_the_in_distribution_score(model, data):
    digits, train, _ = data
    head = _head(model, train, "mahalanobis", lower=True)
    x = digits.images[:16]
    ens = run_ensemble(model, x, SMALL, AttackConfig(threat=ThreatModel(norm="Linf", eps=0.1)),
                       head, seed=0)
    det = head.detector
    clean = det.score(Outputs(*logits_and_features(model, x)), head.fit).detach().double()
    after = det.score(Outputs(ens.logits.double(), ens.features.double()), head.fit)
    assert torch.all(after <= clean + 1e-9) and (after < clean - 1e-3).sum() >= 12


# --------------------------------------------------------------------------------------------
# 2. the parts: surrogates, starts, monotone PGD
# --------------------------------------------------------------------------------------------


def test_soft_minimum_is_a_smooth_lower_bound_of_the_minimum():
    v = torch.tensor([[3.0, 3.1, 9.0], [-2.0, 5.0, 5.0]], dtype=torch.float64, requires_grad=True)
    soft = soft_minimum(v)
    assert torch.all(soft <= v.min(dim=1).values)
    # T = 0.1·|min|: row 0's second term shares the gradient, the far one almost not
    t = 0.3
    expected = 3.0 - t * math.log(1 + math.exp(-0.1 / t) + math.exp(-6 / t))
    assert soft[0].item() == pytest.approx(expected, rel=1e-12)
    (g,) = torch.autograd.grad(soft[0], v)
    assert g[0, 1] > 0.3 and g[0, 2] < 1e-8 and g[0].sum().item() == pytest.approx(1.0)


def test_knn_surrogate_is_the_mean_distance_to_the_k_nearest(model, data):
    _, train, noise = data
    head = _head(model, train, "knn")
    out = Outputs(*(t.double() for t in logits_and_features(model, noise.images[:5])))
    bank = head.fit["bank"].numpy()
    z = out.features.detach().numpy()
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    d = np.sort(np.linalg.norm(z[:, None, :] - bank[None], axis=2), axis=1)[:, :50]
    got = head.detector.surrogate_score(out, head.fit).detach().numpy()
    np.testing.assert_allclose(got, -d.mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(head.detector.score(out, head.fit).detach().numpy(), -d[:, -1],
                               rtol=1e-9)


def test_mahalanobis_surrogate_is_a_softmin_below_the_score(model, data):
    _, train, noise = data
    head = _head(model, train, "mahalanobis")
    out = Outputs(*(t.double() for t in logits_and_features(model, noise.images[:6])))
    score = head.detector.score(out, head.fit)
    terms = head.detector.class_terms(out, head.fit)
    np.testing.assert_allclose(score.detach().numpy(), -0.5 * terms.min(1).values.detach().numpy())
    assert torch.all(head.detector.surrogate_score(out, head.fit) >= score)  # −½·softmin ≥ −½·min


def test_starts_lie_in_the_ball_and_differ(data):
    _, _, noise = data
    x = noise.images[:8]
    gens = lambda: point_generators(0, range(8), 0)  # noqa: E731
    starts = {name: fn(x, gens(), LINF) for name, fn in STARTS.items()}
    for name, s in starts.items():
        assert LINF.contains(s, x).all(), name
    mean = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(starts["contrast"], x + (mean - x).clamp(-0.3, 0.3))
    assert not torch.equal(starts["uniform"], starts["gaussian"])
    torch.testing.assert_close(STARTS["uniform"](x, gens(), LINF), starts["uniform"])


def test_monotone_pgd_raises_the_objective(model, data):
    _, _, noise = data
    x = noise.images
    config = AttackConfig(threat=LINF, optimizer="monotone-pgd", steps=15, start="contrast",
                          select="confidence")
    r = run_attack(model, x, config, seed=0)
    with torch.no_grad():
        clean = torch.log_softmax(model(x), 1).max(1).values.double()
    assert torch.all(r.score >= clean) and (r.score > clean + 1e-3).sum() >= len(x) // 2
    assert LINF.contains(r.x_adv, x).all()


# --------------------------------------------------------------------------------------------
# 3. versions: resolution, paper unchanged, cost per version
# --------------------------------------------------------------------------------------------


def _resolve(**spec):
    return attacks.get(spec["name"])().resolve(AttackSpec(**spec), "digits")


def test_version_resolution():
    assert _resolve(name="adversarial-noise").version == "standard"
    assert _resolve(name="adversarial-noise").members == VERSIONS["standard"]
    assert _resolve(name="worst-case", version="fast").members == VERSIONS["fast"]
    # an entry that sets the single run's budget describes the paper run
    assert _resolve(name="adversarial-noise", steps=5).version == "paper"
    assert _resolve(name="in-distribution-attack", steps=5).members is None
    custom = _resolve(name="worst-case", version="custom", members=[{"name": "square", "steps": 9}])
    assert custom.members == (MemberSpec(name="square", steps=9),)
    # resolving a resolved spec gives it back (it is part of the cache key)
    for spec in (_resolve(name="adversarial-noise"), _resolve(name="worst-case", version="fast"),
                 custom, _resolve(name="adversarial-noise", steps=5)):
        assert attacks.get(spec.name)().resolve(spec, "digits") == spec
    with pytest.raises(ValueError, match="steps set.*single run of version: paper"):
        _resolve(name="adversarial-noise", version="standard", steps=5)
    with pytest.raises(ValueError, match="custom needs `members`"):
        _resolve(name="adversarial-noise", version="custom")
    with pytest.raises(ValueError, match="for version: custom"):
        _resolve(name="adversarial-noise", version="fast", members=[{"name": "apgd", "steps": 3}])
    with pytest.raises(ValueError, match="adversarial-samples has no versions"):
        _resolve(name="adversarial-samples", version="standard")


def test_paper_version_keeps_the_job_key_of_the_single_run():
    """The key config of a paper run is the spec as it was before versions existed (the
    expected dict is main's at 24df866), so stored results and tables stay valid."""
    before = {"name": "adversarial-noise", "threat": {"norm": "Linf", "eps": 0.3},
              "objective": "max-log-conf", "optimizer": "pgd", "steps": 200, "step_size": 0.0075,
              "restarts": 1, "random_start": True, "momentum": None, "options": {}}
    assert _resolve(name="adversarial-noise", version="paper").identity() == before
    assert _resolve(name="adversarial-noise", steps=100).identity() == dict(before, steps=100)
    standard = _resolve(name="adversarial-noise").identity()
    assert standard["version"] == "standard" and len(standard["members"]) == 4


def test_paper_version_runs_the_single_run_bit_identically(model, data):
    _, _, noise = data
    attack = attacks.get("adversarial-noise")()
    spec = _resolve(name="adversarial-noise", version="paper", steps=20)
    ctx = AttackContext(model=model, images=noise.images, labels=None, spec=spec,
                        in_logits=np.zeros((1, 5), np.float32), device=CPU, seed=4)
    arrays = attack.run(ctx)
    direct = run_attack(model, noise.images, attack.config(spec), seed=4)
    np.testing.assert_array_equal(arrays[ArrayKey.LOGITS.value], direct.logits.numpy())
    assert ArrayKey.MEMBER.value not in arrays
    ens = attack.run(AttackContext(model=model, images=noise.images, labels=None,
                                   spec=_resolve(name="adversarial-noise", version="custom",
                                                 members=[{"name": "apgd", "steps": 5}]),
                                   in_logits=np.zeros((1, 5), np.float32), device=CPU, seed=4))
    assert ens[ArrayKey.MEMBER.value].dtype == np.int8
    assert ens[ArrayKey.MEMBER_SCORES.value].shape == (len(noise.images), 1)


def test_plan_cost_per_version():
    attack = attacks.get("adversarial-noise")()
    n = 100
    assert attack.estimate_cost(_resolve(name="adversarial-noise", version="paper"), n) == \
        Cost(forward=2 * n, gradient=200 * n)
    # standard: clean pass; APGD 500 × 2; surrogate 500; 3 × 200 monotone PGD; Square 5,000
    assert attack.estimate_cost(_resolve(name="adversarial-noise"), n) == \
        Cost(forward=n * (1 + 2 + 2 + 2 + 5002), gradient=n * (1000 + 500 + 600))
    assert attack.estimate_cost(_resolve(name="adversarial-noise", version="fast"), n) == \
        Cost(forward=n * 5, gradient=n * 200)


# --------------------------------------------------------------------------------------------
# 4. through the pipeline: stored arrays, `show`'s per-member AUROC, `plan`'s version and cost
# --------------------------------------------------------------------------------------------

ENSEMBLE_SUITE = "name: ensemble\n" + SUITE_HEADER + """\
detectors: [msp, energy]
probes:
  - {{name: adv, dataset: uniform-noise, n: 12, attack: {{name: adversarial-noise, version: custom,
     members: [{{name: apgd, steps: 6}}, {{name: square, steps: 30}}]}}}}
metrics: [test-error, auroc]
checks: {{enabled: false}}
"""


def test_show_prints_the_auroc_after_each_member_and_plan_the_version(write_suite, tmp_path):
    from click.testing import CliRunner

    from oodbench.cli import main
    from oodbench.pipeline.run import run_suite
    from oodbench.pipeline.store import ResultStore
    from oodbench.pipeline.suite import load_suite

    path = write_suite(ENSEMBLE_SUITE)
    plan = CliRunner().invoke(main, ["plan", str(path), "-o", str(tmp_path / "r.db")])
    assert plan.exit_code == 0, plan.output
    # clean 1 + apgd (2 forward, 6 gradient) + square (30 + 2 forward) per point
    assert "attack (custom)" in plan.output and " 420 " in plan.output.replace(",", "")
    result = run_suite(load_suite(path), output=tmp_path / "r.db", progress=False)
    shown = CliRunner().invoke(main, ["show", str(tmp_path / "r.db")])
    assert shown.exit_code == 0, shown.output
    lines = [line for line in shown.output.splitlines() if "AUROC % after" in line]
    assert len(lines) == 2 and "apgd" in lines[0] and "square" in lines[0]
    with ResultStore(tmp_path / "r.db", readonly=True) as store:
        from oodbench.pipeline.score.members import member_summaries
        from oodbench.pipeline.score.table import TableScorer

        summaries = member_summaries(store, result.run_id, TableScorer(store, [], 0))
    stored = result.metrics.set_index(["detector", "metric"])["value"]
    for s in summaries:
        # after the last member: the row's own AUROC; and it never rises member by member
        assert s.auroc_after[-1] == pytest.approx(stored[(s.detector, "auroc")], abs=1e-9)
        assert list(s.auroc_after) == sorted(s.auroc_after, reverse=True)
        assert sum(s.won) + s.clean_won == 12
