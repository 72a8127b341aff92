"""NINCO's 17 OOD unit tests as synthetic probes: ``unit-gaussian``, ``unit-blobs``, …

Bitterwolf, Müller, Hein ("In or Out? Fixing ImageNet Out-of-Distribution Detection Evaluation",
ICML 2023) add to their OOD data set 17 kinds of synthetic images that no classifier should be
confident on — noise, constant colours, stripes, blurred noise, permuted pixels — and count a
detector as *failing* a test when its FPR at 95% TPR on that test exceeds 10%. The generation
here follows their repository (github.com/j-cb/NINCO: ``noise_functions.py`` and
``create_unit_test_data.ipynb``), read for its semantics and rebuilt, for any in-distribution
shape and seed:

- every image is made from the shape of the in-distribution set (C, H, W), in float64, then
  clipped to [0, 1] and quantised as NINCO saved them (``floor(255·x) / 255``);
- the random choices NINCO draws per image (a σ from a fixed list, colours, the number and
  orientation of stripes) are drawn per image here too;
- NINCO's blur is ``skimage.filters.gaussian(mode="wrap")`` per channel (truncated at 4σ, the
  image treated as periodic); its σ values are in pixels of the ImageNet validation images it
  modified (mostly 500×375), which the evaluation resizes to a 256 shorter side and crops to
  224: σ is scaled by ``min(H, W) / 328.125`` (= 224 · 375 / 256), i.e. kept as NINCO's at
  a 224×224 model input;
- ``pixel-permutation`` and ``low-freq-pixel-permutation`` permute the pixels of an
  in-distribution test image (NINCO: an ImageNet validation image), chosen per image.

Images stream (:class:`~oodbench.data.stream.GeneratedSource`): image ``i`` has its own
generator, seeded by the suite's seed, the test and ``i``, so it is the same in any batch and
on any machine. ``n`` defaults to 400, NINCO's count per test. NINCO's files differ from these
in JPEG compression of half of them; its pre-generated files can be read as ``image-folder``
probes instead (``suites/ninco.yaml``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from oodbench.data.base import DataRequest, ImageSet
from oodbench.data.common import check_options, no_options
from oodbench.data.noise import _count, _reference, permute_pixels
from oodbench.data.stream import GeneratedSource
from oodbench.core.registry import datasets

DEFAULT_N = 400
"""Images per test in NINCO."""
NINCO_SIDE = 224 * 375 / 256
"""The side, in NINCO's pixels, of what a 224×224 model input shows: σ is in these pixels."""
TRUNCATE = 4.0
"""skimage's (scipy's) default: the Gaussian kernel reaches 4σ each way."""
UNIT_TEST_GROUP = "unit-tests"
"""The ``group`` of a unit-test probe, which the ``unit-tests`` summary row counts over."""
FAIL_FPR = 0.1
"""NINCO counts a test as failed when FPR@95 exceeds this."""


@dataclass(frozen=True)
class Canvas:
    """What one image is made from: its shape, σ scale, generator and the reference images."""

    shape: tuple[int, int, int]
    scale: float
    rng: np.random.Generator
    reference: Callable[[int], np.ndarray]
    n_reference: int

    def uniform(self) -> np.ndarray:
        return self.rng.random(self.shape)

    def sigma(self, choices: tuple[float, ...]) -> float:
        return float(self.rng.choice(choices)) * self.scale

    def reference_image(self) -> np.ndarray:
        return self.reference(int(self.rng.integers(self.n_reference)))


# --- building blocks (NINCO's noise functions, filters and scalings) -------------------------


