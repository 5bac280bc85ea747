"""Model families: each is a config file (``conf/model/<name>.yaml``) plus an entry here.

An entry says what the family's replicates are trained to do (its task), what kind of input it takes, and
how to build R replicates from a config. Training, metrics, nulls and results are shared code that only
uses the replicated model's interface (``experiments.ensemble``), so adding a family touches neither the
training loop nor the analysis. To add one: write a :class:`~experiments.ensemble.Replica` subclass (a
plain module with PyTorch's default initialisation), a builder, an entry in :data:`FAMILIES`, and
``conf/model/<name>.yaml`` (new options go in ``ModelConfig`` in ``experiments/config.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from experiments.ensemble import Ensemble, Replica
from experiments.models import build_mlp
from experiments.tasks import TASKS

ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {"none": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh}


class ConvIdentity(Replica):
    """The identity experiment with convolutions: images in, the same images out.

    Conv2d 1 -> hidden -> width -> 1, 3x3 kernels, padding 1, the activation after the first two; the layers
    are named as in the MLP (``hidden``, ``bottleneck`` = the hidden -> width one, ``head``), so metrics,
    figures and the summary treat both families alike.
    """

    weight_layers = ("hidden", "bottleneck", "head")
    activation_layers = ("hidden", "bottleneck")

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


@dataclass(frozen=True)
class Family:
    """``build(cfg, seeds)`` returns the replicated model; ``inputs`` is ``vector`` or ``image``; ``task`` names
    an ``experiments.tasks`` entry."""

    name: str
    task: str
    inputs: str
    build: Callable[[object, Sequence[int]], nn.Module]


def _mlp(cfg, seeds: Sequence[int]) -> nn.Module:
    return build_mlp(cfg.width, list(seeds), cfg.model.protocol, cfg.model.activation, cfg.model.hidden)


def _conv(cfg, seeds: Sequence[int]) -> nn.Module:
    width, hidden, activation = int(cfg.width), int(cfg.model.hidden), str(cfg.model.activation)
    return Ensemble(lambda: ConvIdentity(width, hidden, activation), seeds, cfg.ensemble)


FAMILIES: dict[str, Family] = {
    "mlp": Family("mlp", "identity", "vector", _mlp),
    "conv": Family("conv", "identity", "image", _conv),
}
# What each data set feeds a model (experiments.data.load).
DATA_INPUTS = {"integers": "vector", "digits": "image"}


def family(name: str) -> Family:
    return FAMILIES[name]


def task_of(name: str):
    return TASKS[FAMILIES[name].task]
