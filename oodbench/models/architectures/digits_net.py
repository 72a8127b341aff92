"""A small convolutional net for scikit-learn's 8×8 digits: trains to >95 % in seconds on a CPU.

It lets the quickstart suite and the tests run every stage of the pipeline (training, OOD
probes, attacks) end to end without downloads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from oodbench.models.architectures._meta import ArchInfo
from oodbench.core.registry import architectures


class DigitsNet(nn.Module):
    """conv3×3-16 → ReLU → conv3×3-32 → ReLU → pool → fc64 → ReLU → fc.

    State-dict keys: ``conv1.*``, ``conv2.*``, ``fc1.*``, ``fc2.*``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 8,
                 hidden: int = 64):
        super().__init__()
        if image_size % 2:
            raise ValueError(f"DigitsNet needs an even image size, got {image_size}")
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(32 * (image_size // 2) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def _create_digits_net(num_classes: int, **kwargs: Any) -> DigitsNet:
    return DigitsNet(num_classes=num_classes, **kwargs)


_INFO = {
    "digits-net": ArchInfo(
        input_shape=(1, 8, 8),
        paper="none (oodbench test and quickstart model)",
        source="oodbench",
    ),
}


@architectures.register("digits-net", **_INFO["digits-net"].meta())
def digits_net(num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """Small conv net for the 8×8 scikit-learn digits (quickstart and tests)."""
    return _create_digits_net(num_classes, **kwargs)
