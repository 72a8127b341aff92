"""``image-list``: the images an OpenOOD-style list file names, streamed like an image folder.

OpenOOD v1.5 defines every split of its benchmarks by a text file under ``benchmark_imglist/``
(``benchmark_imglist/cifar10/test_cifar100.txt``, …), one image a line: a path relative to an
image root (``images_classic/`` or ``images_largescale/``), one space, and the label (-1 for OOD
images). Reading the list is what makes a set *exactly* OpenOOD's: the same images, in the same
order, with overlaps with the in-distribution classes already removed by its authors.

The images are decoded per read by :class:`~oodbench.data.stream.FolderSource`, with the same
geometry options as ``image-folder`` (``size``, or ``resize`` + ``crop``), so a 45,000-image
list costs the memory of one shard. Every listed file is checked before anything is read: a
missing image is a :class:`~oodbench.data.base.DatasetNotFoundError` naming the list file, the
line and the image, with the download that provides it (the option ``hint``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping

import torch

from oodbench.data.base import DataRequest, DatasetError, DatasetNotFoundError, ImageSet
from oodbench.data.common import check_option_names, subsample_indices, take
from oodbench.data.stream import FolderSource
from oodbench.data.torchvision_sets import (FIX_ROOT, GEOMETRY_OPTIONS, FolderOptions,
                                            _folder_shape, _read_image, geometry_options)
from oodbench.core.registry import datasets

NAME = "image-list"


@dataclass(frozen=True)
class ListOptions:
    """``list``: the list file; ``images``: the folder its paths are relative to (both relative
    to the data root unless absolute; ``images`` defaults to the data root); ``hint``: what to
    download when files are missing (the suites name OpenOOD's and NINCO's archives)."""

    list: str
    images: str | None
    hint: str | None
    geometry: FolderOptions


def list_options(options: Mapping[str, Any]) -> ListOptions:
    """The options of image-list, or ``ValueError`` naming the bad one (also the registry's
    ``check_options``)."""
    options = check_option_names(NAME, options, ("list", "images", "hint", *GEOMETRY_OPTIONS))
    for key in ("list", "images", "hint"):
        value = options.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"dataset {NAME!r}: `{key}` must be a non-empty string, got {value!r}")
    if not options.get("list"):
        raise ValueError(f"dataset {NAME!r} needs the option `list` (a file of `path label` lines, "
                         "e.g. benchmark_imglist/cifar10/test_cifar10.txt)")
    geometry = FolderOptions(str(options.get("images") or ""), *geometry_options(NAME, options))
    return ListOptions(options["list"], options.get("images"), options.get("hint"), geometry)


def _under(root: Path, path: str) -> Path:
    resolved = Path(os.path.expanduser(path))
    return resolved if resolved.is_absolute() else root / resolved


def read_list(file: Path) -> list[tuple[int, str, int]]:
    """``(line number, relative path, label)`` of each non-empty line, split as OpenOOD splits
    it: at the first space (paths hold no spaces; the rest of the line is the label)."""
    entries = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        path, _, label = line.partition(" ")
        try:
            entries.append((number, path, int(label.strip())))
        except ValueError:
            raise DatasetError(f"dataset {NAME!r}: {file}:{number}: expected `relative/path label` "
                               f"with an integer label, got {line!r}") from None
    if not entries:
        raise DatasetError(f"dataset {NAME!r}: {file} lists no images")
    return entries


def _missing(what: str, opts: ListOptions, request: DataRequest) -> DatasetNotFoundError:
    fix = f"download {opts.hint} into the data root, or {FIX_ROOT}" if opts.hint else FIX_ROOT
    return DatasetNotFoundError(f"dataset {NAME!r}: {what} (data root {request.root}). To fix: {fix}.")


@datasets.register(
    NAME,
    shape=None,
    num_classes=None,
    kind="real",
    source="an OpenOOD benchmark_imglist file (`relative/path label` per line) and its images",
    check_options=list_options,
)
def image_list(request: DataRequest) -> ImageSet:
    """The images a list file names, in its order, RGB; labels from the list (None for a list of
    OOD images, whose labels are all negative).

    Options: ``list`` (required), ``images`` (the folder the listed paths are relative to, e.g.
    ``images_classic``; default: the data root), ``hint`` (the download that provides the files,
    shown when they are missing) and the geometry of ``image-folder`` (``size``, or ``resize``
    and ``crop``). ``split`` and ``download`` are ignored: the list is the split.
    """
    opts = list_options(request.options)
    root = Path(request.root).expanduser()
    list_file = _under(root, opts.list)
    if not list_file.is_file():
        raise _missing(f"list file {list_file} not found", opts, request)
    entries = read_list(list_file)
    entries = take(entries, subsample_indices(len(entries), request.n, request.seed))
    image_root = _under(root, opts.images) if opts.images else root
    files = []
    for number, path, _ in entries:
        file = image_root / path
        if not file.is_file():
            raise _missing(f"{list_file}:{number}: image {path} not found (looked for {file})",
                           opts, request)
        files.append(str(file))
    labels = torch.tensor([label for _, _, label in entries], dtype=torch.int64)
    shape = _folder_shape(files, opts.geometry, image_root, NAME)
    source = FolderSource(NAME, files, shape, partial(_read_image, opts=opts.geometry, name=NAME))
    return ImageSet(NAME, source, None if bool((labels < 0).all()) else labels)
