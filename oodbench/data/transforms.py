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

from typing import Protocol, Sequence, overload

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
    out = images if images.is_floating_point() else images.float()
    if src[0] != c:
        out = out.repeat(1, 3, 1, 1) if c == 3 else out.mean(dim=1, keepdim=True)
    if (src[1], src[2]) != (h, w):
        out = F.interpolate(out, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0)  # ``out`` is a new tensor here: src != dst forced a copy


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
