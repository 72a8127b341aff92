"""What a detector is: a score of a model's outputs, higher meaning "in-distribution".

One definition serves three stages. The attack engine calls :meth:`Detector.score` on torch
tensors *with* autograd (the adaptive attack ascends the detector's own score) and without it
(choosing each point's best iterate); the scorer calls :meth:`Detector.scores` on the stored
arrays to rank points for AUROC / FPR@95. Both evaluate the same formula in float64, so an
attacked point is judged by the number the metrics will see.

A detector declares what it needs (:class:`Need`): logits only, penultimate features, a fit on
in-distribution training data, or the model itself (ODIN's input perturbation). The planner
turns those needs into jobs: stored features beside the logits, one fit job per (model,
detector), and detector-specific forward passes when a score cannot be computed from stored
outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Mapping, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from oodbench.bounds import OutputBounds
from oodbench.models.features import head_layer, logits_and_features
from oodbench.core.arrays import ArrayKey


class Need(str, Enum):
    """What a detector's score is computed from."""

    LOGITS = ArrayKey.LOGITS.value
    FEATURES = ArrayKey.FEATURES.value      # the input of the classifier's last linear layer
    FIT = "fit"                # statistics of in-distribution training data
    MODEL = "model"            # the model itself at scoring time (input preprocessing)


@dataclass(frozen=True)
class Outputs:
    """What one forward pass gives a detector (torch tensors, rows = points)."""

    logits: torch.Tensor
    features: Optional[torch.Tensor] = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays a job stores (float32, like every stored model output)."""
        out = {ArrayKey.LOGITS.value: self.logits.detach().float().cpu().numpy()}
        if self.features is not None:
            out[ArrayKey.FEATURES.value] = self.features.detach().float().cpu().numpy()
        return out


@dataclass(frozen=True)
class FitData:
    """In-distribution training points as the model sees them (float64 numpy)."""

    logits: np.ndarray
    labels: np.ndarray
    features: Optional[np.ndarray] = None
    head_weight: Optional[np.ndarray] = None   # (K, D): the last linear layer
    head_bias: Optional[np.ndarray] = None     # (K,)

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray], labels: np.ndarray, model: nn.Module) -> "FitData":
        """From a forward pass with features over the training points, and the model's head."""
        head = head_layer(model)
        bias = head.bias.detach().double().cpu().numpy() if head.bias is not None else None
        return cls(logits=np.asarray(arrays[ArrayKey.LOGITS.value], dtype=np.float64),
                   labels=np.asarray(labels),
                   features=np.asarray(arrays[ArrayKey.FEATURES.value], dtype=np.float64),
                   head_weight=head.weight.detach().double().cpu().numpy(),
                   head_bias=bias if bias is not None else np.zeros(head.out_features))


