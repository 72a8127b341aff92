"""Device names: checked when a suite or recipe is validated, resolved when a run starts.

``device: quantum`` must stop ``oodbench validate`` with the file and line, and ``cuda:99`` (or
``cuda`` on a machine without CUDA) must stop ``oodbench run`` with one sentence, not a
traceback from deep inside torch after the results store has been opened.
"""

from __future__ import annotations

import re

import torch

from oodbench.core.errors import OodbenchError

DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"
_DEVICE_RE = re.compile(r"(auto|cpu|mps|cuda(:[0-9]{1,4})?)")


class DeviceError(OodbenchError, ValueError):
    """A device that is not a device name, or not present on this machine."""


def check_device_name(name: str) -> str:
    """``name`` if it is one of :data:`DEVICE_NAMES`, else ``ValueError`` (for field validators)."""
    if not isinstance(name, str) or not _DEVICE_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a device; use {DEVICE_NAMES}")
    return name


def resolve_device(device: str) -> torch.device:
    """The torch device for ``device``; 'auto' picks CUDA when present, so one suite file serves
    laptops and GPU servers. Raises :class:`DeviceError` for a name that is not a device or a
    device this machine does not have."""
    try:
        check_device_name(device)
    except ValueError as err:
        raise DeviceError(f"device {err}") from None
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r}: CUDA is not available on this machine "
                              "(use `device: auto` or `cpu`, or --device cpu)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {device!r}: this machine has {count} CUDA device(s), "
                              f"cuda:0 … cuda:{count - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device!r}: MPS is not available on this machine")
    return dev


__all__ = ["DEVICE_NAMES", "DeviceError", "check_device_name", "resolve_device"]
