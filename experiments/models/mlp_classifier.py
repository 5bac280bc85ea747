"""The MNIST-1D MLP classifier 40→h→w→h→10 (``model=mlp_classifier``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from experiments.ensemble import Replica
from experiments.layers import Linear
from experiments.models.common import CLASSES, MNIST1D_LENGTH


class MLPClassifier(Replica):
    """in -> h -> w -> h -> classes with ReLU after each hidden layer; ``bottleneck`` (h -> w) is the studied layer.

    Layers: ``hidden`` (in -> h), ``bottleneck`` (h -> w), ``expand`` (w -> h), ``head`` (h -> classes).
    """

    weight_layers = ("hidden", "bottleneck", "expand", "head")
    activation_layers = ("hidden", "bottleneck", "expand")
    functional_layers = ("bottleneck",)
    consumers = {"bottleneck": "expand"}  # noqa: RUF012  (expand alone reads the bottleneck: Injection)

    def __init__(self, width: int, hidden: int = 100, inputs: int = MNIST1D_LENGTH, classes: int = CLASSES) -> None:
        super().__init__()
        self.hidden = Linear(inputs, hidden)
        self.bottleneck = Linear(hidden, width)
        self.expand = Linear(width, hidden)
        self.head = Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.record("hidden", F.relu(self.hidden(x)))
        h = self.record("bottleneck", F.relu(self.bottleneck(h)))
        h = self.record("expand", F.relu(self.expand(h)))
        return self.head(h)
