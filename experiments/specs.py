"""Layer shapes and PyTorch's default initialisation, shared by the models, the ensemble and the nulls."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def linear_init_bound(fan_in: int) -> float:
    """The bound of ``nn.Linear``'s default (Kaiming-uniform, a=sqrt(5)) weight draw, as torch computes it."""
    gain = nn.init.calculate_gain("leaky_relu", math.sqrt(5))
    return math.sqrt(3.0) * gain / math.sqrt(fan_in)


def default_linear_init(fan_in: int, fan_out: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the weight and bias ``nn.Linear(fan_in, fan_out)`` would draw, from ``generator``."""
    weight = torch.empty(fan_out, fan_in)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    bound = 1 / math.sqrt(fan_in)
    bias = torch.empty(fan_out)
    nn.init.uniform_(bias, -bound, bound, generator=generator)
    return weight, bias


@dataclass(frozen=True)
class LayerSpec:
    name: str
    fan_in: int
    fan_out: int
