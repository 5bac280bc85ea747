"""The MLP autoencoder D→h→w→h→D (``model=autoencoder``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from experiments.ensemble import Replica
from experiments.layers import Linear
from experiments.models.common import MNIST1D_LENGTH


class Autoencoder(Replica):
    """D -> h -> w -> h -> D, trained to reconstruct its input (mean squared error). ``bottleneck`` (h -> w) is the
    code, narrower than the data for w < D.

    ReLU after the two h-wide layers; the code and the output are linear. A ReLU on the code would let a code
    unit die and take its share of the bottleneck with it (at w = 1 on digits every seed's only unit died in a
    probe), which would measure dead units, not redundancy. Inputs of any shape are flattened to their D
    features (digits images: 64).
    """

    weight_layers = ("hidden", "bottleneck", "expand", "head")
    activation_layers = ("hidden", "bottleneck", "expand")
    functional_layers = ("bottleneck",)
    consumers = {"bottleneck": "expand"}  # noqa: RUF012  (expand alone reads the bottleneck: Injection)

    def __init__(self, width: int, hidden: int = 100, inputs: int = MNIST1D_LENGTH, flatten: int = 1) -> None:
        super().__init__()
        self.flatten = flatten  # trailing axes of one example (3 for a (1, 8, 8) image)
        self.hidden = Linear(inputs, hidden)
        self.bottleneck = Linear(hidden, width)
        self.expand = Linear(width, hidden)
        self.head = Linear(hidden, inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten > 1:
            x = x.flatten(-self.flatten)
        h = self.record("hidden", F.relu(self.hidden(x)))
        code = self.record("bottleneck", self.bottleneck(h))
        h = self.record("expand", F.relu(self.expand(code)))
        return self.head(h)
