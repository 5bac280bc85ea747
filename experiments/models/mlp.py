"""The source's MLP 1→h→w→1 (``model=mlp``): R independent networks stored as stacked tensors and run with
batched matmuls.

Replicate r is initialised from its own ``torch.Generator`` seeded with ``seed + r``, replaying exactly
the draws a solo run with that seed makes, so initial weights match a solo run bit for bit."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from experiments.specs import LayerSpec, default_linear_init

ACTIVATIONS = {"none": None, "relu": torch.relu, "tanh": torch.tanh}


def mlp_layers(width: int, hidden: int = 32) -> list[LayerSpec]:
    return [LayerSpec("hidden", 1, hidden), LayerSpec("bottleneck", hidden, width), LayerSpec("head", width, 1)]


def mlp_init(width: int, seed: int, protocol: str, hidden: int = 32) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """One replicate's initial weights under the source's draw order or the clean one.

    ``source``: a full 1→h→h→1 model is built twice (the first discarded), then the middle and output
    layers are replaced by fresh h→w and w→1 layers. ``clean``: 1→h→w→1 built once.
    """
    g = torch.Generator().manual_seed(seed)
    layers = mlp_layers(width, hidden)
    if protocol == "source":
        original = mlp_layers(hidden, hidden)
        for _ in range(2):
            drawn = {spec.name: default_linear_init(spec.fan_in, spec.fan_out, g) for spec in original}
        params = {"hidden": drawn["hidden"]}
        for spec in layers[1:]:
            params[spec.name] = default_linear_init(spec.fan_in, spec.fan_out, g)
        return params
    if protocol == "clean":
        return {spec.name: default_linear_init(spec.fan_in, spec.fan_out, g) for spec in layers}
    raise ValueError(f"unknown protocol {protocol!r}")


class BatchedAffine(torch.autograd.Function):
    """``h @ W^T + b`` for stacked replicates: h (R, N, in), W (R, out, in), b (R, out) -> (R, N, out).

    Same maths as ``torch.baddbmm(b[:, None], h, W^T)``, but the bias is added in place after a plain
    ``bmm`` instead of being broadcast into the output first, and the backward pass is the three
    products it needs. At R = 1000 the activations are ~50 MB and every pass over them counts: this
    saves one per step in each direction.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(h, W)
        out = torch.bmm(h, W.transpose(1, 2))
        out += b.unsqueeze(1)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        h, W = ctx.saved_tensors
        grad_h = None
        if ctx.needs_input_grad[0]:
            # fan-out 1 (the head): the product is an outer product, cheaper element-wise.
            grad_h = grad * W if W.shape[1] == 1 else torch.bmm(grad, W)
        return grad_h, torch.bmm(grad.transpose(1, 2), h), grad.sum(dim=1)


