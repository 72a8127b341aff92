"""Metrics for OOD detection and calibration, as plain numpy functions plus registered wrappers.

Part 1 is a set of pure functions of numpy arrays. The detector under test is always the
classifier's own *confidence* (maximum softmax probability), and the in-distribution set is the
positive class: a good detector gives in-distribution inputs higher confidence than OOD inputs.
The rank metrics (AUROC, AUPR, FPR@95) accept any score; the registered ones rank by
:func:`oodbench.scores.msp_score`, the log-confidence computed stably in float64, which orders
inputs like the confidence but does not saturate at 1.0 (the attack engine selects and stops
by the same score). MMC and ECE use the confidence itself.
The functions follow scikit-learn's ``metrics/_ranking.py`` conventions: keyword-only options
after the arrays, one shared input check that names the offending argument, a Python ``float``
as result, and ``float('nan')`` plus an :class:`UndefinedMetricWarning` when the result is
undefined (an empty OOD set), so a benchmark table shows a hole instead of crashing a long run.

Part 2 wraps them as :class:`Metric` objects registered in ``oodbench.core.registry.metrics``; the
runner computes them from logits through :func:`compute_metrics`. A new metric is one module in
this folder (or a plugin) with a function decorated by :func:`register`; the ``metrics`` registry
imports every module here on its first lookup. Modules here import only the shared layer (the registry,
:mod:`oodbench.core`) and :mod:`oodbench.scores` from oodbench, because the registry imports them
lazily.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Optional, Sequence

import numpy as np

from oodbench.core.rows import MetricScope, RowKind
from oodbench.core.registry import metrics as metric_registry
from oodbench.scores import msp_score

__all__ = [
    "UndefinedMetricWarning",
    "softmax",
    "confidence",
    "msp_score",
    "predictions",
    "test_error",
    "mean_max_confidence",
    "auroc",
    "auroc_conservative",
    "aupr_in",
    "aupr_out",
    "aupr_in_trapezoid",
    "aupr_out_trapezoid",
    "fpr_at_tpr",
    "acceptance_threshold",
    "settled_above",
    "early_stop_is_exact",
    "expected_calibration_error",
    "fit_temperature",
    "DEFAULT_TEMPERATURE_GRID",
    "MetricInput",
    "Metric",
    "SCOPES",
    "MetricScope",
    "compute_metrics",
    "register",
]


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the given input (e.g. an empty OOD set); its value is NaN."""


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _undefined(message: str) -> float:
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)
    return float("nan")


def _check_scores(
    *, same_length: bool = False, allow_empty: tuple[str, ...] = (), **arrays: Any
) -> tuple[np.ndarray, ...]:
    """Convert each keyword argument to a 1-D float64 array, or raise ``ValueError`` naming it.

    Rejected: non-numeric input, ndim != 1, NaN or infinite entries, an empty array (unless its
    name is in ``allow_empty``: the caller then decides whether the metric is undefined) and,
    with ``same_length=True``, arrays of different lengths (per-sample pairs such as labels and
    predictions). Returned in the keyword order.
    """
    out = []
    for name, value in arrays.items():
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be an array of numbers ({err})") from None
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}")
        if arr.size == 0 and name not in allow_empty:
            raise ValueError(f"{name} is empty")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
        out.append(arr)
    if same_length and len({a.shape[0] for a in out}) > 1:
        desc = ", ".join(f"{n}: {a.shape[0]}" for n, a in zip(arrays, out))
        raise ValueError(f"inconsistent lengths ({desc})")
    return tuple(out)


def _check_logits(logits: Any, name: str = "logits") -> np.ndarray:
    """2-D float64 (n_samples, n_classes) with at least one class; zero rows are allowed."""
    try:
        arr = np.asarray(logits, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array of numbers ({err})") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_classes), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no classes (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite positive number, got {temperature!r}")
    return t


def _check_labels(labels: Any, n_samples: int, n_classes: int, name: str = "labels") -> np.ndarray:
    (lab,) = _check_scores(**{name: labels}, allow_empty=(name,))
    if lab.shape[0] != n_samples:
        raise ValueError(f"{name} has {lab.shape[0]} entries but the logits have {n_samples} rows")
    if np.any(lab != np.round(lab)) or np.any(lab < 0) or np.any(lab >= n_classes):
        raise ValueError(f"{name} must be integer class indices in [0, {n_classes})")
    return lab.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Part 1: logits -> probabilities / confidence / predictions
# --------------------------------------------------------------------------------------------


