"""LeNet as used on MNIST by Hein et al. (2019) and the papers building on it.

Two 5×5 convolutions (32 and 64 channels, 'same' padding), each followed by ReLU and 2×2 max
pooling, then a 1024-unit hidden layer and the linear classifier. No batch norm, no dropout: the
network is a plain ReLU network, piecewise affine as the papers' theory assumes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from oodbench.models.architectures._meta import ArchInfo
from oodbench.core.registry import architectures


class LeNet(nn.Module):
    """conv5×5-32 → ReLU → pool → conv5×5-64 → ReLU → pool → fc1024 → ReLU → fc.

    State-dict keys: ``conv1.*``, ``conv2.*``, ``fc1.*``, ``fc2.*`` (weights and biases).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 hidden: int = 1024):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"LeNet needs an image size divisible by 4, got {image_size}")
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5, padding=2)
        self.fc1 = nn.Linear(64 * (image_size // 4) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def _create_lenet(num_classes: int, **kwargs: Any) -> LeNet:
    return LeNet(num_classes=num_classes, **kwargs)


_INFO = {
    "lenet": ArchInfo(
        input_shape=(1, 28, 28),
        paper="Hein, Andriushchenko, Bitterwolf: Why ReLU networks yield high-confidence "
              "predictions far away from the training data (CVPR 2019)",
        source="oodbench; layout of the MNIST LeNet used in that paper",
    ),
}


@architectures.register("lenet", **_INFO["lenet"].meta())
def lenet(num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """LeNet for 28×28 grey-scale images (MNIST-like): 2 conv + 2 fc layers, ReLU, no BN."""
    return _create_lenet(num_classes, **kwargs)
