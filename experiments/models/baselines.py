"""MNIST-1D's reference logistic regression and MLP (``model=logistic``, ``model=mlp_reference``; greydanus/mnist1d)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from experiments.ensemble import Replica
from experiments.layers import Linear
from experiments.models.common import CLASSES, MNIST1D_LENGTH


class Logistic(Replica):
    """Multinomial logistic regression (``LinearBase``): one Linear in -> classes, ``head``."""

    weight_layers = ("head",)
    activation_layers = ()

    def __init__(self, inputs: int = MNIST1D_LENGTH, classes: int = CLASSES) -> None:
        super().__init__()
        self.head = Linear(inputs, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class ReferenceMLP(Replica):
    """The MNIST-1D reference MLP (``MLPBase``): ``hidden`` in -> h, ReLU; ``middle`` h -> h, ReLU, added to its
    input (a residual connection); ``head`` h -> classes. h = 100: 15,210 parameters."""

    weight_layers = ("hidden", "middle", "head")
    activation_layers = ("hidden", "middle")
    functional_layers = ("middle",)

    def __init__(self, hidden: int = 100, inputs: int = MNIST1D_LENGTH, classes: int = CLASSES) -> None:
        super().__init__()
        self.hidden = Linear(inputs, hidden)
        self.middle = Linear(hidden, hidden)
        self.head = Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.record("hidden", F.relu(self.hidden(x)))
        m = self.record("middle", F.relu(self.middle(h)))
        return self.head(self.carry(h) + m)
