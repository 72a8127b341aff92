"""Datasets and probes: real on-disk formats through the real loaders, noise, shape conversion.

Every torchvision-backed test writes a few images in the dataset's published on-disk format
(``tests/formats.py``) into ``tmp_path`` and reads them back through ``load_dataset`` — the
registered loader, torchvision's real reading code. Nothing is downloaded.

torchvision's integrity checks: MNIST/FashionMNIST/KMNIST/EMNIST check only that the raw files
exist. CIFAR-10/100 and SVHN compare every file's md5 with constants of the official release
(``CIFAR10.train_list`` etc.), which a tiny file can never match; the tests replace only those
class-level constant lists (via ``monkeypatch``, undone after each test) with the md5 of the
files they wrote, so torchvision's real ``check_integrity``/``check_md5`` still runs and still
rejects any other file (``test_cifar_md5_mismatch_is_reported_as_missing_or_corrupted``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.nn.functional as F

try:
    from tests import formats
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    import formats  # type: ignore[no-redef]

from oodbench.data import (
    DataRequest,
    DatasetNotFoundError,
    ImageSet,
    check_imageset,
    describe_conversion,
    materialise,
    load_dataset,
    to_shape,
)
from oodbench.data.common import subsample_indices
from oodbench.data.noise import (
    gaussian_blur,
    gaussian_kernel1d,
    permute_pixels,
    rescale_per_image,
    smoothed_noise,
    symmetric_indices,
    symmetric_pad,
)
from oodbench.data.torchvision_sets import FIX, open_torchvision
from oodbench.core.registry import UnknownNameError, datasets

FIX_TEXT = (
    "set `data_root` in the suite, pass --data-root or set OODBENCH_DATA to a directory "
    "containing it, or set `download: true`"
)


def pattern(shape, offset=0) -> np.ndarray:
    """A deterministic uint8 pattern that uses all 256 values and differs between images."""
    count = int(np.prod(shape))
    return ((np.arange(count, dtype=np.int64) * 7 + offset) % 256).astype(np.uint8).reshape(shape)


def request(root, **kwargs) -> DataRequest:
    return DataRequest(root=Path(root), **kwargs)


def assert_unit(images: torch.Tensor, expected_uint8: np.ndarray) -> None:
    """Pixels are exactly the uint8 values divided by 255 (float32)."""
    expected = torch.from_numpy(np.ascontiguousarray(expected_uint8)).float() / 255.0
    images = materialise(images)  # a file-backed set is read in batches (test_data_stream.py)
    assert images.dtype == torch.float32
    assert images.shape == expected.shape
    assert torch.equal(images, expected)


# --- MNIST family (idx ubyte) -----------------------------------------------------------------

MNIST_FAMILY = [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"), ("kmnist", "KMNIST")]


@pytest.mark.parametrize("name, folder", MNIST_FAMILY)
def test_mnist_family_round_trips_pixels_and_labels(tmp_path, name, folder):
    train = (pattern((5, 28, 28)), np.array([3, 1, 4, 1, 5], np.uint8))
    test = (pattern((7, 28, 28), offset=11), np.array([9, 2, 6, 5, 3, 5, 8], np.uint8))
    formats.write_mnist_family(tmp_path, folder, train, test)

    out = load_dataset(name, request(tmp_path, split="test"))
    assert out.name == name and out.shape == (1, 28, 28) and len(out) == 7
    assert_unit(out.images, test[0][:, None])
    assert out.labels.dtype == torch.int64
    assert out.labels.tolist() == test[1].tolist()

    out = load_dataset(name, request(tmp_path, split="train"))
    assert_unit(out.images, train[0][:, None])
    assert out.labels.tolist() == train[1].tolist()


def test_idx_writer_uses_the_mnist_magic_numbers(tmp_path):
    path = formats.write_idx(tmp_path / "x-idx3-ubyte", pattern((2, 3, 4)))
    raw = path.read_bytes()
    assert int.from_bytes(raw[:4], "big") == 2051
    assert [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(3)] == [2, 3, 4]
    path = formats.write_idx(tmp_path / "y-idx1-ubyte", np.arange(5, dtype=np.uint8))
    assert int.from_bytes(path.read_bytes()[:4], "big") == 2049


def test_emnist_letters_are_upright_and_labelled_from_zero(tmp_path):
    upright = pattern((4, 28, 28))
    upright[:, :, :3] = 255  # a left-hand bar: not symmetric under transposition
    assert not np.array_equal(upright, np.transpose(upright, (0, 2, 1)))
    formats.write_emnist_letters(tmp_path, "test", upright, np.array([1, 2, 26, 13], np.uint8))

    out = load_dataset("emnist-letters", request(tmp_path, split="test"))
    assert_unit(out.images, upright[:, None])
    assert out.labels.tolist() == [0, 1, 25, 12]
    assert datasets.meta("emnist-letters")["num_classes"] == 26


# --- CIFAR (python pickles, md5-checked) --------------------------------------------------------


def cifar_images(n: int, offset: int) -> np.ndarray:
    images = pattern((n, 3, 32, 32), offset)
    images[:, 0, 0, 0], images[:, 1, 0, 0], images[:, 2, 0, 0] = 10, 20, 30  # channel order
    return images


patch_cifar_md5 = formats.patch_cifar_md5


def test_cifar10_round_trips_pixels_channels_and_labels(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    batches = [(cifar_images(2, 40 * i), [i, i + 1]) for i in range(5)]
    test = (cifar_images(3, 99), [7, 0, 9])
    patch_cifar_md5(monkeypatch, CIFAR10, formats.write_cifar10(tmp_path, batches, test))

    out = load_dataset("cifar10", request(tmp_path, split="test"))
    assert out.shape == (3, 32, 32)
    assert_unit(out.images, test[0])
    assert out.images[:, :, 0, 0].mul(255).round().tolist() == [[10, 20, 30]] * 3
    assert out.labels.tolist() == [7, 0, 9]

    out = load_dataset("cifar10", request(tmp_path, split="train"))
    assert_unit(out.images, np.concatenate([b[0] for b in batches]))
    assert out.labels.tolist() == [label for b in batches for label in b[1]]


def test_cifar100_round_trips_fine_labels(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR100

    train, test = (cifar_images(4, 1), [0, 50, 99, 3]), (cifar_images(3, 2), [42, 7, 77])
    patch_cifar_md5(monkeypatch, CIFAR100, formats.write_cifar100(tmp_path, train, test))

    out = load_dataset("cifar100", request(tmp_path, split="test"))
    assert_unit(out.images, test[0])
    assert out.labels.tolist() == [42, 7, 77]
    assert load_dataset("cifar100", request(tmp_path, split="train")).labels.tolist() == train[1]


def test_cifar_md5_mismatch_is_reported_as_missing_or_corrupted(tmp_path):
    """Without the patched constants torchvision's real md5 check rejects the tiny files."""
    batches = [(cifar_images(1, i), [0]) for i in range(5)]
    formats.write_cifar10(tmp_path, batches, (cifar_images(1, 9), [1]))
    with pytest.raises(DatasetNotFoundError, match="corrupted"):
        load_dataset("cifar10", request(tmp_path))