class Params(BaseModel):
    """A detector's hyper-parameters (subclasses add fields with the papers' defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


STOP_RTOL = 1e-7
"""Relative margin of the early stop on a detector score (see :meth:`Detector.stop_threshold`):
the engine and the scorer compute the same float64 formula on the same float32 outputs, but on
chunks of different sizes, so matrix products may round differently in the last few bits."""


SOFTMIN_SHARE = 0.1
"""Temperature of the surrogates' soft minimum, as a share of the hard minimum's size: terms
within about a tenth of the minimum share its gradient."""


def soft_minimum(values: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """A smooth lower bound of ``values.min(dim)`` (−T·logsumexp(−v/T), T a share of |min|,
    held constant under differentiation) whose gradient reaches every near-minimal term."""
    hard = values.min(dim=dim, keepdim=True).values
    t = (SOFTMIN_SHARE * hard.detach().abs()).clamp_min(1e-6)
    return (hard - t * torch.logsumexp(-(values - hard) / t, dim=dim, keepdim=True)).squeeze(dim)


class Detector:
    """Base class of registered detectors. Subclasses set the class attributes, ``Params`` and
    :meth:`score` (and :meth:`fit` when they need a fit)."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[Need]] = frozenset({Need.LOGITS})
    #: Whether gradients of :meth:`score` are the gradients of the score itself (almost
    #: everywhere), so the adaptive attack is exact; otherwise ``surrogate`` says what is attacked.
    exact_gradient: ClassVar[bool] = True
    #: The smooth stand-in of :meth:`surrogate_score` ("" for none): what a score without a
    #: useful gradient is attacked through, and, for a score defined by a min, a k-th order
    #: statistic or a clip, what the ensemble's ``apgd-surrogate`` member ascends.
    surrogate: ClassVar[str] = ""
    #: The largest value the score can take, where a point can never be beaten (None: unbounded).
    ceiling: ClassVar[Optional[float]] = None
    paper: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    #: How :meth:`score_upper` bounds the score over a threat ball from the model's output
    #: bounds (the ``certified`` attack's row); "" when the score cannot be bounded that way.
    certified: ClassVar[str] = ""

    def __init__(self, **params: Any):
        self.params = type(self).Params(**params)

    # ---------------------------------------------------------------- what the planner reads

    @property
    def needs_features(self) -> bool:
        return Need.FEATURES in self.needs

    @property
    def needs_fit(self) -> bool:
        return Need.FIT in self.needs

    @property
    def needs_model(self) -> bool:
        return Need.MODEL in self.needs

    @classmethod
    def describe(cls) -> str:
        """One line for ``oodbench list detectors``: needs, whether the attack is exact, defaults."""
        needs = ", ".join(n.value for n in Need if n in cls.needs)
        attack = "exact" if cls.exact_gradient else f"surrogate ({cls.surrogate})"
        if cls.exact_gradient and cls.surrogate:
            attack += f", smooth surrogate: {cls.surrogate}"
        defaults = ", ".join(f"{k}={v}" for k, v in cls.Params().model_dump().items())
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        certified = f"certified: {cls.certified or 'no'}"
        return (f"{doc} [needs: {needs}; attack: {attack}; {certified}"
                + (f"; {defaults}]" if defaults else "]"))

    def identity(self) -> dict[str, Any]:
        """What determines the scores (name and every hyper-parameter): part of job keys."""
        return {"name": self.name, **self.params.model_dump(mode="json")}

    # ---------------------------------------------------------------- the score

    def fit(self, data: FitData) -> dict[str, np.ndarray]:
        """Statistics of the training data that :meth:`score` reads (stored as a fit job)."""
        raise NotImplementedError(f"detector {self.name!r} needs no fit")

    def score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Per-point score, higher = in-distribution, in the dtype of ``out`` (float64 when the
        result is compared or stored). Differentiable in ``out`` when ``exact_gradient``."""
        raise NotImplementedError

    def score_upper(self, bounds: OutputBounds, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Per-point upper bound of :meth:`score` over every input the ``bounds`` hold for
        (float64); only for detectors that declare :attr:`certified`."""
        raise NotImplementedError(f"detector {self.name!r} has no certified bound")

    def surrogate_score(self, out: Outputs, fit: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """What the adaptive attack ascends when ``exact_gradient`` is False (``surrogate`` names
        it): a differentiable stand-in whose gradient points where the score rises. Iterates are
        still judged by :meth:`score`, so the reported point is never worse than the clean one."""
        raise NotImplementedError(f"detector {self.name!r} has no surrogate")

    def forward(self, model: nn.Module, x: torch.Tensor) -> Outputs:
        """The model's outputs on ``x`` as this detector reads them (with the features when it
        needs them). ODIN overrides it to perturb the input first."""
        if self.needs_features:
            logits, features = logits_and_features(model, x)
            return Outputs(logits, features)
        return Outputs(model(x))

    def scores(self, arrays: Mapping[str, np.ndarray],
               fit: Optional[Mapping[str, np.ndarray]] = None) -> np.ndarray:
        """Float64 scores of stored arrays (what every rank metric orders)."""
        # stored arrays are read-only views: float64 copies, which torch may own
        logits = torch.from_numpy(np.array(arrays[ArrayKey.LOGITS.value], dtype=np.float64))
        features = arrays.get(ArrayKey.FEATURES.value)
        if self.needs_features and features is None:
            raise ValueError(f"detector {self.name!r} needs stored features; the job has none")
        out = Outputs(logits, None if features is None
                      else torch.from_numpy(np.array(features, dtype=np.float64)))
        with torch.no_grad():
            return self.score(out, self.fit_tensors(fit, torch.device("cpu"))).numpy()

    def fit_tensors(self, fit: Optional[Mapping[str, np.ndarray]],
                    device: torch.device) -> dict[str, torch.Tensor]:
        """A fit job's arrays as the float64 tensors :meth:`score` reads, on ``device``; done
        once per row or attack, not per batch."""
        return {k: torch.from_numpy(np.array(v, dtype=np.float64)).to(device)
                for k, v in (fit or {}).items()}

    def stop_threshold(self, level: float) -> float:
        """An engine score at or above this guarantees the scorer's score of the same outputs is
        strictly above ``level`` (the early stop is exact); ``inf``: never stop."""
        level = float(level)
        threshold = level + STOP_RTOL * max(1.0, abs(level))
        if self.ceiling is not None and threshold >= self.ceiling:
            return math.inf
        return threshold