def softmax(logits: Any, *, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, computed without overflow.

    Subtracting the row maximum before exponentiating leaves the result unchanged
    mathematically but keeps ``exp`` in [0, 1], so logits of adversarially attacked models
    (often in the hundreds) neither overflow to ``inf`` nor produce ``nan``.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
    temperature : float, default=1.0
        Positive. ``T > 1`` flattens the distribution, ``T < 1`` sharpens it.

    Returns
    -------
    probs : ndarray of shape (n_samples, n_classes)
        Rows sum to 1.

    Examples
    --------
    >>> import numpy as np
    >>> softmax([[0.0, 0.0], [0.0, np.log(3.0)], [1000.0, 0.0]]).round(4).tolist()
    [[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]]
    """
    z = _check_logits(logits) / _check_temperature(temperature)
    z = z - z.max(axis=1, keepdims=True) if z.shape[0] else z
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _max_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    # max_k softmax(z)_k = exp(0) / sum_j exp(z_j - max z) after the stabilising shift.
    if logits.shape[0] == 0:
        return np.zeros(0)
    z = logits / temperature
    return 1.0 / np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)


def confidence(logits: Any, *, temperature: float = 1.0) -> np.ndarray:
    """Maximum softmax probability per sample: the OOD score used by every detection metric.

    This is the classifier's own belief in its prediction; the benchmark asks whether it is
    low on inputs the classifier knows nothing about.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
    temperature : float, default=1.0

    Returns
    -------
    conf : ndarray of shape (n_samples,), values in [1/n_classes, 1]

    Examples
    --------
    >>> confidence([[0.0, 0.0], [2.0, 2.0], [0.0, 0.0]]).tolist()
    [0.5, 0.5, 0.5]
    >>> import numpy as np
    >>> confidence([[0.0, np.log(3.0)]]).round(4).tolist()
    [0.75]
    """
    return _max_softmax(_check_logits(logits), _check_temperature(temperature))


def predictions(logits: Any) -> np.ndarray:
    """Predicted class per sample (argmax of the logits; the first index wins ties).

    Temperature does not change the argmax, so there is no ``temperature`` option.

    Examples
    --------
    >>> predictions([[0.1, 2.0, -1.0], [3.0, 3.0, 0.0]]).tolist()
    [1, 0]
    """
    return np.argmax(_check_logits(logits), axis=1)


# --------------------------------------------------------------------------------------------
# Part 1: accuracy and confidence summaries
# --------------------------------------------------------------------------------------------


def test_error(labels: Any, predictions: Any) -> float:
    """Fraction of misclassified samples.

    Reported next to the OOD metrics because robust OOD detection is easy to buy with accuracy:
    a model that is unconfident everywhere detects nothing but also classifies badly.

    Parameters
    ----------
    labels, predictions : array-like of shape (n_samples,)
        Integer class indices.

    Examples
    --------
    >>> test_error([0, 1, 2, 3], [0, 1, 1, 0])
    0.5
    """
    y, p = _check_scores(labels=labels, predictions=predictions, same_length=True)
    return float(np.mean(y != p))


# pytest would otherwise try to collect the function above as a test when it is imported there.
test_error.__test__ = False  # type: ignore[attr-defined]


def mean_max_confidence(conf: Any) -> float:
    """Mean of the confidences (MMC).

    On an OOD probe it is the simplest summary of over-confidence: an ideal model is maximally
    uncertain there (MMC = 1/n_classes). Unlike AUROC it does not depend on the
    in-distribution set, so it also exposes a model that is uniformly (un)confident. The mean
    of an empty set is undefined: warns and returns NaN.

    Parameters
    ----------
    conf : array-like of shape (n_samples,)

    Examples
    --------
    >>> mean_max_confidence([0.5, 1.0, 0.75])
    0.75
    """
    (c,) = _check_scores(conf=conf, allow_empty=("conf",))
    if c.size == 0:
        return _undefined("mean_max_confidence of an empty set is undefined")
    return float(np.mean(c))


# --------------------------------------------------------------------------------------------
# Part 1: detection metrics (in-distribution = positive, score = confidence)
# --------------------------------------------------------------------------------------------


def _check_in_out(conf_in: Any, conf_out: Any, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Checked (conf_in, conf_out), or None after warning when conf_out is empty."""
    cin, cout = _check_scores(conf_in=conf_in, conf_out=conf_out, allow_empty=("conf_out",))
    if cout.size == 0:
        warnings.warn(
            f"{metric} is undefined for an empty OOD set (conf_out); returning NaN",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return None
    return cin, cout


def auroc(conf_in: Any, conf_out: Any) -> float:
    """Area under the ROC curve of confidence as an in-vs-OOD detector; ties count 1/2.

    Equals the probability that a random in-distribution sample gets higher confidence than a
    random OOD sample, with ties counted half (``sklearn.metrics.roc_auc_score`` with labels
    in=1, out=0). It is computed through the Mann-Whitney U statistic on average ranks, which is
    exact with ties and needs no threshold sweep. See :func:`auroc_conservative` for why ties
    deserve a stricter rule when judging robustness.

    Parameters
    ----------
    conf_in : array-like of shape (n_in,)
        Confidence on in-distribution samples (the positive class).
    conf_out : array-like of shape (n_out,)
        Confidence on OOD samples. Empty: warns and returns NaN.

    Returns
    -------
    auroc : float in [0, 1]; 0.5 is chance.

    Examples
    --------
    >>> auroc([0.9, 0.8, 0.7], [0.6, 0.8])
    0.75
    """
    checked = _check_in_out(conf_in, conf_out, "auroc")
    if checked is None:
        return float("nan")
    cin, cout = checked
    # Imported here: scipy.stats takes about a second to import, and the registry imports this
    # module on every first lookup (even `oodbench list`).
    from scipy.stats import rankdata

    n_in, n_out = cin.size, cout.size
    ranks = rankdata(np.concatenate([cin, cout]), method="average")
    u = ranks[:n_in].sum() - n_in * (n_in + 1) / 2.0
    return float(u / (n_in * n_out))


def auroc_conservative(conf_in: Any, conf_out: Any) -> float:
    """AUROC where ties count as failures: P(conf_in > conf_out), strictly.

    Why: under attack, robustly-trained-looking models often saturate and output confidence
    1.0 (to float precision) on everything. Standard AUROC gives every such tied pair half
    credit, so a detector that cannot tell anything apart still scores 0.5, the same as an
    honest coin flip, and a partially saturated one scores deceptively well. Counting a tie as
    a failed detection makes total failure score 0. It equals ``auroc`` minus half the
    fraction of tied pairs, so the two agree when there are no ties.

    Parameters
    ----------
    conf_in : array-like of shape (n_in,)
    conf_out : array-like of shape (n_out,)
        Empty: warns and returns NaN.

    Examples
    --------
    >>> auroc_conservative([0.9, 0.8, 0.7], [0.6, 0.8])  # 4 of 6 pairs strictly ordered
    0.6666666666666666
    >>> auroc_conservative([1.0, 1.0], [1.0, 1.0]), auroc([1.0, 1.0], [1.0, 1.0])
    (0.0, 0.5)
    """
    checked = _check_in_out(conf_in, conf_out, "auroc_conservative")
    if checked is None:
        return float("nan")
    cin, cout = checked
    # For each in-distribution score, the number of OOD scores strictly below it.
    strictly_below = np.searchsorted(np.sort(cout), cin, side="left")
    return float(strictly_below.sum() / (cin.size * cout.size))


def _pr_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True positives and accepted points at each distinct score taken as threshold (scores
    descending; tied samples enter together): the operating points of a precision-recall curve."""
    scores = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, is_pos = scores[order], is_pos[order]
    # Index of the last sample of each block of equal scores (scores are sorted descending).
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    return np.cumsum(is_pos)[last], (last + 1).astype(np.float64)


def _average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """Step-wise average precision, sum_k (R_k - R_{k-1}) P_k over distinct score thresholds.

    Thresholds are placed at each distinct score (tied samples enter together), the same
    definition as ``sklearn.metrics.average_precision_score``: no interpolation.
    """
    tp, accepted = _pr_counts(pos, neg)
    precision = tp / accepted
    recall = tp / pos.size
    gain = np.diff(np.r_[0.0, recall])
    # Only thresholds where recall grows: blocks of negatives alone add exact zeros, but their
    # number would change how np.sum pairs the other terms (its result by an ulp), and an
    # attack's early stop relies on the value not depending on how such blocks are tied.
    grows = gain > 0
    return float(np.sum(gain[grows] * precision[grows]))


def _trapezoid_pr_area(pos: np.ndarray, neg: np.ndarray) -> float:
    """Trapezoidal area under the precision-recall curve of ``sklearn.metrics.
    precision_recall_curve`` (one point per distinct score, plus recall 0 / precision 1): the
    rule of OpenOOD v1.5 and pytorch-ood's ``OODMetrics``. It interpolates linearly between
    operating points, so it differs from average precision (:func:`aupr_in`)."""
    tp, accepted = _pr_counts(pos, neg)
    precision = np.r_[1.0, tp / accepted]
    recall = np.r_[0.0, tp / pos.size]
    return float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1])) / 2)


def aupr_in_trapezoid(conf_in: Any, conf_out: Any) -> float:
    """:func:`aupr_in` by the trapezoid rule (OpenOOD, pytorch-ood "AUPR-IN").

    >>> round(aupr_in_trapezoid([0.9, 0.8], [0.7, 0.95]), 4)
    0.4167
    """
    checked = _check_in_out(conf_in, conf_out, "aupr_in_trapezoid")
    if checked is None:
        return float("nan")
    cin, cout = checked
    return _trapezoid_pr_area(cin, cout)


def aupr_out_trapezoid(conf_in: Any, conf_out: Any) -> float:
    """:func:`aupr_out` by the trapezoid rule (OpenOOD, pytorch-ood "AUPR-OUT")."""
    checked = _check_in_out(conf_in, conf_out, "aupr_out_trapezoid")
    if checked is None:
        return float("nan")
    cin, cout = checked
    return _trapezoid_pr_area(-cout, -cin)


def aupr_in(conf_in: Any, conf_out: Any) -> float:
    """Area under the precision-recall curve with in-distribution as positive (average precision).

    Unlike AUROC, it depends on the ratio of in to OOD samples, and it rewards getting the most
    confident predictions right: the question "if I keep only confident inputs, how many are
    in-distribution?". Equals ``sklearn.metrics.average_precision_score`` with in=1, out=0 and
    the confidence as score.

    Parameters
    ----------
    conf_in : array-like of shape (n_in,)
    conf_out : array-like of shape (n_out,)
        Empty: warns and returns NaN (precision would be trivially 1).

    Examples
    --------
    One OOD sample is more confident than every in-distribution one:

    >>> aupr_in([0.9, 0.8], [0.7, 0.95])
    0.5833333333333333
    """
    checked = _check_in_out(conf_in, conf_out, "aupr_in")
    if checked is None:
        return float("nan")
    cin, cout = checked
    return _average_precision(cin, cout)


def aupr_out(conf_in: Any, conf_out: Any) -> float:
    """Average precision with OOD as positive and ``-confidence`` as score.

    The mirror image of :func:`aupr_in`: "if I flag the least confident inputs, how many are
    really OOD?". It is the more demanding of the two when OOD samples are few, and it is what
    a deployment that rejects low-confidence inputs experiences.

    Parameters
    ----------
    conf_in : array-like of shape (n_in,)
    conf_out : array-like of shape (n_out,)
        Empty: warns and returns NaN.

    Examples
    --------
    >>> aupr_out([0.9, 0.8], [0.7, 0.95])
    0.75
    """
    checked = _check_in_out(conf_in, conf_out, "aupr_out")
    if checked is None:
        return float("nan")
    cin, cout = checked
    return _average_precision(-cout, -cin)


def fpr_at_tpr(conf_in: Any, conf_out: Any, *, tpr: float = 0.95) -> float:
    """False positive rate (share of OOD accepted) at the threshold that keeps ``tpr`` of in-dist.

    An input is *accepted* as in-distribution when its confidence is ``>= threshold``. The
    threshold is the largest value that still accepts at least ``tpr`` of the
    in-distribution samples: with ``s`` the in-distribution confidences sorted ascending,
    ``n = len(s)`` and ``k = ceil(tpr * n)``, it is ``s[n - k]`` (for ``tpr=0.95`` "the 5th
    percentile of in-distribution confidence"). Why this definition: any larger threshold
    would reject more than ``1 - tpr`` of in-distribution inputs, so the stated TPR is
    guaranteed rather than approximate, and no interpolation between samples is involved.
    ``np.quantile(..., method="lower")`` would also guarantee it but can pick a lower threshold
    than needed (and so overstate the FPR); ``method="higher"`` can violate the guarantee.
    OOD samples tied with the threshold count as accepted (false positives), so a model that is
    saturated on in- and out-distribution alike gets FPR = 1, not a lucky lower value.

    Parameters
    ----------
    conf_in : array-like of shape (n_in,)
    conf_out : array-like of shape (n_out,)
        Empty: warns and returns NaN.
    tpr : float in (0, 1], default=0.95

    Returns
    -------
    fpr : float in [0, 1]; lower is better.

    Examples
    --------
    With 20 in-distribution scores 0.05, 0.10, ..., 1.00, 95% of them (19) are ``>= 0.10``:

    >>> import numpy as np
    >>> conf_in = np.arange(1, 21) / 20
    >>> fpr_at_tpr(conf_in, [0.05, 0.10, 0.09, 0.5])  # 0.10 and 0.5 are accepted
    0.5
    """
    t = float(tpr)
    if not (0.0 < t <= 1.0):
        raise ValueError(f"tpr must be in (0, 1], got {tpr!r}")
    checked = _check_in_out(conf_in, conf_out, "fpr_at_tpr")
    if checked is None:
        return float("nan")
    cin, cout = checked
    return float(np.mean(cout >= acceptance_threshold(cin, t)))


def acceptance_threshold(conf_in: np.ndarray, tpr: float) -> float:
    """The confidence threshold of :func:`fpr_at_tpr`: inputs ``>=`` it are accepted.

    The largest threshold that still accepts ``tpr`` of the (non-empty) in-distribution
    confidences: ``s[n - ceil(tpr * n)]`` with ``s`` sorted ascending.
    """
    n = conf_in.size
    # round() absorbs float error such as 0.07 * 100 = 7.000000000000001 before the ceil.
    k = min(n, max(1, math.ceil(round(tpr * n, 9))))
    return float(np.sort(conf_in)[n - k])


# --------------------------------------------------------------------------------------------
# Part 1: calibration
# --------------------------------------------------------------------------------------------


def _ece(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    # Edges i/n are computed by exact division, so a confidence equal to a printed edge (0.3)
    # falls in the bin that ends there: bin i is (i/n, (i+1)/n], and 0 joins bin 0.
    edges = np.arange(n_bins + 1) / n_bins
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(idx, weights=correct, minlength=n_bins)
    # sum over bins of |B|/N * |acc(B) - conf(B)| = sum |sum_acc - sum_conf| / N
    return float(np.abs(sum_acc - sum_conf).sum() / conf.size)


def expected_calibration_error(conf: Any, correct: Any, *, n_bins: int = 15) -> float:
    """Expected calibration error: ECE = sum over bins B of |B|/N * |acc(B) - conf(B)|.

    Confidence is only a useful OOD score if it means something on in-distribution data; ECE
    measures how far "confidence 0.9" is from "right 90% of the time", so a method cannot
    improve OOD detection by simply deflating all confidences. Bins are ``n_bins`` equal-width
    intervals, bin ``i`` = (i/n, (i+1)/n], with confidence 0 in the first bin; empty bins
    contribute nothing. The usual choice (15 bins) follows Guo et al. (2017).

    Parameters
    ----------
    conf : array-like of shape (n_samples,), values in [0, 1]
    correct : array-like of shape (n_samples,)
        1/True where the prediction is right, 0/False otherwise.
    n_bins : int, default=15

    Examples
    --------
    Two samples in bin (0.8, 0.9] (mean confidence 0.85, accuracy 0.5) and two in (0.9, 1.0]
    (mean confidence 0.95, accuracy 1.0): ECE = 0.5 * 0.35 + 0.5 * 0.05.

    >>> round(expected_calibration_error([0.85, 0.85, 0.95, 0.95], [1, 0, 1, 1], n_bins=10), 10)
    0.2
    """
    c, y = _check_scores(conf=conf, correct=correct, same_length=True)
    if np.any((c < 0) | (c > 1)):
        raise ValueError("conf must lie in [0, 1]")
    if np.any((y != 0) & (y != 1)):
        raise ValueError("correct must contain only 0/1 (or booleans)")
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return _ece(c, y, int(n_bins))


DEFAULT_TEMPERATURE_GRID = np.geomspace(0.05, 2.71, 500)
"""The temperatures :func:`fit_temperature` searches by default (500 points, geometric)."""


def fit_temperature(logits: Any, labels: Any, *, grid: Any = None, n_bins: int = 15) -> float:
    """Temperature T minimising the ECE of ``confidence(logits, temperature=T)``.

    Temperature scaling (Guo et al., 2017) fixes over/under-confidence with one parameter and
    never changes the predicted class, so test error is unaffected. A grid search on the ECE
    itself (rather than gradient descent on the NLL) is what the papers this benchmark
    reproduces do, is deterministic and cannot diverge. The default grid is
    ``np.geomspace(0.05, 2.71, 500)`` (:data:`DEFAULT_TEMPERATURE_GRID`). When several
    temperatures reach the same minimal ECE the smallest one is returned.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
        At least one sample. Fit on held-out data, not on the set you report ECE on.
    labels : array-like of shape (n_samples,)
        Integer class indices.
    grid : array-like of positive floats, optional
    n_bins : int, default=15
        Bins of the ECE being minimised.

    Returns
    -------
    temperature : float

    Examples
    --------
    Logits that are 4x too large (over-confident) are fixed by T close to 4:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> true_logits = 2 * rng.normal(size=(2000, 10))
    >>> labels = (true_logits + rng.gumbel(size=(2000, 10))).argmax(axis=1)
    >>> t = fit_temperature(4 * true_logits, labels, grid=np.geomspace(0.5, 20, 200))
    >>> 3 < t < 5.5
    True
    """
    z = _check_logits(logits)
    if z.shape[0] == 0:
        raise ValueError("logits is empty")
    y = _check_labels(labels, z.shape[0], z.shape[1])
    if grid is None:
        g = DEFAULT_TEMPERATURE_GRID
    else:
        (g,) = _check_scores(grid=grid)
        if np.any(g <= 0):
            raise ValueError("grid must contain only positive temperatures")
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    correct = (np.argmax(z, axis=1) == y).astype(np.float64)
    eces = np.array([_ece(_max_softmax(z, float(t)), correct, int(n_bins)) for t in g])
    return float(np.min(g[eces == eces.min()]))


# --------------------------------------------------------------------------------------------
# Part 2: registered metrics
# --------------------------------------------------------------------------------------------

SCOPES = tuple(MetricScope)
"""Where a metric applies (:class:`~oodbench.core.rows.MetricScope`, defined by the row kinds it
covers): ``in`` = the model's in-distribution row of the results table, ``probe`` = each row
ranked against OOD points (needs OOD logits), ``both`` = both kinds of rows."""


@dataclass(frozen=True, eq=False)
class MetricInput:
    """Everything a registered metric may read: logits, labels, and a seed for random splits.

    ``out_logits`` is None for the in-distribution row. Arrays are converted to float64/int64
    numpy arrays and validated on construction (tensors must be moved to the CPU first).
    Confidences (``in_conf``, ``out_conf``: what MMC and ECE average) and rank scores
    (``in_score``, ``out_score``: what the rank metrics order) are computed once and cached, so
    computing several metrics from one input does not redo the softmax. Equality is identity (arrays have no
    useful ``==``).
    """

    in_logits: np.ndarray
    in_labels: np.ndarray
    out_logits: np.ndarray | None = None
    seed: int = 0
    #: A detector's scores of the in-distribution / OOD points (one per row of the logits);
    #: None: the msp score of the logits. The rank metrics order these; MMC and ECE still
    #: average the classifier's confidence.
    in_scores: np.ndarray | None = None
    out_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        z = _check_logits(self.in_logits, "in_logits")
        object.__setattr__(self, "in_logits", z)
        object.__setattr__(self, "in_labels", _check_labels(self.in_labels, *z.shape, "in_labels"))
        if self.out_logits is not None:
            zo = _check_logits(self.out_logits, "out_logits")
            if zo.shape[1] != z.shape[1]:
                raise ValueError(
                    f"out_logits has {zo.shape[1]} classes but in_logits has {z.shape[1]}"
                )
            object.__setattr__(self, "out_logits", zo)
        for name, logits in (("in_scores", z), ("out_scores", self.out_logits)):
            given = getattr(self, name)
            if given is None:
                continue
            (checked,) = _check_scores(**{name: given}, allow_empty=(name,))
            if logits is None or checked.shape[0] != logits.shape[0]:
                raise ValueError(f"{name} needs one score per row of the logits")
            object.__setattr__(self, name, checked)

    @cached_property
    def in_conf(self) -> np.ndarray:
        """Maximum softmax probability on the in-distribution set."""
        return confidence(self.in_logits)

    @cached_property
    def out_conf(self) -> np.ndarray:
        """Maximum softmax probability on the OOD probe (ValueError if there is none)."""
        if self.out_logits is None:
            raise ValueError("this metric needs out_logits (an OOD probe), but it is None")
        return confidence(self.out_logits)

    @cached_property
    def in_score(self) -> np.ndarray:
        """The detector's score on the in-distribution set (default :func:`msp_score`)."""
        return msp_score(self.in_logits) if self.in_scores is None else self.in_scores

    @cached_property
    def out_score(self) -> np.ndarray:
        """The detector's score on the OOD probe (ValueError if there is none)."""
        if self.out_logits is None:
            raise ValueError("this metric needs out_logits (an OOD probe), but it is None")
        return msp_score(self.out_logits) if self.out_scores is None else self.out_scores

    @cached_property
    def in_correct(self) -> np.ndarray:
        """1.0 where the in-distribution prediction is right."""
        return (predictions(self.in_logits) == self.in_labels).astype(np.float64)


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``fn(MetricInput) -> float`` plus how to show and compare it.

    ``higher_is_better`` lets reports mark the best model per column; ``scope`` (a
    :class:`MetricScope`, or its value as a string) says on which rows of the table the metric
    has a value.
    """

    name: str
    fn: Callable[[MetricInput], float]
    scope: MetricScope
    higher_is_better: bool
    doc: str = ""
    settled_above: Optional[Callable[[np.ndarray], float]] = None
    """Given the in-distribution scores (:func:`msp_score`), the score level L such that raising
    the scores of any OOD points that are already above L, by any amounts, never changes the
    metric (AUROC, AUPR-in: L = the largest in-distribution score; FPR@95: just below the 95%
    acceptance threshold; MMC: where the float64 confidence is exactly 1.0). Attacks stop on
    such points without changing the metric. ``None`` for metrics that need the scores as they
    are: AUPR-out depends on ties *among* OOD points at any level (see its docstring)."""
    settles_by_confidence: bool = False
    """The rule's level is a confidence, not a rank (MMC): exact only when the detector's score
    is the msp score; with any other detector the attack must run in full for this metric."""

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"metric {self.name!r}: scope must be one of "
                             f"{tuple(s.value for s in SCOPES)}, got {self.scope!r}")
        object.__setattr__(self, "scope", MetricScope(self.scope))

    def __call__(self, inp: MetricInput) -> float:
        return float(self.fn(inp))


def register(name: str, *, scope: MetricScope | str, higher_is_better: bool,
              settled_above: Optional[Callable[[np.ndarray], float]] = None,
              settles_by_confidence: bool = False) -> Callable[[Callable], Callable]:
    """Register ``fn(MetricInput) -> float`` as a :class:`Metric`; its docstring is the doc.

    ``scope`` says on which rows it has a value (a :class:`MetricScope`; its value ``"in"``,
    ``"probe"`` or ``"both"`` is accepted too, as plugins written before it pass); ``settled_above`` and
    ``settles_by_confidence`` state its early-stop rule (see :class:`Metric`; without one an
    attack runs in full for it)."""

    def decorator(fn: Callable[[MetricInput], float]) -> Callable[[MetricInput], float]:
        doc = " ".join((fn.__doc__ or "").split())
        metric = Metric(name, fn, scope, higher_is_better, doc, settled_above, settles_by_confidence)
        first = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        metric_registry.add(name, metric, doc=first, scope=metric.scope,
                            higher_is_better=higher_is_better)
        return fn

    return decorator


def _above_every_in(score_in: np.ndarray) -> float:
    # An OOD point above the most confident in-distribution point already out-ranks all of them:
    # AUROC (either tie rule) counts its pairs as failures whatever its value, and for AUPR-in
    # it is a false positive at every threshold where recall grows, however the OOD points
    # above that level are ordered or tied among themselves (recall does not change there).
    return float(score_in.max())


MMC_SETTLED = -(2.0 ** -55)
"""Above this score the float64 confidence is exactly 1.0: the terms exp(z_j - z_k) left out of
1 sum to less than 2**-54 (a quarter ulp of 1.0, with room for backend rounding), so 1 + their
sum rounds to 1 in any summation order. Raising such a point cannot change its confidence."""


def _confidence_is_one(score_in: np.ndarray) -> float:
    # MMC averages the confidences; a point whose confidence is exactly 1.0 contributes its
    # final value, however much its score still rises. Independent of the in-distribution.
    return MMC_SETTLED


def _accepted_at_tpr95(score_in: np.ndarray) -> float:
    # Accepted means ">= threshold"; the next float below it turns that into the strict ">" of
    # the early stop, so a point exactly at the threshold (already a false positive) stops too.
    return float(np.nextafter(acceptance_threshold(score_in, 0.95), -np.inf))


@register("test-error", scope=MetricScope.IN, higher_is_better=False)
def _test_error_metric(inp: MetricInput) -> float:
    """Fraction of misclassified in-distribution test samples."""
    return 1.0 - float(np.mean(inp.in_correct))


@register("ece", scope=MetricScope.IN, higher_is_better=False)
def _ece_metric(inp: MetricInput) -> float:
    """Expected calibration error (15 bins) of the raw softmax confidence, in-distribution."""
    return expected_calibration_error(inp.in_conf, inp.in_correct)


@register("ece-ts", scope=MetricScope.IN, higher_is_better=False)
def _ece_ts_metric(inp: MetricInput) -> float:
    """ECE (15 bins) after temperature scaling fitted on a held-out half of the test set.

    A seeded random 50/50 permutation of the in-distribution set (``MetricInput.seed``) gives
    a fitting half and an evaluation half: T is fitted with :func:`fit_temperature` on the
    first and ECE is reported on the second, so the score is not optimistically biased by
    fitting on the evaluation data. This mirrors RATIO's "ECE after temperature scaling on a
    validation split". Fewer than 2 samples: warns and returns NaN.
    """
    n = inp.in_logits.shape[0]
    if n < 2:
        return _undefined("ece-ts needs at least 2 in-distribution samples to split")
    perm = np.random.default_rng(inp.seed).permutation(n)
    fit_idx, eval_idx = perm[: n // 2], perm[n // 2 :]
    t = fit_temperature(inp.in_logits[fit_idx], inp.in_labels[fit_idx])
    conf = confidence(inp.in_logits[eval_idx], temperature=t)
    return expected_calibration_error(conf, inp.in_correct[eval_idx])


@register("mmc", scope=MetricScope.BOTH, higher_is_better=False, settled_above=_confidence_is_one,
           settles_by_confidence=True)
def _mmc_metric(inp: MetricInput) -> float:
    """Mean max confidence: of the in-distribution set on its row, of the probe on a probe row.

    Lower is better on OOD probes; on the in-distribution row it is context (compare it with
    1 - test error), not a score to minimise.
    """
    return mean_max_confidence(inp.in_conf if inp.out_logits is None else inp.out_conf)


@register("auroc", scope=MetricScope.PROBE, higher_is_better=True, settled_above=_above_every_in)
def _auroc_metric(inp: MetricInput) -> float:
    """AUROC of the (log-)confidence separating in-distribution (positive) from the probe; ties count 1/2."""
    return auroc(inp.in_score, inp.out_score)


@register("auroc-conservative", scope=MetricScope.PROBE, higher_is_better=True, settled_above=_above_every_in)
def _auroc_conservative_metric(inp: MetricInput) -> float:
    """AUROC where tied confidences count as failed detections (robust to saturated models)."""
    return auroc_conservative(inp.in_score, inp.out_score)


@register("aupr-in", scope=MetricScope.PROBE, higher_is_better=True, settled_above=_above_every_in)
def _aupr_in_metric(inp: MetricInput) -> float:
    """Average precision with in-distribution as the positive class, confidence as score."""
    return aupr_in(inp.in_score, inp.out_score)


@register("aupr-out", scope=MetricScope.PROBE, higher_is_better=True)
def _aupr_out_metric(inp: MetricInput) -> float:
    """Average precision with the OOD probe as the positive class, -confidence as score.

    No early stop: ranked last (above every in-distribution score), the OOD points still form
    the final thresholds of the curve, and tied ones enter together at a higher precision than
    distinct ones, so raising such a point (onto or off a tie) changes the value.
    """
    return aupr_out(inp.in_score, inp.out_score)


@register("aupr-in-trapezoid", scope=MetricScope.PROBE, higher_is_better=True)
def _aupr_in_trapezoid_metric(inp: MetricInput) -> float:
    """AUPR with in-distribution as positive by the trapezoid rule (OpenOOD / pytorch-ood AUPR-IN)."""
    return aupr_in_trapezoid(inp.in_score, inp.out_score)


@register("aupr-out-trapezoid", scope=MetricScope.PROBE, higher_is_better=True)
def _aupr_out_trapezoid_metric(inp: MetricInput) -> float:
    """AUPR with the probe as positive by the trapezoid rule (OpenOOD / pytorch-ood AUPR-OUT)."""
    return aupr_out_trapezoid(inp.in_score, inp.out_score)


@register("fpr95", scope=MetricScope.PROBE, higher_is_better=False, settled_above=_accepted_at_tpr95)
def _fpr95_metric(inp: MetricInput) -> float:
    """Share of probe samples accepted at the threshold keeping 95% of in-distribution samples.

    The convention of Hein et al. 2019, ODIN and the energy paper: in-distribution is the
    positive class. OpenOOD and pytorch-ood report the mirror image: ``fpr95-ood``.
    """
    return fpr_at_tpr(inp.in_score, inp.out_score, tpr=0.95)


@register("fpr95-ood", scope=MetricScope.PROBE, higher_is_better=False)
def _fpr95_ood_metric(inp: MetricInput) -> float:
    """Share of in-distribution samples flagged as OOD at the threshold detecting 95% of the probe.

    The convention of OpenOOD v1.5 and pytorch-ood's ``OODMetrics`` ("FPR95TPR"): the OOD set
    is the positive class, flagged when its score is at most the threshold. It is
    :func:`fpr_at_tpr` with the roles swapped and the scores negated, so ties with the
    threshold count against the detector here too. No early stop: the threshold is a quantile
    of the OOD scores themselves, which an attack moves.
    """
    return fpr_at_tpr(-inp.out_score, -inp.in_score, tpr=0.95)


def _row_kind(row: RowKind | str) -> RowKind:
    """The row's kind; the strings ``"in"`` and ``"probe"`` are its values."""
    try:
        return RowKind(row)
    except ValueError:
        raise ValueError(f"row must be 'in' or 'probe' (a RowKind), got {row!r}") from None


def compute_metrics(names: list[str], inp: MetricInput, *, row: RowKind | str) -> dict[str, float]:
    """Compute the listed registered metrics that apply to one row of the results table.

    Parameters
    ----------
    names : list of str
        Registered metric names (``oodbench list metrics``). Every name is looked up before
        anything is computed, so an unknown one raises
        :class:`~oodbench.core.registry.UnknownNameError` (with close matches) straight away.
    inp : MetricInput
    row : RowKind (or its value, ``"in"`` / ``"probe"``)
        ``RowKind.IN_DISTRIBUTION``: the model's in-distribution row; metrics whose scope
        covers it (``in``, ``both``) are computed and ``inp.out_logits`` is ignored. A row
        ranked against OOD points (``RowKind.OOD``, ``RowKind.IN_ATTACKED``): metrics of scope
        ``probe`` and ``both`` are computed, and ``inp.out_logits`` is required. A summary row
        has no metrics.

    Returns
    -------
    dict
        ``{name: value}`` in the order of ``names``, only for the applicable metrics. A value
        may be NaN (with an :class:`UndefinedMetricWarning`), e.g. for an empty probe.
    """
    kind = _row_kind(row)
    selected: list[Metric] = []
    for name in names:
        metric = metric_registry.get(name)
        if not isinstance(metric, Metric):
            raise TypeError(f"metric {name!r} is registered as {type(metric).__name__}, not Metric")
        if metric.scope.covers(kind):
            selected.append(metric)
    if kind is RowKind.IN_DISTRIBUTION and inp.out_logits is not None:
        inp = dataclasses.replace(inp, out_logits=None)
    if kind in MetricScope.PROBE.rows and selected and inp.out_logits is None:
        raise ValueError("row='probe' needs MetricInput.out_logits (the probe's logits)")
    return {m.name: m(inp) for m in selected}


def row_metric_names(names: Sequence[str], row: RowKind | str) -> list[str]:
    """The metrics of ``names`` that :func:`compute_metrics` computes for a row of kind ``row``:
    what a complete stored row holds (none for a summary row)."""
    kind = _row_kind(row)
    return [n for n in names if metric_registry.get(n).scope.covers(kind)]


def _probe_row_metrics(names: Sequence[str]) -> list[Any]:
    metrics = [metric_registry.get(n) for n in names]
    return [m for m in metrics if m.scope.covers(RowKind.OOD)]


def early_stop_is_exact(names: Sequence[str], *, msp: bool = True) -> bool:
    """Whether an attack may stop on settled OOD points without changing any of these metrics:
    true when every probe-row metric asked declares ``settled_above`` (AUPR-out does not) in the
    detector's score units (``msp=False``: MMC's confidence rule does not count)."""
    return all(getattr(m, "settled_above", None) is not None
               and (msp or not getattr(m, "settles_by_confidence", False))
               for m in _probe_row_metrics(names))


def settled_above(names: Sequence[str], score_in: np.ndarray, *, msp: bool = True) -> Optional[float]:
    """The score (the detector's units; ``msp``: whether that is :func:`msp_score`, the default)
    above which an OOD point can no longer change any of
    the named metrics (the largest of their own ``settled_above`` values: a rule exact above L
    is exact above any higher level), or ``None`` when one of them needs the full attack.
    Metrics of the in-distribution row do not constrain it.

    >>> score_in = np.log(np.arange(1, 21) / 20)      # log 0.05 ... log 1.00
    >>> bool(settled_above(["fpr95"], score_in) < np.log(0.10) < settled_above(["auroc"], score_in))
    True
    >>> settled_above(["auroc", "aupr-out"], score_in) is None
    True
    """
    if not early_stop_is_exact(names, msp=msp):
        return None
    rules = [m.settled_above for m in _probe_row_metrics(names)]
    if not rules:
        return None
    score = np.asarray(score_in, dtype=np.float64)
    return max(rule(score) for rule in rules)
