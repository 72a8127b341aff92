"""80 Million Tiny Images (Torralba et al. 2008), read lazily from the original ``tiny_images.bin``.

The out-distribution of Hendrycks et al.'s outlier exposure and of Augustin et al. (2020) (OE,
ACET, RATIO on CIFAR and SVHN). The file is ~227 GiB, so it is memory-mapped and only the
requested images are read; nothing here ever loads it whole.

On-disk layout (the one the outlier-exposure ``TinyImages`` loader reads): raw uint8, no header,
79,302,017 images of 3072 bytes each. Image ``i`` is bytes ``[3072·i, 3072·(i+1))``, stored
MATLAB-style in column-major order: ``flat.reshape(32, 32, 3, order="F")`` is the (height, width,
channel) image, i.e. ``pixel[c, h, w] = flat[1024·c + 32·w + h]`` (channel planes, each plane
stored column by column). :func:`decode` turns rows into NCHW.

Exclusion lists (``exclude_cifar``) are text files of one image index per line. Outlier
exposure's ``80mn_cifar_idxs.txt`` (the Tiny Images that are CIFAR test images) numbers images
from 1, hence ``exclude_base: 1`` by default; use ``exclude_base: 0`` for 0-based lists. Excluded
images are skipped: the dataset's image ``k`` is the ``k``-th image not excluded.

There is no download: MIT withdrew the dataset in June 2020, so the file must come from an
existing copy. The registry entry carries ``random_access`` (:func:`open_tiny_images`) so that
training can sample a few images per step from the memmap (:class:`oodbench.train.data.OutSource`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from oodbench.data.base import DataRequest, DatasetNotFoundError, ImageSet
from oodbench.data.common import check_option_names, subsample_indices
from oodbench.data.stream import ArrayPart, ArraySource
from oodbench.core.registry import datasets

NAME = "tiny-images"
IMAGE_BYTES = 3072  # 32 × 32 × 3 uint8
FULL_COUNT = 79_302_017  # images in the original file (243,615,796,224 bytes)
DEFAULT_PATH = "tiny_images.bin"
MAX_WHOLE = 100_000  # without `n`, at most this many images are materialised
_RANDPERM_LIMIT = 1 << 22  # above this many images, draw subsets without a full permutation

FIX = (
    "there is no download (MIT withdrew 80 Million Tiny Images in June 2020): copy an existing "
    f"`{DEFAULT_PATH}` ({FULL_COUNT:,} images of 32×32×3 uint8, 3072 bytes each, ~227 GiB, as "
    "used by outlier exposure) into the data root, or point the option `path` at it (a relative "
    "`path` is resolved against the data root: set `data_root`, --data-root or OODBENCH_DATA)"
)


def decode(rows: np.ndarray) -> np.ndarray:
    """uint8 rows (N, 3072) in the file's column-major layout → uint8 NCHW (N, 3, 32, 32).

    ``row.reshape(32, 32, 3, order="F")[h, w, c] == row[1024·c + 32·w + h]``, so the C-order
    reshape to (3, 32, 32) indexes ``[c, w, h]``; swapping the last two axes gives NCHW.
    """
    return rows.reshape(-1, 3, 32, 32).transpose(0, 1, 3, 2)


def resolve(request: DataRequest, value: Any) -> Path:
    """``value`` as a path; a relative one is taken relative to the data root."""
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else Path(request.root).expanduser() / path


def read_exclusions(files: Iterable[Path], base: int) -> np.ndarray:
    """Sorted unique 0-based indices listed in ``files`` (one integer per line, numbered from
    ``base``); a missing file is a :class:`DatasetNotFoundError`."""
    found: list[np.ndarray] = []
    for file in files:
        if not file.is_file():
            raise DatasetNotFoundError(
                f"dataset {NAME!r}: exclusion list {file} not found. To fix: point `exclude_cifar` "
                "at the index file (outlier exposure ships the CIFAR one as "
                "utils/80mn_cifar_idxs.txt, numbered from 1), or drop the option"
            )
        found.append(np.loadtxt(file, dtype=np.int64, ndmin=1) - base)
    if not found:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(found))


class TinyImages:
    """Random access to the images of a ``tiny_images.bin`` file, minus an exclusion list.

    The file is memory-mapped: constructing this reads nothing, :meth:`read` reads only the
    requested 3072-byte rows.
    """

    def __init__(self, path: Path, excluded: np.ndarray | None = None) -> None:
        size = path.stat().st_size
        if size == 0 or size % IMAGE_BYTES:
            raise ValueError(
                f"dataset {NAME!r}: {path} has {size} bytes, not a positive multiple of "
                f"{IMAGE_BYTES} (32×32×3 uint8 images): not a tiny images file, or truncated"
            )
        self.path, self.size, self.count = path, size, size // IMAGE_BYTES
        self.rows = np.memmap(path, dtype=np.uint8, mode="r", shape=(self.count, IMAGE_BYTES))
        self.excluded = np.asarray([] if excluded is None else excluded, dtype=np.int64)
        if len(self.excluded) and (self.excluded[0] < 0 or self.excluded[-1] >= self.count):
            raise ValueError(
                f"dataset {NAME!r}: excluded indices span [{self.excluded[0]}, "
                f"{self.excluded[-1]}] but {path} holds images 0..{self.count - 1} "
                "(is `exclude_base` right?)"
            )
        # rank of excluded image j among the kept ones: kept image k sits at k + #(shifted <= k)
        self._shifted = self.excluded - np.arange(len(self.excluded))

    def __len__(self) -> int:
        return self.count - len(self.excluded)

    def file_indices(self, indices: torch.Tensor) -> np.ndarray:
        """Indices into the file of the dataset's images ``indices`` (skipping excluded ones)."""
        k = np.asarray(indices, dtype=np.int64)
        if k.size and (k.min() < 0 or k.max() >= len(self)):
            raise IndexError(f"dataset {NAME!r}: index out of range for {len(self)} images")
        return k + np.searchsorted(self._shifted, k, side="right")

    def read(self, indices: torch.Tensor) -> torch.Tensor:
        """The dataset's images ``indices`` as uint8 NCHW (N, 3, 32, 32), read from the memmap."""
        rows = self.rows[self.file_indices(indices)]
        return torch.from_numpy(np.ascontiguousarray(decode(rows)))

    def identity(self) -> dict[str, Any]:
        """A cheap fingerprint for model cards and checkpoints (hashing 227 GiB is not cheap):
        sha256 over the size, the first and last MiB and the excluded indices."""
        digest = hashlib.sha256(str(self.size).encode())
        block = min(self.size, 1 << 20)
        digest.update(self.rows.reshape(-1)[:block].tobytes())
        digest.update(self.rows.reshape(-1)[self.size - block:].tobytes())
        digest.update(self.excluded.tobytes())
        return {"images": len(self), "excluded": len(self.excluded), "file_bytes": self.size,
                "fingerprint_sha256": digest.hexdigest()}


