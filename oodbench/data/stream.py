"""Image sets read in batches: memory that stays flat however many images a data set holds.

An :class:`ImageSource` stands where a float tensor used to stand in
:attr:`oodbench.data.base.ImageSet.images`. It answers ``len()``, ``.shape`` (N, C, H, W),
``.dtype`` and ``x[key]`` for an int, a slice or an index array — the operations every consumer
(the forward pass, the attack engine, shard tasks) already used on tensors — but ``x[key]``
reads and converts only the rows asked for. So a shard of 1000 points costs 1000 images of
memory whether its data set holds 10^4 or 10^7 images, and nothing else in the pipeline had to
learn a second way to read data.

The sources:

- :class:`ArraySource`: uint8 arrays, memory-mapped from the file (idx files of the MNIST family,
  cached ``.npy`` copies of the CIFAR pickles and SVHN ``.mat`` files, ``tiny_images.bin``).
  Each read maps the file, copies the rows it needs and unmaps it again, so the pages it touched
  leave this process's resident set with the read (a mapping kept open would keep every page
  ever read resident, and the resident set would grow with the data set after all);
- :class:`FolderSource`: image files decoded per read, by a ``torch.utils.data.DataLoader`` with
  worker processes when a read is large enough to pay for them;
- :class:`SubsetSource` (the seeded ``n`` subsample) and :class:`ConvertedSource` (a probe
  converted to the in-distribution's shape, one batch at a time): views over another source.

Rows come back as the old loaders computed them (``uint8 / 255`` in float32, the same decode and
the same :func:`~oodbench.data.transforms.to_shape`, which is per image), so a streamed set
is bit-identical to the materialised one; ``tests/test_data_stream.py`` checks it per format.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from oodbench.core.errors import DatasetError
from oodbench.data.transforms import _check_shape, to_shape
from oodbench.core.errors import OodbenchError

#: Reads of at least this many files are decoded by DataLoader workers (fewer: in-process, where
#: starting workers would cost more than it saves).
WORKER_MIN_FILES = 64
_WORKER_CHUNK = 16


class StreamError(OodbenchError, IndexError):
    """An index a source does not hold (the message names the source)."""


def data_workers() -> int:
    """Worker processes an image folder is decoded with: ``$OODBENCH_DATA_WORKERS`` if set (0 =
    decode in this process), else one fewer than the cores, at most 4: decoding keeps the
    workers busy while the main process runs the model."""
    value = os.environ.get("OODBENCH_DATA_WORKERS")
    if value is not None and value.strip():
        try:
            return max(0, int(value))
        except ValueError:
            raise OodbenchError(f"OODBENCH_DATA_WORKERS must be a whole number, got {value!r}") from None
    return min(4, max(0, (os.cpu_count() or 1) - 1))


class ImageSource:
    """Float32 NCHW images in [0, 1], read only when indexed. Subclasses implement :meth:`read`.

    ``x[i]`` is one image (C, H, W); ``x[a:b]``, ``x[index_tensor]``, ``x[list]`` and ``x[bool
    mask]`` are a new float32 tensor of just those rows (like a numpy memmap, indexing copies);
    :meth:`subset` and :meth:`converted` are lazy views instead.
    """

    dtype = torch.float32
    ndim = 4
    device = torch.device("cpu")

    def __init__(self, name: str, count: int, image_shape: Sequence[int]):
        self.name = name
        self._count = int(count)
        self._image_shape = tuple(int(s) for s in image_shape)

    # --- what subclasses provide -------------------------------------------------------------

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """Rows ``indices`` (int64, in range, any order, repeats allowed) as a float32
        contiguous (k, C, H, W) tensor."""
        raise NotImplementedError

    # --- the tensor-like surface -----------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self._count, *self._image_shape))

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, tuple):  # x[rows, c, h, w]: read the rows, index the rest in memory
            if not key:
                return self[:]
            first = self[key[0]]
            rest = key[1:]
            return first[rest] if first.ndim == 3 else first[(slice(None), *rest)]
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            i = int(key)
            if not -self._count <= i < self._count:
                raise StreamError(f"{self.name}: index {i} out of range for {self._count} images")
            return self.read(np.array([i % self._count], dtype=np.int64))[0]
        rows = self.positions(key)
        if len(rows) == 0:
            return torch.empty((0, *self._image_shape), dtype=self.dtype)
        return self.read(rows)

    def positions(self, key: Any) -> np.ndarray:
        """``key`` (a slice, index tensor/array/list or boolean mask) as int64 row numbers."""
        if isinstance(key, slice):
            return np.arange(*key.indices(self._count), dtype=np.int64)
        if isinstance(key, torch.Tensor):
            key = key.detach().cpu().numpy()
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (self._count,):
                raise StreamError(f"{self.name}: a mask of shape {idx.shape} for {self._count} images")
            return np.flatnonzero(idx).astype(np.int64)
        if idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise StreamError(f"{self.name}: rows are read by an int, a slice or a 1-D index array, "
                              f"got {type(key).__name__} of shape {idx.shape}")
        idx = idx.astype(np.int64)
        if idx.min() < -self._count or idx.max() >= self._count:
            raise StreamError(f"{self.name}: index out of range for {self._count} images")
        return np.where(idx < 0, idx + self._count, idx)

    def subset(self, indices: torch.Tensor | np.ndarray | Sequence[int]) -> "ImageSource":
        """The rows ``indices``, still unread."""
        return SubsetSource(self, self.positions(indices))

    def converted(self, shape: Sequence[int]) -> "ImageSource":
        """These images in ``shape`` (C, H, W), converted per read; ``self`` when it already is."""
        if tuple(int(s) for s in shape) == self._image_shape:
            return self
        return ConvertedSource(self, shape)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Consecutive batches of at most ``batch_size`` rows, in order."""
        for start in range(0, self._count, batch_size):
            yield self[start:start + batch_size]

    def materialise(self) -> torch.Tensor:
        """Every image at once (training, which samples the whole set every epoch)."""
        return self[:]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, shape={tuple(self.shape)})"


