"""Training data: the in-distribution sets, batch augmentation and out-distribution sources.

Every random draw of a training step (augmentation, noise, out-distribution samples, attack
starts) comes from a generator seeded with :func:`step_seed` ``(recipe seed, step, stream)``, so a
step is reproducible on its own: a resumed run needs no RNG state for them, and two methods
trained with the same seed see the same in-distribution batches.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import torch

from oodbench.data import DataRequest, ImageSet, load_dataset, to_shape
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
    return train, test


def augment(x: torch.Tensor, spec: Augment, gen: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding by ``spec.crop_padding`` and/or random horizontal flip, one
    draw per image from ``gen`` (CPU). Returns ``x`` itself when nothing is enabled."""
    n, c, h, w = x.shape
    p = spec.crop_padding
    if p > 0:
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        index = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[index, chan, rows, cols]
    if spec.hflip:
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
    return x


class OutSource:
    """Out-distribution samples for each step.

    Synthetic data sets (the papers' noise) are generated from the current training batch as
    reference (``smoothed-noise`` permutes the pixels of its first half), with a fresh seed per
    step; real data sets are loaded once, converted to the in-distribution's shape, and sampled
    uniformly with replacement with the step's seed.
    """

    def __init__(self, spec: OutDistribution, *, root: Path, shape: tuple[int, int, int],
                 seed: int, augment_spec: Optional[Augment] = None):
        self.spec, self.root, self.shape = spec, root, shape
        self.augment_spec = augment_spec if augment_spec is not None and augment_spec.out else None
        self.images: Optional[torch.Tensor] = None
        if not spec.synthetic:
            data = load_dataset(spec.dataset, DataRequest(root=root, split=spec.split, download=True,
                                                          n=spec.n, seed=seed, options=spec.options))
            self.images = to_shape(data.images, shape).contiguous()

    def identity(self) -> dict:
        out = self.spec.model_dump(mode="json", by_alias=True)
        if self.images is not None:
            out["images_sha256"] = hashlib.sha256(self.images.numpy().tobytes()).hexdigest()
        return out

    def sample(self, reference: torch.Tensor, m: int, seed: int) -> torch.Tensor:
        """``m`` out-distribution images (CPU, float32) for the step with this ``seed``;
        ``reference`` is the step's (augmented) in-distribution batch."""
        if self.images is None:
            request = DataRequest(root=self.root, split=self.spec.split, n=m, seed=seed,
                                  options=self.spec.options,
                                  reference=ImageSet("training batch", reference.detach().cpu().float()))
            return load_dataset(self.spec.dataset, request).images
        gen = generator(seed)
        idx = torch.randint(0, len(self.images), (m,), generator=gen)
        x = self.images[idx]
        return augment(x, self.augment_spec, gen) if self.augment_spec is not None else x
