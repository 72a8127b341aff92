"""Training data: the in-distribution sets, batch augmentation and out-distribution sources.

Every random draw of a training step (augmentation, noise, out-distribution samples, attack
starts) comes from a generator seeded with :func:`step_seed` ``(recipe seed, step, stream)``, so a
step is reproducible on its own: a resumed run needs no RNG state for them, and two methods
trained with the same seed see the same in-distribution batches.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Protocol, Union

import torch

from oodbench.data import DataRequest, ImageSet, load_dataset, materialise, to_shape
from oodbench.data.common import uint8_to_unit
from oodbench.core.registry import datasets
from oodbench.train.recipe import Augment, OutDistribution, Recipe


def step_seed(seed: int, step: int, stream: str) -> int:
    """A 63-bit seed for one random stream of one training step (stable across machines)."""
    digest = hashlib.blake2b(f"{seed}/{stream}/{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def load_in_distribution(recipe: Recipe, root: Path) -> tuple[ImageSet, ImageSet]:
    """(train, test) of the recipe's in-distribution; ``dataset.n`` caps the training set."""
    spec = recipe.dataset
    train = load_dataset(spec.dataset, DataRequest(root=root, split="train", download=True,
                                                   n=spec.n, seed=recipe.seed, options=spec.options))
    test = load_dataset(spec.dataset, DataRequest(root=root, split="test", download=True,
                                                  options=spec.options))
    if train.labels is None or test.labels is None:
        raise ValueError(f"dataset {spec.dataset!r} has no labels: it cannot be trained on")
    return train.materialised(), test.materialised()  # every epoch samples the whole set


def augment(x: torch.Tensor, spec: Augment, gen: torch.Generator) -> torch.Tensor:
    """``spec``'s augmentation of a batch, one draw per image from ``gen`` (CPU), in the order of
    Augustin et al.'s CIFAR pipeline: random crop, horizontal flip, AutoAugment, Cutout. Returns
    ``x`` itself when nothing is enabled."""
    if spec.crop_padding > 0:
        x = random_crop(x, spec.crop_padding, fill_values(spec.fill, x.shape[1]), gen)
    if spec.hflip:
        flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
    if spec.autoaugment:
        x = auto_augment(x, spec.autoaugment, fill_values(spec.fill, x.shape[1]), gen)
    if spec.cutout > 0:
        x = cutout(x, cutout_boxes(len(x), x.shape[2], x.shape[3], spec.cutout, gen))
    return x


def fill_values(fill: Union[float, list[float]], channels: int) -> list[float]:
    """The recipe's ``fill`` as one value per channel (a single value applies to all)."""
    values = [float(fill)] if isinstance(fill, (int, float)) else [float(f) for f in fill]
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise ValueError(f"augment.fill has {len(values)} values for {channels}-channel images")
    return values


def random_crop(x: torch.Tensor, p: int, fill: list[float], gen: torch.Generator) -> torch.Tensor:
    """Random crop after padding by ``p`` pixels with ``fill`` (torchvision's ``RandomCrop(
    padding=p, fill=…)``), batched: one offset per image."""
    n, c, h, w = x.shape
    padded = torch.tensor(fill, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    padded = padded.expand(n, c, h + 2 * p, w + 2 * p).clone()
    padded[:, :, p:p + h, p:p + w] = x  # written, not added: pixels stay exact
    dy = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    index = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[index, chan, rows, cols]


def auto_augment(x: torch.Tensor, policy: str, fill: list[float],
                 gen: torch.Generator) -> torch.Tensor:
    """torchvision's AutoAugment with the learned ``policy``, one sub-policy draw per image.

    torchvision draws from the global torch RNG; each image gets its own seed from ``gen`` and the
    global CPU RNG is seeded with it inside ``fork_rng`` (restored afterwards), so the result is a
    function of ``gen`` alone: reproducible, resumable and invisible to the rest of training. The
    policies work on uint8 images, so ``x`` (k/255 values for real data) is rounded to uint8.
    """
    from torchvision.transforms import v2

    transform = v2.AutoAugment(v2.AutoAugmentPolicy(policy), fill=[round(255 * f) for f in fill])
    seeds = torch.randint(0, 2**62, (len(x),), generator=gen).tolist()
    images = x.detach().cpu().mul(255).round_().clamp_(0, 255).to(torch.uint8)
    out = torch.empty_like(images)
    with torch.random.fork_rng(devices=[]):
        for i, seed in enumerate(seeds):
            torch.default_generator.manual_seed(seed)  # CPU only, unlike torch.manual_seed
            out[i] = transform(images[i])
    return out.to(x.dtype).div_(255).to(x.device)


def cutout_boxes(n: int, h: int, w: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 4) rows ``y0, y1, x0, x1``: a ``size``-square per image centred at a uniformly drawn
    pixel, clipped at the border, as DeVries & Taylor's Cutout (which may leave less than a full
    square near the edges)."""
    cy = torch.randint(0, h, (n,), generator=gen)
    cx = torch.randint(0, w, (n,), generator=gen)
    y0, x0 = cy - size // 2, cx - size // 2
    return torch.stack([y0.clamp(0, h), (y0 + size).clamp(0, h),
                        x0.clamp(0, w), (x0 + size).clamp(0, w)], dim=1)


def cutout(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``x`` with each image's box (see :func:`cutout_boxes`) set to 0 in every channel (as the
    authors' code does before the in-model normalisation)."""
    boxes = boxes.to(x.device)
    rows = torch.arange(x.shape[2], device=x.device)
    cols = torch.arange(x.shape[3], device=x.device)
    in_rows = (rows >= boxes[:, 0:1]) & (rows < boxes[:, 1:2])
    in_cols = (cols >= boxes[:, 2:3]) & (cols < boxes[:, 3:4])
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    return x.masked_fill(mask, 0.0)


