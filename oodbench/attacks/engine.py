"""One batched attack engine: PGD and APGD, any registered objective, any threat model.

Every attack of the papers is an instance of the same loop — maximise an objective of the
logits inside a threat model — so there is one implementation, shared by adversarial noise,
adversarial samples, worst-case OOD detection and counterfactuals.

Guarantees (each one tested):

- the output for each point is the best over the clean point, every iterate and every restart,
  judged by ``select`` (the objective, or for OOD attacks the score every rank metric ranks by:
  :func:`oodbench.scores.msp_score`, the log-confidence in float64, which does not saturate
  where the float32 confidence reads 1.0), so an attack can never make a model look *more*
  reliable than on clean data;
- every output lies in the threat model's ball and in [0, 1]^d;
- the model stays in eval mode and its parameters and buffers are untouched (only gradients with
  respect to the input are taken);
- a point's result depends only on the point, its global index, the seed and the config: its
  random starts come from its own stream (:func:`point_generators`) and the model is always
  called on chunks of :data:`~oodbench.models.fixed_rows.FORWARD_ROWS` rows, so batch size, sharding and which other points
  stopped early do not change it (on one device and software stack);
- a point whose ``select="confidence"`` score reaches its ceiling (0.0 = log 1, reached only
  where every other class's exp(z_j - z_k) underflows in float64) is finished: no iterate can
  beat it strictly, so the reported point is final for every metric, MMC included;
- with ``stop_above`` set (a level in score units), a point stops being attacked once its best
  score exceeds that level by :func:`oodbench.scores.stop_threshold`'s margin, so the score the
  metrics compute from the stored logits is above the level too. When the level is
  :func:`oodbench.metrics.settled_above` of the metrics asked, this is *exact*: for AUROC and
  AUPR-in the point already ranks above every in-distribution point, for FPR@95 it is already
  accepted at the 95%-TPR threshold, and the full attack could only raise it further, which
  those metrics do not see. Only the work is saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from tqdm.auto import tqdm

from oodbench.attacks.threats import ThreatModel
from oodbench.detectors.base import Outputs
from oodbench.models.fixed_rows import FORWARD_ROWS, padded
from oodbench.core.registry import objectives
from oodbench.scores import MSP_CEILING, msp_score, stop_threshold


class AttackConfig(BaseModel):
    """How to run the optimisation: threat model, objective, optimiser and budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threat: ThreatModel
    objective: str = "max-log-conf"
    optimizer: Literal["pgd", "apgd", "monotone-pgd"] = "pgd"
    steps: int = Field(100, gt=0)
    step_size: Optional[float] = Field(None, gt=0, description="PGD step; default 2.5·eps/steps")
    restarts: int = Field(1, gt=0)
    random_start: bool = True
    start: Optional[Literal["contrast", "uniform", "gaussian"]] = Field(
        None, description="where every restart starts (:data:`STARTS`); None: the threat "
        "model's random start (or the clean point without random_start)")
    momentum: float = Field(0.0, ge=0, lt=1, description="PGD only: heavy-ball momentum on the "
                            "normalised steps (Augustin et al. 2020 train with 0.9)")
    select: Literal["objective", "confidence"] = Field(
        "objective", description="what picks the reported iterate: the objective, or the "
        "confidence (for OOD attacks, whose metrics depend only on the confidence), judged by "
        "msp_score: the float64 log-confidence the rank metrics use")

    @model_validator(mode="after")
    def _known_objective(self) -> "AttackConfig":
        objectives.entry(self.objective)
        if self.momentum and self.optimizer != "pgd":
            raise ValueError("momentum is a PGD setting; APGD has its own fixed momentum of 0.75, "
                             "monotone PGD its own 0.9")
        return self

    @property
    def pgd_step(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.threat.eps / self.steps


@dataclass
class AttackResult:
    """Per-point best iterates (on the CPU) and what the attack cost. ``score`` is the selection
    score of the reported iterates: :func:`~oodbench.scores.msp_score` (float64) for
    ``select="confidence"``, else the objective."""

    x_adv: torch.Tensor
    logits: torch.Tensor
    score: torch.Tensor
    gradient_evaluations: int
    stopped_early: torch.Tensor
    features: Optional[torch.Tensor] = None  # when the head reads penultimate features

    @property
    def confidence(self) -> torch.Tensor:
        return F.softmax(self.logits, dim=1).max(dim=1).values


class _Best:
    """Tracks, per point of a batch, the best iterate seen so far by the ``select`` score, and
    which points are finished: no further iterate can change what is reported for them."""

    def __init__(self, x: torch.Tensor, out: Outputs, score: torch.Tensor,
                 stop_above: Optional[float], head: "Head", use_ceiling: bool):
        self.x, self.score = x.clone(), score.clone()
        self.logits = out.logits.clone()
        self.features = None if out.features is None else out.features.clone()
        # One threshold on the device: a score at its ceiling can never be beaten strictly (the
        # reported point is final whatever the metrics), and one above the head's stop
        # threshold for the level is above the level also as the metrics compute it.
        ceiling = head.ceiling if use_ceiling else None
        bounds = [b for b in (ceiling, None if stop_above is None else head.stop_threshold(stop_above))
                  if b is not None]
        self.threshold = min(bounds) if bounds else None
        self.done = self._finished(self.score)

    def _finished(self, score: torch.Tensor) -> torch.Tensor:
        if self.threshold is None:
            return torch.zeros(len(score), dtype=torch.bool, device=score.device)
        return score >= self.threshold

    def consider(self, idx: torch.Tensor, x: torch.Tensor, out: Outputs,
                 score: torch.Tensor) -> torch.Tensor:
        """Keep candidates that beat the current best; return which of ``idx`` are now done."""
        better = score > self.score[idx]
        if better.any():
            sel = idx[better]
            self.x[sel], self.logits[sel], self.score[sel] = x[better], out.logits[better], score[better]
            if self.features is not None and out.features is not None:
                self.features[sel] = out.features[better]
            self.done[sel] = self._finished(score[better])
        return self.done[idx]


class Head(Protocol):
    """What the engine optimises and how it judges iterates: the model call, the objective it
    ascends (differentiable), the score that picks each point's best iterate and stops it, and
    that score's ceiling and stop margin. The default reads logits only
    (:class:`LogitsHead`); a detector's head (:mod:`oodbench.detectors.attack`) ascends the
    detector's own score."""

    ceiling: Optional[float]

    def forward(self, model: nn.Module, x: torch.Tensor) -> Outputs: ...

    def objective(self, out: Outputs, target: Optional[torch.Tensor]) -> torch.Tensor: ...

    def select(self, out: Outputs, target: Optional[torch.Tensor]) -> torch.Tensor: ...

    def stop_threshold(self, level: float) -> float: ...


class LogitsHead:
    """A registered objective of the logits; iterates are chosen by it or, for OOD attacks, by
    :func:`~oodbench.scores.msp_score` (the msp detector's score), whose ceiling is 0."""

    def __init__(self, config: AttackConfig):
        self._objective = objectives.get(config.objective)
        self._by_confidence = config.select == "confidence"
        self.ceiling = MSP_CEILING if self._by_confidence else None

    def forward(self, model: nn.Module, x: torch.Tensor) -> Outputs:
        return Outputs(model(x))

    def objective(self, out: Outputs, target: Optional[torch.Tensor]) -> torch.Tensor:
        return self._objective(out.logits, target)

    def select(self, out: Outputs, target: Optional[torch.Tensor]) -> torch.Tensor:
        return msp_score(out.logits) if self._by_confidence else self._objective(out.logits, target)

    def stop_threshold(self, level: float) -> float:
        return stop_threshold(level)


def _cat(parts: Sequence[Optional[torch.Tensor]]) -> Optional[torch.Tensor]:
    return None if parts[0] is None else torch.cat(parts)  # type: ignore[arg-type]


class _Evaluator:
    """Forward (+ input gradient) of the model in fixed-shape chunks, counting gradient
    evaluations."""

    def __init__(self, model: nn.Module, head: Head, rows: int = FORWARD_ROWS,
                 on_progress: Optional[Callable[[int], None]] = None):
        self.model, self.head, self.rows, self.grad_evals = model, head, rows, 0
        self.on_progress = on_progress

    def _chunk(self, x: torch.Tensor, target: Optional[torch.Tensor], grad: bool):
        x, target, n = padded(x, target, self.rows)  # outputs of the padding are dropped
        if not grad:
            with torch.no_grad():
                out = self.head.forward(self.model, x)
                return _rows(out, n), self.head.objective(out, target)[:n], None
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = self.head.forward(self.model, x)
            obj = self.head.objective(out, target)
            (g,) = torch.autograd.grad(obj.sum(), x)  # per-row objectives: row i's gradient
        return _rows(out, n), obj.detach()[:n], g[:n]

    def __call__(self, x: torch.Tensor, target: Optional[torch.Tensor], *, grad: bool):
        parts = [self._chunk(x[i:i + self.rows], None if target is None else target[i:i + self.rows],
                             grad) for i in range(0, len(x), self.rows)]
        if grad:
            self.grad_evals += len(x)
            if self.on_progress is not None:
                self.on_progress(len(x))
        if len(parts) == 1:
            return parts[0]
        outs, obj, g = zip(*parts)
        out = Outputs(torch.cat([o.logits for o in outs]), _cat([o.features for o in outs]))
        return out, torch.cat(obj), None if not grad else torch.cat(g)


def _rows(out: Outputs, n: int) -> Outputs:
    return Outputs(out.logits.detach()[:n],
                   None if out.features is None else out.features.detach()[:n])


def _take(t: Optional[torch.Tensor], keep: torch.Tensor) -> Optional[torch.Tensor]:
    return None if t is None else t[keep]


def _pgd(f: _Evaluator, best: _Best, score: Callable[..., torch.Tensor], x: torch.Tensor, target: Optional[torch.Tensor],
         idx: torch.Tensor, start: torch.Tensor, cfg: AttackConfig) -> None:
    """Projected gradient ascent with a fixed step (sign step for Linf, normalised for L2).

    With ``momentum`` μ > 0 the step follows a velocity v ← μ·v + d of the normalised ascent
    directions d, itself normalised in the threat's norm (Augustin et al. 2020, App. B: "PGD with
    the l2-normalized gradient ... and momentum weight 0.9"); the best iterate is kept as always."""
    threat, step = cfg.threat, cfg.pgd_step
    xk, tk, x0 = start, _take(target, idx), x[idx]
    velocity: Optional[torch.Tensor] = None
    for it in range(cfg.steps + 1):
        last = it == cfg.steps
        out, obj, grad = f(xk, tk, grad=not last)
        done = best.consider(idx, xk, out, score(out, tk))
        if last:
            break
        keep = ~done
        if not keep.all():
            idx, xk, grad, x0, tk = idx[keep], xk[keep], grad[keep], x0[keep], _take(tk, keep)
            velocity = _take(velocity, keep)
            if len(idx) == 0:
                break
        if cfg.momentum:
            direction = threat.steepest_step(grad, 1.0, xk)
            velocity = direction if velocity is None else cfg.momentum * velocity + direction
            grad = velocity
        xk = threat.project(xk + threat.steepest_step(grad, step, xk), x0)


def _apgd(f: _Evaluator, best: _Best, score: Callable[..., torch.Tensor], x: torch.Tensor, target: Optional[torch.Tensor],
          idx: torch.Tensor, start: torch.Tensor, cfg: AttackConfig) -> None:
    """APGD (Croce & Hein, 2020): step-size free; the step halves at checkpoints where the
    objective oscillates or stalls, and the iterate restarts from the best point; momentum 0.75."""
    threat, n = cfg.threat, cfg.steps
    k = max(int(0.22 * n), 1)
    size_decr, k_min = max(int(0.03 * n), 1), max(int(0.06 * n), 1)
    view = (-1,) + (1,) * (x.dim() - 1)

    x0, tk = x[idx], _take(target, idx)
    xk = start
    out, obj, grad = f(xk, tk, grad=True)
    best.consider(idx, xk, out, score(out, tk))
    eta = torch.full((len(idx),), 2.0 * threat.eps, device=x.device)
    x_best, loss_best, grad_best = xk.clone(), obj.clone(), grad.clone()
    x_prev = xk.clone()
    history = [obj.clone()]  # objective per iteration, index 0 = start point
    loss_best_at_check = loss_best.clone()
    reduced_at_check = torch.zeros(len(idx), dtype=torch.bool, device=x.device)
    since_check = 0

    for i in range(n):
        momentum = 0.75 if i > 0 else 1.0
        z = threat.project(xk + threat.steepest_step(grad, 1.0, xk) * eta.view(view), x0)
        x_new = threat.project(xk + momentum * (z - xk) + (1 - momentum) * (xk - x_prev), x0)
        x_prev, xk = xk, x_new
        last = i == n - 1
        out, obj, g = f(xk, tk, grad=not last)
        done = best.consider(idx, xk, out, score(out, tk))
        if last:
            break
        grad = g
        improved = obj > loss_best
        x_best[improved], grad_best[improved], loss_best[improved] = xk[improved], grad[improved], obj[improved]
        history.append(obj.clone())
        since_check += 1
        if since_check == k:
            window = torch.stack(history[-k - 1:])
            increases = (window[1:] > window[:-1]).sum(0)
            oscillating = increases <= 0.75 * k
            stalled = ~reduced_at_check & (loss_best_at_check >= loss_best)
            reduce = oscillating | stalled
            eta = torch.where(reduce, eta / 2, eta)
            xk = torch.where(reduce.view(view), x_best, xk)
            grad = torch.where(reduce.view(view), grad_best, grad)
            reduced_at_check, loss_best_at_check = reduce, loss_best.clone()
            since_check, k = 0, max(k - size_decr, k_min)
        keep = ~done
        if not keep.all():
            if not keep.any():
                break
            idx, x0, tk, xk, x_prev, grad, eta = (idx[keep], x0[keep], _take(tk, keep), xk[keep],
                                                  x_prev[keep], grad[keep], eta[keep])
            x_best, loss_best, grad_best = x_best[keep], loss_best[keep], grad_best[keep]
            loss_best_at_check, reduced_at_check = loss_best_at_check[keep], reduced_at_check[keep]
            history = [h[keep] for h in history]


MONOTONE_MOMENTUM = 0.9
MONOTONE_DECAY = 0.75


def _monotone_pgd(f: _Evaluator, best: _Best, score: Callable[..., torch.Tensor], x: torch.Tensor,
                  target: Optional[torch.Tensor], idx: torch.Tensor, start: torch.Tensor,
                  cfg: AttackConfig) -> None:
    """Monotone PGD (as ProoD attacks its models): a step is taken only where it raises the
    objective; where it does not, the point stays, its momentum is dropped and its step shrinks
    by :data:`MONOTONE_DECAY`. The first step is ε/10; momentum 0.9 on the normalised ascent
    directions. The iterate's objective never decreases, so a good start is never lost."""
    threat = cfg.threat
    view = (-1,) + (1,) * (x.dim() - 1)
    x0, tk, xk = x[idx], _take(target, idx), start
    out, obj, grad = f(xk, tk, grad=True)
    best.consider(idx, xk, out, score(out, tk))
    eta = torch.full((len(idx),), cfg.step_size or threat.eps / 10, device=x.device)
    velocity = torch.zeros_like(xk)
    for i in range(cfg.steps):
        velocity = MONOTONE_MOMENTUM * velocity + threat.steepest_step(grad, 1.0, xk)
        cand = threat.project(xk + threat.steepest_step(velocity, 1.0, xk) * eta.view(view), x0)
        last = i == cfg.steps - 1
        out, obj_c, g = f(cand, tk, grad=not last)
        done = best.consider(idx, cand, out, score(out, tk))
        if last:
            break
        up = obj_c > obj
        xk = torch.where(up.view(view), cand, xk)
        grad = torch.where(up.view(view), g, grad)
        obj = torch.where(up, obj_c, obj)
        velocity = torch.where(up.view(view), velocity, torch.zeros_like(velocity))
        eta = torch.where(up, eta, eta * MONOTONE_DECAY)
        keep = ~done
        if not keep.all():
            if not keep.any():
                break
            idx, x0, tk, xk, grad, obj, velocity, eta = (
                idx[keep], x0[keep], _take(tk, keep), xk[keep], grad[keep], obj[keep],
                velocity[keep], eta[keep])


_OPTIMIZERS = {"pgd": _pgd, "apgd": _apgd, "monotone-pgd": _monotone_pgd}


def _contrast_start(x: torch.Tensor, gens: Sequence[torch.Generator],
                    threat: ThreatModel) -> torch.Tensor:
    """The image with its contrast reduced as far as the ball allows: moved towards its own
    mean grey level (per channel)."""
    return threat.project(x.mean(dim=(2, 3), keepdim=True).expand_as(x), x)


def _noise(x: torch.Tensor, gens: Sequence[torch.Generator], draw: Callable[..., torch.Tensor]
           ) -> torch.Tensor:
    if not gens:
        return torch.empty_like(x)
    return torch.stack([draw(x.shape[1:], generator=g) for g in gens]).to(x.device)


def _uniform_start(x: torch.Tensor, gens: Sequence[torch.Generator],
                   threat: ThreatModel) -> torch.Tensor:
    """Uniform noise over the ball's bounding cube (Linf: the whole ball), projected."""
    return threat.project(x + threat.eps * (2 * _noise(x, gens, torch.rand) - 1), x)


def _gaussian_start(x: torch.Tensor, gens: Sequence[torch.Generator],
                    threat: ThreatModel) -> torch.Tensor:
    """Gaussian noise of standard deviation ε/2 per pixel (Linf) or ε/√d (other norms), projected."""
    d = x[0].numel() if len(x) else 1
    sigma = threat.eps / 2 if threat.norm == "Linf" else threat.eps / d ** 0.5
    return threat.project(x + sigma * _noise(x, gens, torch.randn), x)


STARTS = {"contrast": _contrast_start, "uniform": _uniform_start, "gaussian": _gaussian_start}
"""ProoD's three starts of monotone PGD (Meinke, Bitterwolf, Hein 2022)."""


def evaluate(model: nn.Module, head: Head, x: torch.Tensor, target: Optional[torch.Tensor] = None
             ) -> tuple[Outputs, torch.Tensor]:
    """The outputs of ``x`` as ``head`` reads them and their selection scores, without gradient,
    in the engine's fixed-shape chunks (a score-only attack's queries)."""
    out, _, _ = _Evaluator(model, head)(x, target, grad=False)
    return out, head.select(out, target)


def point_generators(seed: int, indices: Sequence[int], restart: int) -> list[torch.Generator]:
    """One CPU generator per point, seeded from (seed, the point's global index, restart).

    A point's random start then depends on nothing else: not on its batch, the batch size, how
    the data set is split into shards, or which other points are already finished. The three
    numbers are mixed by numpy's SeedSequence (a documented, stable hash), not added, so
    neighbouring seeds and indices give unrelated streams."""
    gens = []
    for index in indices:
        words = np.random.SeedSequence([int(seed), int(index), int(restart)]).generate_state(2)
        gens.append(torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1])))
    return gens


