"""80 Million Tiny Images: the on-disk layout, seeded subsets, exclusion lists, lazy training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from oodbench.data import DataRequest, DatasetNotFoundError, load_dataset
from oodbench.data import tiny_images as ti
from oodbench.train import Recipe, train_from_recipe
from oodbench.train.data import OutSource
from oodbench.train.recipe import Augment, OutDistribution

N_IMAGES = 50
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images_hwc() -> np.ndarray:
    """50 (32, 32, 3) uint8 images: image 0 black with a red top-left, green top-right and blue
    bottom-left pixel (orientation), the others random."""
    images = np.random.default_rng(0).integers(0, 256, (N_IMAGES, 32, 32, 3), dtype=np.uint8)
    images[0] = 0
    images[0, 0, 0], images[0, 0, 31], images[0, 31, 0] = RED, GREEN, BLUE
    return images


def _write(path: Path, images_hwc: np.ndarray) -> Path:
    """The original format: raw bytes, each image flattened column-major (MATLAB order), i.e. the
    inverse of outlier exposure's ``np.fromstring(row).reshape(32, 32, 3, order="F")``."""
    path.write_bytes(b"".join(img.flatten(order="F").tobytes() for img in images_hwc))
    return path


@pytest.fixture()
def tiny(tmp_path) -> tuple[Path, torch.Tensor]:
    """A data root holding a 50-image tiny_images.bin, and the expected float NCHW images."""
    images = _images_hwc()
    _write(tmp_path / "tiny_images.bin", images)
    expected = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return tmp_path, expected


def _load(root: Path, **kw) -> torch.Tensor:
    options = kw.pop("options", {})
    return load_dataset("tiny-images", DataRequest(root=root, options=options, **kw)).images[:]


def test_the_file_is_read_as_outlier_exposure_reads_it(tiny):
    root, expected = tiny
    raw = (root / "tiny_images.bin").read_bytes()
    assert len(raw) == N_IMAGES * 3072
    oe_view = np.frombuffer(raw[3072:6144], dtype=np.uint8).reshape(32, 32, 3, order="F")
    assert np.array_equal(oe_view, _images_hwc()[1])  # the layout written is OE's

    images = _load(root)  # 50 images: small enough to load without `n`
    assert images.dtype == torch.float32 and images.shape == (N_IMAGES, 3, 32, 32)
    assert torch.equal(images, expected)  # pixel by pixel
    first = images[0]
    assert first[:, 0, 0].tolist() == [1.0, 0.0, 0.0]  # top-left red
    assert first[:, 0, 31].tolist() == [0.0, 1.0, 0.0]  # top-right green: columns are width
    assert first[:, 31, 0].tolist() == [0.0, 0.0, 1.0]  # bottom-left blue: rows are height
    assert float(first.sum()) == 3.0  # and nothing else


def test_decode_matches_the_fortran_reshape():
    rows = np.random.default_rng(1).integers(0, 256, (4, 3072), dtype=np.uint8)
    hwc = np.stack([row.reshape(32, 32, 3, order="F") for row in rows])
    assert np.array_equal(ti.decode(rows), hwc.transpose(0, 3, 1, 2))


def test_the_file_is_memory_mapped_and_read_by_index(tiny):
    root, expected = tiny
    data = ti.open_tiny_images(DataRequest(root=root))
    assert isinstance(data.rows, np.memmap) and len(data) == N_IMAGES
    picked = data.read(torch.tensor([7, 3, 7]))
    assert picked.dtype == torch.uint8
    assert torch.equal(picked.float() / 255, expected[[7, 3, 7]])


def test_subsets_are_seeded_distinct_and_in_file_order(tiny):
    root, expected = tiny
    a, again = _load(root, n=10, seed=3), _load(root, n=10, seed=3)
    assert torch.equal(a, again) and a.shape == (10, 3, 32, 32)
    assert not torch.equal(a, _load(root, n=10, seed=4))
    positions = [next(i for i in range(N_IMAGES) if torch.equal(img, expected[i])) for img in a]
    assert positions == sorted(set(positions))


def test_large_subsets_need_no_permutation_of_80_million():
    picked = ti.distinct_indices(ti.FULL_COUNT, 5000, seed=1)
    assert picked is not None and len(picked) == 5000 == len(torch.unique(picked))
    assert torch.equal(picked, picked.sort().values)
    assert 0 <= int(picked.min()) and int(picked.max()) < ti.FULL_COUNT
    assert torch.equal(picked, ti.distinct_indices(ti.FULL_COUNT, 5000, seed=1))
    assert not torch.equal(picked, ti.distinct_indices(ti.FULL_COUNT, 5000, seed=2))
    with pytest.raises(ValueError):
        ti.distinct_indices(ti.FULL_COUNT, 0, seed=1)


