"""uint8 copies of data sets whose files cannot be memory-mapped, written once beside them.

CIFAR's python pickles and SVHN's ``.mat`` files hold their images inside a serialisation
format: a pickle must be unpickled whole (and a protocol-2 pickle written by Python 3 stores the
bytes UTF-8-escaped, not raw), and the SVHN release compresses its variables. Reading one batch
from them would mean decoding the whole file for every batch. So the first load decodes each
file once (one file at a time: at most one file's images are in memory) into a plain uint8
NCHW ``.npy``, which every later load memory-maps. The copy is named after the source file and
its md5 — the checksum torchvision's constants give and the loaders verify on every load, as
torchvision does — so a changed file can never be served from a stale copy.

Where: ``oodbench-cache/`` beside the file when that folder is writable, else under
``$OODBENCH_CACHE`` (default ``~/.cache/oodbench``) ``/arrays``; when neither is writable the
images stay in memory as uint8 (a quarter of the float32 they become) with a warning. Writes go
to a temporary name first and are renamed into place, so concurrent workers converting the same
file (Ray on one machine) never see half a copy.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from oodbench.data.stream import ArrayPart

log = logging.getLogger(__name__)

CACHE_FOLDER = "oodbench-cache"

Convert = Callable[[], tuple[np.ndarray, np.ndarray]]


def cache_dirs(source: Path) -> Iterator[Path]:
    """Where a copy of ``source`` may live, in the order they are tried."""
    yield source.parent / CACHE_FOLDER
    yield Path(os.path.expanduser(os.environ.get("OODBENCH_CACHE", "~/.cache/oodbench"))) / "arrays"


def _names(folder: Path, source: Path, md5: str) -> tuple[Path, Path]:
    stem = f"{source.name}-{md5}"
    return folder / f"{stem}.images.npy", folder / f"{stem}.labels.npy"


def _save(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_uint8(source: Path, md5: str, convert: Convert) -> tuple[ArrayPart, np.ndarray]:
    """``(images, labels)`` of ``source``: uint8 NCHW images mapped from the cached copy (made
    by ``convert() -> (images, labels)`` if there is none yet), int64 labels in memory."""
    for folder in cache_dirs(source):
        images_path, labels_path = _names(folder, source, md5)
        if images_path.is_file() and labels_path.is_file():
            try:
                part = ArrayPart.npy(images_path)
                labels = np.load(labels_path, allow_pickle=False)
                if len(labels) == part.count:
                    return part, labels.astype(np.int64, copy=False)
            except (OSError, ValueError) as err:  # damaged copy: made again below
                log.warning("ignoring the damaged cached copy %s (%s)", images_path, err)
    images, labels = convert()
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    for folder in cache_dirs(source):
        images_path, labels_path = _names(folder, source, md5)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _save(labels_path, labels)
            _save(images_path, images)
            return ArrayPart.npy(images_path), labels
        except OSError as err:
            log.info("cannot cache %s in %s (%s)", source, folder, err)
    log.warning("no writable cache folder for %s: its images stay in memory", source)
    return ArrayPart(len(images), array=images), labels