def materialise(images: "torch.Tensor | ImageSource") -> torch.Tensor:
    """``images`` as one tensor: a tensor as it is, a source read whole."""
    return images if isinstance(images, torch.Tensor) else images.materialise()


def take_rows(images: "torch.Tensor | ImageSource",
              indices: torch.Tensor | None) -> "torch.Tensor | ImageSource":
    """``images[indices]`` that stays lazy for a source (a tensor is indexed as before)."""
    if indices is None:
        return images
    return images[indices] if isinstance(images, torch.Tensor) else images.subset(indices)


def unit_float(rows: np.ndarray) -> torch.Tensor:
    """uint8 rows → float32 k/255, the old loaders' conversion (``uint8_to_unit``)."""
    tensor = torch.from_numpy(np.ascontiguousarray(rows))
    return tensor.to(torch.float32).div_(255.0)


# --- uint8 arrays (memory-mapped files) ------------------------------------------------------


class ArrayPart:
    """One uint8 array of images: a region of a file mapped per read, or an array in memory
    (what is left when a file cannot be mapped: a gzip-compressed idx file, say)."""

    def __init__(self, count: int, *, path: Path | None = None, offset: int = 0,
                 row_shape: Sequence[int] = (), array: np.ndarray | None = None):
        if (path is None) == (array is None):
            raise ValueError("an ArrayPart is a file region or an array, not both")
        if array is not None and len(array) != count:
            raise ValueError(f"an ArrayPart of {count} rows given an array of {len(array)}")
        self.count, self.path, self.offset = int(count), path, int(offset)
        self.row_shape = tuple(int(s) for s in (row_shape if array is None else array.shape[1:]))
        self.array = array

    @classmethod
    def npy(cls, path: Path) -> "ArrayPart":
        """The array of an ``.npy`` file (uint8, C order), mapped per read."""
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
        if dtype != np.uint8 or fortran or not shape:
            raise ValueError(f"{path}: not a C-ordered uint8 array")
        expected = offset + int(np.prod(shape))
        if path.stat().st_size != expected:
            raise ValueError(f"{path}: {path.stat().st_size} bytes, {expected} expected (truncated)")
        return cls(shape[0], path=path, offset=offset, row_shape=shape[1:])

    def rows(self, indices: np.ndarray) -> np.ndarray:
        if self.array is not None:
            return self.array[indices]
        # Mapped for this read only: the copy below is all that stays (see the module docstring).
        mapped = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self.offset,
                           shape=(self.count, *self.row_shape))
        if len(indices) and indices[-1] - indices[0] == len(indices) - 1 and \
                np.all(np.diff(indices) == 1):
            rows = np.array(mapped[indices[0]:indices[-1] + 1])  # one contiguous run
        else:
            rows = np.asarray(mapped[indices])  # fancy indexing copies
        del mapped  # the last reference: unmapped here, not at some later collection
        return rows


class ArraySource(ImageSource):
    """Images stored as uint8 rows in one or more :class:`ArrayPart` (CIFAR-10's five training
    batches are five), each row turned into uint8 NCHW by ``to_nchw`` and then divided by 255."""

    def __init__(self, name: str, parts: Sequence[ArrayPart], image_shape: Sequence[int],
                 to_nchw: Callable[[np.ndarray], np.ndarray] | None = None):
        self.parts = list(parts)
        self._starts = np.cumsum([0] + [p.count for p in self.parts])
        self.to_nchw = to_nchw
        super().__init__(name, int(self._starts[-1]), image_shape)

    def read(self, indices: np.ndarray) -> torch.Tensor:
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self._image_shape), dtype=np.uint8)
        part_of = np.searchsorted(self._starts, indices, side="right") - 1
        for p in np.unique(part_of):
            where = np.flatnonzero(part_of == p)
            local = indices[where] - self._starts[p]
            order = np.argsort(local, kind="stable")  # sorted reads walk the file forwards
            rows = self.parts[p].rows(local[order])
            nchw = rows if self.to_nchw is None else self.to_nchw(rows)
            out[where[order]] = nchw.reshape(len(order), *self._image_shape)
        return unit_float(out)