def parse_options(options: Mapping[str, Any]) -> tuple[Any, int, list[Any]]:
    """``(path, exclude_base, exclude_cifar lists)``, or ``ValueError`` naming the bad option
    (also the registry's ``check_options``: `oodbench validate` refuses what this would)."""
    options = check_option_names(NAME, options, ("path", "exclude_cifar", "exclude_base"))
    path = options.get("path") or DEFAULT_PATH
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"dataset {NAME!r}: option `path` must be a file name, got {path!r}")
    base = options.get("exclude_base", 1)
    if base not in (0, 1) or isinstance(base, bool):
        raise ValueError(f"dataset {NAME!r}: option `exclude_base` must be 0 or 1, got {base!r}")
    lists = options.get("exclude_cifar") or []
    lists = [lists] if isinstance(lists, (str, os.PathLike)) else lists
    if not isinstance(lists, (list, tuple)) or not all(
            isinstance(f, (str, os.PathLike)) for f in lists):
        raise ValueError(f"dataset {NAME!r}: option `exclude_cifar` must be a file name or a "
                         f"list of them, got {lists!r}")
    return path, base, list(lists)


def open_tiny_images(request: DataRequest) -> TinyImages:
    """Check the options, find the file (``DatasetNotFoundError`` with the fix if missing) and
    memory-map it; ``split`` and ``download`` are ignored (one file, no download)."""
    file, base, lists = parse_options(request.options)
    path = resolve(request, file)
    if not path.is_file():
        raise DatasetNotFoundError(f"dataset {NAME!r} not found: no file {path}. To fix: {FIX}.")
    excluded = read_exclusions((resolve(request, f) for f in lists), base)
    return TinyImages(path, excluded)


def distinct_indices(total: int, n: int | None, seed: int) -> torch.Tensor | None:
    """Seeded sorted subset of ``n`` of ``range(total)`` (None: all), without a full permutation
    of 79M indices: draw with replacement, drop repeats, draw the shortfall again."""
    if total <= _RANDPERM_LIMIT or type(n) is not int or not 0 < n <= total // 2:
        return subsample_indices(total, n, seed)  # also rejects a bad `n`
    gen = torch.Generator().manual_seed(int(seed))
    picked = torch.zeros(0, dtype=torch.int64)
    while len(picked) < n:
        draw = torch.randint(0, total, (n - len(picked),), generator=gen)
        picked = torch.unique(torch.cat([picked, draw]))
    return picked


@datasets.register(
    NAME,
    shape=(3, 32, 32),
    num_classes=None,
    kind="real",
    source="80 Million Tiny Images (Torralba et al. 2008), the original tiny_images.bin "
    "(withdrawn in 2020, no download)",
    check_options=parse_options,
    random_access=open_tiny_images,
)
def tiny_images(request: DataRequest) -> ImageSet:
    """80 Million Tiny Images from the original tiny_images.bin (memory-mapped), unlabeled, RGB.

    Options: ``path`` (the file, default ``tiny_images.bin`` in the data root), ``exclude_cifar``
    (an index file, or a list of them, of images never to use, e.g. outlier exposure's
    ``80mn_cifar_idxs.txt``) and ``exclude_base`` (1, the default, for that file's 1-based
    numbering; 0 for 0-based lists). ``n`` images are a seeded random subset in file order; ``n``
    is required unless the file holds at most 100,000 images.
    """
    data = open_tiny_images(request)
    if request.n is None and len(data) > MAX_WHOLE:
        raise ValueError(
            f"dataset {NAME!r}: {len(data):,} images do not fit in memory; set `n` "
            f"(training samples per step from the file without it, see `out_distribution`)"
        )
    indices = distinct_indices(len(data), request.n, request.seed)
    if indices is None:
        indices = torch.arange(len(data))
    # Read in batches like every file-backed set; the file is mapped per read (see stream.py).
    rows = ArrayPart(data.count, path=data.path, row_shape=(IMAGE_BYTES,))
    source = ArraySource(NAME, [rows], (3, 32, 32), decode)
    return ImageSet(NAME, source.subset(data.file_indices(indices)), None)