def batched_affine(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One layer for all replicates. ``h`` is (N, in) when shared by all replicates (the input)."""
    if h.dim() == 2:
        if W.shape[2] == 1:  # fan-in 1: an outer product, cheaper element-wise than as a matmul
            return torch.addcmul(b.unsqueeze(1), h, W.transpose(1, 2))
        h = h.expand(W.shape[0], *h.shape)
    return BatchedAffine.apply(h, W, b)


class ReplicatedMLP(nn.Module):
    """R linear-chain MLPs sharing one input batch; weights are (R, fan_out, fan_in).

    With R = 1 the forward pass uses ``F.linear`` exactly as ``nn.Linear`` does, so a solo run is
    bitwise the source's computation; with R > 1 it uses batched matmuls (same maths, float32 rounding
    of a batched kernel). It offers the interface of ``experiments.ensemble.Ensemble``, the mechanism of
    every other family, but keeps this hand-tuned path: for these tiny matrices it is measurably faster
    (``benchmarks/conv_ensemble.py``).
    """

    activation_layers = ("hidden", "bottleneck")
    functional_layers = ("bottleneck",)
    variant_footprint = 2  # elements per variant example in forward_with: the output and one difference

    def __init__(self, layers: list[LayerSpec], inits: list[dict[str, tuple[torch.Tensor, torch.Tensor]]],
                 activation: str = "none") -> None:
        super().__init__()
        self.specs = layers
        self.activation = ACTIVATIONS[activation]
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        for spec in layers:
            self.weights[spec.name] = nn.Parameter(torch.stack([init[spec.name][0] for init in inits]))
            self.biases[spec.name] = nn.Parameter(torch.stack([init[spec.name][1] for init in inits]))

    @property
    def replicates(self) -> int:
        return self.weights[self.specs[0].name].shape[0]

    def parameters_in_source_order(self) -> list[nn.Parameter]:
        return [p for spec in self.specs for p in (self.weights[spec.name], self.biases[spec.name])]

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Weights and biases as ``<layer>.weight`` / ``<layer>.bias``, each (R, ...)."""
        return {f"{spec.name}.{kind}": tensors[spec.name] for spec in self.specs
                for kind, tensors in (("weight", self.weights), ("bias", self.biases))}

    def _forward(self, x: torch.Tensor, record: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        solo = self.replicates == 1
        h = x
        for k, spec in enumerate(self.specs):
            w, b = self.weights[spec.name], self.biases[spec.name]
            h = F.linear(h, w[0], b[0]) if solo else batched_affine(h, w, b)
            if self.activation is not None and k < len(self.specs) - 1:
                h = self.activation(h)
            if record is not None:
                record[spec.name] = h.unsqueeze(0) if solo else h
        return h.unsqueeze(0) if solo else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (N, in), shared by all replicates. Returns (R, N, out)."""
        return self._forward(x)

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs of ``hidden`` and ``bottleneck`` (after the activation function) on ``x``: (R, N, units)."""
        record: dict[str, torch.Tensor] = {}
        self._forward(x, record)
        return {name: record[name] for name in self.activation_layers}

    recorded = activations  # the layers' own layout is already (R, N, units)

    @torch.no_grad()
    def forward_with(self, x: torch.Tensor, layer: str, values: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        """The outputs (R, K·N, 1) with ``layer``'s output unit ``units[k]`` set to ``values[:, k]`` (R, K, N) in
        variant k (``experiments.ensemble.Substitution``). Only the head follows a studied layer here, and it is
        affine: variant k's output is the plain output plus (value − activation) times the head's weight of that
        unit, all variants at once, never a copy of the layer per variant."""
        names = [spec.name for spec in self.specs]
        if names.index(layer) != len(names) - 2:
            raise ValueError(f"functional metrics need the layer before the head, got {layer!r}")
        record: dict[str, torch.Tensor] = {}
        out = self._forward(x, record)                               # (R, N, 1)
        h = record[layer][:, :, units].movedim(2, 1)                 # (R, K, N)
        w = self.weights[names[-1]][:, 0, :][:, units]               # (R, K): the head's weight of each unit
        shifted = out.unsqueeze(1) + ((values.to(h.dtype) - h) * w[:, :, None]).unsqueeze(-1)
        return shifted.reshape(out.shape[0], -1, out.shape[-1])

    @torch.no_grad()
    def forward_masked(self, x: torch.Tensor, layer: str, masks: torch.Tensor, fill: torch.Tensor,
                       cache: dict | None = None) -> torch.Tensor:
        """The outputs (R, K·N, 1) with ``layer``'s units u where ``masks[:, k, u]`` set to ``fill[:, u]`` in variant k
        (joint ablation; ``experiments.ensemble.Substitution``): the plain output plus Σ_u (fill_u − a_u) w_u over the
        masked units, through the affine head as in :meth:`forward_with`."""
        names = [spec.name for spec in self.specs]
        if names.index(layer) != len(names) - 2:
            raise ValueError(f"functional metrics need the layer before the head, got {layer!r}")
        record: dict[str, torch.Tensor] = {}
        out = self._forward(x, record)                               # (R, N, 1)
        h = record[layer]                                            # (R, N, U)
        w = self.weights[names[-1]][:, 0, :]                         # (R, U)
        change = (fill.to(h.dtype)[:, None, :] - h) * w[:, None, :]  # (R, N, U)
        shifted = out.unsqueeze(1) + torch.bmm(masks.to(h.dtype), change.transpose(1, 2)).unsqueeze(-1)
        return shifted.reshape(out.shape[0], -1, out.shape[-1])


def build_mlp(width: int, seeds: list[int], protocol: str = "source", activation: str = "none",
              hidden: int = 32) -> ReplicatedMLP:
    inits = [mlp_init(width, s, protocol, hidden) for s in seeds]
    return ReplicatedMLP(mlp_layers(width, hidden), inits, activation)
