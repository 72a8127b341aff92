"""Real image datasets read through torchvision: the MNIST family, CIFAR-10/100, SVHN, folders.

Every loader reads torchvision's arrays directly (``.data``/``.targets``; uint8) instead of
going through ``__getitem__`` and PIL, subsamples with the shared seeded helper
(:func:`oodbench.data.common.subsample_indices`) *before* converting to float, and returns
float32 NCHW in [0, 1] (``uint8 / 255``). Files are looked up in ``request.root`` with
torchvision's own layout (:data:`LAYOUTS`); a missing or corrupted file, or a failed download,
becomes one :class:`~oodbench.data.base.DatasetNotFoundError` that says where it looked and how
to fix it (:func:`open_torchvision`, the single wrapper all loaders go through).

No shape conversion happens here: grey sets stay (1, 28, 28), colour sets (3, 32, 32); the runner
converts probes with :func:`oodbench.data.transforms.to_shape`.
"""

from __future__ import annotations

from dataclasses import dataclass

import http.client
import os
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import numpy as np
import torch

from oodbench.data.base import DataRequest, DatasetNotFoundError, ImageSet
from oodbench.data.common import (
    check_option_names,
    check_options,
    check_split,
    no_options,
    subsample_indices,
    take,
    uint8_imageset,
)
from oodbench.data.transforms import to_shape
from oodbench.registry import datasets

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


def _mnist_family(name: str, cls_name: str, request: DataRequest, **kwargs: Any) -> Any:
    import torchvision.datasets as tvd

    check_options(name, request, ())
    split = check_split(name, request)
    cls = getattr(tvd, cls_name)
    return open_torchvision(
        name,
        request,
        lambda: cls(_root(request), train=split == "train", download=request.download, **kwargs),
        expected=LAYOUTS[name],
    )


def _mnist_like(name: str, cls_name: str, request: DataRequest) -> ImageSet:
    ds = _mnist_family(name, cls_name, request)
    return uint8_imageset(name, ds.data.unsqueeze(1), ds.targets, request)


def _cifar(name: str, cls_name: str, request: DataRequest) -> ImageSet:
    import torchvision.datasets as tvd

    check_options(name, request, ())
    split = check_split(name, request)
    cls = getattr(tvd, cls_name)
    ds = open_torchvision(
        name,
        request,
        lambda: cls(_root(request), train=split == "train", download=request.download),
        expected=LAYOUTS[name],
    )
    # torchvision keeps CIFAR as a uint8 (N, 32, 32, 3) HWC array; NCHW is a free view.
    return uint8_imageset(name, np.asarray(ds.data).transpose(0, 3, 1, 2), ds.targets, request)


# --- registered datasets ------------------------------------------------------------------------


@datasets.register(
    "mnist",
    shape=(1, 28, 28),
    num_classes=10,
    kind="real",
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
    name = "emnist-letters"
    ds = _mnist_family(name, "EMNIST", request, split="letters")
    images = ds.data.transpose(1, 2).unsqueeze(1)  # (N, W, H) on disk → upright (N, 1, H, W)
    return uint8_imageset(name, images, ds.targets - 1, request)


@datasets.register(
    "cifar10",
    shape=(3, 32, 32),
    num_classes=10,
    kind="real",
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
    source="http://ufldl.stanford.edu/housenumbers/ (torchvision.datasets.SVHN, cropped digits)",
    check_options=no_options("svhn"),
)
def svhn(request: DataRequest) -> ImageSet:
    """SVHN house-number digits, 32×32 RGB, 10 classes, digit 0 labelled 0 (73k / 26k)."""
    import torchvision.datasets as tvd

    name = "svhn"
    check_options(name, request, ())
    split = check_split(name, request)
    ds = open_torchvision(
        name,
        request,
        lambda: tvd.SVHN(_root(request), split=split, download=request.download),
        expected=LAYOUTS[name],
    )
    # torchvision already maps the file's label 10 to 0 and the data to uint8 NCHW.
    return uint8_imageset(name, ds.data, ds.labels, request)


MAX_SIZE = 4096
"""Largest side `size` may resize to: the benchmarks' images are 8–224 pixels wide."""


def _parse_size(value: Any, field: str = "size") -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"image-folder: `{field}` must be an int or [height, width], got {value!r}")
    if isinstance(value, int):
        value = (value, value)
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIZE for v in value)
    ):
        return int(value[0]), int(value[1])
    raise ValueError(f"image-folder: `{field}` must be a positive int or [height, width] (at most "
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


def _read_image(file: str, opts: FolderOptions) -> torch.Tensor:
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
            raise ValueError(f"dataset 'image-folder': {file} is {h}×{w} after resizing, smaller "
                             f"than `crop` {opts.crop[0]}×{opts.crop[1]}; set `resize` to at least "
                             "the crop size")
        image = center_crop(image, list(opts.crop))
    return image[0]


def folder_options(options: Mapping[str, Any]) -> FolderOptions:
    """The options of image-folder, or ``ValueError`` naming the bad one (also the registry's
    ``check_options``)."""
    options = check_option_names("image-folder", options, ("path", "size", "resize", "crop"))
    path = options.get("path")
    if not path or not isinstance(path, (str, os.PathLike)):
        raise ValueError("dataset 'image-folder' needs the option `path` (a folder of images)")
    resize = options.get("resize")
    if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int)
                               or not 0 < resize <= MAX_SIZE):
        raise ValueError(f"image-folder: `resize` (the shorter side) must be a positive int of at "
                         f"most {MAX_SIZE}, got {resize!r}")
    size = _parse_size(options.get("size"))
    if size is not None and resize is not None:
        raise ValueError("image-folder: give `size` (exact height and width) or `resize` (the "
                         "shorter side), not both")
    return FolderOptions(str(path), size, resize, _parse_size(options.get("crop"), "crop"))


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

    Options: ``path`` (required; relative paths are resolved against ``request.root``),
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
        fix="point the option `path` at the folder (a relative `path` is resolved against the "
        f"data root), or {FIX_ROOT}",
    )
    samples = take(samples, subsample_indices(len(samples), request.n, request.seed))
    images = [_read_image(file, opts) for file, _ in samples]
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) > 1:
        raise ValueError(
            f"dataset 'image-folder': images in {path} have different sizes "
            f"({', '.join(f'{h}×{w}' for _, h, w in sorted(shapes)[:4])}…); set the option `size`, "
            "or `resize` and `crop`"
        )
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return ImageSet(name, torch.stack(images).contiguous(), labels)
