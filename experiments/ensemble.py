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

The MLP keeps its own batched path (``experiments.models.mlp.ReplicatedMLP``), because it measurably pays for
those tiny matrices (``benchmarks/conv_ensemble.py`` times it against this class's ``vmap``); it offers the
same interface: ``specs``, ``weights``, ``biases``, ``state_tensors``, ``forward`` and ``activations``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from experiments.layers import STACKABLE
from experiments.specs import LayerSpec

MODES = ("loop", "vmap", "stack")


class Substitution:
    """Replace one layer's output during a forward pass by a batch of K variants of it (functional metrics).

    Two ways to describe the variants of the layer's output h (R, N, C, *positions):

    - one unit each (``values``, ``units``): variant k is h with unit ``units[k]`` replaced by ``values[:, k]``
      ((R, K, N, *positions));
    - a set of units each (``masks``, ``fill``): variant k is h with every unit u where ``masks[:, k, u]`` replaced
      by the constant ``fill[:, u]`` (masks (R, K, C) bool, fill (R, C)): joint ablation of many units at once.

    ``replicate`` = r when the replicates run one at a time (then h is replicate r's (N, C, ...)). The variants go
    variant-major into the batch, (…, K·N, …): every later layer runs on K·N examples, and a tensor computed before
    the layer and used after it (a residual shortcut) must pass through :meth:`Replica.carry`, which repeats it K
    times.
    """

    def __init__(self, layer: str | None, values: torch.Tensor | None = None, units: torch.Tensor | None = None,
                 replicate: int | None = None, masks: torch.Tensor | None = None,
                 fill: torch.Tensor | None = None) -> None:
        self.layer, self.values, self.units, self.replicate = layer, values, units, replicate
        self.masks, self.fill = masks, fill
        self.variants: int | None = None

    def _mine(self, t: torch.Tensor) -> torch.Tensor:
        """This replicate's slice of a stacked (R, ...) argument, kept as a batch of one."""
        return t if self.replicate is None else t[self.replicate:self.replicate + 1]

    def _finish(self, v: torch.Tensor, stacked: bool) -> torch.Tensor:
        r, k, n = v.shape[:3]
        out = v.reshape(r, k * n, *v.shape[3:])
        self.variants = k
        out = out if stacked else out.squeeze(0)
        return out.contiguous(memory_format=torch.channels_last) if out.dim() == 4 else out

    def apply(self, h: torch.Tensor) -> torch.Tensor:
        stacked = self.replicate is None
        h = h if stacked else h.unsqueeze(0)
        if self.masks is not None:
            masks, fill = self._mine(self.masks), self._mine(self.fill)
            extra = (1,) * (h.dim() - 3)
            m = masks.view(*masks.shape, *extra).unsqueeze(2)          # (R, K, 1, C, 1...)
            f = fill.to(h.dtype).view(fill.shape[0], 1, 1, fill.shape[1], *extra)
            return self._finish(torch.where(m.to(h.device), f, h.unsqueeze(1)), stacked)
        vals = self._mine(self.values)
        r, k = h.shape[0], len(self.units)
        v = h.unsqueeze(1).expand(r, k, *h.shape[1:]).clone()
        v.transpose(2, 3)[:, torch.arange(k, device=h.device), self.units.to(h.device)] = vals.to(h.dtype)
        return self._finish(v, stacked)

    def expand(self, t: torch.Tensor) -> torch.Tensor:
        if self.variants is None:  # the substituted layer has not run yet: nothing to repeat
            return t
        axis = 1 if self.replicate is None else 0
        shape = list(t.shape)
        out = t.unsqueeze(axis).expand(*shape[:axis], self.variants, *shape[axis:])
        out = out.reshape(*shape[:axis], self.variants * shape[axis], *shape[axis + 1:])
        return out.contiguous(memory_format=torch.channels_last) if out.dim() == 4 else out


class Injection(Substitution):
    """Variants of a studied layer applied one layer later, at the output of the layer's *consumer*: the one linear
    module (``Linear``, ``Conv1d``, ``Conv2d``) that reads the studied layer's output and that nothing else reads it
    besides (``Replica.consumers``). The consumer is linear, so replacing unit u's activation a_u by v changes its
    output by the consumer applied to the one-channel signal v − a_u (its bias cancels): the consumer runs once on the
    unchanged activations and each variant adds its own terms.

    - one unit each (``values``, ``units``, as :class:`Substitution`): a one-channel product per variant instead of the
      whole consumer on K copies of the layer;
    - a set of units each (``masks``, ``fill``): for a convolution, the one-channel terms of every unit are computed
      once and each variant sums its units' terms in one matrix product (the kernel taps folded in); for a linear
      consumer the variants' changed inputs go through its weights in one batched product.

    Everything after the consumer runs on the K·N variant examples as with :class:`Substitution`, whose ``expand``
    (for ``carry``) this inherits.
    """

    def __init__(self, values: torch.Tensor | None = None, units: torch.Tensor | None = None,
                 replicate: int | None = None, masks: torch.Tensor | None = None, fill: torch.Tensor | None = None,
                 cache: dict | None = None) -> None:
        super().__init__(None, values, units, replicate, masks, fill)
        self.cache = cache  # masked variants: every unit's terms, kept across the chunks of one batch of variants

    @staticmethod
    def unit_terms(module: nn.Module, w: torch.Tensor, delta: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        """The consumer (weight ``w``, (R, out, C, *kernel)) applied to one-channel signals: ``delta`` (R, K, N,
        *positions) on input channel ``units[k]`` -> (R, K, N, out, *positions')."""
        wu = w[:, :, units]                                # (R, out, K, *kernel)
        if delta.dim() == 3:                               # Linear: (R, K, N) x (R, out, K)
            return delta.unsqueeze(-1) * wu.transpose(1, 2).unsqueeze(2)
        r, k, n = delta.shape[:3]
        if delta.dim() == 4:                               # Conv1d: the signal's windows x its taps, one bmm
            (k_size,), (stride,), (pad,) = module.kernel_size, module.stride, module.padding
            windows = F.pad(delta, (pad, pad)).unfold(-1, k_size, stride)         # (R, K, N, L', taps)
            length = windows.shape[3]
            taps = wu.permute(0, 2, 3, 1).reshape(r * k, k_size, -1)               # (R·K, taps, out)
            out = torch.bmm(windows.reshape(r * k, n * length, k_size), taps)
            return out.view(r, k, n, length, -1).transpose(-1, -2)
        parts = []                                         # Conv2d: a grouped convolution, one group per variant
        for i in range(r):
            kernels = wu[i].transpose(0, 1).reshape(k * w.shape[1], 1, *w.shape[3:])
            y = F.conv2d(delta[i].transpose(0, 1), kernels, None, module.stride, module.padding, module.dilation,
                         groups=k)
            parts.append(y.unflatten(1, (k, w.shape[1])).movedim(1, 0))
        return torch.stack(parts)

    def hook(self, module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        stacked = self.replicate is None
        a, w = args[0], module.weight
        a, out = (a, out) if stacked else (a.unsqueeze(0), out.unsqueeze(0))
        w = w if stacked else w.unsqueeze(0)
        if stacked and a.dim() == 2:                       # a shared (N, C) input: not a studied layer's output
            raise ValueError("a consumer must read the studied layer's (R, N, C, ...) output")
        base = out.unsqueeze(1)                            # (R, 1, N, out, *positions')
        if self.masks is None:
            units = self.units.to(a.device)
            delta = self._mine(self.values).to(a.dtype) - a[:, :, units].movedim(2, 1)   # (R, K, N, *positions)
            return self._finish(base + self.unit_terms(module, w, delta, units), stacked)
        masks, fill = self._mine(self.masks).to(a.device), self._mine(self.fill).to(a.device, a.dtype)
        extra = (1,) * (a.dim() - 3)
        change = fill.view(*fill.shape[:1], 1, fill.shape[1], *extra) - a                 # (R, N, C, *positions)
        r, k = masks.shape[:2]
        if a.dim() == 3:                                   # Linear: each variant's changed input through W, one bmm
            delta = masks.to(a.dtype).unsqueeze(2) * change.unsqueeze(1)                  # (R, K, N, C)
            terms = torch.bmm(delta.reshape(r, -1, a.shape[2]), w.transpose(1, 2))
            return self._finish(base + terms.view(r, k, a.shape[1], -1), stacked)
        every = None if self.cache is None else self.cache.get(self.replicate)
        if every is None:
            units = torch.arange(a.shape[2], device=a.device)
            every = self.unit_terms(module, w, change.movedim(2, 1), units)               # (R, C, N, out, *pos')
            if self.cache is not None:
                self.cache[self.replicate] = every
        summed = torch.bmm(masks.to(a.dtype), every.reshape(r, a.shape[2], -1))          # (R, K, N·out·pos')
        return self._finish(base + summed.view(r, k, *every.shape[2:]), stacked)


def consumer_ok(module: nn.Module) -> bool:
    """Whether :class:`Injection` can compute ``module``'s one-channel terms: a Linear, or a zero-padded Conv1d/Conv2d
    with one group and integer padding."""
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        return (module.groups == 1 and module.padding_mode == "zeros" and not isinstance(module.padding, str)
                and (isinstance(module, nn.Conv2d) or module.dilation == (1,)))
    return False


class Replica(nn.Module):
    """One replicate of a family. ``weight_layers`` names the ``nn.Linear``/``nn.Conv2d`` submodules (by attribute
    path) whose weights get every weight metric and a null; ``activation_layers`` those whose outputs get the
    activation metrics: ``forward`` passes each such output, as its units emit it (after the nonlinearity, or
    the BatchNorm and ReLU that follow), through :meth:`record`, so that :meth:`Ensemble.activations` can
    collect it. ``functional_layers`` (a subset of ``activation_layers``: the bottleneck-like layers) also get the
    functional metrics (``experiments.functional``: ablation, compensation, linear predictability); a tensor that
    skips over one of them (a residual shortcut) must be passed through :meth:`carry`. ``consumers`` (optional) names,
    for a functional layer, the linear module that alone reads its output (:class:`Injection`)."""

    weight_layers: tuple[str, ...] = ()
    activation_layers: tuple[str, ...] = ()
    functional_layers: tuple[str, ...] = ()
    # functional layer -> the one linear module (Linear, Conv1d, Conv2d) that reads its output and that nothing else
    # reads it besides; optional: it lets single-unit ablations run as one-channel terms at that module (Injection)
    consumers: dict[str, str] = {}  # noqa: RUF012  (a class-level constant, never mutated)

    def __init__(self) -> None:
        super().__init__()
        self._recording: dict[str, torch.Tensor] | None = None
        self._substitution: Substitution | None = None

    def record(self, name: str, h: torch.Tensor) -> torch.Tensor:
        if self._recording is not None:
            self._recording[name] = h
        if self._substitution is not None and name == self._substitution.layer:
            return self._substitution.apply(h)
        return h

    def carry(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` as the layers after a substituted one need it: repeated for every variant (see
        :class:`Substitution`); ``h`` itself in every ordinary forward pass."""
        return h if self._substitution is None else self._substitution.expand(h)


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

    def forward(self, x: torch.Tensor, stacked: bool = False) -> torch.Tensor:
        """``x`` (N, ...) shared by all replicates, or (R, N, ...) one batch per replicate (``stacked``) -> (R, N, ...).
        A stacked module tells the two apart by their dimensions; the loop and vmap modes are told."""
        if self.mode == "stack":
            return functional_call(self.template, {**self._params, **self._buffers_}, (x,))
        if self.mode == "vmap":
            state = {**self._params, **self._buffers_}
            return vmap(lambda s, inp: functional_call(self.template, s, (inp,)), in_dims=(0, 0 if stacked else None),
                        randomness="different")(state, x)
        parts = x.unbind(0) if stacked else [x] * self.replicates  # images: channels_last, a no-op when already
        parts = [p.contiguous(memory_format=torch.channels_last) if p.dim() == 4 else p for p in parts]
        return torch.stack([functional_call(self.template, state, (xr,))
                            for state, xr in zip(self._replica_states(), parts, strict=True)])

    @property
    def functional_layers(self) -> tuple[str, ...]:
        return self.template.functional_layers

    @property
    def replicates_together(self) -> bool:
        """Whether one pass computes every replicate (``stack``), or a loop one replicate at a time."""
        return self.mode == "stack"

    @torch.no_grad()
    def recorded(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each studied layer's output on ``x`` for every replicate in its own layout, (R, N, C, ...) (no
        gradient)."""
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.mode == "stack":
            try:
                self.template._recording = {}
                functional_call(self.template, {**self._params, **self._buffers_}, (x,))
                return {name: self.template._recording[name] for name in self.activation_layers}
            finally:
                self.template._recording = None
        collected: dict[str, list[torch.Tensor]] = {name: [] for name in self.activation_layers}
        try:
            for state in self._replica_states():
                self.template._recording = {}
                functional_call(self.template, state, (x,))
                for name in collected:
                    collected[name].append(self.template._recording[name])
        finally:
            self.template._recording = None
        return {name: torch.stack(parts) for name, parts in collected.items()}

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each studied layer's output on ``x`` for every replicate, as (R, samples, units) (no gradient)."""
        return {name: as_units_stacked(h) for name, h in self.recorded(x).items()}

    def consumer(self, layer: str) -> str | None:
        """The module that alone reads ``layer``'s output, if the family declares one that :class:`Injection` can use
        (``Replica.consumers``); None: single-unit variants are substituted at the layer itself."""
        name = getattr(self.template, "consumers", {}).get(layer)
        return name if name is not None and consumer_ok(self.template.get_submodule(name)) else None

    @torch.no_grad()
    def _run_variants(self, x: torch.Tensor, make: Callable[[int | None], Substitution],
                      at: str | None = None) -> torch.Tensor:
        """The forward pass with a batch of variants (``make(replicate)``), one pass for stacked models and one per
        replicate otherwise; ``at``: the consumer module whose output an :class:`Injection` replaces."""
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        target = self.template.get_submodule(at) if at is not None else None
        states = [None] if self.mode == "stack" else list(enumerate(self._replica_states()))
        full = {**self._params, **self._buffers_}
        outs = []
        for item in states:
            r, state = (None, full) if item is None else item
            sub = make(r)
            handle = target.register_forward_hook(sub.hook) if target is not None else None
            try:
                self.template._substitution = sub
                outs.append(functional_call(self.template, state, (x,)))
            finally:
                self.template._substitution = None
                if handle is not None:
                    handle.remove()
        return outs[0] if self.mode == "stack" else torch.stack(outs)

    def forward_with(self, x: torch.Tensor, layer: str, values: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        """The forward pass with ``layer``'s output replaced by a batch of variants, variant k with unit ``units[k]``
        set to ``values[:, k]`` (see :class:`Substitution`): (R, K·N, ...). Through the layer's consumer
        (:class:`Injection`) when the family declares one. Stacked models make one pass; the others one per
        replicate (the ``vmap`` mode runs its replicates one at a time here)."""
        at = self.consumer(layer)
        if at is not None:
            return self._run_variants(x, lambda r: Injection(values, units, r), at)
        return self._run_variants(x, lambda r: Substitution(layer, values, units, r))

    def forward_masked(self, x: torch.Tensor, layer: str, masks: torch.Tensor, fill: torch.Tensor,
                       cache: dict | None = None) -> torch.Tensor:
        """The forward pass with ``layer``'s output replaced by K variants, variant k with every unit u where
        ``masks[:, k, u]`` set to ``fill[:, u]`` (joint ablation; see :class:`Substitution`): (R, K·N, ...). ``cache``:
        a dict kept across calls with the same ``x`` and ``fill`` (chunks of one batch of variants), where the
        consumer's per-unit terms are computed once."""
        at = self.consumer(layer)
        if at is not None:
            return self._run_variants(x, lambda r: Injection(replicate=r, masks=masks, fill=fill, cache=cache), at)
        return self._run_variants(x, lambda r: Substitution(layer, replicate=r, masks=masks, fill=fill))