class RandomAccess(Protocol):
    """A data set too large to load, read a few images at a time (``tiny-images``); registered
    data sets offer one through the metadata ``random_access(request) -> RandomAccess``."""

    def __len__(self) -> int: ...

    def read(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW images at ``indices``."""
        ...

    def identity(self) -> dict: ...


class OutSource:
    """Out-distribution samples for each step.

    Synthetic data sets (the papers' noise) are generated from the current training batch as
    reference (``smoothed-noise`` permutes the pixels of its first half), with a fresh seed per
    step; real data sets are loaded once, converted to the in-distribution's shape, and sampled
    uniformly with replacement with the step's seed. Data sets with random access (80M Tiny
    Images) are sampled the same way without being loaded: each step reads its ``m`` images from
    the file (unless ``n`` asks for a fixed subset in memory).
    """

    def __init__(self, spec: OutDistribution, *, root: Path, shape: tuple[int, int, int],
                 seed: int, augment_spec: Optional[Augment] = None):
        self.spec, self.root, self.shape = spec, root, shape
        self.augment_spec = augment_spec if augment_spec is not None and augment_spec.out else None
        self.images: Optional[torch.Tensor] = None
        self.lazy: Optional[RandomAccess] = None
        if spec.synthetic:
            return
        request = DataRequest(root=root, split=spec.split, download=True, n=spec.n, seed=seed,
                              options=spec.options)
        opener = datasets.meta(spec.dataset).get("random_access")
        if opener is not None and spec.n is None:
            self.lazy = opener(request)
        else:
            self.images = materialise(to_shape(load_dataset(spec.dataset, request).images,
                                               shape)).contiguous()

    def identity(self) -> dict:
        out = self.spec.model_dump(mode="json", by_alias=True)
        if self.images is not None:
            out["images_sha256"] = hashlib.sha256(self.images.numpy().tobytes()).hexdigest()
        if self.lazy is not None:
            out.update(self.lazy.identity())
        return out

    def sample(self, reference: torch.Tensor, m: int, seed: int) -> torch.Tensor:
        """``m`` out-distribution images (CPU, float32) for the step with this ``seed``;
        ``reference`` is the step's (augmented) in-distribution batch."""
        if self.images is None and self.lazy is None:
            request = DataRequest(root=self.root, split=self.spec.split, n=m, seed=seed,
                                  options=self.spec.options,
                                  reference=ImageSet("training batch", reference.detach().cpu().float()))
            return load_dataset(self.spec.dataset, request).images
        gen = generator(seed)
        if self.lazy is not None:
            idx = torch.randint(0, len(self.lazy), (m,), generator=gen)
            x = to_shape(uint8_to_unit(self.lazy.read(idx)), self.shape)
        else:
            assert self.images is not None
            x = self.images[torch.randint(0, len(self.images), (m,), generator=gen)]
        return augment(x, self.augment_spec, gen) if self.augment_spec is not None else x
