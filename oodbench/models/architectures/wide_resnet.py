"""Wide ResNet (pre-activation) for 32×32 inputs, with RobustBench's state-dict names.

Depth ``d`` gives ``(d - 4) / 6`` blocks per group; the three groups have ``16k``, ``32k`` and
``64k`` channels for widen factor ``k``. Key names are those of RobustBench's ``WideResNet``
(itself from the TRADES code), so RobustBench-format WRN checkpoints load unchanged::

    conv1.weight
    block{1,2,3}.layer.{i}.bn1.*, .conv1.weight, .bn2.*, .conv2.weight
    block{1,2,3}.layer.0.convShortcut.weight   (1×1 conv where the channel count changes)
    sub_block1.layer.…                          (only with sub_block1=True; unused in forward)
    bn1.*, fc.weight, fc.bias
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from oodbench.models.architectures._meta import ArchInfo
from oodbench.core.registry import architectures


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3×3, BN-ReLU-(dropout)-conv3×3, plus the input.

    When the block changes the channel count, the pre-activated input goes through the 1×1
    ``convShortcut``; otherwise the raw input is added unchanged.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = (  # noqa: N815 (the published key name)
            None if self.equal_in_out
            else nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(pre)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        shortcut = x if self.convShortcut is None else self.convShortcut(pre)
        return out + shortcut


class BlockGroup(nn.Module):
    """``n`` blocks in a Sequential named ``layer``; the first carries the stride."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, drop_rate: float):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBasicBlock(in_planes if i == 0 else out_planes, out_planes,
                           stride if i == 0 else 1, drop_rate)
            for i in range(n)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-k: 3×3 stem, three block groups (strides 1, 2, 2), BN-ReLU, global average
    pooling, linear classifier ``fc``."""

    def __init__(self, depth: int = 28, widen_factor: int = 10, num_classes: int = 10,
                 drop_rate: float = 0.0, sub_block1: bool = False, bias_last: bool = True,
                 in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4 (10, 16, 22, 28, 34, …), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = BlockGroup(n, widths[0], widths[1], 1, drop_rate)
        if sub_block1:  # present in some published checkpoints (TRADES lineage); never called
            self.sub_block1 = BlockGroup(n, widths[0], widths[1], 1, drop_rate)
        self.block2 = BlockGroup(n, widths[1], widths[2], 2, drop_rate)
        self.block3 = BlockGroup(n, widths[2], widths[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes, bias=bias_last)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # = avg_pool2d(out, 8) on 32×32 inputs
        return self.fc(out)


def _create_wide_resnet(num_classes: int, depth: int, widen_factor: int,
                        **kwargs: Any) -> WideResNet:
    return WideResNet(depth=depth, widen_factor=widen_factor, num_classes=num_classes, **kwargs)


_INFO = {
    "wrn-28-10": ArchInfo(
        input_shape=(3, 32, 32),
        paper="Zagoruyko, Komodakis: Wide Residual Networks (BMVC 2016)",
        source="oodbench; key names of RobustBench's WideResNet "
               "(robustbench/model_zoo/architectures/wide_resnet.py)",
    ),
}


@architectures.register("wrn-28-10", **_INFO["wrn-28-10"].meta())
def wrn_28_10(num_classes: int = 10, depth: int = 28, widen_factor: int = 10,
              **kwargs: Any) -> nn.Module:
    """WideResNet (default 28-10) for 32×32 images with RobustBench's key names.

    Options: ``depth``, ``widen_factor``, ``drop_rate``, ``sub_block1``, ``bias_last``,
    ``in_channels``.
    """
    return _create_wide_resnet(num_classes, depth, widen_factor, **kwargs)