# --- image files -------------------------------------------------------------------------------


class _DecodeFiles(torch.utils.data.Dataset):
    """The files of one read, as a data set a DataLoader's workers decode."""

    def __init__(self, files: Sequence[str], decode: Callable[[str], torch.Tensor]):
        self.files, self.decode = list(files), decode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.decode(self.files[i])


class FolderSource(ImageSource):
    """Image files, each decoded by ``decode(file) -> float32 (C, H, W)`` when read.

    A read of :data:`WORKER_MIN_FILES` files or more is decoded by a DataLoader with
    :func:`data_workers` worker processes, in order; smaller reads are decoded here. A file that
    decodes to another shape than the set's is a :class:`~oodbench.core.errors.DatasetError`
    naming it (the shape is decided when the set is opened, from the options or the headers).
    """

    def __init__(self, name: str, files: Sequence[str], image_shape: Sequence[int],
                 decode: Callable[[str], torch.Tensor]):
        self.files = list(files)
        self.decode = decode
        super().__init__(name, len(self.files), image_shape)

    def _decode_checked(self, file: str) -> torch.Tensor:
        image = self.decode(file)
        if tuple(image.shape) != self._image_shape:
            h, w = self._image_shape[1:]
            raise DatasetError(f"dataset {self.name!r}: {file} is {image.shape[-2]}×"
                               f"{image.shape[-1]}, the set's images {h}×{w}; set the option "
                               "`size`, or `resize` and `crop`")
        return image

    def read(self, indices: np.ndarray) -> torch.Tensor:
        files = [self.files[i] for i in np.asarray(indices, dtype=np.int64).tolist()]
        workers = data_workers()
        if workers and len(files) >= WORKER_MIN_FILES:
            loader = torch.utils.data.DataLoader(
                _DecodeFiles(files, self._decode_checked), batch_size=_WORKER_CHUNK,
                shuffle=False, num_workers=min(workers, -(-len(files) // _WORKER_CHUNK)))
            return torch.cat(list(loader)).contiguous()
        out = torch.empty((len(files), *self._image_shape), dtype=torch.float32)
        for k, file in enumerate(files):
            out[k] = self._decode_checked(file)
        return out


# --- generated images --------------------------------------------------------------------------


class GeneratedSource(ImageSource):
    """Images made on demand: row ``i`` is ``make(i)``, a float32 (C, H, W) tensor in [0, 1] that
    depends on ``i`` alone (its own seeded generator), so a synthetic probe of any size streams
    like a file-backed set and any batch of it has the same bits as the whole."""

    def __init__(self, name: str, count: int, image_shape: Sequence[int],
                 make: Callable[[int], torch.Tensor]):
        self.make = make
        super().__init__(name, count, image_shape)

    def read(self, indices: np.ndarray) -> torch.Tensor:
        out = torch.empty((len(indices), *self._image_shape), dtype=torch.float32)
        for k, i in enumerate(np.asarray(indices, dtype=np.int64).tolist()):
            out[k] = self.make(i)
        return out


# --- views -------------------------------------------------------------------------------------


class SubsetSource(ImageSource):
    """Rows ``indices`` of ``base`` (the seeded ``n`` subsample), read through it."""

    def __init__(self, base: ImageSource, indices: np.ndarray):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        super().__init__(base.name, len(self.indices), base.shape[1:])

    def read(self, indices: np.ndarray) -> torch.Tensor:
        return self.base.read(self.indices[np.asarray(indices, dtype=np.int64)])

    def subset(self, indices: Any) -> ImageSource:
        return SubsetSource(self.base, self.indices[self.positions(indices)])


class ConvertedSource(ImageSource):
    """``base`` in another shape: :func:`~oodbench.data.transforms.to_shape` of each read.

    ``to_shape`` works image by image (channel mean or repeat, then an antialiased bilinear
    resize), so converting a batch gives the same bits as converting the whole set."""

    def __init__(self, base: ImageSource, shape: Sequence[int]):
        self.base = base
        target = _check_shape(shape, "target shape")
        _check_shape(base.shape[1:], "source shape")
        super().__init__(base.name, len(base), target)

    def read(self, indices: np.ndarray) -> torch.Tensor:
        return to_shape(self.base.read(indices), self._image_shape).contiguous()

    def subset(self, indices: Any) -> ImageSource:
        return ConvertedSource(self.base.subset(indices), self._image_shape)
