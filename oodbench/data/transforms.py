"""The one explicit transform that brings a probe to the in-distribution's shape.

The papers evaluate an MNIST model on "grayCIFAR-10": CIFAR-10 test images made grey and
resized to 28×28. Here that is ``to_shape(cifar10.images, (1, 28, 28))`` — the loaders never
convert on their own, so every conversion is visible in the suite and in the logs
(:func:`describe_conversion`).

Choices, each deliberate:

- grey → RGB repeats the single channel (the image stays grey, now with three equal channels);
- RGB → grey is the plain channel mean, as the papers' code does (``x.mean(axis=2)``), not the
  ITU-R luma weights;
- spatial resize is ``F.interpolate(mode="bilinear", antialias=True, align_corners=False)``:
  bilinear with an anti-aliasing prefilter when shrinking, close to PIL's ``Image.resize`` with
  BILINEAR (what ``torchvision.transforms.Resize`` does on PIL images, as in the papers' code);
- the result is clamped to [0, 1] (bilinear weights are non-negative so this only removes
  rounding noise, but it makes the [0, 1] contract hold by construction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol, Sequence, overload

import torch
import torch.nn.functional as F

_CHANNEL_NAMES = {1: "grey", 3: "RGB"}


class Convertible(Protocol):
    """Images read in batches (an :class:`~oodbench.data.stream.ImageSource`, which converts
    each batch with :func:`to_shape` as it is read): named here as a protocol because the
    sources import this module."""

    def converted(self, shape: Sequence[int]) -> "Convertible": ...


def _check_shape(shape: Sequence[int], what: str) -> tuple[int, int, int]:
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise ValueError(f"{what} must be (C, H, W) with positive sizes, got {tuple(shape)}")
    c, h, w = (int(s) for s in shape)
    if c not in _CHANNEL_NAMES:
        raise ValueError(f"{what} has {c} channels; only 1 (grey) and 3 (RGB) are supported")
    return c, h, w


@overload
def to_shape(images: torch.Tensor, shape: Sequence[int]) -> torch.Tensor: ...
@overload
def to_shape(images: Convertible, shape: Sequence[int]) -> Convertible: ...


def to_shape(images, shape):  # type: ignore[no-untyped-def]
    """Convert NCHW images in [0, 1] to ``shape = (C, H, W)``: channels first, then resize.

    Returns ``images`` itself (same object) when nothing has to change. An
    :class:`~oodbench.data.stream.ImageSource` is converted lazily: the result converts each
    batch as it is read, with this function, so the bits are the same.

    >>> to_shape(torch.rand(2, 3, 32, 32), (1, 28, 28)).shape
    torch.Size([2, 1, 28, 28])
    """
    if not isinstance(images, torch.Tensor):
        return images.converted(shape)
    if images.ndim != 4:
        raise ValueError(f"expected NCHW images, got a tensor of shape {tuple(images.shape)}")
    src = _check_shape(images.shape[1:], "source shape")
    c, h, w = _check_shape(shape, "target shape")
    if src == (c, h, w):
        return images
    out = _to_channels(images if images.is_floating_point() else images.float(), c)
    if (src[1], src[2]) != (h, w):
        out = F.interpolate(out, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0)  # ``out`` is a new tensor here: src != dst forced a copy


def _to_channels(images: torch.Tensor, c: int) -> torch.Tensor:
    """Grey → RGB repeats the channel, RGB → grey is the channel mean (see the module notes)."""
    if images.shape[1] == c:
        return images
    return images.repeat(1, 3, 1, 1) if c == 3 else images.mean(dim=1, keepdim=True)


Interpolation = Literal["nearest", "bilinear", "bicubic"]


@dataclass(frozen=True)
class Geometry:
    """How a pretrained network wants its images: ``channels``, a resize, then a centre crop.

    ``resize`` is an int (the shorter side becomes that many pixels, aspect kept) or
    ``(h, w)`` (exact size); ``crop`` is the final ``(h, w)``. timm's evaluation transform
    (``resize = floor(size / crop_pct)``, centre crop ``size``) and the Hugging Face image
    processors (shortest edge or exact size, optional centre crop) are both of this form.
    """

    channels: int
    resize: int | tuple[int, int]
    crop: tuple[int, int]
    interpolation: Interpolation = "bilinear"

    @classmethod
    def center_crop(cls, channels: int, size: tuple[int, int], crop_pct: float = 1.0,
                    interpolation: Interpolation = "bilinear") -> "Geometry":
        """timm's ``transforms_imagenet_eval`` (``crop_mode='center'``): scale to
        ``floor(size / crop_pct)`` (the shorter side for square sizes), then crop ``size``."""
        h, w = (math.floor(s / crop_pct) for s in size)
        return cls(channels, h if h == w else (h, w), tuple(size), interpolation)  # type: ignore[arg-type]

    @property
    def shape(self) -> tuple[int, int, int]:
        """The (C, H, W) the network receives."""
        return (self.channels, *self.crop)

    def describe(self) -> str:
        scale = (f"shorter side {self.resize}" if isinstance(self.resize, int)
                 else f"{self.resize[0]}×{self.resize[1]}")
        return (f"{_CHANNEL_NAMES[self.channels]}, {self.interpolation} resize to {scale}, "
                f"centre crop {self.crop[0]}×{self.crop[1]}")


def to_model_input(images: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """NCHW images of any size → ``geometry.shape``, differentiably (attacks run through it).

    The channel rule is :func:`to_shape`'s; the resize and crop are torchvision's tensor ops
    (antialiased), which are exactly what timm's evaluation transform does to a tensor image.
    No clamp: bicubic overshoot is kept, as the libraries keep it on tensors.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import center_crop, resize

    if images.ndim != 4:
        raise ValueError(f"expected NCHW images, got a tensor of shape {tuple(images.shape)}")
    _check_shape(images.shape[1:], "source shape")
    out = _to_channels(images, geometry.channels)
    target = geometry.resize  # torchvision returns the tensor itself when the size is unchanged
    out = resize(out, [target] if isinstance(target, int) else list(target),
                 interpolation=InterpolationMode(geometry.interpolation), antialias=True)
    if tuple(out.shape[-2:]) != geometry.crop:
        out = center_crop(out, list(geometry.crop))
    return out


def describe_conversion(src_shape: Sequence[int], dst_shape: Sequence[int]) -> str:
    """One line for logs, e.g. ``"RGB→grey, 32×32→28×28"``; ``"none"`` when shapes agree."""
    sc, sh, sw = _check_shape(src_shape, "source shape")
    dc, dh, dw = _check_shape(dst_shape, "target shape")
    parts = []
    if sc != dc:
        parts.append(f"{_CHANNEL_NAMES[sc]}→{_CHANNEL_NAMES[dc]}")
    if (sh, sw) != (dh, dw):
        parts.append(f"{sh}×{sw}→{dh}×{dw}")
    return ", ".join(parts) if parts else "none"
