"""Model families on vectors and 1-D signals (MNIST-1D, flattened digits): classifiers with a real bottleneck,
autoencoders narrower than their data, 1-D residual blocks, and the MNIST-1D reference baselines.

Every class is a :class:`~experiments.ensemble.Replica` built from :mod:`experiments.layers`, so one module
definition is both the plain solo model and, through ``Ensemble(mode="stack")``, R replicates computed with
batched matmuls. ``forward`` only touches trailing axes (see :mod:`experiments.layers`). The reference models
follow greydanus/mnist1d (``notebooks/models.py``; Greydanus & Kobak, "Scaling Down Deep Learning with
MNIST-1D", ICML 2024): ``LinearBase``, ``MLPBase`` (hidden 100, a residual middle layer) and ``ConvBase``
(25 channels, kernels 5, 3, 3 with stride 2 and padding 1, a linear classifier on the flattened 25 x 5 features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from experiments.ensemble import Replica
from experiments.layers import BatchNorm1d, Conv1d, Linear

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


class ResNet1d(Replica):
    """A one-block 1-D ResNet classifier for MNIST-1D, the 1-D counterpart of ``DigitsResNet``:

    - ``stem``: Conv1d 1 -> C, kernel 5, stride 4, padding 2 (40 -> 10 positions), BN, ReLU;
    - ``block="basic"``: ``reduce`` k3 C -> w, BN, ReLU; ``expand`` k3 w -> C, BN;
    - ``block="bottleneck"``: ``reduce`` k1 C -> w, BN, ReLU; ``middle`` k3 w -> w, BN, ReLU; ``expand`` k1 w -> C, BN;
    - identity shortcut, ReLU after the sum; average pooling to ``pooled`` positions (global average pooling would
      discard where along the signal a feature sits, which MNIST-1D's classes depend on), ``fc`` Linear C*pooled -> 10.

    Bias-free convolutions (the BN after each supplies it). The narrow layers are ``reduce`` and ``middle``. The
    stride-4 stem keeps the block's activations small (10 positions): on 2 CPU cores a step of 20 replicates is
    bound by memory traffic, which grows with C x positions.
    """

    def __init__(self, width: int, channels: int = 32, block: str = "basic", pooled: int = 2,
                 length: int = MNIST1D_LENGTH, classes: int = CLASSES) -> None:
        super().__init__()
        if block not in BLOCKS_1D:
            raise ValueError(f"block must be one of {BLOCKS_1D}, got {block!r}")
        c, w = channels, width
        self.block = block
        self.pooled = pooled
        self.stem, self.stem_bn = Conv1d(1, c, 5, stride=4, padding=2, bias=False), BatchNorm1d(c)
        self.positions = conv_length(length, 5, 4, 2)
        if self.positions % pooled:
            raise ValueError(f"pooled={pooled} must divide the {self.positions} positions after the stem")
        k_outer = 3 if block == "basic" else 1
        self.reduce, self.reduce_bn = Conv1d(c, w, k_outer, padding=k_outer // 2, bias=False), BatchNorm1d(w)
        if block == "bottleneck":
            self.middle, self.middle_bn = Conv1d(w, w, 3, padding=1, bias=False), BatchNorm1d(w)
            self.weight_layers = ("stem", "reduce", "middle", "expand", "fc")
            self.activation_layers = self.functional_layers = ("reduce", "middle")
            self.consumers = {"reduce": "middle", "middle": "expand"}
        else:
            self.weight_layers = ("stem", "reduce", "expand", "fc")
            self.activation_layers = self.functional_layers = ("reduce",)
            self.consumers = {"reduce": "expand"}
        self.expand, self.expand_bn = Conv1d(w, c, k_outer, padding=k_outer // 2, bias=False), BatchNorm1d(c)
        self.fc = Linear(c * pooled, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem_bn(self.stem(x.unsqueeze(-2))))
        z = self.record("reduce", F.relu(self.reduce_bn(self.reduce(h))))
        if self.block == "bottleneck":
            z = self.record("middle", F.relu(self.middle_bn(self.middle(z))))
        h = F.relu(self.expand_bn(self.expand(z)) + self.carry(h))
        return self.fc(average_pool(h, self.pooled).flatten(-2))


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
