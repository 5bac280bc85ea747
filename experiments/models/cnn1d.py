"""The reference 1-D CNN with its middle convolution w channels wide (``model=cnn1d``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from experiments.ensemble import Replica
from experiments.layers import Conv1d, Linear
from experiments.models.common import CLASSES, MNIST1D_LENGTH, conv_length


class CNN1d(Replica):
    """The MNIST-1D reference CNN (``ConvBase``) with its middle convolution's output set to ``width`` channels.

    ``hidden`` Conv1d 1 -> C (kernel 5, stride 2, padding 1: 40 -> 19 positions), ``bottleneck`` C -> w (3, 2, 1:
    19 -> 10), ``expand`` w -> C (3, 2, 1: 10 -> 5), ReLU after each, ``head`` Linear C*5 -> 10 on the flattened
    features. At ``width = channels = 25`` it is ``ConvBase`` itself (5,210 parameters).
    """

    weight_layers = ("hidden", "bottleneck", "expand", "head")
    activation_layers = ("hidden", "bottleneck", "expand")
    functional_layers = ("bottleneck",)
    consumers = {"bottleneck": "expand"}  # noqa: RUF012  (expand alone reads the bottleneck: Injection)

    def __init__(self, width: int, channels: int = 25, length: int = MNIST1D_LENGTH, classes: int = CLASSES) -> None:
        super().__init__()
        self.hidden = Conv1d(1, channels, 5, stride=2, padding=1)
        self.bottleneck = Conv1d(channels, width, 3, stride=2, padding=1)
        self.expand = Conv1d(width, channels, 3, stride=2, padding=1)
        out = conv_length(conv_length(conv_length(length, 5, 2, 1), 3, 2, 1), 3, 2, 1)
        self.head = Linear(channels * out, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.record("hidden", F.relu(self.hidden(x.unsqueeze(-2))))
        h = self.record("bottleneck", F.relu(self.bottleneck(h)))
        h = self.record("expand", F.relu(self.expand(h)))
        return self.head(h.flatten(-2))
