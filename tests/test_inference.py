"""``analysis.inference``: the crossed seed × width tests against ``statsmodels`` and against their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.regression.linear_model import OLS

from analysis import inference as inf

X = np.log2([4.0, 8, 16, 32, 64, 128, 256])
SD = np.array([0.1, 0.04, 0.02, 0.008, 0.004, 0.002, 0.001])  # per-width spreads over 100×, as in the sweeps


def unbalanced(rng: np.random.Generator, G: int = 4, S: int = 15) -> np.ndarray:
    """(G, S, K) values with a seed effect, unequal spreads and seeds missing at some widths."""
    Y = SD * (rng.normal(size=(G, S, X.size)) + rng.normal(size=(G, S, 1)))
    Y[0, 3, 2] = Y[0, 5, :2] = Y[1, 7, :] = Y[2, 0, -1] = np.nan
    return Y


def fit(Y: np.ndarray):
    """statsmodels' OLS of one group's present values on X with the CR1 variance clustered by seed."""
    ok = np.isfinite(Y)
    x = np.broadcast_to(X, Y.shape)[ok]
    seeds = np.broadcast_to(np.arange(Y.shape[0])[:, None], Y.shape)[ok]
    return OLS(Y[ok], np.column_stack([np.ones_like(x), x])).fit(cov_type="cluster", cov_kwds={"groups": seeds})


def test_the_moments_are_statsmodels_cluster_robust_ols():
    Y = unbalanced(np.random.default_rng(0))
    mom = inf.moments(*inf.cells_from_values(Y), X)
    for g in range(Y.shape[0]):
        res = fit(Y[g])
        # The same float64 formulas summed in another order: agreement to a few ulps of the t statistic.
        assert mom.slope[g] == pytest.approx(res.params[1], rel=1e-10)
        assert mom.intercept[g] == pytest.approx(res.params[0], rel=1e-10)
        assert mom.t[g] == pytest.approx(res.tvalues[1], rel=1e-10)
        assert mom.se[g] == pytest.approx(res.bse[1], rel=1e-10)
    assert list(mom.n_clusters) == [15, 14, 15, 15]


@pytest.mark.parametrize("kind", ["rademacher", "webb"])
def test_each_bootstrap_t_is_statsmodels_on_the_resampled_data(kind):
    """y* = ȳ + v_s (y − ȳ) (restricted under H0) refitted by statsmodels gives the t that the algebra gives."""
    rng = np.random.default_rng(1)
    Y = unbalanced(rng)
    mom = inf.moments(*inf.cells_from_values(Y), X)
    V = inf.wild_weights(np.arange(Y.shape[1]), 6, kind, (3,))
    tb = inf.bootstrap_t(V, mom)
    for g in range(Y.shape[0]):
        for b in range(V.shape[0]):
            ystar = mom.ybar[g] + V[b][:, None] * (Y[g] - mom.ybar[g])
            assert tb[b, g] == pytest.approx(fit(ystar).tvalues[1], rel=1e-9)


def test_balanced_design_is_the_sign_flip_test_of_the_per_seed_slopes():
    rng = np.random.default_rng(2)
    S = 30
    Y = SD * (rng.normal(size=(1, S, X.size)) + rng.normal(size=(1, S, 1)))
    mom = inf.moments(*inf.cells_from_values(Y), X)
    xc = X - X.mean()
    b_s = Y[0] @ xc / (xc @ xc)                      # each seed's own slope
    assert mom.slope[0] == pytest.approx(b_s.mean(), rel=1e-12)
    # CR1 = G/(G − 1)·(N − 1)/(N − 2)·Σ_s (Sxx_w (b_s − b̄))² / (G Sxx_w)² = (N − 1)/(N − 2)·var(b_s)/G.
    N = S * X.size
    assert mom.se[0] ** 2 == pytest.approx((N - 1) / (N - 2) * b_s.var(ddof=1) / S, rel=1e-10)
    V = inf.wild_weights(np.arange(S), 50, "rademacher", (0,))
    # Every bootstrap sample's slope is the mean of the sign-flipped per-seed slopes, its t their one-sample t.
    tb = inf.bootstrap_t(V, mom)[:, 0]
    flipped = V * b_s
    t_def = flipped.mean(axis=1) / np.sqrt((N - 1) / (N - 2) * flipped.var(axis=1, ddof=1) / S)
    np.testing.assert_allclose(tb, t_def, rtol=1e-9)


def test_the_exhaustive_sign_flip_p_is_exact():
    """With all 2^S sign patterns as the draws, a balanced group's p is the exact randomisation p: under H0 with
    symmetric errors P(p <= α) <= α. Over 2,000 null groups of 8 seeds (256 patterns) the rate at 0.05 is within
    the binomial band of 5% (Binomial(2000, 0.05): 100 ± 2·9.7)."""
    S = 8
    V = ((np.arange(2 ** S)[:, None] >> np.arange(S)) & 1) * 2.0 - 1.0
    rng = np.random.default_rng(3)
    Y = SD * (rng.normal(size=(2000, S, X.size)) + rng.normal(size=(2000, S, 1)))
    mom = inf.moments(*inf.cells_from_values(Y), X)
    p = (inf.trend_exceedances(V, mom)) / V.shape[0]  # the identity pattern is among the draws
    assert p.min() >= 2 / 2 ** S  # v and −v give the same |t|
    assert 80 <= (p <= 0.05).sum() <= 120


def test_pair_scores_are_self_normalised_paired_differences():
    rng = np.random.default_rng(4)
    Y = SD * (rng.normal(size=(2, 12, X.size)) + rng.normal(size=(2, 12, 1))) + 0.01 * X
    mom = inf.moments(*inf.cells_from_values(Y), X)
    psi, obs = inf.pair_scores(mom)
    i, j = inf.pairs_of(X.size)
    assert psi.shape == (2, 12, i.size)
    for p, (a, b) in enumerate(zip(i, j, strict=True)):
        d = Y[:, :, b] - Y[:, :, a]                   # balanced: each seed's difference between the two widths
        np.testing.assert_allclose(obs[:, p], d.sum(axis=1) / np.sqrt((d * d).sum(axis=1)), rtol=1e-10)
    V = inf.wild_weights(np.arange(12), 200, "rademacher", (1,))
    pc = inf.pair_exceedances(V, psi, obs)
    tb = np.abs(np.einsum("bs,gsp->bgp", V, psi))
    np.testing.assert_array_equal(pc.omni, (tb.max(axis=2) >= np.abs(obs).max(axis=1) * (1 - 1e-9)).sum(axis=0))
    last = int(np.flatnonzero((i == 0) & (j == X.size - 1))[0])
    np.testing.assert_array_equal(pc.contrast, (tb[:, :, last] >= np.abs(obs[:, last]) * (1 - 1e-9)).sum(axis=0))
    # The largest pair's max-T count is the omnibus count.
    top = np.argmax(np.abs(obs), axis=1)
    np.testing.assert_array_equal(pc.pair[np.arange(2), top], pc.omni)


def test_cluster_bootstrap_is_the_slow_definition():
    rng = np.random.default_rng(5)
    Y = unbalanced(rng, G=3, S=10)
    mom = inf.moments(*inf.cells_from_values(Y), X)
    W = inf.resample_counts(10, 20, (0, 1))
    out = inf.cluster_bootstrap(W, mom)
    for b in range(20):
        rows = np.repeat(np.arange(10), W[b].astype(int))   # each seed as often as it is drawn, all its widths
        for g in range(3):
            sample = Y[g][rows]
            ok = np.isfinite(sample)
            x = np.broadcast_to(X, sample.shape)[ok]
            slope = np.polyfit(x, sample[ok], 1)[0]
            assert out["slope"][b, g] == pytest.approx(slope, rel=1e-9, abs=1e-12)
            with np.errstate(invalid="ignore"):
                np.testing.assert_allclose(out["means"][b, g], np.nanmean(sample, axis=0), rtol=1e-12)


def test_weights_are_drawn_per_seed_id():
    a = inf.wild_weights([10000, 10001, 10002], 100, "rademacher", (0, 0, 0))
    b = inf.wild_weights([10001, 10005], 100, "rademacher", (0, 0, 0))
    np.testing.assert_array_equal(a[:, 1], b[:, 0])  # a seed's weights do not depend on the other seeds
    assert not np.array_equal(a[:, 0], a[:, 1])
    assert set(np.unique(a)) == {-1.0, 1.0}
    webb = inf.WEBB
    assert webb.mean() == pytest.approx(0.0, abs=1e-15) and (webb ** 2).mean() == pytest.approx(1.0)
    assert inf.weight_kind(11) == "webb" and inf.weight_kind(12) == "rademacher"
