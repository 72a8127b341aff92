"""Synthetic probes: uniform noise and the papers' smoothed (permuted + blurred + rescaled) noise.

Both follow the in-distribution: they take shape (and, for smoothed noise, pixels) from
``request.reference`` — the in-distribution test set the runner passes in — and generate exactly
``request.n`` images (1000 when ``n`` is None). Every random draw comes from one
``torch.Generator`` seeded with ``request.seed``, so a suite seed fixes the probe bit for bit.

Smoothed noise (Hein et al. 2019, appendix F; Augustin et al. 2020 "Noise") is rebuilt from the
authors' code (github.com/max-andr/relu_networks_overconfident, ``utils_tf.gen_adv`` with
``frac_perm=0.5`` and ``apply_random_lowpass``), read for its semantics, not copied:

1. Images are made in batches of ``batch_size`` (default 128, the code's batch size). In each
   batch the first ``floor(frac_permuted · len(batch))`` images (``frac_permuted`` = 0.5) are
   reference images with their pixels permuted and the rest are uniform noise in [0, 1).
   Batch ``b`` permutes the reference images at positions ``b·batch_size + j`` (wrapping around
   the reference set), i.e. the test set in order, as the code's un-shuffled test batches do.
2. Each permuted image gets its own uniformly random permutation of the H·W spatial positions;
   all channels move together (the code shuffles rows of the image reshaped to (H·W, C)).
3. One σ ~ U[1, 2.5] per batch (the code draws one ``std`` per call, i.e. per batch).
4. Gaussian low-pass per channel (no channel mixing): a 15×15 kernel = normal pdf at the integer
   offsets −7..7 (outer product, normalised to sum 1), applied to the image padded
   *symmetrically* (numpy/TensorFlow "SYMMETRIC": the edge pixel is repeated, ``d c b a | a b c d |
   d c b a``; this is scipy.ndimage's ``mode="reflect"``, not torch's ``"reflect"``). The code pads
   by 15 and convolves with "SAME" zero padding before cropping; since 15 > 7 the zero padding never
   reaches the kept pixels, so that equals a radius-7 symmetric pad and a "valid" convolution,
   which is what is done here. The 2-D kernel is an outer product, so it is applied as two 1-D
   passes (the same numbers up to float rounding, 7× fewer operations).
5. Contrast rescaling per image over all channels and pixels: ``(x − min) / (max − min)``, so each
   image has min exactly 0 and max exactly 1 (a constant image, which cannot happen with random
   noise, would become all zeros instead of NaN).

Draw order per batch (part of the determinism contract): σ, then the permutation keys of the
permuted images, then the uniform noise.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from oodbench.data.base import DataRequest, ImageSet
from oodbench.data.common import check_option_names, check_options, no_options
from oodbench.data.stream import ImageSource
from oodbench.core.registry import datasets

DEFAULT_N = 1000
KERNEL_RADIUS = 7  # 15×15 kernel, as in the authors' code (``size = 7`` → offsets −7..7)
SIGMA_RANGE = (1.0, 2.5)


def _count(request: DataRequest, default: int = DEFAULT_N) -> int:
    n = default if request.n is None else request.n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer or None, got {request.n!r}")
    return n


def _reference(name: str, request: DataRequest) -> ImageSet:
    if request.reference is None:
        raise ValueError(
            f"dataset {name!r} follows the in-distribution set: pass its test set as "
            "DataRequest.reference (the runner does this for probes)"
        )
    if request.reference.images.ndim != 4 or len(request.reference) == 0:
        raise ValueError(f"dataset {name!r}: the reference set must be non-empty NCHW images")
    return request.reference


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


# --- building blocks (public so tests and trainers can use them) --------------------------------


def permute_pixels(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image's pixels under its own random permutation of the H·W positions (channels move
    together). Per image, the multiset of (per-channel) values is unchanged.

    The permutations are ``argsort`` of i.i.d. uniform keys, one row per image: uniformly random
    permutations drawn in one call (ties have probability ~0 and would still give a permutation).
    """
    n, c, h, w = images.shape
    order = torch.rand(n, h * w, generator=generator).argsort(dim=1)
    flat = images.reshape(n, c, h * w)
    return flat.gather(2, order.unsqueeze(1).expand(n, c, h * w)).reshape(n, c, h, w)


def symmetric_indices(size: int, pad: int) -> torch.Tensor:
    """Source index of each position of a length-``size`` axis padded by ``pad`` on both sides
    with numpy's ``mode="symmetric"`` (edge repeated; period ``2·size``, so any ``pad`` works)."""
    period = 2 * size
    i = torch.arange(-pad, size + pad).remainder(period)
    return torch.where(i >= size, period - 1 - i, i)


def symmetric_pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last two dimensions by ``pad`` like ``numpy.pad(mode="symmetric")``."""
    h, w = images.shape[-2:]
    out = images.index_select(-2, symmetric_indices(h, pad).to(images.device))
    return out.index_select(-1, symmetric_indices(w, pad).to(images.device))


def gaussian_kernel1d(sigma: float, radius: int = KERNEL_RADIUS) -> torch.Tensor:
    """Normal pdf at offsets −radius..radius, normalised to sum 1 (float64)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return k / k.sum()


