"""Low-rank compression of trained layers: ALDS (Liebenwein, Maalouf, Gal, Feldman, Rus, "Compressing Neural
Networks: Towards Determining the Optimal Layer-wise Decomposition", NeurIPS 2021) and simple baselines.

Local step. A Linear or Conv2d weight f x c x k1 x k2 (Linear: k1 = k2 = 1) is read as the matrix W of shape
f x (c k1 k2). Its input channels are split into k contiguous, equal groups (k divides c); each group's block
W_g (f x c/k k1 k2) is replaced by its rank-j truncated SVD U_j S_j V_j^T, with sqrt(S_j) given to each factor.
As a module that is a grouped convolution c -> k j (k1 x k2, the layer's stride, padding and dilation,
``groups=k``, no bias) followed by a 1x1 convolution k j -> f that sums the groups and carries the original
bias (for a Linear: a grouped linear map, then a Linear). It has j (k f + c k1 k2) weights; a layer that
decomposing would not shrink is left intact.

Errors. ``exact``: ||W - W_hat||_2 / ||W||_2 of the reassembled weight. ``proxy`` (the reference code's):
max_g sigma_{j+1}(W_g) / ||W||_2, equal to the exact error for k = 1 and a lower bound for k > 1 (the paper's
upper bound multiplies it by sqrt(k)). The allocator searches with the proxy, as the reference does; every
reported error is exact.

Global step (:func:`alds`). For a target keep ratio (kept / original weights of the compressible layers), the
budget is the integer ``floor(keep_ratio * original)`` (the ratio read as the decimal it is written as), and
every allocator keeps at most that many weights; when even rank 1 with k = 1 in every layer (the smallest
allocation there is) keeps more, it raises :class:`BudgetError` instead. For fixed k's, one error threshold
shared by all layers is found by a search over the candidate errors so that the budget is met (each layer takes
the smallest j under it; k's whose rank-1 allocation is over budget have none); then each layer re-picks, among
the k's it can afford, the one with the smallest error at its own parameter budget; this repeats until nothing
changes, from several fixed starting k's; of every allocation visited (all within budget), the one with the
smallest largest exact error wins (so ALDS is never worse than its own k = 1 threshold allocation, which is the
best max-error allocation with k = 1). Baselines at the same budget: ``uniform`` (k = 1, the same rank fraction
everywhere), ``svd_energy`` (k = 1, one threshold on the discarded share of the squared singular values) and
``best_k`` (the best single k for all layers, by the same threshold search).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch
from torch import nn

METHODS = ("alds", "uniform", "svd_energy", "best_k")
MAX_K = 8                      # largest group count tried (a divisor of c)
ALDS_STARTS = (1, 2, 4, 8)     # fixed starting k's of the ALDS search (the reference draws some at random)
ALDS_ROUNDS = 10


def divisors(c: int, max_k: int = MAX_K) -> list[int]:
    return [k for k in range(1, min(c, max_k) + 1) if c % k == 0]


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(f, c, k1, k2) or (f, c) -> (f, c k1 k2), columns ordered channel-major as PyTorch stores them."""
    return weight.reshape(weight.shape[0], -1)


