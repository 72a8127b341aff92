"""scikit-learn's 8×8 handwritten digits: the embedded dataset that needs no download.

``sklearn.datasets.load_digits`` ships 1,797 images (8×8, 17 grey levels 0..16) inside the
scikit-learn wheel, so a suite built on it runs anywhere, offline, in seconds (the quickstart and
the tests use it). Pixels are divided by 16, so values are exactly k/16.

The train/test split is fixed — a stratified 80/20 split drawn once with :data:`SPLIT_SEED`,
independent of the suite's seed — so a model trained on ``split: train`` never sees a test image,
whatever seeds the suites use. ``request.n`` then subsamples within the chosen split with the
suite's seed like every other loader.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import numpy as np
import torch

from oodbench.data.base import DataRequest, ImageSet
from oodbench.data.common import SPLITS, check_option_names, check_split, subsample_indices, take
from oodbench.core.registry import datasets

SPLIT_SEED = 0
"""Seed of the fixed stratified train/test split (never the suite's seed)."""
TEST_FRACTION = 0.2


@lru_cache(maxsize=1)
def _split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images uint8 (N,1,8,8), labels), "test": …}``, computed once per process."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[:, None]  # values 0..16, exact in uint8
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=TEST_FRACTION,
        stratify=labels,
        random_state=SPLIT_SEED,
    )
    out = {}
    for split, idx in (("train", np.sort(train_idx)), ("test", np.sort(test_idx))):
        a, b = images[idx], labels[idx]
        a.setflags(write=False)
        b.setflags(write=False)
        out[split] = (a, b)
    return out


def _parse_classes(value: Any) -> list[int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in value)
        or not all(0 <= int(c) <= 9 for c in value)
        or len(set(value)) != len(value)
    ):
        raise ValueError(
            f"dataset 'digits': `classes` must be a non-empty list of distinct digits 0–9, "
            f"got {value!r}"
        )
    return sorted(int(c) for c in value)


def parse_options(options: Mapping[str, Any]) -> tuple[list[int] | None, bool]:
    """``(classes, relabel)`` from the options, or ``ValueError`` naming the bad one (also the
    registry's ``check_options``, so `oodbench validate` refuses what the loader would)."""
    options = check_option_names("digits", options, ("classes", "relabel"))
    relabel = options.get("relabel", True)
    if not isinstance(relabel, bool):
        raise ValueError(f"dataset 'digits': `relabel` must be true or false, got {relabel!r}")
    return _parse_classes(options.get("classes")), relabel


@datasets.register(
    "digits",
    shape=(1, 8, 8),
    num_classes=10,
    kind="real",
    splits=SPLITS,
    check_options=parse_options,
    source="scikit-learn load_digits (UCI optical recognition of handwritten digits; embedded)",
)
def digits(request: DataRequest) -> ImageSet:
    """scikit-learn 8×8 handwritten digits, embedded (no download), fixed 80/20 split.

    Options: ``classes`` (list of digits to keep, e.g. ``[0, 1, 2, 3, 4]`` for the in-distribution
    and ``[5, 6, 7, 8, 9]`` as a near-OOD probe) and ``relabel`` (default true: labels become the
    index in the sorted class list, so classes 5–9 are labelled 0–4; false keeps the digit).
    ``num_classes`` in the registry is 10, the full set; with ``classes`` it is ``len(classes)``.
    """
    name = "digits"
    classes, relabel = parse_options(request.options)
    split = check_split(name, request)

    images, labels = _split()[split]
    if classes is not None:
        keep = np.isin(labels, classes)
        images, labels = images[keep], labels[keep]
        if relabel:
            labels = np.searchsorted(np.asarray(classes), labels)
    indices = subsample_indices(len(labels), request.n, request.seed)
    images, labels = take(images, indices), take(labels, indices)
    tensor = torch.tensor(np.asarray(images), dtype=torch.float32).div_(16.0)  # a copy
    return ImageSet(name, tensor, torch.tensor(np.asarray(labels), dtype=torch.int64))
