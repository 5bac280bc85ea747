"""The width-matched random null: metrics of freshly initialised, untrained layers and models of the same shape.

The closest pair among w(w-1)/2 random rows shrinks as w grows with no learning at all; the null
shows how much of a width effect that alone explains. Weight metrics get draws of each layer's shape
(PyTorch's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in))); activation metrics need whole models,
so they get fresh, untrained initialisations of the whole model, built by the family's own builder.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from experiments.data import Data
from experiments.functional import Protocol, functional_metrics
from experiments.metrics import activation_metrics, weight_metrics
from experiments.specs import LayerSpec, linear_init_bound
from experiments.train import FunctionalData, RowBuffer

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


def null_model_seeds(null_seed: int, samples: int) -> list[int]:
    """Seeds of the untrained null models: a hash of (null_seed, index), far from the trained seeds 10000+."""
    return [zlib.crc32(f"{null_seed}:model:{i}".encode()) for i in range(samples)]


def activation_null_rows(build: Callable[[Sequence[int]], torch.nn.Module], data: Data, samples: int,
                         null_seed: int, chunk: int = 50, functional=None, task=None) -> tuple[RowBuffer, float]:
    """Activation metrics of ``samples`` untrained models on the evaluation batch ``data.eval_x`` (epoch 0 rows), and
    the functional metrics (``experiments.functional``: fitted on the training examples, scored on the held-out ones,
    as for the trained models) of the first ``functional.null_samples`` of them. Returns the rows and the seconds the
    functional metrics took (with the rebuilds they need), for the run's metadata.

    ``build(seeds)`` is the family's replicated-model builder; models are built and measured ``chunk`` at a
    time, in eval mode (BatchNorm then uses its initial running statistics: an untrained model as it would
    be evaluated). ``seed`` holds the sample index.
    """
    rows = RowBuffer()
    functional_seconds = 0.0
    seeds = null_model_seeds(null_seed, samples)
    x = data.eval_x
    n_functional = min(samples, int(functional.null_samples)) if functional is not None else 0
    if n_functional:
        fdata = FunctionalData.make(data, task, functional)
        protocol = Protocol.from_config(functional)
    for start in range(0, samples, chunk):
        model = build(seeds[start:start + chunk]).to(x.device).eval()
        for layer, acts in model.activations(x).items():
            rows.add(0, layer, activation_metrics(acts), np.arange(start, start + acts.shape[0]))
        m = min(chunk, n_functional - start)
        if m > 0 and getattr(model, "functional_layers", ()):
            t0 = time.perf_counter()
            if m < model.replicates:  # only the first models of this chunk: rebuild just those (the same draws)
                model = build(seeds[start:start + m]).to(x.device).eval()
            measured = functional_metrics(model, fdata.fit_x, fdata.score_x, fdata.score_y, task,
                                          tuple(model.functional_layers), protocol, seeds[start:start + m])
            for layer, values in measured.items():
                rows.add(0, layer, values, np.arange(start, start + m))
            functional_seconds += time.perf_counter() - t0
        del model
    return rows, functional_seconds
