"""Replicates of any ``nn.Module`` family, trained together: the one replicate mechanism for every family but the MLP.

A family writes one replicate as an ordinary module (a subclass of :class:`Replica`), with PyTorch's default
initialisation. :class:`Ensemble` builds replicate r of seeds ``s_0 … s_{R-1}`` from the global generator
seeded with ``s_r`` (inside ``torch.random.fork_rng``, so the caller's random state is untouched): exactly
the draws a solo run seeded with ``s_r`` makes, so initial weights are bit-identical by construction. The
replicates' parameters and buffers are then stacked along a new leading axis (PyTorch's model-ensembling
recipe, ``torch.func.stack_module_state``), and the forward pass runs one module definition on each
replicate's slice with ``torch.func.functional_call``:

- ``mode="loop"`` (the default on CPU): a Python loop over replicates, each on PyTorch's native kernels in
  ``channels_last`` layout. Measured on 2 CPU cores (``benchmarks/conv_ensemble.py``), this beats ``vmap``,
  which turns each convolution with batched weights into one grouped convolution, by about 3x: the grouped
  kernels are far slower than R ordinary ones here.
- ``mode="vmap"``: ``torch.func.vmap`` over the replicate axis, for devices whose grouped kernels are fast.
- ``mode="stack"``: one call of the module with the stacked tensors themselves, for families built from
  :mod:`experiments.layers` (``Linear``, ``Conv1d``, ``BatchNorm1d``), whose layers compute all replicates with
  batched matmuls. For the small MNIST-1D models this is 3-6x faster than a loop of solo models
  (``benchmarks/mnist1d_replicates.py``); each family names its default mode (``experiments.families``).

Either way the stacked tensors are the optimizer's parameters (one fused Adam step for all replicates),
what the metrics read (all replicates at once) and what is saved. BatchNorm's running statistics are
stacked buffers too: each replicate normalises with, and updates, its own slice.

The MLP keeps its own batched path (``experiments.models.ReplicatedMLP``), because it measurably pays for
those tiny matrices (``benchmarks/conv_ensemble.py`` times it against this class's ``vmap``); it offers the
same interface: ``specs``, ``weights``, ``biases``, ``state_tensors``, ``forward`` and ``activations``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from experiments.layers import STACKABLE
from experiments.models import LayerSpec

MODES = ("loop", "vmap", "stack")


class Replica(nn.Module):
    """One replicate of a family. ``weight_layers`` names the ``nn.Linear``/``nn.Conv2d`` submodules (by attribute
    path) whose weights get every weight metric and a null; ``activation_layers`` those whose outputs get the
    activation metrics: ``forward`` passes each such output, as its units emit it (after the nonlinearity, or
    the BatchNorm and ReLU that follow), through :meth:`record`, so that :meth:`Ensemble.activations` can
    collect it."""

    weight_layers: tuple[str, ...] = ()
    activation_layers: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._recording: dict[str, torch.Tensor] | None = None

    def record(self, name: str, h: torch.Tensor) -> torch.Tensor:
        if self._recording is not None:
            self._recording[name] = h
        return h


def as_units(h: torch.Tensor) -> torch.Tensor:
    """(N, units), (N, C, L) or (N, C, H, W) -> (samples, units): conv channels are units, positions x images
    samples."""
    if h.dim() >= 3:
        return h.movedim(1, -1).reshape(-1, h.shape[1])
    return h.reshape(h.shape[0], -1)


def as_units_stacked(h: torch.Tensor) -> torch.Tensor:
    """:func:`as_units` of every replicate of a stacked output (R, N, ...) -> (R, samples, units)."""
    if h.dim() >= 4:
        return h.movedim(2, -1).reshape(h.shape[0], -1, h.shape[2])
    return h.reshape(h.shape[0], h.shape[1], -1)


def layer_spec(name: str, module: nn.Module) -> LayerSpec:
    weight = module.weight
    return LayerSpec(name, math.prod(weight.shape[1:]), weight.shape[0])


def _stack_channels_last(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Stack along a new leading axis; 4-d (conv) weights are laid out so that every replicate's slice is a
    ``channels_last`` tensor, the layout PyTorch's CPU convolutions run fastest in (no copy per step)."""
    if tensors[0].dim() != 4:
        return torch.stack(tensors)
    return torch.stack([t.permute(0, 2, 3, 1) for t in tensors]).permute(0, 1, 4, 2, 3)


