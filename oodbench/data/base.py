"""The two types every dataset and probe speaks: a request in, an in-memory image set out.

Evaluation sets in this field are small (≤ 10^4 test images of ≤ 32×32×3), so loaders
materialise them as one float tensor. That makes the runner's single clean pass, per-probe
shape conversion and later attacks simple tensor operations instead of DataLoader plumbing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from oodbench.errors import OodbenchError


@dataclass(frozen=True)
class ImageSet:
    """Images as float32 NCHW in [0, 1]; labels int64 (N,) or None for unlabeled probes."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None = None

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


class DatasetError(OodbenchError, ValueError):
    """A data set that cannot be loaded as asked (bad options, unusable files); the message
    names the data set."""


class DatasetNotFoundError(OodbenchError, FileNotFoundError):
    """A dataset's files are missing and could not be downloaded.

    The message names the dataset, the root it looked in and how to fix it (the suite's
    ``data_root`` field, ``--data-root`` or ``OODBENCH_DATA``, or ``download: true``).
    """