# --- SVHN (.mat, md5-checked) --------------------------------------------------------------------


def test_svhn_round_trips_and_maps_label_10_to_digit_0(tmp_path, monkeypatch):
    from torchvision.datasets import SVHN

    images, digits = cifar_images(5, 3), np.array([0, 1, 9, 0, 5])
    md5 = formats.write_svhn(tmp_path, "test", images, digits)
    split_list = {k: list(v) for k, v in SVHN.split_list.items()}
    split_list["test"][2] = md5
    monkeypatch.setattr(SVHN, "split_list", split_list)

    out = load_dataset("svhn", request(tmp_path, split="test"))
    assert_unit(out.images, images)
    assert out.labels.tolist() == [0, 1, 9, 0, 5]


# --- image folders (PNG) -------------------------------------------------------------------------


def test_image_folder_reads_pngs_with_folder_labels(tmp_path):
    cat = [pattern((6, 5, 3), k) for k in range(2)]
    ant = [pattern((6, 5, 3), 50 + k) for k in range(3)]
    grey = pattern((6, 5), 7)
    formats.write_png_folder(tmp_path / "lsun", {"cat": cat, "ant": ant, "bee": [grey]})

    out = load_dataset("image-folder", request(tmp_path, options={"path": "lsun"}))  # relative
    assert out.shape == (3, 6, 5)
    expected = np.stack(ant + [np.repeat(grey[..., None], 3, axis=2)] + cat).transpose(0, 3, 1, 2)
    assert_unit(out.images, expected)  # sorted classes: ant=0, bee=1, cat=2; grey → RGB
    assert out.labels.tolist() == [0, 0, 0, 1, 2, 2]

    absolute_path = {"path": str(tmp_path / "lsun")}
    absolute = load_dataset("image-folder", request("/nonexistent", options=absolute_path))
    assert torch.equal(absolute.images[:], out.images[:])