def gaussian_blur(images: torch.Tensor, sigma: float, radius: int = KERNEL_RADIUS) -> torch.Tensor:
    """Per-channel Gaussian low-pass with symmetric padding; output has the input's shape.

    Equals ``scipy.ndimage.gaussian_filter(x, sigma=(0, 0, σ, σ), mode="reflect",
    truncate=radius/σ)`` (scipy's "reflect" is numpy's "symmetric").
    """
    n, c, h, w = images.shape
    k = gaussian_kernel1d(sigma, radius).to(images.dtype).to(images.device)
    x = symmetric_pad(images, radius).reshape(n * c, 1, h + 2 * radius, w + 2 * radius)
    x = F.conv2d(x, k.view(1, 1, 1, -1))  # along W (conv2d is a correlation; k is symmetric)
    x = F.conv2d(x, k.view(1, 1, -1, 1))  # along H
    return x.reshape(n, c, h, w)


def rescale_per_image(images: torch.Tensor) -> torch.Tensor:
    """``(x − min) / (max − min)`` per image over C, H, W: min becomes 0 and max 1, exactly."""
    flat = images.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    span = hi - lo
    return (images - lo) / torch.where(span > 0, span, torch.ones_like(span))


def smoothed_noise(
    reference: "torch.Tensor | ImageSource",
    n: int,
    seed: int,
    *,
    batch_size: int = 128,
    frac_permuted: float = 0.5,
) -> torch.Tensor:
    """The papers' noise: permuted reference images + uniform noise, blurred, rescaled.

    See the module docstring for every step. Returns float32 (n, C, H, W) in [0, 1].
    ``reference`` may be an :class:`~oodbench.data.stream.ImageSource`: only the rows each batch
    permutes are read.
    """
    if isinstance(reference, torch.Tensor):
        reference = reference.detach().to(device="cpu", dtype=torch.float32)  # generator is on CPU
    m, c, h, w = reference.shape
    generator = _generator(seed)
    out = torch.empty(n, c, h, w, dtype=torch.float32)
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        k = int(size * frac_permuted)
        sigma = SIGMA_RANGE[0] + (SIGMA_RANGE[1] - SIGMA_RANGE[0]) * float(
            torch.rand((), generator=generator)
        )
        sources = torch.arange(start, start + k).remainder(m)
        permuted = permute_pixels(reference[sources], generator)
        uniform = torch.rand(size - k, c, h, w, generator=generator)
        batch = torch.cat([permuted, uniform])
        out[start : start + size] = rescale_per_image(gaussian_blur(batch, sigma))
    return out


# --- registered probes --------------------------------------------------------------------------


@datasets.register(
    "uniform-noise",
    shape=None,
    num_classes=None,
    kind="synthetic",
    source="i.i.d. uniform pixels in [0, 1), shape of the in-distribution set",
    check_options=no_options("uniform-noise"),
)
def uniform_noise(request: DataRequest) -> ImageSet:
    """Uniform noise in [0, 1] with the in-distribution's shape (n images, default 1000)."""
    name = "uniform-noise"
    check_options(name, request, ())
    c, h, w = _reference(name, request).shape
    images = torch.rand(_count(request), c, h, w, generator=_generator(request.seed))
    return ImageSet(name, images, None)


def _positive_int(name: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"dataset {name!r}: `{key}` must be a positive integer, got {value!r}")
    return value


def smoothed_options(options: Mapping[str, Any]) -> tuple[int, float]:
    """``(batch_size, frac_permuted)`` of smoothed-noise, or ``ValueError`` naming the bad one."""
    name = "smoothed-noise"
    options = check_option_names(name, options, ("batch_size", "frac_permuted"))
    batch_size = _positive_int(name, "batch_size", options.get("batch_size", 128))
    frac = options.get("frac_permuted", 0.5)
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
        raise ValueError(f"dataset {name!r}: `frac_permuted` must be in [0, 1], got {frac!r}")
    return batch_size, float(frac)


@datasets.register(
    "smoothed-noise",
    shape=None,
    num_classes=None,
    kind="synthetic",
    source="Hein et al. CVPR 2019 app. F: half pixel-permuted in-dist images, half uniform; "
    "Gaussian blur σ~U[1,2.5]; per-image contrast rescale (github.com/max-andr/"
    "relu_networks_overconfident)",
    check_options=smoothed_options,
)
def smoothed_noise_probe(request: DataRequest) -> ImageSet:
    """The papers' noise: permuted in-dist images + uniform noise, Gaussian-blurred, rescaled.

    Options: ``batch_size`` (default 128; one σ per batch, half of each batch permuted) and
    ``frac_permuted`` (default 0.5, the fraction of each batch made of permuted images).
    """
    name = "smoothed-noise"
    batch_size, frac = smoothed_options(request.options)
    reference = _reference(name, request)
    images = smoothed_noise(
        reference.images,
        _count(request),
        request.seed,
        batch_size=batch_size,
        frac_permuted=frac,
    )
    return ImageSet(name, images, None)
