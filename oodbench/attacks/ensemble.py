"""Run an ensemble of attacks (:mod:`oodbench.attacks.members`) on one score in one ball.

Each member maximises the head's objective (the detector's own score, or its declared smooth
surrogate) and reports per point its best iterate by the head's *selection* score, the float64
number the metrics rank. The ensemble keeps per point the best of the clean point and of every
member, strictly better wins, earlier members win ties, so it is pointwise at least as strong as
each member run alone on the same points with the same seed. Members run in order, each only on
the points not yet *settled* (the engine's exact early stop: above every level the suite's
metrics can see, or at the score's ceiling), as AutoAttack attacks only what is still unbroken.

Every member draws its randomness from per-point streams of its own (seeded by the suite's seed
and the member's name), so a point's result depends on the point, its index and the seed only:
shards and re-attacks give the same arrays as one whole run.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from oodbench.attacks.engine import AttackConfig, AttackResult, Head, evaluate, run_attack
from oodbench.attacks.members import MemberSpec
from oodbench.attacks.square import square_attack
from oodbench.detectors.base import Outputs

CLEAN = -1
"""The ``member`` entry of a point whose clean input no member beat."""


@dataclass
class EnsembleResult:
    """Per point: the reported outputs and score, which member found it, each member's best
    score (NaN where it did not run), whether the point is settled, and the work done."""

    logits: torch.Tensor
    features: Optional[torch.Tensor]
    score: torch.Tensor
    member: torch.Tensor
    member_scores: torch.Tensor
    stopped_early: torch.Tensor
    gradient_evaluations: int


def member_seed(seed: int, member: MemberSpec) -> int:
    """A member's seed: its own streams, the same wherever it sits in a member list."""
    words = np.random.SeedSequence([int(seed), zlib.crc32(member.name.encode())]).generate_state(2)
    return int(words[0]) << 32 | int(words[1])


@dataclass
class _Setting:
    """What every member shares."""

    model: nn.Module
    head: Head
    base: AttackConfig
    target: Optional[torch.Tensor]
    stop_above: Optional[float]
    batch_size: int
    device: torch.device
    seed: int
    on_progress: Optional[Callable[[int], None]]


def _sub(t: Optional[torch.Tensor], rows: torch.Tensor) -> Optional[torch.Tensor]:
    return None if t is None else t[rows]


def _engine_runs(member: MemberSpec, base: AttackConfig) -> list[AttackConfig]:
    common = dict(step_size=None, momentum=0.0, random_start=True)
    if member.name in ("apgd", "apgd-surrogate"):
        return [base.model_copy(update=dict(common, optimizer="apgd", steps=member.steps,
                                             restarts=member.restarts, start=None))]
    if member.name == "pgd-starts":
        return [base.model_copy(update=dict(common, optimizer="monotone-pgd", steps=member.steps,
                                             restarts=1, start=start)) for start in member.starts]
    raise ValueError(f"unknown engine member {member.name!r}")


def _run_member(member: MemberSpec, s: _Setting, x: torch.Tensor, indices: torch.Tensor
                ) -> Optional[tuple[Outputs, torch.Tensor, torch.Tensor, int]]:
    """One member on the points ``x`` (global ``indices``): (outputs, scores, settled, gradient
    evaluations) of its best iterates, or None where it does not apply to the head."""
    seed = member_seed(s.seed, member)
    head = s.head
    if member.name == "apgd-surrogate":
        with_surrogate = getattr(head, "with_surrogate", None)
        detector = getattr(head, "detector", None)
        if with_surrogate is None or detector is None or not detector.surrogate \
                or not detector.exact_gradient:
            return None  # no smooth surrogate, or the apgd member already ascends it
        head = with_surrogate()
    if member.name == "square":
        return _square(member, s, x, indices, seed)
    best: Optional[AttackResult] = None
    evals = 0
    settled = torch.zeros(len(x), dtype=torch.bool)
    for config in _engine_runs(member, s.base):
        rows = (~settled).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        r = run_attack(s.model, x[rows], config, target=_sub(s.target, rows),
                       stop_above=s.stop_above, batch_size=s.batch_size, device=s.device,
                       seed=seed, indices=indices[rows], on_progress=s.on_progress, head=head)
        evals += r.gradient_evaluations
        if best is None:
            best = r
        else:
            better = r.score > best.score[rows]
            take = rows[better]
            best.logits[take], best.score[take] = r.logits[better], r.score[better]
            if best.features is not None and r.features is not None:
                best.features[take] = r.features[better]
            best.stopped_early[rows] |= r.stopped_early
        settled = best.stopped_early.clone()
    assert best is not None
    return Outputs(best.logits, best.features), best.score, best.stopped_early, evals


