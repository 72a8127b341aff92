"""Datasets and probes: everything a suite can name under ``in_distribution`` or ``probes``.

The built-ins, one module each (the ``datasets`` registry imports every module of this folder on
its first lookup, so a new data set is one file here):

- ``torchvision_sets``: mnist, fashion-mnist, kmnist, emnist-letters, cifar10, cifar100, svhn,
  image-folder (real files under a data root, read through torchvision);
- ``tiny_images``: tiny-images, 80 Million Tiny Images memory-mapped from ``tiny_images.bin``;
- ``digits``: scikit-learn's embedded 8×8 digits (no download);
- ``noise``: uniform-noise and smoothed-noise (synthetic, shaped like the in-distribution);
- ``image_list``: image-list, the images an OpenOOD ``benchmark_imglist`` file names;
- ``unit_tests``: NINCO's 17 OOD unit tests, ``unit-gaussian`` … (synthetic, any shape).

A dataset is a function ``load(request: DataRequest) -> ImageSet``; call it through
:func:`load_dataset`, which also checks the output contract. Probes are converted to the
in-distribution's shape by :func:`to_shape`, the one explicit transform (per batch, for a set
read from files: :mod:`oodbench.data.stream`).
"""

from __future__ import annotations

import torch

from typing import Any, Mapping

from oodbench.data.base import DataRequest, DatasetError, DatasetNotFoundError, ImageSet
from oodbench.data.common import require_split
from oodbench.data.stream import ImageSource, materialise, take_rows
from oodbench.data.transforms import describe_conversion, to_shape
from oodbench.core.registry import datasets

__all__ = [
    "DataRequest",
    "DatasetError",
    "DatasetNotFoundError",
    "check_dataset_options",
    "check_dataset_split",
    "ImageSet",
    "ImageSource",
    "check_imageset",
    "describe_conversion",
    "load_dataset",
    "materialise",
    "num_classes",
    "take_rows",
    "to_shape",
]


def check_imageset(name: str, result: object, request: DataRequest | None = None) -> ImageSet:
    """Raise ``ValueError``/``TypeError`` naming ``name`` unless ``result`` meets the contract.

    The contract: an :class:`ImageSet` of float32 NCHW images in [0, 1] (no NaN), labels None or
    int64 of shape (N,), the registered ``shape`` when one is declared, and at most
    ``request.n`` images (synthetic probes: exactly ``n``). The pixel checks (NaN, range) read a
    source's first and last :data:`CHECKED_ROWS` rows only: reading it all is what a source is
    there to avoid, and its rows are ``uint8 / 255`` or clamped by construction.
    """
    if not isinstance(result, ImageSet):
        raise TypeError(f"dataset {name!r} returned {type(result).__name__}, not an ImageSet")
    images, labels = result.images, result.labels
    problems = []
    if not isinstance(images, (torch.Tensor, ImageSource)):
        raise TypeError(f"dataset {name!r}: images are {type(images).__name__}, not a tensor "
                        "or an ImageSource")
    if images.dtype != torch.float32:
        problems.append(f"images are {images.dtype}, not torch.float32")
    if images.ndim != 4:
        problems.append(f"images have shape {tuple(images.shape)}, not (N, C, H, W)")
    elif images.shape[0] == 0:
        problems.append("no images")
    elif torch.isnan(pixels := _checked_pixels(images)).any():
        problems.append("images contain NaN")
    else:
        lo, hi = float(pixels.min()), float(pixels.max())
        if lo < 0.0 or hi > 1.0:
            problems.append(f"pixel values span [{lo}, {hi}], not within [0, 1]")
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
            problems.append(f"labels are {getattr(labels, 'dtype', type(labels).__name__)}, not int64")
        elif labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            problems.append(
                f"labels have shape {tuple(labels.shape)} for {images.shape[0]} images"
            )
    meta = datasets.meta(name) if name in datasets else {}
    declared = meta.get("shape")
    if declared is not None and images.ndim == 4 and tuple(images.shape[1:]) != tuple(declared):
        problems.append(f"images are {tuple(images.shape[1:])}, but {name!r} declares {declared}")
    if request is not None and request.n is not None and images.ndim == 4:
        count = images.shape[0]
        if meta.get("kind") == "synthetic" and count != request.n:
            problems.append(f"{count} images generated for n={request.n}")
        elif count > request.n:
            problems.append(f"{count} images returned for n={request.n}")
    if problems:
        raise ValueError(f"dataset {name!r} broke the data contract: " + "; ".join(problems))
    return result


CHECKED_ROWS = 16


def _checked_pixels(images: torch.Tensor | ImageSource) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images
    n = len(images)
    rows = sorted(set(range(min(n, CHECKED_ROWS))) | set(range(max(0, n - CHECKED_ROWS), n)))
    return images[rows]


def check_dataset_options(name: str, options: Mapping[str, Any]) -> None:
    """``ValueError`` naming the option if the registered dataset ``name`` would refuse
    ``options``: its registry entry's ``check_options`` (the same function its loader calls), so
    a suite is checked without loading any data. Datasets registered without one (plugins) are
    checked only when they load."""
    check = datasets.meta(name).get("check_options")
    if check is not None:
        check(options)


def check_dataset_split(name: str, split: str) -> None:
    """``ValueError`` naming the choices if the registered dataset ``name`` declares its
    ``splits`` (registry entry) and ``split`` is not one of them, so a suite asking for
    ``validation`` is refused before any data is read. Datasets that ignore the split (noise,
    folders) declare none."""
    splits = datasets.meta(name).get("splits")
    if splits is not None:
        require_split(name, split, splits)


def num_classes(name: str, options: Mapping[str, Any]) -> int | None:
    """How many classes the dataset ``name`` has as the options ask for it: ``len(classes)``
    when they keep a relabelled subset (``classes:``, ``relabel`` not false), else the registry's
    ``num_classes`` (None when not declared, e.g. noise)."""
    classes = options.get("classes")
    if isinstance(classes, (list, tuple)) and options.get("relabel", True):
        return len(classes)
    return datasets.meta(name).get("num_classes")


def load_dataset(name: str, request: DataRequest) -> ImageSet:
    """Load the registered dataset ``name`` for ``request`` and check the output contract.

    Raises :class:`~oodbench.core.registry.UnknownNameError` for an unregistered name (with "did you
    mean"), :class:`DatasetNotFoundError` when files are missing, :class:`DatasetError` (a
    ``ValueError``) for bad options or unusable files, and ``ValueError``/``TypeError`` for a
    result that breaks the contract (a bug in the loader).
    """
    loader = datasets.get(name)
    try:
        loaded = loader(request)
    except DatasetError:
        raise
    except ValueError as err:
        raise DatasetError(str(err) if name in str(err) else f"dataset {name!r}: {err}") from err
    return check_imageset(name, loaded, request)
