"""Real image datasets in torchvision's on-disk layout: the MNIST family, CIFAR-10/100, SVHN, folders.

Every loader returns its images as an :class:`~oodbench.data.stream.ImageSource`, read in
batches, never whole: the idx files of the MNIST family are memory-mapped as they are; CIFAR's
pickles and SVHN's ``.mat`` files are decoded once into a cached uint8 ``.npy`` beside them that
is memory-mapped from then on (:mod:`oodbench.data.array_cache` says why); image folders are
decoded per read, by DataLoader workers. The files are read directly, in the format torchvision
reads them, with torchvision's own checks (its md5 constants for CIFAR and SVHN); torchvision's
classes are constructed only when the files are missing or fail a check — to download them, or
for their error — and for MNIST files in torchvision's legacy ``processed/`` layout.

Pixels are what torchvision's arrays gave before (``uint8 / 255`` in float32, NCHW), and ``n``
subsamples with the shared seeded rule (:func:`oodbench.data.common.subsample_indices`), so the
numbers are the same as when these sets were loaded whole (``tests/test_data_stream.py``).
Files are looked up in ``request.root`` with torchvision's layout (:data:`LAYOUTS`); a missing
or corrupted file, or a failed download, becomes one
:class:`~oodbench.data.base.DatasetNotFoundError` that says where it looked and how to fix it
(:func:`open_torchvision`, the single wrapper all loaders go through).

No shape conversion happens here: grey sets stay (1, 28, 28), colour sets (3, 32, 32); the runner
converts probes with :func:`oodbench.data.transforms.to_shape`, batch by batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gzip
import http.client
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import numpy as np
import torch

from oodbench.data.array_cache import cached_uint8
from oodbench.data.base import DataRequest, DatasetError, DatasetNotFoundError, ImageSet
from oodbench.data.common import (
    SPLITS,
    check_option_names,
    check_options,
    check_split,
    no_options,
    streamed_imageset,
    subsample_indices,
    take,
)
from oodbench.data.stream import ArrayPart, ArraySource, FolderSource
from oodbench.data.transforms import to_shape
from oodbench.core.registry import datasets

D = TypeVar("D")

FIX_ROOT = (
    "set `data_root` in the suite, pass --data-root or set OODBENCH_DATA to a directory "
    "containing it"
)
FIX = FIX_ROOT + ", or set `download: true`"

# Where torchvision looks for each dataset, relative to ``request.root`` (for error messages).
LAYOUTS: dict[str, str] = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "fashion-mnist": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "kmnist": "KMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "emnist-letters": "EMNIST/raw/emnist-letters-{train,test}-{images-idx3,labels-idx1}-ubyte",
    "cifar10": "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
    "cifar100": "cifar-100-python/{train,test,meta}",
    "svhn": "{train,test}_32x32.mat",
}

# torchvision's own wording for "files missing / wrong checksum / download failed".
_MISSING_MARKERS = ("not found", "corrupted", "error downloading", "download")


def _is_missing_data_error(err: BaseException) -> bool:
    if isinstance(err, (OSError, http.client.HTTPException)):  # URLError, timeouts, no such dir
        return True
    return isinstance(err, RuntimeError) and any(m in str(err).lower() for m in _MISSING_MARKERS)


def open_torchvision(
    name: str,
    request: DataRequest,
    build: Callable[[], D],
    *,
    expected: str | None = None,
    downloadable: bool = True,
    fix: str | None = None,
) -> D:
    """Call ``build()`` (which constructs a torchvision dataset); turn missing data into one error.

    torchvision signals missing files with ``RuntimeError("Dataset not found…")`` (or "…or
    corrupted" when an md5 check fails) and failed downloads with ``URLError``/``OSError`` or a
    ``RuntimeError("Error downloading…")``; all of them become a
    :class:`DatasetNotFoundError` naming the dataset, the root it looked in, the files it expected
    and the fix. Any other error (a bug, a malformed file) propagates unchanged.
    """
    try:
        return build()
    except DatasetNotFoundError:
        raise
    except Exception as err:
        if not _is_missing_data_error(err):
            raise
        where = f" (expected {expected} there)" if expected else ""
        said = f"{type(err).__name__}: {err}".strip()
        if request.download and downloadable:
            message = (
                f"dataset {name!r} could not be downloaded into {request.root}{where}: {said}. "
                f"To fix: check the network connection, or {fix or FIX_ROOT}."
            )
        else:
            fix = fix or (FIX if downloadable else FIX_ROOT)
            split = f" (split {request.split!r})" if downloadable else ""
            message = (
                f"dataset {name!r}{split} not found in {request.root}{where}; {said}. "
                f"To fix: {fix}."
            )
        raise DatasetNotFoundError(message) from err


def _root(request: DataRequest) -> str:
    return str(Path(request.root).expanduser())


# --- builders: one per on-disk family ---------------------------------------------------------

IDX_UINT8 = 8  # the idx type code of unsigned bytes (the third byte of the magic number)


def _idx_header(head: bytes, ndim: int, file: Path) -> tuple[int, ...]:
    """The dimensions of an idx file from its first bytes (big-endian magic, then the sizes)."""
    if len(head) < 4 + 4 * ndim or head[0:2] != b"\0\0" or head[2] != IDX_UINT8 or head[3] != ndim:
        raise DatasetError(f"{file} is not an idx file of {ndim}-D unsigned bytes")
    return tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))


def _read_idx(images: Path, labels: Path) -> tuple[ArrayPart, np.ndarray] | None:
    """The images (mapped) and labels of an idx pair; from the ``.gz`` files, decompressed into
    memory (a compressed file cannot be mapped), when only those exist; None when neither does."""
    gz_images, gz_labels = images.with_name(images.name + ".gz"), labels.with_name(labels.name + ".gz")
    if images.is_file() and labels.is_file():
        with open(images, "rb") as f:
            dims = _idx_header(f.read(16), 3, images)
        n, h, w = dims
        if images.stat().st_size != 16 + n * h * w:
            raise DatasetError(f"{images} has {images.stat().st_size} bytes, {16 + n * h * w} "
                               f"expected for {n} images of {h}×{w}: truncated")
        part = ArrayPart(n, path=images, offset=16, row_shape=(h, w))
        raw_labels = labels.read_bytes()
    elif gz_images.is_file() and gz_labels.is_file():
        with gzip.open(gz_images, "rb") as f:
            raw = f.read()
        n, h, w = _idx_header(raw[:16], 3, gz_images)
        part = ArrayPart(n, array=np.frombuffer(raw, np.uint8, n * h * w, 16).reshape(n, h, w))
        with gzip.open(gz_labels, "rb") as f:
            raw_labels = f.read()
    else:
        return None
    (count,) = _idx_header(raw_labels[:8], 1, labels)
    if count != part.count:
        raise DatasetError(f"{labels} has {count} labels for {part.count} images")
    return part, np.frombuffer(raw_labels, np.uint8, count, 8).astype(np.int64)


def _mnist_family(name: str, cls_name: str, request: DataRequest, *, upright: bool = False,
                  label_shift: int = 0, **kwargs: Any) -> ImageSet:
    """An idx pair in ``<root>/<cls_name>/raw/`` memory-mapped; ``upright`` undoes EMNIST's
    transposition per batch. torchvision's class is built only when the files are missing (to
    download them, or for its error) or in its legacy ``processed/`` layout."""
    import torchvision.datasets as tvd

    check_options(name, request, ())
    split = check_split(name, request)
    cls = getattr(tvd, cls_name)
    raw = Path(_root(request)) / cls_name / "raw"
    if "split" in kwargs:  # EMNIST: emnist-<split>-{train,test}-…
        prefix = f"emnist-{kwargs['split']}-{split}"
    else:
        prefix = "train" if split == "train" else "t10k"
    images_file, labels_file = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"

    def build() -> tuple[ArrayPart, np.ndarray]:
        found = _read_idx(images_file, labels_file)
        if found is not None:
            return found
        ds = cls(_root(request), train=split == "train", download=request.download, **kwargs)
        found = _read_idx(images_file, labels_file)  # downloaded now
        if found is not None:
            return found
        data = ds.data.numpy()  # legacy processed/*.pt: only torch.load reads them
        return ArrayPart(len(data), array=data), ds.targets.numpy().astype(np.int64)

    part, labels = open_torchvision(name, request, build, expected=LAYOUTS[name])
    h, w = part.row_shape
    if upright:  # EMNIST stores (N, W, H): transposing each batch back gives upright (N, 1, H, W)
        shape, to_nchw = (1, w, h), _transposed_grey
    else:
        shape, to_nchw = (1, h, w), _grey
    source = ArraySource(name, [part], shape, to_nchw)
    return streamed_imageset(name, source, labels - label_shift, request)


def _grey(rows: np.ndarray) -> np.ndarray:
    return rows[:, None]


def _transposed_grey(rows: np.ndarray) -> np.ndarray:
    return rows.transpose(0, 2, 1)[:, None]


def _mnist_like(name: str, cls_name: str, request: DataRequest) -> ImageSet:
    return _mnist_family(name, cls_name, request)


def _unpickle_cifar(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file as torchvision reads it: ``data`` rows (R, G, B planes of 32×32)
    as uint8 NCHW, and ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100)."""
    with open(file, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    labels = entry["labels"] if "labels" in entry else entry["fine_labels"]
    return np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(labels)


def _cifar_intact(cls: Any, folder: Path) -> bool:
    """torchvision's own check: every batch file of both splits and the meta file match the
    md5 constants of the class."""
    from torchvision.datasets.utils import check_integrity

    files = list(cls.train_list) + list(cls.test_list) + [[cls.meta["filename"], cls.meta["md5"]]]
    return all(check_integrity(str(folder / file), md5) for file, md5 in files)


def _cifar(name: str, cls_name: str, request: DataRequest) -> ImageSet:
    import torchvision.datasets as tvd

    check_options(name, request, ())
    split = check_split(name, request)
    cls = getattr(tvd, cls_name)
    folder = Path(_root(request)) / cls.base_folder
    listed = cls.train_list if split == "train" else cls.test_list

    def build() -> list[tuple[ArrayPart, np.ndarray]]:
        if not _cifar_intact(cls, folder):
            # Downloads and checks again, or raises torchvision's "not found or corrupted".
            cls(_root(request), train=split == "train", download=request.download)
        return [cached_uint8(folder / file, md5, partial(_unpickle_cifar, folder / file))
                for file, md5 in listed]

    parts = open_torchvision(name, request, build, expected=LAYOUTS[name])
    source = ArraySource(name, [p for p, _ in parts], (3, 32, 32))
    return streamed_imageset(name, source, np.concatenate([labels for _, labels in parts]), request)


def _load_svhn(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """An SVHN ``.mat`` as torchvision reads it: ``X`` (H, W, C, N) → NCHW, label 10 → digit 0."""
    from scipy.io import loadmat

    mat = loadmat(str(file))
    labels = mat["y"].astype(np.int64).reshape(-1)
    np.place(labels, labels == 10, 0)
    return np.transpose(mat["X"], (3, 2, 0, 1)), labels


# --- registered datasets ------------------------------------------------------------------------


@datasets.register(
    "mnist",
    shape=(1, 28, 28),
    num_classes=10,
    kind="real",
    splits=SPLITS,
    source="http://yann.lecun.com/exdb/mnist/ (torchvision.datasets.MNIST)",
    check_options=no_options("mnist"),
)
def mnist(request: DataRequest) -> ImageSet:
    """MNIST handwritten digits, 28×28 grey, 10 classes (60k train / 10k test)."""
    return _mnist_like("mnist", "MNIST", request)


@datasets.register(
    "fashion-mnist",
    shape=(1, 28, 28),
    num_classes=10,
    kind="real",
    splits=SPLITS,
    source="https://github.com/zalandoresearch/fashion-mnist (torchvision.datasets.FashionMNIST)",
    check_options=no_options("fashion-mnist"),
)
def fashion_mnist(request: DataRequest) -> ImageSet:
    """Fashion-MNIST clothing images, 28×28 grey, 10 classes (60k train / 10k test)."""
    return _mnist_like("fashion-mnist", "FashionMNIST", request)


@datasets.register(
    "kmnist",
    shape=(1, 28, 28),
    num_classes=10,
    kind="real",
    splits=SPLITS,
    source="https://github.com/rois-codh/kmnist (torchvision.datasets.KMNIST)",
    check_options=no_options("kmnist"),
)
def kmnist(request: DataRequest) -> ImageSet:
    """Kuzushiji-MNIST cursive Japanese characters, 28×28 grey, 10 classes (60k / 10k)."""
    return _mnist_like("kmnist", "KMNIST", request)


@datasets.register(
    "emnist-letters",
    shape=(1, 28, 28),
    num_classes=26,
    kind="real",
    splits=SPLITS,
    source="https://www.nist.gov/itl/products-and-services/emnist-dataset "
    "(torchvision.datasets.EMNIST, split='letters')",
    check_options=no_options("emnist-letters"),
)
def emnist_letters(request: DataRequest) -> ImageSet:
    """EMNIST letters, 28×28 grey, labels 0–25 = a–z (124.8k train / 20.8k test), upright.

    The EMNIST files store every image transposed relative to MNIST (the papers' code applies
    ``.T``); here images are transposed back so letters are upright like MNIST digits.
    torchvision numbers the letters 1–26 (0 is an unused "N/A" class); labels are shifted to 0–25.
    """
    return _mnist_family("emnist-letters", "EMNIST", request, upright=True, label_shift=1,
                         split="letters")


@datasets.register(
    "cifar10",
    shape=(3, 32, 32),
    num_classes=10,
    kind="real",
    splits=SPLITS,
    source="https://www.cs.toronto.edu/~kriz/cifar.html (torchvision.datasets.CIFAR10)",
    check_options=no_options("cifar10"),
)
def cifar10(request: DataRequest) -> ImageSet:
    """CIFAR-10 natural images, 32×32 RGB, 10 classes (50k train / 10k test)."""
    return _cifar("cifar10", "CIFAR10", request)


@datasets.register(
    "cifar100",
    shape=(3, 32, 32),
    num_classes=100,
    kind="real",
    splits=SPLITS,
    source="https://www.cs.toronto.edu/~kriz/cifar.html (torchvision.datasets.CIFAR100)",
    check_options=no_options("cifar100"),
)
def cifar100(request: DataRequest) -> ImageSet:
    """CIFAR-100 natural images, 32×32 RGB, 100 fine classes (50k train / 10k test)."""
    return _cifar("cifar100", "CIFAR100", request)


@datasets.register(
    "svhn",
    shape=(3, 32, 32),
    num_classes=10,
    kind="real",
    splits=SPLITS,
    source="http://ufldl.stanford.edu/housenumbers/ (torchvision.datasets.SVHN, cropped digits)",
    check_options=no_options("svhn"),
)
def svhn(request: DataRequest) -> ImageSet:
    """SVHN house-number digits, 32×32 RGB, 10 classes, digit 0 labelled 0 (73k / 26k)."""
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import check_integrity

    name = "svhn"
    check_options(name, request, ())
    split = check_split(name, request)
    _, file, md5 = tvd.SVHN.split_list[split]
    path = Path(_root(request)) / file

    def build() -> tuple[ArrayPart, np.ndarray]:
        if not check_integrity(str(path), md5):
            # Downloads and checks again, or raises torchvision's "not found or corrupted".
            tvd.SVHN(_root(request), split=split, download=request.download)
        return cached_uint8(path, md5, partial(_load_svhn, path))

    part, labels = open_torchvision(name, request, build, expected=LAYOUTS[name])
    return streamed_imageset(name, ArraySource(name, [part], (3, 32, 32)), labels, request)


MAX_SIZE = 4096
"""Largest side `size` may resize to: the benchmarks' images are 8–224 pixels wide."""


def _parse_size(value: Any, field: str = "size", name: str = "image-folder") -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name}: `{field}` must be an int or [height, width], got {value!r}")
    if isinstance(value, int):
        value = (value, value)
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIZE for v in value)
    ):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name}: `{field}` must be a positive int or [height, width] (at most "
                     f"{MAX_SIZE}), got {value!r}")


