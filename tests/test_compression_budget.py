"""Every allocator keeps within its budget whenever some allocation can, and refuses a budget none can meet.

The budget of a keep ratio r over layers of N weights is the integer floor(r N), with r read as the decimal it is
written as (so exact rational arithmetic here, never a tolerance). The fewest weights any allocation keeps is rank
1 in every layer with k = 1: a rank-j factorisation with k groups has j (k f + c k1 k2) weights, which grows
with j and k, and a layer that would not shrink keeps its original f c k1 k2.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

import pytest
import torch
from torch import nn

from experiments import compression as Z
from experiments.compression import METHODS, allocate, analyse, kept, max_exact_error, original

KEEPS = (0.02, 0.03, 0.04, 0.05)


def _modules(specs, seed: int) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [nn.Linear(*s) if len(s) == 2 else nn.Conv2d(*s) for s in specs]


# The six layers of the issue: conv 3->16 5x5, 16->48 3x3, 48->96 3x3, 96->60 1x1, 60->60 3x3, Linear 240->50.
SIX = [(3, 16, 5), (16, 48, 3), (48, 96, 3), (96, 60, 1), (60, 60, 3), (240, 50)]


def six_layers(seed: int = 0) -> list[Z.LayerSVD]:
    """The issue's six layers with PyTorch's default initialisation under ``torch.manual_seed(seed)``."""
    return [analyse(f"l{i}", m.weight) for i, m in enumerate(_modules(SIX, seed))]


def decayed(layers_specs, seed: int) -> list[Z.LayerSVD]:
    """Random layers with a decaying spectrum, different per layer (trained layers are closer to this than to
    white noise), so that the allocators disagree."""
    out = []
    for i, m in enumerate(_modules(layers_specs, seed)):
        w = m.weight.detach()
        u, s, vh = torch.linalg.svd(w.reshape(w.shape[0], -1), full_matrices=False)
        s = s * torch.exp(-torch.arange(len(s)) / (2 + 3 * i))
        out.append(analyse(f"l{i}", ((u * s) @ vh).reshape(w.shape)))
    return out


LAYER_SETS = {
    "six": lambda: six_layers(0),
    "six_seed1": lambda: six_layers(1),
    "six_decayed": lambda: decayed(SIX, 2),
    # small square-ish layers: rank 1 everywhere keeps (128 + 90) / (4096 + 2000) = 0.0358 of the weights
    "small": lambda: [analyse(f"l{i}", m.weight) for i, m in enumerate(_modules([(64, 64), (50, 40)], 3))],
    # narrow and wide convs with few input channels (k up to 8 only where c allows)
    "convs": lambda: decayed([(4, 64, 3), (64, 128, 3), (128, 32, 3), (32, 256, 1), (256, 10)], 4),
}


def budget(layers, keep: float) -> int:
    return math.floor(Fraction(str(keep)) * original(layers))


def least_kept(layers) -> int:
    """Rank 1 and k = 1 in every layer, capped at a layer's original count (derived in the module docstring)."""
    return sum(min(layer.f + layer.c * layer.taps, layer.original) for layer in layers)


def count(layer: Z.LayerSVD, k: int, j: int) -> int:
    """The weights of a (k, j) allocation counted from the shapes, independently of ``LayerSVD.params``."""
    return min(j * (k * layer.f + layer.c * layer.taps), layer.f * layer.c * layer.taps)


@pytest.mark.parametrize("name", sorted(LAYER_SETS))
def test_every_allocator_keeps_within_any_achievable_budget(name):
    layers = LAYER_SETS[name]()
    total, least = original(layers), least_kept(layers)
    assert Z.min_kept(layers) == least
    for keep in KEEPS:
        b = budget(layers, keep)
        assert Z.budget_of(layers, keep) == b
        for method in METHODS:
            if least <= b:
                alloc = allocate(method, layers, keep)
                assert set(alloc) == {layer.name for layer in layers}
                for layer in layers:
                    k, j = alloc[layer.name]
                    assert k in layer.ks and 1 <= j <= layer.max_rank(k)
                n = sum(count(layer, *alloc[layer.name]) for layer in layers)
                assert n == kept(layers, alloc)
                assert n <= b, (method, keep, n / total)
                assert Fraction(n, total) <= Fraction(str(keep))
            else:
                minimum = f"{least / total:.6g}"
                with pytest.raises(ValueError, match=rf"keep_ratio {re.escape(f'{keep:g}')}\b.*minimum achievable "
                                                     rf"keep ratio {re.escape(minimum)}"):
                    allocate(method, layers, keep)