def wrap_kernel_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix ``K`` with ``K @ x`` = x blurred along its first axis by a Gaussian
    of σ truncated at 4σ with periodic ("wrap") boundaries: scipy's ``gaussian_filter1d(mode=
    "wrap")``, for any σ (taps that wrap more than once add up)."""
    if sigma <= 0:
        return np.eye(size)
    radius = int(TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    folded = np.bincount(offsets % size, weights, minlength=size)  # taps wrapped onto the period
    index = np.arange(size)
    return folded[(index[None, :] - index[:, None]) % size]  # K[i, j] = weight of offset j − i


def blur_wrap(image: np.ndarray, sigma: float) -> np.ndarray:
    """Per-channel Gaussian blur of a (C, H, W) image with periodic boundaries (NINCO's
    ``filter_gauss``: ``skimage.filters.gaussian(…, mode="wrap")``)."""
    _, h, w = image.shape
    return wrap_kernel_matrix(h, sigma) @ image @ wrap_kernel_matrix(w, sigma).T


def full_range(image: np.ndarray) -> np.ndarray:
    """``(x − min) / max(x − min)`` over the whole image."""
    shifted = image - image.min()
    top = shifted.max()
    return shifted / top if top > 0 else shifted


def full_range_per_channel(image: np.ndarray) -> np.ndarray:
    """:func:`full_range` of each channel."""
    shifted = image - image.min(axis=(1, 2), keepdims=True)
    top = shifted.max(axis=(1, 2), keepdims=True)
    return shifted / np.where(top > 0, top, 1.0)


def colour_range(image: np.ndarray, centre: np.ndarray, deviation: float,
                 quantile: float = 0.95) -> np.ndarray:
    """NINCO's ``scale_color_range``: per channel, the central ``quantile`` of values is mapped
    onto ``[centre, centre + 2·deviation]``."""
    low = np.quantile(image, (1 - quantile) / 2, axis=(1, 2), keepdims=True)
    shifted = image - low
    high = np.quantile(shifted, 0.5 + quantile / 2, axis=(1, 2), keepdims=True)
    return 2 * shifted / np.where(high > 0, high, 1.0) * deviation + centre.reshape(-1, 1, 1)


def stripes(shape: tuple[int, int, int], colours: np.ndarray, horizontal: bool) -> np.ndarray:
    """Stripes of ``colours`` (k, C) of ``side // k`` pixels each, the last colour filling the
    rest (as NINCO's ``noise_stripes``; more stripes than pixels leaves one colour)."""
    c = shape[0]
    image = np.zeros(shape)
    side = shape[1] if horizontal else shape[2]
    width = side // len(colours)
    for i, colour in enumerate(colours):
        stop = side if i == len(colours) - 1 else (i + 1) * width
        part = (slice(None), slice(i * width, stop)) if horizontal else \
            (slice(None), slice(None), slice(i * width, stop))
        image[part] = colour.reshape(c, 1, 1)
    return image


# --- the 17 tests ------------------------------------------------------------------------------

LOW_FREQ_SIGMAS = (10, 15, 25, 40, 60, 85)
PERMUTED_SIGMAS = (1, 1.5, 2, 3, 4, 6, 8)
BLOB_SIGMAS = (1.5, 2, 2.5, 3, 3.5, 4)
GAUSSIAN_SIGMAS = (0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5)
STRIPE_COUNTS = (4, 5, 7, 10, 15, 20)


def _colours(k: int, canvas: Canvas) -> np.ndarray:
    return canvas.rng.random((k, canvas.shape[0]))


def _permuted(canvas: Canvas) -> np.ndarray:
    image = torch.from_numpy(canvas.reference_image()).unsqueeze(0)
    seed = int(canvas.rng.integers(2**63))
    return permute_pixels(image, torch.Generator().manual_seed(seed))[0].double().numpy()


def _striped(canvas: Canvas, counts: tuple[int, ...], horizontal: bool | None) -> np.ndarray:
    if horizontal is None:
        horizontal = bool(canvas.rng.integers(2) == 0)
    return stripes(canvas.shape, _colours(int(canvas.rng.choice(counts)), canvas), horizontal)


def _blobs(canvas: Canvas) -> np.ndarray:
    sigma = canvas.sigma(BLOB_SIGMAS)
    image = blur_wrap((canvas.rng.random(canvas.shape) < 0.7).astype(np.float64), sigma)
    return np.where(image < 0.75, 0.0, np.where(image > 1.0, 1.0, image))


def _colour_range(canvas: Canvas) -> np.ndarray:
    sigma = canvas.sigma(LOW_FREQ_SIGMAS)
    centre = canvas.rng.random(canvas.shape[0])
    deviation = float(canvas.rng.uniform(0.1, 0.3))
    return colour_range(blur_wrap(canvas.uniform(), sigma), centre, deviation)


def _tricolour_primary(canvas: Canvas) -> np.ndarray:
    horizontal = bool(canvas.rng.integers(2) == 0)
    colours = (canvas.rng.random((3, canvas.shape[0])) < 0.5).astype(np.float64)
    return stripes(canvas.shape, colours, horizontal)


#: dataset name -> (NINCO's folder name, how one image is made)
UNIT_TESTS: dict[str, tuple[str, Callable[[Canvas], np.ndarray]]] = {
    "unit-gaussian": ("Gaussian", lambda cv: 0.5 + float(cv.rng.choice(GAUSSIAN_SIGMAS))
                      * cv.rng.standard_normal(cv.shape)),  # σ of pixel values, not blur
    "unit-rademacher": ("Rademacher", lambda cv: (cv.uniform() > 0.5).astype(np.float64)),
    "unit-black": ("black", lambda cv: np.zeros(cv.shape)),
    "unit-white": ("white", lambda cv: np.ones(cv.shape)),
    "unit-grey": ("grey", lambda cv: np.full(cv.shape, cv.rng.random())),
    "unit-monochrome": ("monochrome", lambda cv: np.broadcast_to(
        cv.rng.random(cv.shape[0]).reshape(-1, 1, 1), cv.shape).copy()),
    "unit-uniform": ("uni", lambda cv: cv.uniform()),
    "unit-blobs": ("blobs", _blobs),
    "unit-low-freq": ("low_freq", lambda cv: full_range(
        blur_wrap(cv.uniform(), cv.sigma(LOW_FREQ_SIGMAS)))),
    "unit-low-freq-channel-fullscale": ("low_freq_channelfullscale", lambda cv: full_range_per_channel(
        blur_wrap(cv.uniform(), cv.sigma(LOW_FREQ_SIGMAS)))),
    "unit-low-freq-colour-range": ("low_freq_colorrange", _colour_range),
    "unit-pixel-permutation": ("pixel_perm", _permuted),
    "unit-low-freq-pixel-permutation": ("low_freq_pixel_perm", lambda cv: blur_wrap(
        _permuted(cv), cv.sigma(PERMUTED_SIGMAS))),
    "unit-horizontal-stripes": ("horizontal_stripes", lambda cv: _striped(cv, STRIPE_COUNTS, True)),
    "unit-vertical-stripes": ("vertical_stripes", lambda cv: _striped(cv, STRIPE_COUNTS, False)),
    "unit-tricolour": ("tricolour", lambda cv: _striped(cv, (3,), None)),
    "unit-tricolour-primary": ("tricolour_primary", _tricolour_primary),
}


def image_seed(seed: int, test: str, index: int) -> int:
    """The seed of image ``index`` of ``test``: a hash, so tests and images never share draws."""
    digest = hashlib.sha256(f"{int(seed)}/{test}/{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def unit_test_image(test: str, shape: tuple[int, int, int], seed: int, index: int,
                    reference: Callable[[int], np.ndarray], n_reference: int) -> torch.Tensor:
    """Image ``index`` of the unit test ``test`` (a key of :data:`UNIT_TESTS`) as float32
    (C, H, W) in [0, 1], quantised to k/255."""
    make = UNIT_TESTS[test][1]
    canvas = Canvas(tuple(shape), min(shape[1:]) / NINCO_SIDE,  # type: ignore[arg-type]
                    np.random.default_rng(image_seed(seed, test, index)), reference, n_reference)
    image = np.clip(make(canvas), 0.0, 1.0)
    return torch.from_numpy(np.floor(image * 255.0) / 255.0).to(torch.float32)


def _register(test: str, ninco: str) -> None:
    @datasets.register(
        test,
        shape=None,
        num_classes=None,
        kind="synthetic",
        group=UNIT_TEST_GROUP,
        source=f"NINCO OOD unit test {ninco!r} (Bitterwolf et al. ICML 2023, github.com/j-cb/"
        "NINCO), generated for the in-distribution's shape",
        check_options=no_options(test),
        doc=f"NINCO's OOD unit test {ninco!r}: {DEFAULT_N} images by default, shaped like the "
        "in-distribution set",
    )
    def load(request: DataRequest) -> ImageSet:
        check_options(test, request, ())
        reference = _reference(test, request)
        images = reference.images

        def row(j: int) -> np.ndarray:
            return images[j].double().numpy()

        source = GeneratedSource(test, _count(request, DEFAULT_N), reference.shape,
                                 lambda i: unit_test_image(test, reference.shape, request.seed, i,
                                                           row, len(reference)))
        return ImageSet(test, source, None)


for _test, (_ninco, _) in UNIT_TESTS.items():
    _register(_test, _ninco)