def _folder_samples(path: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """``(file, class index)`` pairs: torchvision's ImageFolder layout, or a flat folder = 1 class."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if not path.is_dir():
        raise FileNotFoundError(f"no directory {path}")
    has_subdirs = any(entry.is_dir() for entry in path.iterdir())
    if has_subdirs:
        folder = ImageFolder(str(path), loader=lambda p: p)  # the loader is never called here
        return list(folder.samples), list(folder.classes)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMG_EXTENSIONS)}) in {path}")
    return [(str(p), 0) for p in files], [path.name]


@dataclass(frozen=True)
class FolderOptions:
    """``path`` and the geometry of image-folder: ``size`` resizes to exactly (h, w);
    ``resize`` scales the shorter side to that many pixels (aspect kept) and ``crop`` then cuts
    the centre (h, w) — ``resize: 256, crop: 224`` is the ImageNet evaluation convention."""

    path: str
    size: tuple[int, int] | None = None
    resize: int | None = None
    crop: tuple[int, int] | None = None


def _read_image(file: str, opts: FolderOptions, name: str = "image-folder") -> torch.Tensor:
    from PIL import Image

    with Image.open(file) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.uint8)  # PIL mode L/P/RGBA → RGB
    image = torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    if opts.size is not None:
        image = to_shape(image, (3, *opts.size))
    if opts.resize is not None:
        from torchvision.transforms.functional import resize

        image = resize(image, [opts.resize], antialias=True).clamp_(0, 1)
    if opts.crop is not None:
        from torchvision.transforms.functional import center_crop

        h, w = image.shape[-2:]
        if opts.crop[0] > h or opts.crop[1] > w:
            raise DatasetError(f"dataset {name!r}: {file} is {h}×{w} after resizing, smaller "
                             f"than `crop` {opts.crop[0]}×{opts.crop[1]}; set `resize` to at least "
                             "the crop size")
        image = center_crop(image, list(opts.crop))
    return image[0]


GEOMETRY_OPTIONS = ("size", "resize", "crop")


def geometry_options(name: str, options: Mapping[str, Any]) -> tuple[
        tuple[int, int] | None, int | None, tuple[int, int] | None]:
    """``(size, resize, crop)`` of a data set read from image files (image-folder, image-list),
    or ``ValueError`` naming the bad one."""
    resize = options.get("resize")
    if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int)
                               or not 0 < resize <= MAX_SIZE):
        raise ValueError(f"{name}: `resize` (the shorter side) must be a positive int of at "
                         f"most {MAX_SIZE}, got {resize!r}")
    size = _parse_size(options.get("size"), name=name)
    if size is not None and resize is not None:
        raise ValueError(f"{name}: give `size` (exact height and width) or `resize` (the "
                         "shorter side), not both")
    return size, resize, _parse_size(options.get("crop"), "crop", name)


def folder_options(options: Mapping[str, Any]) -> FolderOptions:
    """The options of image-folder, or ``ValueError`` naming the bad one (also the registry's
    ``check_options``)."""
    options = check_option_names("image-folder", options, ("path", "hint", *GEOMETRY_OPTIONS))
    hint = options.get("hint")
    if hint is not None and (not isinstance(hint, str) or not hint.strip()):
        raise ValueError(f"image-folder: `hint` (the download that provides the folder) must be a "
                         f"non-empty string, got {hint!r}")
    path = options.get("path")
    if not path or not isinstance(path, (str, os.PathLike)):
        raise ValueError("dataset 'image-folder' needs the option `path` (a folder of images)")
    return FolderOptions(str(path), *geometry_options("image-folder", options))


@datasets.register(
    "image-folder",
    shape=None,
    num_classes=None,
    kind="real",
    source="any folder of images (LSUN classroom, ImageNet-, …): torchvision ImageFolder layout",
    check_options=folder_options,
)
def image_folder(request: DataRequest) -> ImageSet:
    """A folder of images (LSUN classroom, ImageNet-, …), RGB, labels = sorted class folders.

    Options: ``path`` (required; relative paths are resolved against ``request.root``), ``hint``
    (the download that provides the folder, named when it is missing),
    ``size`` (an int or ``[height, width]``) to resize every image with the same antialiased
    bilinear resize as :func:`oodbench.data.transforms.to_shape`, or ``resize`` (shorter side,
    aspect kept) with ``crop`` (centre crop, int or ``[height, width]``): ``resize: 256, crop:
    224`` is ImageNet evaluation. Layout: ``path/<class>/<image>``
    as torchvision's ``ImageFolder`` reads it (labels are class indices in sorted folder order),
    or a flat folder of images (one class, label 0). Images are converted to RGB; without ``size``
    all images must have the same height and width. ``split`` and ``download`` are ignored.
    """
    name = "image-folder"
    opts = folder_options(request.options)
    path = Path(os.path.expanduser(opts.path))
    if not path.is_absolute():
        path = Path(request.root).expanduser() / path
    samples, _classes = open_torchvision(
        name,
        request,
        lambda: _folder_samples(path),
        expected=f"images under {path}",
        downloadable=False,
        fix=(f"download {request.options['hint']} into the data root, or " if request.options.get("hint")
             else "") + "point the option `path` at the folder (a relative `path` is resolved "
        f"against the data root), or {FIX_ROOT}",
    )
    samples = take(samples, subsample_indices(len(samples), request.n, request.seed))
    files = [file for file, _ in samples]
    shape = _folder_shape(files, opts, path)
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return ImageSet(name, FolderSource(name, files, shape, partial(_read_image, opts=opts)), labels)


def _resized(h: int, w: int, shorter: int) -> tuple[int, int]:
    """(h, w) after torchvision's ``resize(image, [shorter])``: the shorter side becomes
    ``shorter``, the longer one is scaled and truncated to an int."""
    if h <= w:
        return shorter, int(shorter * w / h)
    return int(shorter * h / w), shorter


def _folder_shape(files: list[str], opts: FolderOptions, path: Path,
                  name: str = "image-folder") -> tuple[int, int, int]:
    """The (3, H, W) every image of the folder becomes: from ``size`` or ``crop`` when they fix
    it, else from the files' headers (PIL reads the size without decoding the pixels), which
    must then all agree."""
    if opts.size is not None and opts.crop is None:
        return (3, *opts.size)
    if opts.crop is not None:  # a file too small for the crop is an error when it is read
        return (3, *opts.crop)
    from PIL import Image

    shapes: set[tuple[int, int]] = set()
    for file in files:
        with Image.open(file) as img:
            w, h = img.size
        shapes.add(_resized(h, w, opts.resize) if opts.resize is not None else (h, w))
        if len(shapes) > 1:
            break
    if len(shapes) > 1:
        raise ValueError(
            f"dataset {name!r}: images in {path} have different sizes "
            f"({', '.join(f'{h}×{w}' for h, w in sorted(shapes)[:4])}…); set the option `size`, "
            "or `resize` and `crop`"
        )
    return (3, *shapes.pop())