def run_attack(model: nn.Module, x: torch.Tensor, config: AttackConfig, *,
               target: Optional[torch.Tensor] = None, stop_above: Optional[float] = None,
               batch_size: int = 256, device: str | torch.device = "cpu", seed: int = 0,
               progress: bool = False, desc: str = "attack", full_budget: bool = False,
               indices: Optional[torch.Tensor] = None,
               on_progress: Optional[Callable[[int], None]] = None,
               head: Optional[Head] = None) -> AttackResult:
    """Attack every point of ``x`` (N, C, H, W in [0, 1]); return the best iterates.

    ``head``: what is ascended and what judges iterates (default :class:`LogitsHead` of
    ``config``: its objective, and msp_score for ``select="confidence"``); a detector's head
    (:func:`oodbench.detectors.attack.detector_head`) attacks that detector's own score, and
    ``config.objective`` is then not used.

    ``indices``: the global index of each row of ``x`` in the data set being attacked (default
    ``arange(N)``); with ``seed`` it determines each point's random starts
    (:func:`point_generators`), so attacking shards of a data set with their global indices
    gives bit-identical results to attacking it at once, with any ``batch_size``.
    ``target``: true labels (``ce``) or target classes (``targeted-conf``). ``stop_above``: stop
    a point once its :func:`~oodbench.scores.msp_score` exceeds this level (requires
    ``select="confidence"``). ``full_budget``: never finish a point early, not even at the score's
    ceiling — what a plain PGD loop does. The results are identical; it exists to verify that
    and to measure the saving.
    ``on_progress`` is told the number of gradient evaluations after each one (progress bars).
    """
    if stop_above is not None and head is None and config.select != "confidence":
        raise ValueError("stop_above needs select='confidence': the early stop is judged on the "
                         "confidence, so the reported iterate must be chosen by it too")
    device = torch.device(device)
    model = model.to(device).eval()
    head = head if head is not None else LogitsHead(config)
    score = head.select
    f = _Evaluator(model, head, on_progress=on_progress)
    optimise = _OPTIMIZERS[config.optimizer]
    if indices is None:
        indices = torch.arange(len(x))
    if indices.shape != (len(x),):
        raise ValueError(f"indices must have one entry per point ({len(x)}), got shape "
                         f"{tuple(indices.shape)}")
    global_index = indices.tolist()
    outs: list[tuple[torch.Tensor, ...]] = []
    for start in tqdm(range(0, len(x), batch_size), desc=desc, disable=not progress, leave=False):
        xb = x[start:start + batch_size].to(device)
        tb = None if target is None else target[start:start + batch_size].to(device)
        out, _, _ = f(xb, tb, grad=False)
        best = _Best(xb, out, score(out, tb), None if full_budget else stop_above, head,
                     use_ceiling=not full_budget)
        stopped_before = best.done.clone()
        for restart in range(config.restarts):
            idx = (~best.done).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            # Per-point streams: a point's start is the same whichever points are finished.
            first = config.random_start or restart > 0 or config.start is not None
            if first:
                gens = point_generators(seed, [global_index[start + i] for i in idx.tolist()],
                                        restart)
                begin = (config.threat.random_start(xb[idx], gens) if config.start is None
                         else STARTS[config.start](xb[idx], gens, config.threat))
            else:
                begin = xb[idx].clone()
            optimise(f, best, score, xb, tb, idx, begin, config)
        stopped = best.done | stopped_before
        outs.append((best.x.cpu(), best.logits.float().cpu(), best.score.cpu(), stopped.cpu(),
                     None if best.features is None else best.features.float().cpu()))
    x_adv, logits, scores, stopped = (torch.cat(t) for t in list(zip(*outs))[:4])
    features = _cat([o[4] for o in outs])
    return AttackResult(x_adv, logits, scores, f.grad_evals, stopped, features)
