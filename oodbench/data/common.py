"""Helpers every loader shares: option checking, the seeded ``n`` subsample, uint8 → [0, 1].

Keeping these in one place is what makes ``n: 1000`` mean the same thing for every dataset: a
random subset drawn with the suite's seed, without replacement, returned in the dataset's own
order (so a subset of 1000 is a reproducible list of indices, not a shuffle).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from oodbench.data.base import DataRequest, ImageSet
from oodbench.data.stream import ImageSource, take_rows

SPLITS = ("train", "test")


def check_option_names(name: str, options: Mapping[str, Any],
                       allowed: Iterable[str]) -> dict[str, Any]:
    """Return ``options`` after rejecting keys the dataset does not know.

    A typo (``clases:``) must stop the run, not be ignored silently.
    """
    allowed = sorted(allowed)
    unknown = sorted(set(map(str, options)) - set(allowed))
    if unknown:
        known = ", ".join(allowed) if allowed else "(none)"
        raise ValueError(
            f"dataset {name!r}: unknown option(s) {', '.join(unknown)}; it accepts: {known}"
        )
    return dict(options)


def check_options(name: str, request: DataRequest, allowed: Iterable[str]) -> dict[str, Any]:
    """:func:`check_option_names` of ``request.options``."""
    return check_option_names(name, request.options, allowed)


def no_options(name: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The ``check_options`` registry entry of a dataset that takes no options."""
    return partial(check_option_names, name, allowed=())


def require_split(name: str, split: str, splits: Iterable[str] = SPLITS) -> str:
    """Return ``split`` if it is one of ``splits``, else raise ``ValueError`` naming the choices."""
    splits = tuple(splits)
    if split not in splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; choose one of {', '.join(splits)}")
    return split


def check_split(name: str, request: DataRequest, splits: Iterable[str] = SPLITS) -> str:
    """Return ``request.split`` if the dataset has it, else raise ``ValueError`` naming the choices."""
    return require_split(name, request.split, splits)


def subsample_indices(total: int, n: int | None, seed: int) -> torch.Tensor | None:
    """Indices of a seeded random subset of size ``n`` of ``range(total)``, in increasing order.

    Returns ``None`` (meaning "take everything") when ``n`` is None or ``n >= total``. The draw is
    a ``torch.randperm`` with a ``torch.Generator`` seeded by ``seed``, so it is the same on every
    machine and independent of global RNG state; sorting keeps the dataset's own order.
    """
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    if n >= total:
        return None
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(total, generator=generator)[: int(n)].sort().values


def take(array: Any, indices: torch.Tensor | None) -> Any:
    """``array[indices]`` for a tensor, ndarray or list; the array itself when ``indices`` is None."""
    if indices is None:
        return array
    if isinstance(array, torch.Tensor):
        return array[indices]
    if isinstance(array, np.ndarray):
        return array[indices.numpy()]
    return [array[i] for i in indices.tolist()]


def uint8_to_unit(images: Any) -> torch.Tensor:
    """uint8 NCHW (tensor or ndarray) → float32 in [0, 1] by dividing by 255 (exact: k/255)."""
    tensor = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
    if tensor.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {tensor.dtype}")
    return tensor.to(torch.float32).div_(255.0)


def labels_tensor(labels: Any) -> torch.Tensor:
    """Labels (list, ndarray or tensor) as a contiguous int64 tensor of shape (N,)."""
    return torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1).contiguous()


def uint8_imageset(
    name: str, images: Any, labels: Any | None, request: DataRequest
) -> ImageSet:
    """Subsample uint8 NCHW images (+ labels) with ``request.n``/``request.seed``, then scale.

    Subsampling happens before the float conversion so a 1000-image probe from a 60k set never
    materialises 60k float images.
    """
    indices = subsample_indices(len(images), request.n, request.seed)
    images = uint8_to_unit(take(images, indices))
    if labels is not None:
        labels = labels_tensor(take(labels, indices))
    return ImageSet(name, images.contiguous(), labels)


def streamed_imageset(
    name: str, images: ImageSource, labels: Any | None, request: DataRequest
) -> ImageSet:
    """The file-backed counterpart of :func:`uint8_imageset`: the same seeded subsample, as a
    lazy view of ``images`` (nothing is read here), with the labels subsampled alike."""
    indices = subsample_indices(len(images), request.n, request.seed)
    if labels is not None:
        labels = labels_tensor(take(labels, indices))
    return ImageSet(name, take_rows(images, indices), labels)
