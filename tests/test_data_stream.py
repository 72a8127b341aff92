"""Streamed data sets give the same bits as the old materialised loaders, and are read in batches.

Each format is written in its real on-disk layout (``tests/formats.py``) and read twice: by the
streaming loader (``load_dataset``) and by the path it replaced — torchvision's class loading the
whole split, then the seeded subsample and ``uint8 / 255`` (:func:`uint8_imageset`). Images and
labels must be equal bit for bit, whole, subsampled, and read back in any batch order. The last
tests run a suite on a file-backed probe and check that no read ever asks for more rows than a
shard holds.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    from tests import formats
except ImportError:  # run from inside tests/
    import formats  # type: ignore[no-redef]

from oodbench.data import DataRequest, ImageSource, load_dataset, materialise, to_shape
from oodbench.data.common import subsample_indices, take, uint8_imageset
from oodbench.data.stream import ArraySource, FolderSource, StreamError

ROOT = Path(__file__).resolve().parents[1]


def pattern(shape, offset=0) -> np.ndarray:
    count = int(np.prod(shape))
    return ((np.arange(count, dtype=np.int64) * 7 + offset) % 256).astype(np.uint8).reshape(shape)


def digits(n: int, offset: int = 0) -> np.ndarray:
    return (np.arange(n) * 3 + offset) % 10


def assert_same(streamed, old) -> None:
    """Same images (whole, and read in shuffled batches of 3) and the same labels."""
    assert isinstance(streamed.images, ImageSource)
    assert streamed.shape == old.shape and len(streamed) == len(old)
    assert torch.equal(materialise(streamed.images), old.images)
    order = torch.randperm(len(old), generator=torch.Generator().manual_seed(0))
    for part in order.split(3):
        assert torch.equal(streamed.images[part], old.images[part])
    assert torch.equal(streamed.labels, old.labels)


def both(name: str, root: Path, old_arrays, split: str = "test"):
    """(streamed, old) for the full split and for a seeded subsample of 5."""
    pairs = []
    for n, seed in ((None, 0), (5, 3)):
        request = DataRequest(root=root, split=split, n=n, seed=seed)
        images, labels = old_arrays()
        pairs.append((load_dataset(name, request), uint8_imageset(name, images, labels, request)))
    return pairs


# --- one test per on-disk format -------------------------------------------------------------


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"),
                                          ("kmnist", "KMNIST")])
def test_idx_files_stream_the_same_bits(tmp_path, name, folder):
    import torchvision.datasets as tvd

    test = (pattern((11, 28, 28), 5), digits(11).astype(np.uint8))
    formats.write_mnist_family(tmp_path, folder, (pattern((4, 28, 28)), digits(4)), test)

    def old():
        ds = getattr(tvd, folder)(str(tmp_path), train=False)
        return ds.data.unsqueeze(1), ds.targets

    for streamed, materialised in both(name, tmp_path, old):
        assert_same(streamed, materialised)


def test_emnist_streams_upright_letters(tmp_path):
    import torchvision.datasets as tvd

    upright = pattern((9, 28, 28), 1)
    upright[:, :, :3] = 255
    formats.write_emnist_letters(tmp_path, "test", upright, (np.arange(9) % 26 + 1).astype(np.uint8))

    def old():
        ds = tvd.EMNIST(str(tmp_path), split="letters", train=False)
        return ds.data.transpose(1, 2).unsqueeze(1), ds.targets - 1

    for streamed, materialised in both("emnist-letters", tmp_path, old):
        assert_same(streamed, materialised)


def test_gzipped_idx_files_are_read_when_they_are_all_there_is(tmp_path):
    images, labels = pattern((6, 28, 28), 2), digits(6).astype(np.uint8)
    raw = formats.write_mnist_family(tmp_path, "MNIST", (images, labels), (images, labels))
    expected = load_dataset("mnist", DataRequest(root=tmp_path)).materialised()
    for file in raw.iterdir():
        file.with_name(file.name + ".gz").write_bytes(gzip.compress(file.read_bytes()))
        file.unlink()
    out = load_dataset("mnist", DataRequest(root=tmp_path))
    assert torch.equal(out.images[:], expected.images)
    assert torch.equal(out.labels, expected.labels)


def cifar_images(n: int, offset: int) -> np.ndarray:
    images = pattern((n, 3, 32, 32), offset)
    images[:, :, 0, 0] = [10, 20, 30]
    return images


def test_cifar10_streams_the_same_bits_across_its_batch_files(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    batches = [(cifar_images(3, 40 * i), list(digits(3, i))) for i in range(5)]
    test = (cifar_images(8, 99), list(digits(8)))
    formats.patch_cifar_md5(monkeypatch, CIFAR10, formats.write_cifar10(tmp_path, batches, test))

    def old(train: bool):
        ds = CIFAR10(str(tmp_path), train=train)
        return lambda: (np.asarray(ds.data).transpose(0, 3, 1, 2), ds.targets)

    for split in ("test", "train"):
        for streamed, materialised in both("cifar10", tmp_path, old(split == "train"), split):
            assert_same(streamed, materialised)
    cached = sorted(p.name for p in (tmp_path / "cifar-10-batches-py" / "oodbench-cache").iterdir())
    assert len(cached) == 12 and all(".npy" in name for name in cached)  # 6 files × images, labels
    again = load_dataset("cifar10", DataRequest(root=tmp_path, split="train"))  # from the copies
    assert torch.equal(again.images[:], torch.from_numpy(np.concatenate([b[0] for b in batches])) / 255.0)


def test_cifar100_streams_fine_labels(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR100

    train, test = (cifar_images(4, 1), [0, 50, 99, 3]), (cifar_images(7, 2), [42, 7, 77, 1, 2, 3, 4])
    formats.patch_cifar_md5(monkeypatch, CIFAR100, formats.write_cifar100(tmp_path, train, test))

    def old():
        ds = CIFAR100(str(tmp_path), train=False)
        return np.asarray(ds.data).transpose(0, 3, 1, 2), ds.targets

    for streamed, materialised in both("cifar100", tmp_path, old):
        assert_same(streamed, materialised)


def test_svhn_streams_the_same_bits(tmp_path, monkeypatch):
    from torchvision.datasets import SVHN

    images, labels = cifar_images(9, 3), digits(9)
    md5 = formats.write_svhn(tmp_path, "test", images, labels)
    split_list = {k: list(v) for k, v in SVHN.split_list.items()}
    split_list["test"][2] = md5
    monkeypatch.setattr(SVHN, "split_list", split_list)

    def old():
        ds = SVHN(str(tmp_path), split="test")
        return ds.data, ds.labels

    for streamed, materialised in both("svhn", tmp_path, old):
        assert_same(streamed, materialised)


def test_image_folders_stream_the_same_bits_with_and_without_workers(tmp_path, monkeypatch):
    from oodbench.data import torchvision_sets as tv

    classes = {"ant": [pattern((10, 12, 3), k) for k in range(40)],
               "bee": [pattern((10, 12), 50 + k) for k in range(30)]}  # grey files become RGB
    formats.write_png_folder(tmp_path / "f", classes)
    for options in ({"path": "f"}, {"path": "f", "size": [6, 5]}, {"path": "f", "resize": 8, "crop": 6}):
        opts = tv.folder_options(options)
        for n, seed in ((None, 0), (25, 4)):
            samples, _ = tv._folder_samples(tmp_path / "f")
            samples = take(samples, subsample_indices(len(samples), n, seed))
            old = torch.stack([tv._read_image(file, opts) for file, _ in samples])  # the old loader
            for workers in ("0", "2"):
                monkeypatch.setenv("OODBENCH_DATA_WORKERS", workers)
                out = load_dataset("image-folder", DataRequest(root=tmp_path, n=n, seed=seed,
                                                               options=options))
                assert isinstance(out.images, FolderSource) and out.shape == tuple(old.shape[1:])
                assert torch.equal(out.images[:], old)  # ≥ 64 files: read by 2 workers
                assert out.labels.tolist() == [label for _, label in samples]


def test_a_folder_image_too_small_for_the_crop_is_a_data_set_error_naming_it(tmp_path):
    from oodbench.data import DatasetError

    images = [pattern((8, 8, 3))] * 40
    images[20] = pattern((3, 8, 3))  # not among the rows load_dataset checks (first and last 16)
    formats.write_png_folder(tmp_path / "f", {"a": images})
    out = load_dataset("image-folder", DataRequest(root=tmp_path, options={"path": "f", "crop": 4}))
    assert out.images[0].shape == (3, 4, 4)
    with pytest.raises(DatasetError, match="020.png"):
        out.images[15:25]


# --- the views: subsets and per-batch conversion ------------------------------------------------


@pytest.mark.parametrize("src, dst", [((1, 28, 28), (3, 32, 32)), ((3, 32, 32), (1, 28, 28)),
                                      ((3, 32, 32), (3, 8, 8)), ((1, 28, 28), (1, 28, 28))])
def test_per_batch_conversion_is_bit_identical_to_converting_the_whole_set(src, dst):
    rows = pattern((23, int(np.prod(src))), 9)
    from oodbench.data.stream import ArrayPart

    source = ArraySource("x", [ArrayPart(10, array=rows[:10]), ArrayPart(13, array=rows[10:])], src)
    whole = to_shape(source[:], dst)
    converted = to_shape(source, dst)
    assert isinstance(converted, ImageSource) and converted.shape == (23, *dst)
    assert torch.equal(torch.cat(list(converted.batches(4))), whole)
    keep = torch.tensor([20, 3, 3, 11, 0])
    assert torch.equal(converted.subset(keep)[:], whole[keep])
    assert torch.equal(converted[keep][1:], source.subset(keep).converted(dst)[1:])


def test_sources_index_like_tensors():
    from oodbench.data.stream import ArrayPart

    rows = pattern((6, 2, 2, 2), 1)
    source = ArraySource("x", [ArrayPart(6, array=rows.reshape(6, 8))], (2, 2, 2))
    tensor = torch.from_numpy(rows).float() / 255
    assert source.shape == tensor.shape and len(source) == 6 and source.ndim == 4
    for key in (2, -1, slice(1, 5), slice(None, None, 2), torch.tensor([4, 0, 4]), [1, 2],
                np.array([5]), torch.tensor([True, False, True, False, False, True]),
                (slice(None), 0, 1), (3, 1), torch.tensor([], dtype=torch.long)):
        assert torch.equal(source[key], tensor[key]), key
    with pytest.raises(StreamError):
        source[6]
    with pytest.raises(IndexError):  # StreamError is an IndexError
        source[torch.tensor([0, 7])]


def test_a_damaged_or_unwritable_cache_is_rebuilt_or_moved(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    batches = [(cifar_images(2, i), [i, i]) for i in range(5)]
    test = (cifar_images(4, 7), [1, 2, 3, 4])
    formats.patch_cifar_md5(monkeypatch, CIFAR10, formats.write_cifar10(tmp_path, batches, test))
    expected = torch.from_numpy(test[0]).float() / 255
    cache = tmp_path / "cifar-10-batches-py" / "oodbench-cache"
    assert torch.equal(load_dataset("cifar10", DataRequest(root=tmp_path)).images[:], expected)
    (copy,) = cache.glob("test_batch-*.images.npy")
    copy.write_bytes(copy.read_bytes()[:-100])  # truncated
    assert torch.equal(load_dataset("cifar10", DataRequest(root=tmp_path)).images[:], expected)
    assert copy.stat().st_size > 4 * 3072  # written again

    for file in cache.iterdir():
        file.unlink()
    cache.rmdir()
    cache.write_text("not a folder")  # the data root cannot take the copy
    monkeypatch.setenv("OODBENCH_CACHE", str(tmp_path / "user-cache"))
    assert torch.equal(load_dataset("cifar10", DataRequest(root=tmp_path)).images[:], expected)
    assert list((tmp_path / "user-cache" / "arrays").glob("test_batch-*.images.npy"))


# --- the pipeline reads batches, never a whole data set ----------------------------------------


def test_a_suite_on_a_file_backed_probe_reads_at_most_a_shard_at_a_time(tmp_path, monkeypatch):
    from oodbench import load_suite, run_suite

    n = 700
    formats.write_mnist_family(tmp_path, "MNIST", (pattern((2, 28, 28)), digits(2)),
                               (pattern((n, 28, 28), 3), digits(n).astype(np.uint8)))
    reads: list[int] = []
    original = ArraySource.read

    def counting(self, indices):
        reads.append(len(indices))
        return original(self, indices)

    monkeypatch.setattr(ArraySource, "read", counting)
    (tmp_path / "suite.yaml").write_text(f"""
