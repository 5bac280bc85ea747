"""The width-matched random null: metrics of freshly initialised, untrained layers of the same shape.

The closest pair among w(w-1)/2 random rows shrinks as w grows with no learning at all; the null
shows how much of a width effect that alone explains.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from experiments.metrics import weight_metrics
from experiments.models import LayerSpec, linear_init_bound
from experiments.train import RowBuffer

# Metrics computed chunk by chunk so a 1000-sample null of a wide layer stays within memory.
CHUNK = 250


def null_generator(null_seed: int, spec: LayerSpec) -> torch.Generator:
    """A generator per (seed, layer name, shape), so nulls of different shapes are independent draws."""
    key = f"{null_seed}:{spec.name}:{spec.fan_out}x{spec.fan_in}".encode()
    return torch.Generator().manual_seed(zlib.crc32(key))


def null_weights(spec: LayerSpec, samples: int, generator: torch.Generator) -> torch.Tensor:
    """``samples`` default ``nn.Linear`` weight draws of one layer's shape, (samples, fan_out, fan_in)."""
    bound = linear_init_bound(spec.fan_in)
    return torch.empty(samples, spec.fan_out, spec.fan_in).uniform_(-bound, bound, generator=generator)


def null_rows(layers: list[LayerSpec], samples: int, null_seed: int) -> RowBuffer:
    """Rows for the null (epoch 0); ``seed`` holds the sample index 0..samples-1."""
    rows = RowBuffer()
    for spec in layers:
        W = null_weights(spec, samples, null_generator(null_seed, spec))
        for start in range(0, samples, CHUNK):
            chunk = W[start:start + CHUNK]
            rows.add(0, spec.name, weight_metrics(chunk), np.arange(start, start + len(chunk)))
    return rows
