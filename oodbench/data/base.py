"""The two types every dataset and probe speaks: a request in, an image set out.

An image set's ``images`` are a float tensor when they are made in memory (scikit-learn's digits,
the synthetic noise probes) and an :class:`~oodbench.data.stream.ImageSource` when they come from
files: rows read and converted only when indexed, so evaluating 10^5 images takes the memory of
one shard, not of the data set (``benchmarks/memory_flat.py``). Both answer ``len``, ``shape``
and ``images[rows]``, so the runner's clean pass, the per-probe shape conversion and the attacks
read either the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from oodbench.data.stream import ImageSource, materialise
from oodbench.core.errors import DatasetError, OodbenchError  # noqa: F401 (DatasetError: its old home)


@dataclass(frozen=True)
class ImageSet:
    """Images as float32 NCHW in [0, 1] (a tensor, or a source read in batches); labels int64
    (N,), always in memory (8 bytes an image), or None for unlabeled probes."""

    name: str
    images: torch.Tensor | ImageSource
    labels: torch.Tensor | None = None

    def materialised(self) -> "ImageSet":
        """This set with every image in one tensor: for training, which samples the whole set
        every epoch; evaluation never needs it."""
        if isinstance(self.images, torch.Tensor):
            return self
        return ImageSet(self.name, materialise(self.images), self.labels)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


@dataclass(frozen=True)
class DataRequest:
    """What a suite asks of a dataset loader.

    ``reference`` is the in-distribution test set; synthetic probes that are built from it (the
    papers' permuted-pixel noise) or need its shape read it from here. ``n`` caps the number of
    samples: loaders take a seeded random subset when the set is larger, and synthetic probes
    generate exactly ``n`` (default 1000 when ``n`` is None).
    """

    root: Path
    split: str = "test"
    download: bool = False
    n: int | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    reference: ImageSet | None = None


class DatasetNotFoundError(OodbenchError, FileNotFoundError):
    """A dataset's files are missing and could not be downloaded.

    The message names the dataset, the root it looked in and how to fix it (the suite's
    ``data_root`` field, ``--data-root`` or ``OODBENCH_DATA``, or ``download: true``).
    """