@dataclass
class LayerSVD:
    """One layer's SVDs for every candidate k: ``sv[k]`` (k, r_k) singular values of the k groups, ``u``/``vh``
    their vectors, ``proxy[k]`` (r_k + 1,) the proxy error of rank j = 0..r_k, ``norm`` = ||W||_2."""

    name: str
    shape: tuple[int, ...]
    matrix: torch.Tensor           # float64 (f, c k1 k2)
    norm: float
    ks: list[int]
    u: dict[int, torch.Tensor] = field(default_factory=dict)
    sv: dict[int, torch.Tensor] = field(default_factory=dict)
    vh: dict[int, torch.Tensor] = field(default_factory=dict)
    proxy: dict[int, np.ndarray] = field(default_factory=dict)
    exact: dict[tuple[int, int], float] = field(default_factory=dict)

    @property
    def f(self) -> int:
        return self.shape[0]

    @property
    def c(self) -> int:
        return self.shape[1]

    @property
    def taps(self) -> int:
        return math.prod(self.shape[2:]) if len(self.shape) > 2 else 1

    @property
    def original(self) -> int:
        return self.f * self.c * self.taps

    def max_rank(self, k: int) -> int:
        return min(self.f, self.c // k * self.taps)

    def params(self, k: int, j: int) -> int:
        """Weights kept at (k, j): j (k f + c k1 k2), or the original count when that would not shrink it."""
        return min(j * (k * self.f + self.c * self.taps), self.original)

    def intact(self, k: int, j: int) -> bool:
        return j * (k * self.f + self.c * self.taps) >= self.original

    def compressible(self) -> bool:
        return any(not self.intact(k, 1) for k in self.ks)


def analyse(name: str, weight: torch.Tensor, max_k: int = MAX_K) -> LayerSVD:
    """Grouped SVDs (float64) of one layer's weight for every k dividing its input channels, up to ``max_k``."""
    matrix = as_matrix(weight.detach()).double().cpu()
    shape = tuple(weight.shape)
    layer = LayerSVD(name, shape, matrix, float(torch.linalg.matrix_norm(matrix, ord=2)), divisors(shape[1], max_k))
    for k in layer.ks:
        groups = matrix.reshape(layer.f, k, -1).transpose(0, 1)  # (k, f, c/k k1 k2): contiguous input channels
        u, s, vh = torch.linalg.svd(groups, full_matrices=False)
        layer.u[k], layer.sv[k], layer.vh[k] = u, s, vh
        # proxy[j] = max_g sigma_{j+1}(W_g) / ||W||_2 for j = 0..r (sigma beyond the rank is 0)
        padded = torch.cat([s, torch.zeros(k, 1, dtype=s.dtype)], dim=1)
        layer.proxy[k] = (padded.max(dim=0).values / layer.norm).numpy()
    return layer


def reassembled(layer: LayerSVD, k: int, j: int) -> torch.Tensor:
    """W_hat (f, c k1 k2), float64: each group's rank-j truncation, side by side."""
    u, s, vh = layer.u[k][:, :, :j], layer.sv[k][:, :j], layer.vh[k][:, :j, :]
    blocks = (u * s[:, None, :]) @ vh  # (k, f, c/k k1 k2)
    return blocks.transpose(0, 1).reshape(layer.f, -1)


def exact_error(layer: LayerSVD, k: int, j: int) -> float:
    """||W - W_hat||_2 / ||W||_2 (0 for an intact layer); cached per layer, since searches revisit (k, j)."""
    if layer.intact(k, j):
        return 0.0
    if (k, j) not in layer.exact:
        residual = layer.matrix - reassembled(layer, k, j)
        layer.exact[(k, j)] = float(torch.linalg.matrix_norm(residual, ord=2)) / layer.norm
    return layer.exact[(k, j)]


def proxy_error(layer: LayerSVD, k: int, j: int) -> float:
    return 0.0 if layer.intact(k, j) else float(layer.proxy[k][min(j, layer.max_rank(k))])


# -- Modules ------------------------------------------------------------------------------------------------


class GroupedLinear(nn.Module):
    """x (N, c) -> (N, k j): group g of the inputs (c/k contiguous features) mapped by its own j x c/k matrix."""

    def __init__(self, weight: torch.Tensor) -> None:  # (k, j, c/k)
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, j, m = self.weight.shape
        return torch.einsum("ngm,gjm->ngj", x.reshape(x.shape[0], k, m), self.weight).reshape(x.shape[0], k * j)


def decompose(module: nn.Module, layer: LayerSVD, k: int, j: int) -> nn.Module:
    """The (k, j) decomposition of ``module`` (an ``nn.Conv2d`` or ``nn.Linear``) as a module, float32 factors
    with sqrt(S) on each side; ``module`` itself when decomposing would not shrink it."""
    if layer.intact(k, j):
        return module
    root = layer.sv[k][:, :j].sqrt()                                   # (k, j)
    first = root[:, :, None] * layer.vh[k][:, :j, :]                   # (k, j, c/k k1 k2)
    second = (layer.u[k][:, :, :j] * root[:, None, :]).transpose(0, 1).reshape(layer.f, k * j)  # (f, k j)
    dtype, device = module.weight.dtype, module.weight.device
    bias = module.bias is not None
    if isinstance(module, nn.Conv2d):
        a = nn.Conv2d(layer.c, k * j, module.kernel_size, module.stride, module.padding, module.dilation, groups=k,
                      bias=False, padding_mode=module.padding_mode)
        a.weight.data = first.reshape(k * j, layer.c // k, *module.kernel_size).to(dtype=dtype, device=device)
        b = nn.Conv2d(k * j, layer.f, 1, bias=bias)
        b.weight.data = second.reshape(layer.f, k * j, 1, 1).to(dtype=dtype, device=device)
    elif isinstance(module, nn.Linear):
        a = GroupedLinear(first.to(dtype=dtype, device=device))
        b = nn.Linear(k * j, layer.f, bias=bias)
        b.weight.data = second.to(dtype=dtype, device=device)
    else:
        raise TypeError(f"can only decompose nn.Conv2d or nn.Linear, got {type(module).__name__}")
    if bias:
        b.bias.data = module.bias.detach().clone()
    return nn.Sequential(a, b)


# -- Allocation ---------------------------------------------------------------------------------------------

Allocation = dict[str, tuple[int, int]]  # layer -> (k, j)


def kept(layers: Sequence[LayerSVD], alloc: Allocation) -> int:
    return sum(layer.params(*alloc[layer.name]) for layer in layers)


def original(layers: Sequence[LayerSVD]) -> int:
    return sum(layer.original for layer in layers)


class BudgetError(ValueError):
    """No allocation keeps within the budget: rank 1 with k = 1 in every layer already keeps more."""


def budget_of(layers: Sequence[LayerSVD], keep_ratio: float) -> int:
    """The weight budget of ``keep_ratio``: floor(keep_ratio * original), exact (0.03 is read as 3/100, not as
    its binary float, so 0.03 of 100 weights is 3, not 2)."""
    return math.floor(Fraction(repr(float(keep_ratio))) * original(layers))


def min_kept(layers: Sequence[LayerSVD]) -> int:
    """The fewest weights any allocation keeps: rank 1 in every layer with k = 1 (j (k f + c k1 k2) grows with
    k), capped at the original count of a layer that would not shrink."""
    return sum(min(layer.params(k, 1) for k in layer.ks) for layer in layers)


def min_keep_ratio(layers: Sequence[LayerSVD]) -> float:
    return min_kept(layers) / original(layers)


def check_budget(layers: Sequence[LayerSVD], budget: float, keep_ratio: float | None = None) -> None:
    """Raise :class:`BudgetError` when no allocation keeps at most ``budget`` weights."""
    least, total = min_kept(layers), original(layers)
    if least > budget:
        ratio = keep_ratio if keep_ratio is not None else budget / total
        raise BudgetError(f"keep_ratio {ratio:g} (a budget of {math.floor(budget)} of {total} weights) is below the "
                          f"minimum achievable keep ratio {least / total:.6g} (rank 1 in every layer keeps {least})")


def _smallest_j(layer: LayerSVD, k: int, eps: float) -> int:
    """Smallest j >= 1 whose proxy error is <= eps (the full rank at worst)."""
    errors = layer.proxy[k][1:]  # j = 1..r, non-increasing
    below = np.nonzero(errors <= eps + 1e-15)[0]
    return int(below[0]) + 1 if below.size else layer.max_rank(k)


def threshold_allocation(layers: Sequence[LayerSVD], ks: dict[str, int], budget: float) -> Allocation | None:
    """For fixed k's, the smallest shared proxy-error threshold whose allocation (each layer the smallest j
    under it) keeps at most ``budget`` weights; ``None`` when even j = 1 everywhere (the largest threshold) is
    over budget with these k's."""
    candidates = np.unique(np.concatenate([layer.proxy[ks[layer.name]][1:] for layer in layers]))

    def alloc_at(eps: float) -> Allocation:
        return {layer.name: (ks[layer.name], _smallest_j(layer, ks[layer.name], eps)) for layer in layers}

    lo, hi = 0, len(candidates) - 1  # params are non-increasing in eps: find the first candidate within budget
    if kept(layers, alloc_at(candidates[hi])) > budget:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if kept(layers, alloc_at(candidates[mid])) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return alloc_at(candidates[lo])


def _best_k_at_budget(layer: LayerSVD, budget: int, current: int) -> int:
    """The k whose largest affordable rank within ``budget`` weights has the smallest proxy error; a k that cannot
    afford even rank 1 is not a candidate (its (k, 1) would be over budget, not intact). ``current`` (the k whose
    allocation set the budget, hence affordable) when no k is."""
    best, best_err = current, math.inf
    for k in layer.ks:
        j = max(1, min(layer.max_rank(k), budget // (k * layer.f + layer.c * layer.taps)))
        if layer.params(k, j) > budget:
            continue
        err = proxy_error(layer, k, j)
        if err < best_err - 1e-15:
            best, best_err = k, err
    return best


def max_exact_error(layers: Sequence[LayerSVD], alloc: Allocation) -> float:
    return max(exact_error(layer, *alloc[layer.name]) for layer in layers)


def alds(layers: Sequence[LayerSVD], budget: float, starts: Sequence[int] = ALDS_STARTS,
         rounds: int = ALDS_ROUNDS) -> Allocation:
    """ALDS's global search (module docstring); returns the allocation within ``budget`` with the smallest largest
    exact error. A start whose k's cannot afford rank 1 everywhere has no allocation and is skipped (the k = 1
    start always has one when any allocation does)."""
    check_budget(layers, budget)
    best, best_err = None, math.inf

    def consider(alloc: Allocation | None) -> None:
        nonlocal best, best_err
        if alloc is None or kept(layers, alloc) > budget:
            return
        err = max_exact_error(layers, alloc)
        if best is None or err < best_err - 1e-12 or (abs(err - best_err) <= 1e-12 and kept(layers, alloc) <
                                                       kept(layers, best)):
            best, best_err = alloc, err

    for start in starts:
        ks = {layer.name: max(k for k in layer.ks if k <= start) for layer in layers}
        for _ in range(rounds):
            alloc = threshold_allocation(layers, ks, budget)
            if alloc is None:  # only a start can be over budget: re-picked k's afford their own budgets
                break
            consider(alloc)  # every allocation visited is a candidate: the proxy only guides the search
            new = {layer.name: _best_k_at_budget(layer, layer.params(*alloc[layer.name]), alloc[layer.name][0])
                   for layer in layers}
            if new == ks:
                break
            ks = new
        else:
            consider(threshold_allocation(layers, ks, budget))
    if best is None:
        raise BudgetError(f"alds: no start found an allocation within {math.floor(budget)} weights")
    return best


def best_single_k(layers: Sequence[LayerSVD], budget: float, candidates: Sequence[int] = (1, 2, 4, 8)) -> Allocation:
    """One k for every layer (the largest divisor of its channels not above it), the best of ``candidates`` whose
    allocation is within budget (a k that cannot afford rank 1 everywhere has none)."""
    check_budget(layers, budget)
    allocs = [threshold_allocation(layers, {layer.name: max(k for k in layer.ks if k <= c) for layer in layers}, budget)
              for c in candidates]
    allocs = [a for a in allocs if a is not None and kept(layers, a) <= budget]
    if not allocs:
        raise BudgetError(f"best_k: no k in {list(candidates)} has an allocation within {math.floor(budget)} weights")
    return min(allocs, key=lambda a: (max_exact_error(layers, a), kept(layers, a)))


def _search_fraction(layers: Sequence[LayerSVD], budget: float, ranks) -> Allocation:
    """Bisect a scalar t in [0, 1] for the largest allocation ``ranks(t)`` within budget (k = 1); ``ranks(0)`` is
    rank 1 everywhere, the smallest allocation, so the result is within budget whenever any allocation is."""
    check_budget(layers, budget)
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if kept(layers, ranks(mid)) <= budget:
            lo = mid
        else:
            hi = mid
    alloc = ranks(lo)
    if kept(layers, alloc) > budget:
        raise BudgetError(f"no allocation of this family within {math.floor(budget)} weights")
    return alloc


def uniform(layers: Sequence[LayerSVD], budget: float) -> Allocation:
    """k = 1 and the same rank fraction in every layer: j = max(1, floor(t r)), t as large as the budget allows."""
    return _search_fraction(layers, budget, lambda t: {
        layer.name: (1, max(1, math.floor(t * layer.max_rank(1) + 1e-9))) for layer in layers})


def svd_energy(layers: Sequence[LayerSVD], budget: float) -> Allocation:
    """k = 1 and one threshold on the discarded share of each layer's squared singular values."""
    shares = {}
    for layer in layers:
        s2 = layer.sv[1][0].numpy() ** 2
        tail = np.concatenate([np.cumsum(s2[::-1])[::-1], [0.0]]) / s2.sum()  # tail[j] = share discarded at rank j
        shares[layer.name] = tail

    def ranks(t: float) -> Allocation:  # t = 1 - threshold: larger t keeps more
        out = {}
        for layer in layers:
            below = np.nonzero(shares[layer.name][1:] <= (1.0 - t) + 1e-15)[0]
            out[layer.name] = (1, int(below[0]) + 1 if below.size else layer.max_rank(1))
        return out

    return _search_fraction(layers, budget, ranks)


def allocate(method: str, layers: Sequence[LayerSVD], keep_ratio: float) -> Allocation:
    """The allocation of ``method`` keeping at most ``budget_of(layers, keep_ratio)`` weights; raises
    :class:`BudgetError` (a ``ValueError``) naming the minimum achievable keep ratio when no allocation can."""
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (allowed: {', '.join(METHODS)})")
    budget = budget_of(layers, keep_ratio)
    check_budget(layers, budget, keep_ratio)
    if method == "alds":
        return alds(layers, budget)
    if method == "uniform":
        return uniform(layers, budget)
    if method == "svd_energy":
        return svd_energy(layers, budget)
    if method == "best_k":
        return best_single_k(layers, budget)
    raise ValueError(f"unknown method {method!r} (allowed: {', '.join(METHODS)})")


def compress(model: nn.Module, layers: Sequence[LayerSVD], alloc: Allocation) -> nn.Module:
    """Replace each allocated layer of ``model`` (by attribute path) with its decomposition, in place."""
    for layer in layers:
        parent_path, _, attr = layer.name.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, attr, decompose(getattr(parent, attr), layer, *alloc[layer.name]))
    return model