def test_image_folder_flat_folder_size_and_subsample(tmp_path):
    images = [pattern((8, 8, 3), k) for k in range(6)]
    formats.write_png_folder(tmp_path, {"classroom": images})
    flat = tmp_path / "classroom"

    out = load_dataset("image-folder", request(tmp_path, options={"path": str(flat)}))
    assert out.labels.tolist() == [0] * 6
    assert_unit(out.images, np.stack(images).transpose(0, 3, 1, 2))

    small = load_dataset("image-folder", request(tmp_path, options={"path": str(flat), "size": 4}))
    assert small.shape == (3, 4, 4)
    assert torch.allclose(small.images[:], to_shape(out.images[:], (3, 4, 4)))

    sub = load_dataset("image-folder", request(tmp_path, n=3, seed=5, options={"path": str(flat)}))
    keep = subsample_indices(6, 3, 5)
    assert torch.equal(sub.images[:], out.images[keep])


def test_image_folder_mixed_sizes_need_size_and_path_is_required(tmp_path):
    formats.write_png_folder(tmp_path / "f", {"a": [pattern((4, 4, 3)), pattern((5, 4, 3))]})
    with pytest.raises(ValueError, match="`size`"):
        load_dataset("image-folder", request(tmp_path, options={"path": "f"}))
    resized = load_dataset("image-folder", request(tmp_path, options={"path": "f", "size": [3, 2]}))
    assert resized.shape == (3, 3, 2)
    with pytest.raises(ValueError, match="`path`"):
        load_dataset("image-folder", request(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="image-folder") as err:
        load_dataset("image-folder", request(tmp_path, options={"path": "missing"}))
    assert str(tmp_path) in str(err.value) and "`path`" in str(err.value)


# --- n: the shared seeded subsample ----------------------------------------------------------


def test_subsample_indices_are_a_seeded_sorted_subset():
    a, b = subsample_indices(100, 10, seed=1), subsample_indices(100, 10, seed=1)
    assert torch.equal(a, b) and len(set(a.tolist())) == 10
    assert a.tolist() == sorted(a.tolist()) and 0 <= a.min() and a.max() < 100
    assert not torch.equal(a, subsample_indices(100, 10, seed=2))
    assert subsample_indices(100, None, 0) is None and subsample_indices(100, 100, 0) is None
    assert subsample_indices(5, 10, 0) is None
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            subsample_indices(100, bad, 0)


def test_loader_subsample_is_deterministic_and_matches_the_full_set(tmp_path):
    test = (pattern((20, 28, 28)), np.arange(20, dtype=np.uint8) % 10)
    formats.write_mnist_family(tmp_path, "MNIST", test, test)
    full = load_dataset("mnist", request(tmp_path))
    one = load_dataset("mnist", request(tmp_path, n=6, seed=3))
    again = load_dataset("mnist", request(tmp_path, n=6, seed=3))
    other = load_dataset("mnist", request(tmp_path, n=6, seed=4))
    keep = subsample_indices(20, 6, 3)
    assert len(one) == 6 and torch.equal(one.images[:], again.images[:])
    assert torch.equal(one.images[:], full.images[keep]) and torch.equal(one.labels, full.labels[keep])
    assert not torch.equal(one.images[:], other.images[:])
    assert len(load_dataset("mnist", request(tmp_path, n=50))) == 20


# --- missing data ----------------------------------------------------------------------------

TORCHVISION_SETS = ["mnist", "fashion-mnist", "kmnist", "emnist-letters", "cifar10", "cifar100", "svhn"]


@pytest.mark.parametrize("name", TORCHVISION_SETS)
def test_missing_files_raise_one_helpful_error(tmp_path, name):
    root = tmp_path / "empty"
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, request(root, download=False))
    message = str(err.value)
    assert repr(name) in message and str(root) in message and FIX_TEXT in message
    assert isinstance(err.value, FileNotFoundError)  # DatasetNotFoundError's base