class Ensemble(nn.Module):
    """R replicates of ``build()``, seeds ``seeds``; parameters and buffers stacked as (R, ...) tensors."""

    def __init__(self, build: Callable[[], Replica], seeds: Sequence[int], mode: str = "loop") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"ensemble mode must be one of {MODES}, got {mode!r}")
        replicas = []
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                replicas.append(build())
        if mode == "stack":
            plain = [f"{name} ({type(m).__name__})" for name, m in replicas[0].named_modules()
                     if any(True for _ in m.parameters(recurse=False)) and not isinstance(m, STACKABLE)]
            if plain:
                raise ValueError(f"ensemble mode 'stack' needs layers from experiments.layers; "
                                 f"{type(replicas[0]).__name__} has {', '.join(plain)}")
        self.mode = mode
        self.seeds = list(seeds)
        self._params: dict[str, nn.Parameter] = {}
        self._buffers_: dict[str, torch.Tensor] = {}
        for path, _ in replicas[0].named_parameters():
            param = nn.Parameter(_stack_channels_last([r.get_parameter(path).detach() for r in replicas]))
            self.register_parameter(path.replace(".", "__"), param)
            self._params[path] = param
        for path, _ in replicas[0].named_buffers():
            stacked = torch.stack([r.get_buffer(path) for r in replicas])
            self.register_buffer(path.replace(".", "__"), stacked)
            self._buffers_[path] = stacked
        # The module whose code runs every replicate. Its own tensors are never used (they are moved to the
        # meta device), and it is not registered as a submodule, so .to(), .parameters() and state_dict()
        # see only the stacked tensors.
        object.__setattr__(self, "template", replicas[0].to("meta"))
        self.specs = [layer_spec(name, self.template.get_submodule(name)) for name in self.template.weight_layers]
        self.activation_layers = self.template.activation_layers

    # -- the interface every family's replicated model offers -------------------------------------------------
    @property
    def replicates(self) -> int:
        return len(self.seeds)

    @property
    def weights(self) -> dict[str, nn.Parameter]:
        """The studied layers' stacked weights, (R, fan_out, ...), by layer name."""
        return {spec.name: self._params[f"{spec.name}.weight"] for spec in self.specs}

    @property
    def biases(self) -> dict[str, nn.Parameter]:
        return {spec.name: self._params[f"{spec.name}.bias"] for spec in self.specs
                if f"{spec.name}.bias" in self._params}

    def parameters_in_source_order(self) -> list[nn.Parameter]:
        """Every stacked parameter in the module's definition order (what a solo run's optimizer sees)."""
        return list(self._params.values())

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every stacked parameter and buffer by module path (``bottleneck.weight``, ``bn1.running_mean``, …)."""
        return {**self._params, **self._buffers_}

    def _apply(self, fn, recurse=True):  # keep the path -> tensor maps pointing at the moved tensors
        out = super()._apply(fn, recurse)
        self._params = {p: getattr(self, p.replace(".", "__")) for p in self._params}
        self._buffers_ = {p: getattr(self, p.replace(".", "__")) for p in self._buffers_}
        return out

    def train(self, mode: bool = True) -> Ensemble:
        super().train(mode)
        self.template.train(mode)
        return self

    def _replica_states(self) -> list[dict[str, torch.Tensor]]:
        """Each replicate's tensors: views of the stacked ones, from one ``unbind`` per tensor (so the backward
        pass stacks the replicates' gradients once instead of scattering each into a zero tensor). Buffers
        stay views, so BatchNorm's in-place update of its running statistics lands in the stack."""
        states: list[dict[str, torch.Tensor]] = [{} for _ in range(self.replicates)]
        for path, t in self._params.items():
            for state, part in zip(states, t.unbind(0), strict=True):
                state[path] = part
        for path, t in self._buffers_.items():
            for state, part in zip(states, t.unbind(0), strict=True):
                state[path] = part
        return states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, ...) shared by all replicates -> (R, N, ...)."""
        if self.mode == "stack":
            return functional_call(self.template, {**self._params, **self._buffers_}, (x,))
        if self.mode == "vmap":
            state = {**self._params, **self._buffers_}
            return vmap(lambda s, inp: functional_call(self.template, s, (inp,)), in_dims=(0, None),
                        randomness="different")(state, x)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return torch.stack([functional_call(self.template, state, (x,)) for state in self._replica_states()])

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each studied layer's output on ``x`` for every replicate, as (R, samples, units) (no gradient)."""
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        collected: dict[str, list[torch.Tensor]] = {name: [] for name in self.activation_layers}
        if self.mode == "stack":
            try:
                self.template._recording = {}
                functional_call(self.template, {**self._params, **self._buffers_}, (x,))
                return {name: as_units_stacked(self.template._recording[name]) for name in collected}
            finally:
                self.template._recording = None
        try:
            for state in self._replica_states():
                self.template._recording = {}
                functional_call(self.template, state, (x,))
                for name in collected:
                    collected[name].append(as_units(self.template._recording[name]))
        finally:
            self.template._recording = None
        return {name: torch.stack(parts) for name, parts in collected.items()}
