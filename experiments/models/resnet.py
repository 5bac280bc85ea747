"""One 2-D residual block, basic or bottleneck, classifying 8×8 digits (``model=resnet``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from experiments.ensemble import Replica

BLOCKS = ("basic", "bottleneck")


def _conv_bn(c_in: int, c_out: int, k: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A bias-free k x k convolution ("same" padding) and the BatchNorm after it, as in ResNets."""
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out)


class DigitsResNet(Replica):
    """A one-block ResNet classifier for 8x8 digits (He et al., "Deep Residual Learning for Image Recognition",
    CVPR 2016, figure 5): stem, one residual block of inner width ``width``, global average pooling, a linear head.

    - stem: 3x3 conv 1 -> C, BN, ReLU;
    - ``block="basic"``: ``reduce`` 3x3 C -> w, BN, ReLU; ``expand`` 3x3 w -> C, BN;
    - ``block="bottleneck"``: ``reduce`` 1x1 C -> w, BN, ReLU; ``middle`` 3x3 w -> w, BN, ReLU; ``expand``
      1x1 w -> C, BN;
    - identity shortcut, ReLU after the sum, global average pooling, ``fc`` Linear C -> 10.

    The block's narrow layers are the ones whose outputs have w channels: ``reduce`` (both blocks) and
    ``middle`` (the bottleneck's 3x3); their outputs, after BN and ReLU, get the activation metrics. Every
    conv and the head get the weight metrics. Convolutions have no bias (the BN after each supplies it).
    """

    activation_layers = ("reduce", "middle")
    functional_layers = ("reduce", "middle")
    consumers = {"reduce": "expand"}  # noqa: RUF012  (the bottleneck block: set per instance)

    def __init__(self, width: int, channels: int = 64, block: str = "basic", classes: int = 10) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
        c, w = channels, width
        self.block = block
        self.stem, self.stem_bn = _conv_bn(1, c, 3)
        if block == "basic":
            self.reduce, self.reduce_bn = _conv_bn(c, w, 3)
            self.expand, self.expand_bn = _conv_bn(w, c, 3)
            self.weight_layers = ("stem", "reduce", "expand", "fc")
            self.activation_layers = self.functional_layers = ("reduce",)
        else:
            self.reduce, self.reduce_bn = _conv_bn(c, w, 1)
            self.middle, self.middle_bn = _conv_bn(w, w, 3)
            self.expand, self.expand_bn = _conv_bn(w, c, 1)
            self.weight_layers = ("stem", "reduce", "middle", "expand", "fc")
            self.consumers = {"reduce": "middle", "middle": "expand"}
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem_bn(self.stem(x)))
        z = self.record("reduce", F.relu(self.reduce_bn(self.reduce(h))))
        if self.block == "bottleneck":
            z = self.record("middle", F.relu(self.middle_bn(self.middle(z))))
        h = F.relu(self.expand_bn(self.expand(z)) + self.carry(h))
        return self.fc(h.mean(dim=(2, 3)))
