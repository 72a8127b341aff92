"""ResNet-18 / ResNet-50 for 32×32 inputs (CIFAR, SVHN), as the robustness literature uses them.

The stem is a single 3×3 convolution with stride 1 and no max pooling (the ImageNet 7×7/stride-2
stem would shrink a 32×32 image to 8×8 before the first stage). State-dict names follow the
CIFAR checkpoints published across the field (kuangliu/pytorch-cifar layout, reused by RATIO,
RobustBench's ``ResNet18`` entries and many adversarial-training repositories), so those files
load without renaming::

    conv1.weight, bn1.{weight,bias,running_mean,running_var,num_batches_tracked}
    layer{1-4}.{i}.conv{1,2[,3]}.weight, layer{1-4}.{i}.bn{1,2[,3]}.*
    layer{2-4}.0.shortcut.0.weight (1×1 conv), layer{2-4}.0.shortcut.1.* (its batch norm)
    linear.weight, linear.bias

Blocks whose input and output shapes agree have an identity shortcut with no parameters.
"""

from __future__ import annotations

from typing import Any, Sequence, Type, Union

import torch
from torch import nn
from torch.nn import functional as F

from oodbench.models.architectures._meta import ArchInfo
from oodbench.core.registry import architectures


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """The shortcut of a block that changes shape: an empty Sequential when none is needed."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (carries the stride) → 1×1 expand by 4, with a residual (ResNet-50+)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.shortcut = _projection(in_planes, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


Block = Union[Type[BasicBlock], Type[Bottleneck]]


class CifarResNet(nn.Module):
    """ResNet with a 3×3/stride-1 stem, four stages (64, 128, 256, 512 planes), global average
    pooling and a linear classifier named ``linear``."""

    def __init__(self, block: Block, num_blocks: Sequence[int], num_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), num_blocks), start=1):
            stride = 1 if stage == 1 else 2
            layers = []
            for i in range(blocks):
                layers.append(block(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes * block.expansion
            self.add_module(f"layer{stage}", nn.Sequential(*layers))
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # = avg_pool2d(out, 4) on 32×32 inputs
        return self.linear(out)


def _create_resnet(block: Block, num_blocks: Sequence[int], num_classes: int,
                   **kwargs: Any) -> CifarResNet:
    return CifarResNet(block, num_blocks, num_classes=num_classes, **kwargs)


_PAPER = "He, Zhang, Ren, Sun: Deep Residual Learning for Image Recognition (CVPR 2016)"
_SOURCE = "oodbench; CIFAR variant and key names of github.com/kuangliu/pytorch-cifar checkpoints"
_INFO = {
    "resnet18": ArchInfo(input_shape=(3, 32, 32), paper=_PAPER, source=_SOURCE),
    "resnet50": ArchInfo(input_shape=(3, 32, 32), paper=_PAPER, source=_SOURCE),
}


@architectures.register("resnet18", **_INFO["resnet18"].meta())
def resnet18(num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """ResNet-18 for 32×32 images (3×3 stem, no max-pool), kuangliu/pytorch-cifar key names."""
    return _create_resnet(BasicBlock, (2, 2, 2, 2), num_classes, **kwargs)


@architectures.register("resnet50", **_INFO["resnet50"].meta())
def resnet50(num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """ResNet-50 for 32×32 images (3×3 stem, no max-pool), kuangliu/pytorch-cifar key names."""
    return _create_resnet(Bottleneck, (3, 4, 6, 3), num_classes, **kwargs)
