"""What the vector and 1-D families share: MNIST-1D's shape and the 1-D convolution helpers.

Model families on vectors and 1-D signals (MNIST-1D, flattened digits): classifiers with a real bottleneck,
autoencoders narrower than their data, 1-D residual blocks, and the MNIST-1D reference baselines.

Every class is a :class:`~experiments.ensemble.Replica` built from :mod:`experiments.layers`, so one module
definition is both the plain solo model and, through ``Ensemble(mode="stack")``, R replicates computed with
batched matmuls. ``forward`` only touches trailing axes (see :mod:`experiments.layers`). The reference models
follow greydanus/mnist1d (``notebooks/models.py``; Greydanus & Kobak, "Scaling Down Deep Learning with
MNIST-1D", ICML 2024): ``LinearBase``, ``MLPBase`` (hidden 100, a residual middle layer) and ``ConvBase``
(25 channels, kernels 5, 3, 3 with stride 2 and padding 1, a linear classifier on the flattened 25 x 5 features)."""

from __future__ import annotations

import torch

MNIST1D_LENGTH = 40


CLASSES = 10


BLOCKS_1D = ("basic", "bottleneck")


def conv_length(length: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a 1-D convolution (no dilation)."""
    return (length + 2 * padding - kernel) // stride + 1


def average_pool(h: torch.Tensor, groups: int) -> torch.Tensor:
    """Mean of ``h`` over ``groups`` runs of L / groups consecutive positions: (N, C, L) -> (N, C, groups), or
    stacked (R, N, C, L) -> (R, N, C, groups).

    One replicate's (N, C, L) is pooled by ``mean(-1)`` on each run, as solo runs always have been (bit for bit).
    Stacked, each run's sum is a matrix-vector product with ones (exact products, then a sum of L / groups terms in
    some order), divided by the run's length: the same two roundings as ``mean`` (a sum of that many terms, one
    division), in another order. It runs on the (R, C, N, L) view, which for a stacked layer's output is contiguous
    (``experiments.layers``), so the runs are the rows of one matrix and the product one pass over it, forward and
    backward; ``mean(-1)`` reduced each run of 5 on its own (~2 ms of a 14 ms ResNet1d step of 20 replicates,
    ``benchmarks/step_speed.py``).
    """
    width = h.shape[-1] // groups
    if h.dim() == 3:
        return h.unflatten(-1, (groups, width)).mean(-1)
    signals = h.transpose(1, 2)
    sums = (signals.unflatten(-1, (groups, width)) @ signals.new_ones(width, 1)).squeeze(-1)
    return (sums / width).transpose(1, 2)