def test_the_layer_sets_cover_both_cases():
    """Some (set, keep ratio) pairs are achievable and some are not, so both branches above are exercised."""
    cases = [least_kept(layers) <= budget(layers, keep) for layers in (f() for f in LAYER_SETS.values())
             for keep in KEEPS]
    assert any(cases) and not all(cases)


@pytest.mark.parametrize("name", sorted(LAYER_SETS))
def test_alds_is_no_worse_than_the_k1_baselines(name):
    """ALDS's candidates include its k = 1 threshold allocation, the smallest-max-error allocation with k = 1
    within budget (at k = 1 the proxy is the exact error); uniform and svd_energy are k = 1 allocations within the
    same budget, so they cannot have a smaller largest error."""
    layers = LAYER_SETS[name]()
    for keep in KEEPS:
        if least_kept(layers) > budget(layers, keep):
            continue
        err = {m: max_exact_error(layers, allocate(m, layers, keep)) for m in METHODS}
        assert err["alds"] <= err["uniform"] + 1e-12 and err["alds"] <= err["svd_energy"] + 1e-12


def test_issue_case_alds_and_best_k_at_3_percent():
    """The reported case: at keep ratio 0.03, alds and best_k kept 0.0398 of the six layers' weights (an
    unaffordable k = 6 / k = 3 at rank 1) while uniform kept 0.0292. Rank 1 everywhere keeps 0.0186, so 0.03 is
    achievable and every method must keep at most floor(0.03 N)."""
    layers = six_layers(0)
    total, b = original(layers), budget(layers, 0.03)
    assert total == 99744 and b == 2992 and least_kept(layers) <= b
    for method in ("alds", "best_k", "uniform"):
        assert kept(layers, allocate(method, layers, 0.03)) <= b, method


def test_budget_is_the_decimal_keep_ratio():
    """0.29 * 100 is 28.999999999999996 in floats; the budget of 0.29 of 100 weights is 29."""
    layers = [analyse("l", nn.Linear(10, 10).weight)]
    assert 0.29 * 100 < 29 and Z.budget_of(layers, 0.29) == 29


def test_each_allocator_refuses_an_unachievable_budget_directly():
    layers = six_layers(0)
    below = Z.min_kept(layers) - 1
    for fn in (Z.alds, Z.uniform, Z.svd_energy, Z.best_single_k):
        with pytest.raises(Z.BudgetError, match="minimum achievable keep ratio"):
            fn(layers, below)
        alloc = fn(layers, below + 1)  # exactly rank 1 everywhere fits
        assert kept(layers, alloc) == below + 1


def test_threshold_allocation_has_none_for_unaffordable_ks():
    """With k = 8 wherever the channels allow, rank 1 everywhere keeps sum(8 f + c k1 k2) weights: one fewer is
    over budget for those k's, even though k = 1 fits."""
    layers = six_layers(0)
    ks = {layer.name: max(layer.ks) for layer in layers}
    at_rank1 = sum(count(layer, ks[layer.name], 1) for layer in layers)
    assert Z.threshold_allocation(layers, ks, at_rank1 - 1) is None
    alloc = Z.threshold_allocation(layers, ks, at_rank1)
    assert alloc is not None and kept(layers, alloc) == at_rank1


def test_best_k_at_budget_skips_a_k_it_cannot_afford():
    """conv 48->96 3x3: (6, 1) costs 6*96 + 432 = 1008 weights; at a budget of 528 (k = 1, j = 1) only k = 1 is
    affordable, although k > 1 used to be scored at the unaffordable rank 1 (and an intact (k, 1) as error-free)."""
    layer = six_layers(0)[2]
    assert layer.ks == [1, 2, 3, 4, 6, 8] and count(layer, 1, 1) == 528
    assert Z._best_k_at_budget(layer, 528, current=1) == 1