def test_failed_download_becomes_dataset_not_found(tmp_path):
    def build():
        raise URLError("no route to host")

    with pytest.raises(DatasetNotFoundError, match="could not be downloaded") as err:
        open_torchvision("cifar10", request(tmp_path, download=True), build)
    assert "no route to host" in str(err.value) and str(tmp_path) in str(err.value)
    assert isinstance(err.value.__cause__, URLError)

    def failed_mirrors():
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried …")

    with pytest.raises(DatasetNotFoundError):
        open_torchvision("mnist", request(tmp_path, download=True), failed_mirrors)


def test_other_errors_are_not_disguised_as_missing_data(tmp_path):
    def broken():
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="CUDA"):
        open_torchvision("mnist", request(tmp_path), broken)
    assert FIX == FIX_TEXT


def test_bad_split_and_unknown_option_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="split 'val'"):
        load_dataset("mnist", request(tmp_path, split="val"))
    with pytest.raises(ValueError, match="unknown option.*clases"):
        load_dataset("digits", request(tmp_path, options={"clases": [1]}))
    with pytest.raises(UnknownNameError, match="Did you mean 'mnist'"):
        load_dataset("mnsit", request(tmp_path))


# --- digits (embedded) -----------------------------------------------------------------------


def test_digits_values_shape_and_fixed_split(tmp_path):
    from sklearn.datasets import load_digits

    train = load_dataset("digits", request(tmp_path, split="train", seed=0))
    test = load_dataset("digits", request(tmp_path, split="test", seed=0))
    assert train.shape == test.shape == (1, 8, 8)
    assert (len(train), len(test)) == (1437, 360)
    assert torch.equal((test.images * 16).round() / 16, test.images)  # values k/16
    assert float(test.images.max()) == 1.0

    # the split does not depend on the suite seed
    test_other_seed = load_dataset("digits", request(tmp_path, split="test", seed=123))
    assert torch.equal(test.images, test_other_seed.images)

    # train and test partition the 1797 images: together they are exactly the full set
    full = torch.from_numpy(load_digits().images).float().div(16).flatten(1)
    both = torch.cat([train.images, test.images]).flatten(1)
    key = lambda x: sorted(map(tuple, x.mul(16).round().int().tolist()))  # noqa: E731
    assert key(both) == key(full)
    # stratified: every class is ~20% test
    for c in range(10):
        share = (test.labels == c).sum() / ((test.labels == c).sum() + (train.labels == c).sum())
        assert abs(float(share) - 0.2) < 0.02


