"""The conv identity net Conv2d 1→h→w→1 on 8×8 digits (``model=conv``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from experiments.ensemble import Replica

ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {"none": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh}


class ConvIdentity(Replica):
    """The identity experiment with convolutions: images in, the same images out.

    Conv2d 1 -> hidden -> width -> 1, 3x3 kernels, padding 1, the activation after the first two; the layers
    are named as in the MLP (``hidden``, ``bottleneck`` = the hidden -> width one, ``head``), so metrics,
    figures and the summary treat both families alike.
    """

    weight_layers = ("hidden", "bottleneck", "head")
    activation_layers = ("hidden", "bottleneck")
    functional_layers = ("bottleneck",)
    consumers = {"bottleneck": "head"}  # noqa: RUF012

    def __init__(self, width: int, hidden: int = 32, activation: str = "none") -> None:
        super().__init__()
        self.hidden = nn.Conv2d(1, hidden, 3, padding=1)
        self.bottleneck = nn.Conv2d(hidden, width, 3, padding=1)
        self.head = nn.Conv2d(width, 1, 3, padding=1)
        self.act = ACTIVATION_MODULES[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.record("hidden", self.act(self.hidden(x)))
        h = self.record("bottleneck", self.act(self.bottleneck(h)))
        return self.head(h)
