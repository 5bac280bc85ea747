"""Vectorised metrics against brute-force definitions on small random layers.

The two sides sum the same terms in different orders (``cdist``/``bmm`` kernels against a Python-level
definition), so they agree to float32 rounding; each tolerance is the bound from ``tests/numerics.py``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from experiments.data import integers
from experiments.metrics import (
    DEAD_RELATIVE_STD,
    activation_metrics,
    min_pair_l1,
    singular_values,
    spectral_metrics,
    weight_metrics,
)
from experiments.models.mlp import build_mlp
from tests.numerics import U32, gamma

pytestmark = pytest.mark.numerics  # rerun under every ATEN_CPU_CAPABILITY by `make test`


def brute_min_pair(W: torch.Tensor) -> tuple[float, int, int]:
    """The source's scan: i ascending, then j ascending, a later pair wins a tie."""
    best = (math.inf, -1, -1)
    for i, j in itertools.combinations(range(W.shape[0]), 2):
        d = (W[i] - W[j]).abs().sum().item() / W.shape[1]
        if d <= best[0]:
            best = (d, i, j)
    return best


def test_min_pair_l1_matches_brute_force_for_a_batch():
    g = torch.Generator().manual_seed(0)
    W = torch.rand(6, 9, 5, generator=g)
    out = min_pair_l1(W)
    # Both sides sum 5 non-negative terms (each sum within gamma(5) of the exact one) and divide once.
    rel = 2 * gamma(6)
    for b in range(6):
        value, i, j = brute_min_pair(W[b])
        assert out["min_pair_l1"][b].item() == pytest.approx(value, rel=rel)
        assert (out["min_pair_i"][b].item(), out["min_pair_j"][b].item()) == (i, j)


def test_min_pair_l1_tie_goes_to_the_later_pair():
    W = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [5.0, 5.0], [5.0, 5.0]])[None]
    out = min_pair_l1(W)
    # Pairs (0,2) and (3,4) both have distance 0; the scan keeps the later one.
    assert (out["min_pair_i"].item(), out["min_pair_j"].item(), out["min_pair_l1"].item()) == (3, 4, 0.0)


def test_cosine_and_nn_metrics_against_brute_force():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(3, 7, 4, generator=g)
    out = weight_metrics(W)
    # |cos| of unit vectors: a 4-term dot product (gamma(4), Cauchy-Schwarz bounds its |terms| by 1) and two
    # normalisations (gamma(6) each), on each side; L1 as above.
    cos_abs = 2 * (gamma(4) + 2 * gamma(6))
    for b in range(3):
        cos = torch.tensor([[abs(torch.nn.functional.cosine_similarity(W[b, i], W[b, j], dim=0).item())
                             for j in range(7)] for i in range(7)])
        cos.fill_diagonal_(-1)
        assert out["max_abs_cos"][b].item() == pytest.approx(cos.max().item(), abs=cos_abs)
        assert out["mean_nn_abs_cos"][b].item() == pytest.approx(cos.max(dim=1).values.mean().item(), abs=cos_abs)
        l1 = torch.cdist(W[b], W[b], p=1) / 4
        l1.fill_diagonal_(math.inf)
        # Each distance: a 4-term sum of |differences| (gamma(5) per side); the mean over 7 units adds gamma(8).
        expected = l1.min(dim=1).values.mean().item()
        assert out["mean_nn_l1"][b].item() == pytest.approx(expected, rel=2 * gamma(5) + 2 * gamma(8))


@pytest.mark.parametrize("shape", [(5, 12, 4), (5, 4, 12), (2, 128, 32), (3, 1, 8), (3, 8, 1)])
def test_singular_values_match_svdvals(shape):
    W = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    reference = torch.linalg.svdvals(W)
    # svdvals (float32, Householder bidiagonalisation) returns the exact singular values of W + E with
    # |E|_2 <= p(m, n) u |W|_2 for a modest p (Higham, Thm 19.4 for products of Householder transformations;
    # p = m n is taken here, i.e. gamma(m n)), so by Weyl each value is within gamma(m n) s_1 of the exact
    # one; ours (float64 Gram eigenvalues, then one float32 rounding) within u s_k.
    _, m, n = shape
    atol = gamma(m * n) * reference[:, :1] + U32 * reference
    assert ((singular_values(W) - reference).abs() <= atol).all()


def test_spectral_metrics_on_known_spectra():
    s = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 1.0, 0.0, 0.0]])
    out = spectral_metrics(s)
    # Exact values against float32 evaluations of sums of k = 4 terms, a log and an exp: within a few gamma(k)
    # of the value; pytest.approx's default rel = 1e-6 is 17 u, above gamma(12) = 12 u.
    assert gamma(12) < 1e-6
    assert out["eff_rank"][0].item() == pytest.approx(4.0)
    assert out["eff_rank_norm"][0].item() == pytest.approx(1.0)
    p = torch.tensor([0.75, 0.25])
    assert out["eff_rank"][1].item() == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    assert out["stable_rank"].tolist() == pytest.approx([4.0, 10.0 / 9.0])
    # energies 9 and 1: 90% is reached by the first value exactly, 99% needs both.
    assert out["rank90"].tolist() == [4.0, 1.0]
    assert out["rank99"].tolist() == [4.0, 2.0]