def _square(member: MemberSpec, s: _Setting, x: torch.Tensor, indices: torch.Tensor,
            seed: int) -> tuple[Outputs, torch.Tensor, torch.Tensor, int]:
    """Square on the selection score itself (no gradient: nothing to mask)."""
    model = s.model.to(s.device).eval()
    threshold = _threshold(s)
    outs, scores, settled = [], [], []
    if s.target is not None:
        raise ValueError("square scores points without targets; the versioned attacks need none")

    def score(images: torch.Tensor) -> torch.Tensor:
        return evaluate(model, s.head, images)[1]

    for a in range(0, len(x), s.batch_size):
        xb = x[a:a + s.batch_size].to(s.device)
        goal = None if threshold is None else torch.full((len(xb),), threshold, dtype=torch.float64)
        x_best, _, _ = square_attack(score, xb, s.base.threat, queries=member.steps, seed=seed,
                                     indices=indices[a:a + s.batch_size].tolist(), stop_above=goal)
        out, sc = evaluate(model, s.head, x_best)
        outs.append(out)
        scores.append(sc.double().cpu())
        settled.append((sc >= threshold).cpu() if threshold is not None
                       else torch.zeros(len(xb), dtype=torch.bool))
    logits = torch.cat([o.logits.float().cpu() for o in outs])
    features = None if outs[0].features is None else torch.cat([o.features.float().cpu() for o in outs])
    return Outputs(logits, features), torch.cat(scores), torch.cat(settled), 0


def _threshold(s: _Setting) -> Optional[float]:
    """The selection score at or above which a point is settled (the engine's rule)."""
    ceiling = getattr(s.head, "ceiling", None)
    bounds = [b for b in (ceiling, None if s.stop_above is None
                          else s.head.stop_threshold(s.stop_above)) if b is not None]
    return min(bounds) if bounds else None


def run_ensemble(model: nn.Module, x: torch.Tensor, members: Sequence[MemberSpec],
                 base: AttackConfig, head: Head, *, target: Optional[torch.Tensor] = None,
                 stop_above: Optional[float] = None, batch_size: int = 256,
                 device: str | torch.device = "cpu", seed: int = 0,
                 indices: Optional[torch.Tensor] = None,
                 on_progress: Optional[Callable[[int], None]] = None) -> EnsembleResult:
    """Attack every point of ``x`` with each member in turn (``base``: the threat model and the
    selection rule) and report per point the best iterate of all of them."""
    device = torch.device(device)
    model = model.to(device).eval()
    indices = torch.arange(len(x)) if indices is None else indices
    s = _Setting(model, head, base, target, stop_above, batch_size, device, seed, on_progress)
    out, score = evaluate(model, head, x.to(device), None if target is None else target.to(device))
    logits, score = out.logits.float().cpu(), score.double().cpu()
    features = None if out.features is None else out.features.float().cpu()
    threshold = _threshold(s)
    settled = (score >= threshold) if threshold is not None else torch.zeros(len(x), dtype=torch.bool)
    member = torch.full((len(x),), CLEAN, dtype=torch.int8)
    member_scores = torch.full((len(x), len(members)), float("nan"), dtype=torch.float64)
    evals = 0
    for m, spec in enumerate(members):
        rows = (~settled).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        found = _run_member(spec, s, x[rows], indices[rows])
        if found is None:
            continue
        m_out, m_score, m_settled, m_evals = found
        evals += m_evals
        m_score = m_score.double().cpu()
        member_scores[rows, m] = m_score
        better = m_score > score[rows]
        take = rows[better]
        logits[take], score[take], member[take] = m_out.logits.float().cpu()[better], m_score[better], m
        if features is not None and m_out.features is not None:
            features[take] = m_out.features.float().cpu()[better]
        settled[rows] |= m_settled.cpu()
    return EnsembleResult(logits, features, score, member, member_scores, settled, evals)


__all__ = ["CLEAN", "EnsembleResult", "member_seed", "run_ensemble"]
