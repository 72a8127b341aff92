"""torchvision's ImageNet ResNet-50, with torchvision's state-dict key names.

A checkpoint saved from ``torchvision.models.resnet50`` (``conv1``, ``bn1``, ``layer1.0.conv1``,
…, ``fc``) — the published IMAGENET1K weights, or any fine-tune of them — evaluates with
``arch: resnet50-imagenet`` and no code. The 224×224 convention of ImageNet evaluation (resize the
shorter side to 256, centre-crop 224) is the ``image-folder`` data set's ``resize``/``crop``
options; the ImageNet mean/std go in the model entry's ``normalize``, as for every model.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from oodbench.models.architectures._meta import ArchInfo
from oodbench.core.registry import architectures


def _create_imagenet_resnet50(num_classes: int, **kwargs: Any) -> nn.Module:
    from torchvision.models import resnet50

    return resnet50(weights=None, num_classes=num_classes, **kwargs)


_INFO = {
    "resnet50-imagenet": ArchInfo(
        input_shape=(3, 224, 224),
        paper="He, Zhang, Ren, Sun: Deep Residual Learning for Image Recognition (CVPR 2016)",
        source="torchvision.models.resnet50 (its module and key names)",
        licence="BSD-3-Clause (torchvision)",
        num_classes=1000,
    ),
}


@architectures.register("resnet50-imagenet", **_INFO["resnet50-imagenet"].meta())
def resnet50_imagenet(num_classes: int = 1000, **kwargs: Any) -> nn.Module:
    """ResNet-50 for 224×224 ImageNet images, torchvision's module and state-dict key names."""
    return _create_imagenet_resnet50(num_classes, **kwargs)
