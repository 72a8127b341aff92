"""Writers for tiny files in the real on-disk formats that torchvision reads.

Each writer produces exactly the layout and encoding of the published dataset (file names,
folders, byte order, array layout, label conventions), just with a handful of images, so tests
can read them back through the real torchvision-backed loaders.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An IDX file (LeCun's MNIST format): big-endian magic, big-endian dims, uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = {3: IDX_IMAGES_MAGIC, 1: IDX_LABELS_MAGIC}[array.ndim]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())
    return path


def write_mnist_family(
    root: Path,
    folder: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> Path:
    """``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (folder = MNIST,
    FashionMNIST or KMNIST: torchvision's class name). torchvision 0.29 reads the uncompressed raw
    files directly and requires all four to exist (no ``processed/`` needed)."""
    raw = Path(root) / folder / "raw"
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


def write_emnist_letters(root: Path, split: str, upright: np.ndarray, labels: np.ndarray) -> Path:
    """``<root>/EMNIST/raw/emnist-letters-<split>-…-idx?-ubyte``. Like the real EMNIST files, every
    image is stored transposed relative to MNIST; labels are 1..26 for a..z."""
    raw = Path(root) / "EMNIST" / "raw"
    write_idx(raw / f"emnist-letters-{split}-images-idx3-ubyte", np.transpose(upright, (0, 2, 1)))
    write_idx(raw / f"emnist-letters-{split}-labels-idx1-ubyte", labels)
    return raw


def _pickle(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """NCHW uint8 → the CIFAR row layout: 3072 bytes = the R plane, G plane, B plane (row-major)."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    assert images.shape[1:] == (3, 32, 32)
    return images.reshape(len(images), 3072)


def write_cifar10(
    root: Path,
    train_batches: Sequence[tuple[np.ndarray, Sequence[int]]],
    test: tuple[np.ndarray, Sequence[int]],
    label_names: Sequence[str] = tuple(f"class{i}" for i in range(10)),
) -> dict[str, str]:
    """``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` (python pickles of
    dicts with ``data`` (N, 3072) uint8 and ``labels``). Returns ``{file name: md5}``."""
    assert len(train_batches) == 5
    folder = Path(root) / "cifar-10-batches-py"
    files = {}
    for i, (images, labels) in enumerate(train_batches, start=1):
        name = f"data_batch_{i}"
        files[name] = _pickle(
            folder / name,
            {
                "batch_label": f"training batch {i} of 5",
                "labels": list(labels),
                "data": _cifar_rows(images),
            },
        )
    files["test_batch"] = _pickle(
        folder / "test_batch",
        {"batch_label": "testing batch 1 of 1", "labels": list(test[1]), "data": _cifar_rows(test[0])},
    )
    files["batches.meta"] = _pickle(
        folder / "batches.meta",
        {"num_cases_per_batch": 10000, "label_names": list(label_names), "num_vis": 3072},
    )
    return {name: md5(path) for name, path in files.items()}


def patch_cifar_md5(monkeypatch, cls, md5s: dict[str, str]) -> None:
    """Point torchvision's md5 constants at the tiny files; its checking code stays real."""
    monkeypatch.setattr(cls, "train_list", [[f, md5s[f]] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, md5s[f]] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5s[cls.meta["filename"]]})


def write_cifar100(
    root: Path,
    train: tuple[np.ndarray, Sequence[int]],
    test: tuple[np.ndarray, Sequence[int]],
    fine_label_names: Sequence[str] = tuple(f"fine{i}" for i in range(100)),
) -> dict[str, str]:
    """``<root>/cifar-100-python/{train,test,meta}`` (``fine_labels`` and ``coarse_labels``).
    Returns ``{file name: md5}``."""
    folder = Path(root) / "cifar-100-python"
    files = {}
    for name, (images, labels) in (("train", train), ("test", test)):
        files[name] = _pickle(
            folder / name,
            {
                "filenames": [f"img{i}.png" for i in range(len(labels))],
                "batch_label": f"{name}ing batch 1 of 1",
                "fine_labels": list(labels),
                "coarse_labels": [int(label) // 5 for label in labels],
                "data": _cifar_rows(images),
            },
        )
    files["meta"] = _pickle(
        folder / "meta",
        {
            "fine_label_names": list(fine_label_names),
            "coarse_label_names": [f"coarse{i}" for i in range(20)],
        },
    )
    return {name: md5(path) for name, path in files.items()}


def write_svhn(root: Path, split: str, images: np.ndarray, digits: np.ndarray) -> str:
    """``<root>/<split>_32x32.mat`` as in the SVHN release: ``X`` (32, 32, 3, N) uint8 and ``y``
    (N, 1) with label 10 for the digit 0. ``images`` are NCHW. Returns the file's md5."""
    from scipy.io import savemat

    images = np.asarray(images, dtype=np.uint8)
    x = np.ascontiguousarray(np.transpose(images, (2, 3, 1, 0)))  # NCHW → H, W, C, N
    y = np.where(np.asarray(digits) == 0, 10, np.asarray(digits)).astype(np.uint8).reshape(-1, 1)
    path = Path(root) / f"{split}_32x32.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"X": x, "y": y})
    return md5(path)


def write_png_folder(folder: Path, classes: Mapping[str, Sequence[np.ndarray]]) -> Path:
    """``folder/<class>/<i>.png`` from uint8 HWC (RGB) or HW (grey) arrays."""
    from PIL import Image

    for cls, images in classes.items():
        (Path(folder) / cls).mkdir(parents=True, exist_ok=True)
        for i, array in enumerate(images):
            Image.fromarray(np.asarray(array, dtype=np.uint8)).save(Path(folder) / cls / f"{i:03d}.png")
    return Path(folder)
