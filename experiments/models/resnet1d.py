"""One 1-D residual block, basic or bottleneck, of inner width w (``model=resnet1d``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from experiments.ensemble import Replica
from experiments.layers import BatchNorm1d, Conv1d, Linear
from experiments.models.common import BLOCKS_1D, CLASSES, MNIST1D_LENGTH, average_pool, conv_length


class ResNet1d(Replica):
    """A one-block 1-D ResNet classifier for MNIST-1D, the 1-D counterpart of ``DigitsResNet``:

    - ``stem``: Conv1d 1 -> C, kernel 5, stride 4, padding 2 (40 -> 10 positions), BN, ReLU;
    - ``block="basic"``: ``reduce`` k3 C -> w, BN, ReLU; ``expand`` k3 w -> C, BN;
    - ``block="bottleneck"``: ``reduce`` k1 C -> w, BN, ReLU; ``middle`` k3 w -> w, BN, ReLU; ``expand`` k1 w -> C, BN;
    - identity shortcut, ReLU after the sum; average pooling to ``pooled`` positions (global average pooling would
      discard where along the signal a feature sits, which MNIST-1D's classes depend on), ``fc`` Linear C*pooled -> 10.

    Bias-free convolutions (the BN after each supplies it). The narrow layers are ``reduce`` and ``middle``. The
    stride-4 stem keeps the block's activations small (10 positions): on 2 CPU cores a step of 20 replicates is
    bound by memory traffic, which grows with C x positions.
    """

    def __init__(self, width: int, channels: int = 32, block: str = "basic", pooled: int = 2,
                 length: int = MNIST1D_LENGTH, classes: int = CLASSES) -> None:
        super().__init__()
        if block not in BLOCKS_1D:
            raise ValueError(f"block must be one of {BLOCKS_1D}, got {block!r}")
        c, w = channels, width
        self.block = block
        self.pooled = pooled
        self.stem, self.stem_bn = Conv1d(1, c, 5, stride=4, padding=2, bias=False), BatchNorm1d(c)
        self.positions = conv_length(length, 5, 4, 2)
        if self.positions % pooled:
            raise ValueError(f"pooled={pooled} must divide the {self.positions} positions after the stem")
        k_outer = 3 if block == "basic" else 1
        self.reduce, self.reduce_bn = Conv1d(c, w, k_outer, padding=k_outer // 2, bias=False), BatchNorm1d(w)
        if block == "bottleneck":
            self.middle, self.middle_bn = Conv1d(w, w, 3, padding=1, bias=False), BatchNorm1d(w)
            self.weight_layers = ("stem", "reduce", "middle", "expand", "fc")
            self.activation_layers = self.functional_layers = ("reduce", "middle")
            self.consumers = {"reduce": "middle", "middle": "expand"}
        else:
            self.weight_layers = ("stem", "reduce", "expand", "fc")
            self.activation_layers = self.functional_layers = ("reduce",)
            self.consumers = {"reduce": "expand"}
        self.expand, self.expand_bn = Conv1d(w, c, k_outer, padding=k_outer // 2, bias=False), BatchNorm1d(c)
        self.fc = Linear(c * pooled, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem_bn(self.stem(x.unsqueeze(-2))))
        z = self.record("reduce", F.relu(self.reduce_bn(self.reduce(h))))
        if self.block == "bottleneck":
            z = self.record("middle", F.relu(self.middle_bn(self.middle(z))))
        h = F.relu(self.expand_bn(self.expand(z)) + self.carry(h))
        return self.fc(average_pool(h, self.pooled).flatten(-2))