def test_single_unit_layer_has_no_pair_metrics():
    out = weight_metrics(torch.randn(2, 1, 8))
    assert "min_pair_l1" not in out and "eff_rank" in out


def test_conv_weights_are_reshaped_to_units_by_fan_in():
    W = torch.randn(2, 6, 3, 3, 3)
    flat = weight_metrics(W.flatten(2))
    conv = weight_metrics(W)
    assert flat.keys() == conv.keys()
    for k in flat:  # the same operations on the same values: equal by construction
        assert torch.equal(flat[k], conv[k]), k


# ---------------------------------------------------------------------------------------------------------
# Activation metrics


def brute_activation_metrics(A: np.ndarray) -> dict[str, float]:
    """The definitions, one model at a time, with NumPy's corrcoef and eigvalsh (float64)."""
    units = A.shape[1]
    std = A.std(axis=0)
    alive = ~(std <= DEAD_RELATIVE_STD * np.abs(A.mean(axis=0)))
    live = A[:, alive]
    out = {"act_dead_frac": 1 - alive.mean()}
    if live.shape[1] >= 2:
        r = np.abs(np.corrcoef(live, rowvar=False))
        np.fill_diagonal(r, -1)
        out["act_max_abs_corr"] = r.max()
        out["act_mean_nn_abs_corr"] = r.max(axis=1).mean()
    eig = np.clip(np.linalg.eigvalsh(np.cov(A, rowvar=False)), 0, None)[::-1]
    p = eig / eig.sum()
    nz = p[p > 0]
    out["act_eff_rank_norm"] = np.exp(-(nz * np.log(nz)).sum()) / units
    out["act_pc95_frac"] = (np.searchsorted(np.cumsum(p), 0.95) + 1) / units
    return out


def test_activation_metrics_match_their_definitions():
    g = torch.Generator().manual_seed(3)
    mix = torch.randn(4, 6, 6, generator=g)
    A = torch.randn(4, 500, 6, generator=g, dtype=torch.float64) @ mix.double()  # correlated units
    A[1, :, 2] = 0.0  # a dead ReLU unit
    A[2, :, 4] = 3.5  # a constant (saturated) unit
    out = activation_metrics(A.float())
    for b in range(4):
        ref = brute_activation_metrics(A[b].float().double().numpy())
        for name, value in ref.items():
            # Both sides in float64 from the same float32 values: sums of 500 x 6 terms, a few gamma apart.
            assert out[name][b].item() == pytest.approx(value, rel=1e-9, abs=1e-12), (b, name)
    assert out["act_dead_frac"].tolist() == [0.0, 1 / 6, 1 / 6, 0.0]


def test_activation_metrics_without_two_live_units_are_nan_not_zero():
    A = torch.zeros(2, 50, 3)
    A[1, :, 0] = torch.linspace(0, 1, 50)  # one live unit
    out = activation_metrics(A)
    assert out["act_dead_frac"].tolist() == [1.0, 2 / 3]
    assert torch.isnan(out["act_max_abs_corr"]).all() and torch.isnan(out["act_mean_nn_abs_corr"]).all()
    assert torch.isnan(out["act_eff_rank_norm"][0]) and out["act_eff_rank_norm"][1].item() == pytest.approx(1 / 3)


def test_linear_source_mlp_units_are_perfectly_correlated_at_every_width():
    """In the source model (linear, one scalar input) every unit is a*x + b: |r| = 1 for every pair, a rank-one
    covariance, whatever the width. Float32 rounding of an activation (backward-stable dot products of
    fan_in + 1 terms: relative gamma(33) of the |terms|) adds noise delta <= gamma(33) * kappa times a unit's
    spread, kappa = max|h| / std(h), and moves |r| away from 1 by O(delta^2) only."""
    x = integers(100).x
    for width in (4, 8, 32, 128):
        model = build_mlp(width, [10000, 10001])
        acts = model.activations(x)
        for layer, A in acts.items():
            out = activation_metrics(A)
            kappa = (A.abs().amax(dim=1) / A.double().std(dim=1)).max().item()
            bound = 4 * (gamma(33) * kappa) ** 2 + 2 * gamma(200, u=2.0**-53)
            assert (1 - out["act_max_abs_corr"]).abs().max().item() <= bound, (width, layer)
            assert (1 - out["act_mean_nn_abs_corr"]).abs().max().item() <= bound, (width, layer)
            units = A.shape[-1]
            assert out["act_pc95_frac"].tolist() == [1 / units] * 2
            assert out["act_eff_rank_norm"].tolist() == pytest.approx([1 / units] * 2, rel=1e-6)