def test_digits_classes_relabel_and_subsample(tmp_path):
    high = load_dataset("digits", request(tmp_path, options={"classes": [9, 5, 6, 7, 8]}))
    keep_digits = {"classes": [5, 6, 7, 8, 9], "relabel": False}
    kept = load_dataset("digits", request(tmp_path, options=keep_digits))
    assert set(high.labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(kept.labels.tolist()) == {5, 6, 7, 8, 9}
    assert torch.equal(high.labels + 5, kept.labels) and torch.equal(high.images, kept.images)
    full = load_dataset("digits", request(tmp_path))
    assert torch.equal(full.images[full.labels >= 5], kept.images)

    sub = load_dataset("digits", request(tmp_path, n=30, seed=1, options={"classes": [0, 1]}))
    again = load_dataset("digits", request(tmp_path, n=30, seed=1, options={"classes": [0, 1]}))
    assert len(sub) == 30 and torch.equal(sub.images, again.images)
    assert set(sub.labels.tolist()) <= {0, 1}
    for bad in ([], [10], [1, 1], "0-4", [True]):
        with pytest.raises(ValueError, match="classes"):
            load_dataset("digits", request(tmp_path, options={"classes": bad}))


# --- noise ---------------------------------------------------------------------------------------


def reference_set(shape=(3, 12, 10), n=40, seed=0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet("ref", torch.rand(n, *shape, generator=g), torch.zeros(n, dtype=torch.int64))


def test_uniform_noise_follows_reference_and_seed(tmp_path):
    ref = reference_set((1, 8, 8))
    a = load_dataset("uniform-noise", request(tmp_path, n=30, seed=1, reference=ref))
    b = load_dataset("uniform-noise", request(tmp_path, n=30, seed=1, reference=ref))
    c = load_dataset("uniform-noise", request(tmp_path, n=30, seed=2, reference=ref))
    assert a.images.shape == (30, 1, 8, 8) and a.labels is None
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert len(load_dataset("uniform-noise", request(tmp_path, reference=ref))) == 1000
    with pytest.raises(ValueError, match="reference"):
        load_dataset("uniform-noise", request(tmp_path))


def test_smoothed_noise_is_deterministic_and_rescaled_per_image(tmp_path):
    ref = reference_set()
    req = dict(n=50, reference=ref, options={"batch_size": 16})
    a = load_dataset("smoothed-noise", request(tmp_path, seed=1, **req))
    b = load_dataset("smoothed-noise", request(tmp_path, seed=1, **req))
    c = load_dataset("smoothed-noise", request(tmp_path, seed=2, **req))
    assert a.images.shape == (50, 3, 12, 10) and a.labels is None
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    flat = a.images.flatten(1)
    assert torch.all(flat.min(dim=1).values == 0.0) and torch.all(flat.max(dim=1).values == 1.0)
    with pytest.raises(ValueError, match="reference"):
        load_dataset("smoothed-noise", request(tmp_path))
    with pytest.raises(ValueError, match="batch_size"):
        load_dataset("smoothed-noise", request(tmp_path, reference=ref, options={"batch_size": 0}))


def test_smoothed_noise_is_built_from_the_documented_steps():
    """Rebuild two batches from the helpers in the documented draw order: σ, permutations, uniform."""
    ref = reference_set(n=7).images
    out = smoothed_noise(ref, 10, seed=3, batch_size=6)
    g = torch.Generator().manual_seed(3)
    expected = []
    for start, size in ((0, 6), (6, 4)):
        sigma = 1.0 + 1.5 * float(torch.rand((), generator=g))
        k = size // 2
        permuted = permute_pixels(ref[torch.arange(start, start + k) % 7], g)
        uniform = torch.rand(size - k, 3, 12, 10, generator=g)
        expected.append(rescale_per_image(gaussian_blur(torch.cat([permuted, uniform]), sigma)))
    assert torch.equal(out, torch.cat(expected))


def test_permute_pixels_keeps_each_image_multiset_and_moves_channels_together():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(5, 1, 6, 7, generator=g)
    images = torch.cat([base, base * 0.5, 1 - base], dim=1)  # channels are functions of channel 0
    out = permute_pixels(images, torch.Generator().manual_seed(1))
    assert not torch.equal(out, images)
    for i in range(5):
        for ch in range(3):
            assert torch.equal(out[i, ch].flatten().sort().values, images[i, ch].flatten().sort().values)
    assert torch.equal(out[:, 1], out[:, 0] * 0.5) and torch.equal(out[:, 2], 1 - out[:, 0])


@pytest.mark.parametrize("size, pad", [(5, 2), (8, 7), (3, 7), (1, 3), (28, 7)])
def test_symmetric_padding_matches_numpy(size, pad):
    x = torch.arange(2 * size * (size + 1), dtype=torch.float64).reshape(1, 2, size, size + 1)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="symmetric")
    assert np.array_equal(symmetric_pad(x, pad).numpy(), expected)
    assert symmetric_indices(4, 2).tolist() == [1, 0, 0, 1, 2, 3, 3, 2]  # edge repeated


def test_symmetric_padding_differs_from_torch_reflect():
    x = torch.arange(5.0).reshape(1, 1, 1, 5)
    assert F.pad(x[0], (2, 2), mode="reflect")[0, 0].tolist() == [2, 1, 0, 1, 2, 3, 4, 3, 2]
    assert symmetric_pad(x, 2)[0, 0, 0, 2:-2].tolist() == [0, 1, 2, 3, 4]
    assert symmetric_pad(x.expand(1, 1, 5, 5), 2)[0, 0, 2].tolist() == [1, 0, 0, 1, 2, 3, 4, 4, 3]


@pytest.mark.parametrize("sigma", [1.0, 1.7, 2.5])
def test_gaussian_blur_matches_scipy_reflect(sigma):
    from scipy.ndimage import gaussian_filter

    x = torch.rand(2, 3, 11, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = gaussian_blur(x, sigma)
    theirs = gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="reflect", truncate=7 / sigma)
    assert np.allclose(ours.numpy(), theirs, rtol=0, atol=1e-12)
    kernel = gaussian_kernel1d(sigma)
    assert kernel.shape == (15,) and torch.isclose(kernel.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.equal(kernel, kernel.flip(0)) and int(kernel.argmax()) == 7


def test_rescale_per_image_hits_zero_and_one_exactly():
    x = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 0.3 + 0.2
    y = rescale_per_image(x)
    assert torch.all(y.flatten(1).min(1).values == 0) and torch.all(y.flatten(1).max(1).values == 1)
    assert torch.equal(rescale_per_image(torch.full((1, 1, 2, 2), 0.5)), torch.zeros(1, 1, 2, 2))


# --- to_shape ------------------------------------------------------------------------------------


def test_to_shape_grey_to_rgb_repeats_and_rgb_to_grey_averages():
    grey = torch.rand(2, 1, 4, 4)
    rgb = to_shape(grey, (3, 4, 4))
    assert rgb.shape == (2, 3, 4, 4) and all(torch.equal(rgb[:, c], grey[:, 0]) for c in range(3))
    colour = torch.rand(2, 3, 4, 4)
    assert torch.allclose(to_shape(colour, (1, 4, 4))[:, 0], colour.mean(dim=1))
    assert to_shape(colour, (3, 4, 4)) is colour  # no-op returns the input itself


def test_to_shape_resizes_with_antialiased_bilinear_and_stays_in_range():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    gray_cifar = to_shape(x, (1, 28, 28))  # the papers' grayCIFAR-10 for MNIST models
    expected = F.interpolate(x.mean(1, keepdim=True), size=(28, 28), mode="bilinear",
                             antialias=True, align_corners=False).clamp(0, 1)
    assert gray_cifar.shape == (3, 1, 28, 28) and torch.allclose(gray_cifar, expected)
    assert 0 <= float(gray_cifar.min()) and float(gray_cifar.max()) <= 1
    const = torch.full((1, 1, 28, 28), 0.25)
    assert torch.allclose(to_shape(const, (1, 32, 32)), torch.full((1, 1, 32, 32), 0.25))
    with pytest.raises(ValueError):
        to_shape(x, (2, 32, 32))


def test_describe_conversion():
    assert describe_conversion((3, 32, 32), (1, 28, 28)) == "RGB→grey, 32×32→28×28"
    assert describe_conversion((1, 28, 28), (3, 28, 28)) == "grey→RGB"
    assert describe_conversion((3, 32, 32), (3, 32, 32)) == "none"


# --- the contract, for every registered dataset ---------------------------------------------


def test_check_imageset_rejects_contract_breaches():
    good = ImageSet("x", torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.int64))
    assert check_imageset("x", good) is good
    bad = [
        ImageSet("x", torch.rand(2, 1, 8, 8).double()),
        ImageSet("x", torch.rand(2, 8, 8)),
        ImageSet("x", torch.rand(2, 1, 8, 8) * 2),
        ImageSet("x", torch.full((2, 1, 8, 8), float("nan"))),
        ImageSet("x", torch.rand(2, 1, 8, 8), torch.zeros(3, dtype=torch.int64)),
        ImageSet("x", torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.int32)),
        ImageSet("x", torch.rand(0, 1, 8, 8)),
    ]
    for result in bad:
        with pytest.raises(ValueError, match="broke the data contract"):
            check_imageset("x", result)
    with pytest.raises(ValueError, match="declares"):
        check_imageset("digits", ImageSet("digits", torch.rand(2, 1, 9, 9)))
    with pytest.raises(TypeError):
        check_imageset("x", (torch.rand(2, 1, 8, 8), None))