name: stream
seed: 0
batch_size: 64
shard_size: 200
data_root: .
download: false
in_distribution: {{name: digits 0-4, dataset: digits, options: {{classes: [0, 1, 2, 3, 4]}}}}
models:
  - {{name: d, adapter: safetensors, path: {ROOT / 'model_zoo' / 'digits-plain.safetensors'},
     arch: digits-net, arch_options: {{num_classes: 5}}}}
probes:
  - {{name: mnist, dataset: mnist}}
  - {{name: adv mnist, dataset: mnist, n: 300, attack: {{name: adversarial-noise, steps: 2}}}}
metrics: [mmc, auroc, fpr95]
""")
    result = run_suite(load_suite(tmp_path / "suite.yaml"), output=tmp_path / "r.db", progress=False)
    m = {(r.probe, r.metric): r.value for r in result.metrics.itertuples()}
    assert np.isfinite(m[("mnist", "auroc")]) and np.isfinite(m[("adv mnist", "auroc")])
    assert reads and max(reads) <= 200  # a shard: the data set (700) is never read at once
    assert sum(reads) >= n + 300  # every point was read


def test_smoothed_noise_from_a_streamed_reference_equals_the_materialised_one(tmp_path):
    formats.write_mnist_family(tmp_path, "MNIST", (pattern((2, 28, 28)), digits(2)),
                               (pattern((150, 28, 28), 1), digits(150).astype(np.uint8)))
    streamed = load_dataset("mnist", DataRequest(root=tmp_path))
    request = dict(root=tmp_path, n=300, seed=2)
    a = load_dataset("smoothed-noise", DataRequest(**request, reference=streamed))
    b = load_dataset("smoothed-noise", DataRequest(**request, reference=streamed.materialised()))
    assert torch.equal(a.images, b.images)