def test_excluded_images_are_never_returned(tiny):
    root, expected = tiny
    (root / "80mn_cifar_idxs.txt").write_text("1\n5\n50\n")  # 1-based, as outlier exposure's file
    kept = [i for i in range(N_IMAGES) if i not in (0, 4, 49)]
    images = _load(root, options={"exclude_cifar": "80mn_cifar_idxs.txt"})
    assert torch.equal(images, expected[kept])
    subset = _load(root, n=20, seed=0, options={"exclude_cifar": "80mn_cifar_idxs.txt"})
    assert all(any(torch.equal(img, expected[i]) for i in kept) for img in subset)

    (root / "more.txt").write_text("10\n")  # 0-based: image 10
    both = ti.open_tiny_images(DataRequest(root=root, options={
        "exclude_cifar": ["more.txt", str(root / "more.txt")], "exclude_base": 0}))
    assert len(both) == N_IMAGES - 1 and both.file_indices(torch.tensor([9, 10])).tolist() == [9, 11]


def test_bad_exclusions_and_options_fail_clearly(tiny):
    root, _ = tiny
    (root / "out_of_range.txt").write_text("51\n")
    with pytest.raises(ValueError, match="exclude_base"):
        _load(root, options={"exclude_cifar": "out_of_range.txt"})
    with pytest.raises(DatasetNotFoundError, match="80mn_cifar_idxs"):
        _load(root, options={"exclude_cifar": "missing.txt"})
    with pytest.raises(ValueError, match="exclude_base"):
        _load(root, options={"exclude_base": 2})
    with pytest.raises(ValueError, match="unknown option"):
        _load(root, options={"exclude": "x.txt"})


def test_missing_or_malformed_files_say_what_to_do(tmp_path, monkeypatch, tiny):
    with pytest.raises(DatasetNotFoundError) as err:
        _load(tmp_path / "nowhere", n=5)
    message = str(err.value)
    assert "'tiny-images'" in message and str(tmp_path / "nowhere" / "tiny_images.bin") in message
    assert "no download" in message and "`path`" in message
    (tmp_path / "odd.bin").write_bytes(b"\0" * 3000)
    with pytest.raises(ValueError, match="multiple of 3072"):
        _load(tmp_path, options={"path": "odd.bin"})
    root, _ = tiny
    monkeypatch.setattr(ti, "MAX_WHOLE", 10)
    with pytest.raises(ValueError, match="set `n`"):
        _load(root)
    assert len(_load(root, n=10)) == 10


def test_out_source_samples_per_step_from_the_file(tiny):
    root, expected = tiny
    spec = OutDistribution(dataset="tiny-images")
    source = OutSource(spec, root=root, shape=(3, 32, 32), seed=0)
    assert source.lazy is not None and source.images is None  # never loaded whole
    ref = torch.zeros(4, 3, 32, 32)
    a, b = source.sample(ref, 16, seed=11), source.sample(ref, 16, seed=11)
    assert torch.equal(a, b) and a.shape == (16, 3, 32, 32) and a.dtype == torch.float32
    assert not torch.equal(a, source.sample(ref, 16, seed=12))
    assert all(any(torch.equal(img, e) for e in expected) for img in a)
    identity = source.identity()
    assert identity["images"] == N_IMAGES and identity["file_bytes"] == N_IMAGES * 3072
    assert len(identity["fingerprint_sha256"]) == 64

    grey = OutSource(spec, root=root, shape=(1, 8, 8), seed=0,
                     augment_spec=Augment(autoaugment="cifar10", cutout=4))
    x = grey.sample(torch.zeros(2, 1, 8, 8), 8, seed=5)
    assert x.shape == (8, 1, 8, 8) and torch.equal(x, grey.sample(torch.zeros(2, 1, 8, 8), 8, seed=5))
    assert 0 <= float(x.min()) and float(x.max()) <= 1

    fixed = OutSource(spec.model_copy(update={"n": 20}), root=root, shape=(3, 32, 32), seed=0)
    assert fixed.lazy is None and fixed.images is not None and len(fixed.images) == 20


def test_training_with_tiny_images_runs_and_resumes(tiny, tmp_path):
    root, _ = tiny
    kw = dict(method="oe", arch="digits-net", arch_options={"num_classes": 5},
              dataset={"dataset": "digits", "options": {"classes": [0, 1, 2, 3, 4]}, "n": 64},
              epochs=2, batch_size=32, device="cpu", seed=0, evaluate={"noise_n": 0},
              augment={"autoaugment": "cifar10", "cutout": 4, "crop_padding": 1},
              out_distribution={"dataset": "tiny-images", "lambda": 0.5})
    straight = train_from_recipe(Recipe(name="t", output=str(tmp_path / "a.safetensors"), **kw),
                                 data_root=root, progress=False)
    assert straight["status"] == "complete" and straight["training"]["steps"] == 4
    out = straight["training"]["out_distribution"]
    assert out["dataset"] == "tiny-images" and out["images"] == N_IMAGES
    recipe = Recipe(name="t", output=str(tmp_path / "b.safetensors"), **kw)
    assert train_from_recipe(recipe, data_root=root, progress=False, stop_after=1)["status"] == "stopped"
    resumed = train_from_recipe(recipe, data_root=root, progress=False)
    assert resumed["history"] == straight["history"]
    card = yaml.safe_load((tmp_path / "b.yaml").read_text())
    assert card["recipe"]["augment"]["autoaugment"] == "cifar10"