@pytest.mark.parametrize("name", datasets.names())
def test_registry_metadata(name):
    entry = datasets.entry(name)
    assert entry.doc, f"{name} needs a one-line docstring"
    assert entry.meta.get("kind") in ("real", "synthetic")
    assert entry.meta.get("source")
    shape = entry.meta.get("shape")
    assert shape is None or (len(shape) == 3 and shape[0] in (1, 3))
    classes = entry.meta.get("num_classes")
    assert classes is None or (isinstance(classes, int) and classes > 1)


def embedded_or_synthetic() -> list[str]:
    return [n for n in datasets.names() if datasets.meta(n).get("kind") == "synthetic" or n == "digits"]


@pytest.mark.parametrize("name", embedded_or_synthetic())
def test_dataset_contract(tmp_path, name):
    ref = load_dataset("digits", request(tmp_path))
    out = load_dataset(name, request(tmp_path, n=64, seed=0, reference=ref))
    declared = datasets.meta(name).get("shape")
    assert out.shape == (tuple(declared) if declared is not None else ref.shape)
    assert out.images.dtype == torch.float32 and out.images.ndim == 4 and len(out) == 64
    images = materialise(out.images)  # synthetic probes may stream (NINCO's unit tests)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert out.labels is None or (out.labels.dtype == torch.int64 and len(out.labels) == 64)
    again = load_dataset(name, request(tmp_path, n=64, seed=0, reference=ref))
    assert torch.equal(images, materialise(again.images))  # seeded


@pytest.mark.parametrize("name", [n for n in datasets.names() if n not in embedded_or_synthetic()])
def test_real_datasets_never_download_and_fail_clearly_without_files(tmp_path, name):
    """With download off and an empty root a file-backed dataset raises DatasetNotFoundError (or
    a ValueError for a missing required option) and writes nothing."""
    root = tmp_path / "empty"
    try:
        load_dataset(name, request(root, download=False))
    except DatasetNotFoundError as err:
        assert repr(name) in str(err) and str(root) in str(err)
    except ValueError as err:
        assert "option" in str(err)
    else:
        pytest.fail(f"{name} loaded from an empty root")
    assert not root.exists() or not any(root.rglob("*"))
