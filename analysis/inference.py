"""Tests of a width effect in the crossed seed × width design, vectorised over groups and resamples.

The sweeps reuse the same seeds (10000, 10001, …) at every width: the same initial-draw stream and data order. A
seed's values at different widths are therefore correlated (the seed is a *cluster*), and the values' spread
differs between widths by up to two orders of magnitude. Every test here treats the seeds as the independent
units and makes no assumption about the spread at each width or about the correlation between widths:

- **trend**: the OLS slope of the outcome on log2 w over all seed-level points, with the cluster-robust (by seed)
  CR1 variance that ``statsmodels`` computes (``OLS.fit(cov_type="cluster")``: small-sample factor
  G/(G − 1) · (N − 1)/(N − 2)); its p-value from the *restricted wild cluster bootstrap* of the t statistic
  (Cameron, Gelbach & Miller 2008; MacKinnon & Webb 2017): under H0 (slope 0) the outcome is its mean plus the
  restricted residuals, each seed's whole residual vector multiplied by one random weight v_s (Rademacher ±1, or
  Webb's six-point weights with fewer than :data:`WEBB_BELOW` seeds, where 2^G sign patterns are too few). With a
  balanced design the pooled slope is the mean of the per-seed slopes, CR1 is essentially their variance / G, and
  this is the sign-flip test of their mean. The bootstrap t is linear algebra in v, so all draws of all groups that
  share a design are a few matrix products (``trend_exceedances``); it reproduces ``statsmodels`` for any v (tested).
- **omnibus** (any width effect, any shape): the largest studentised difference between two width means, max over
  pairs i < j of |μ̂_j − μ̂_i| / se, with the same restricted wild cluster bootstrap (all widths' means equal under
  H0; the max-T / Westfall–Young single-step procedure). Each pair's difference is a sum of seed contributions ψ_s,
  studentised by √Σψ_s², which sign flips do not change: in a balanced design this is the exact sign-flip
  randomisation test of a repeated-measures contrast (as Hotelling's T² on the seeds' vectors of differences
  would be, but defined with fewer seeds than widths and with seeds missing at some widths). It gives each pair a
  p-value adjusted for all pairs (the shape of the profile) and the narrowest-vs-widest contrast its own p.
- **cluster bootstrap CIs**: seeds resampled with replacement, each seed with all its widths (the CI of the slope,
  of the contrast and of every width's mean), from per-seed sufficient statistics (``cluster_bootstrap``).

Inputs are *cells*: for G groups on one design (the same widths and the same seeds), ``total`` (G, S, K) the sum
and ``count`` (G, S, K) the number of observations of seed s at width k (0 where a seed has no value: unbalanced
designs are handled exactly; a cell may hold more than one observation, e.g. two runs of one seed). Random
weights are drawn per seed id (:func:`wild_weights`), so a group's p-values depend on its own seeds and the
stream, never on which other groups are tested beside it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

try:  # installed with scikit-learn (pinned); without it, BLAS keeps its own threads
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

# Webb's six-point weights (mean 0, variance 1): with G seeds they give 6^G bootstrap samples where Rademacher
# gives 2^G, which is too few below ~12 seeds (the smallest attainable p would be 2/2^G).
WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
WEBB_BELOW = 12
# Memory per product chunk (floats): draws × groups × pairs.
_CHUNK = 1 << 23
# A bootstrap statistic within this relative distance of the observed one counts as "as extreme" (rounding: the
# identity draw must count).
_TIE = 1e-9


@lru_cache(maxsize=8192)
def _weight_column(seed_id: int, n: int, kind: str, stream: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng([*stream, int(seed_id)])
    out = (2.0 * rng.integers(0, 2, n) - 1.0) if kind == "rademacher" else WEBB[rng.integers(0, 6, n)]
    out.flags.writeable = False
    return out


def one_blas_thread() -> AbstractContextManager:
    """A context with BLAS limited to one thread: the products here are many and small (an inner dimension of a
    few dozen seeds), where OpenBLAS's threads cost more than they save (4× on two busy cores)."""
    return threadpool_limits(limits=1, user_api="blas") if threadpool_limits is not None else nullcontext()


def weight_kind(n_clusters: int) -> str:
    """``"rademacher"`` with at least :data:`WEBB_BELOW` seeds, ``"webb"`` below."""
    return "rademacher" if n_clusters >= WEBB_BELOW else "webb"


def wild_weights(seed_ids, n: int, kind: str, stream: tuple[int, ...]) -> np.ndarray:
    """(n, S) wild bootstrap weights, one column per seed id, each from its own generator keyed by (stream, id)."""
    return np.column_stack([_weight_column(int(s), n, kind, tuple(int(v) for v in stream)) for s in seed_ids])


def cells_from_values(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(total, count) cells of a (G, S, K) array of values with NaN where a seed has no value."""
    Y = np.asarray(Y, dtype=float)
    ok = np.isfinite(Y)
    return np.where(ok, Y, 0.0), ok.astype(float)


@dataclass
class Moments:
    """What the tests need of G groups on one design; arrays over groups (G,), seeds (G, S) or widths (G, K)."""

    x: np.ndarray          # (K,) log2 widths
    total: np.ndarray      # (G, S, K)
    count: np.ndarray      # (G, S, K)
    n_obs: np.ndarray      # (G,) N
    n_clusters: np.ndarray  # (G,) seeds with at least one value
    xbar: np.ndarray       # (G,)
    ybar: np.ndarray       # (G,)
    sxx: np.ndarray        # (G,) Σ (x − x̄)²
    slope: np.ndarray      # (G,)
    intercept: np.ndarray  # (G,)
    c: np.ndarray          # (G, S) Σ_k (x − x̄)(y − ȳ) per seed: the slope's score under H0
    m: np.ndarray          # (G, S) Σ_k (x − x̄) per seed
    d: np.ndarray          # (G, S) Σ_k (y − ȳ) per seed
    q: np.ndarray          # (G, S) Σ_k (x − x̄)² per seed
    factor: np.ndarray     # (G,) CR1 small-sample factor G/(G − 1) · (N − 1)/(N − 2)
    t: np.ndarray          # (G,) observed cluster-robust t of the slope

    @property
    def se(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(self.slope / self.t)


def moments(total: np.ndarray, count: np.ndarray, x: np.ndarray) -> Moments:
    """OLS of the outcome on ``x`` over all observations of each group, and the per-seed sums its tests use."""
    total, count, x = (np.asarray(a, dtype=float) for a in (total, count, x))
    n_obs = count.sum(axis=(1, 2))
    n_clusters = (count.sum(axis=2) > 0).sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        xbar = (count * x).sum(axis=(1, 2)) / n_obs
        ybar = total.sum(axis=(1, 2)) / n_obs
        xt = x[None, :] - xbar[:, None]                        # (G, K)
        m = (count * xt[:, None, :]).sum(axis=2)               # (G, S)
        q = (count * (xt * xt)[:, None, :]).sum(axis=2)
        c = (total * xt[:, None, :]).sum(axis=2) - ybar[:, None] * m
        d = total.sum(axis=2) - ybar[:, None] * count.sum(axis=2)
        sxx = q.sum(axis=1)
        slope = c.sum(axis=1) / sxx
        intercept = ybar - slope * xbar
        factor = n_clusters / (n_clusters - 1) * (n_obs - 1) / (n_obs - 2)
        score = c - slope[:, None] * q                         # Σ_k (x − x̄) u per seed, u the OLS residuals
        var = factor * (score * score).sum(axis=1) / (sxx * sxx)
        t = slope / np.sqrt(var)
    return Moments(x, total, count, n_obs, n_clusters, xbar, ybar, sxx, slope, intercept, c, m, d, q, factor, t)


def _vdot(V: np.ndarray, X: np.ndarray) -> np.ndarray:
    """(B, G) Σ_s V[b, s] X[g, s] for weights shared by the groups (V: (B, S)), or with each group's own weights
    (V: (G, B, S))."""
    return V @ X.T if V.ndim == 2 else np.einsum("gbs,gs->bg", V, X)


def bootstrap_t(V: np.ndarray, mom: Moments, unit: bool = False) -> np.ndarray:
    """(B, G) cluster-robust t of the slope in each restricted wild bootstrap sample y* = ȳ + v_s (y − ȳ);
    ``V`` (B, S) weights shared by the groups, or (G, B, S) each group's own; ``unit``: every |v| is 1 (Rademacher),
    so Σ_s v_s² c_s² = Σ_s c_s² needs no product.

    The slope is b* = Σ_s v_s c_s / Sxx; the mean moves by A = Σ_s v_s d_s / N; each seed's score is
    v_s c_s − A m_s − b* q_s, and Σ_s score² expands into matrix products of V, V² and per-seed sums."""
    C, Mv, Dv, Q = mom.c, mom.m, mom.d, mom.q                  # (G, S)
    if V.ndim == 2:
        b, A, cm, cq = (V @ X.T for X in (C, Dv, C * Mv, C * Q))
    else:  # one batched product: (G, B, S) @ (G, S, 4)
        prod = np.matmul(V, np.stack([C, Dv, C * Mv, C * Q], axis=2)).transpose(2, 1, 0)
        b, A, cm, cq = prod
    b = b / mom.sxx
    A = A / mom.n_obs
    vv = (C * C).sum(axis=1) if unit else _vdot(V * V, C * C)
    ss = (vv + A * A * (Mv * Mv).sum(axis=1) + b * b * (Q * Q).sum(axis=1)
          - 2 * A * cm - 2 * b * cq + 2 * A * b * (Mv * Q).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return b / np.sqrt(np.clip(ss, 0.0, None) * mom.factor / (mom.sxx * mom.sxx))


def trend_exceedances(V: np.ndarray, mom: Moments, t_obs: np.ndarray | None = None,
                      unit: bool = False) -> np.ndarray:
    """(G,) how many of the draws in ``V`` ((B, S) shared, or (G, B, S) per group) give |t*| >= |t| (the observed
    t: ``mom.t`` unless given)."""
    t_obs = mom.t if t_obs is None else np.asarray(t_obs, dtype=float)
    thr = np.abs(t_obs) * (1 - _TIE)
    out = np.zeros(mom.slope.size, dtype=np.int64)
    step = max(1, _CHUNK // max(V.shape[-2], 1))
    for lo in range(0, mom.slope.size, step):
        sl = slice(lo, lo + step)
        sub = Moments(mom.x, mom.total[sl], mom.count[sl], *(getattr(mom, f)[sl] for f in (
            "n_obs", "n_clusters", "xbar", "ybar", "sxx", "slope", "intercept", "c", "m", "d", "q", "factor", "t")))
        tb = bootstrap_t(V if V.ndim == 2 else V[sl], sub, unit)
        out[sl] = (np.abs(tb) >= thr[sl]).sum(axis=0)
    return out


def pairs_of(K: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j), i < j, of every pair of K widths (row-major)."""
    i, j = np.triu_indices(K, 1)
    return i, j


def pair_scores(mom: Moments) -> tuple[np.ndarray, np.ndarray]:
    """Studentised seed contributions to every pairwise difference of width means under H0 (all means equal).

    μ̂_k = Σ_s total_sk / n_k; with restricted residuals e = y − ȳ, μ̂_j − μ̂_i = Σ_s ψ_s with
    ψ_s = e_sj / n_j − e_si / n_i (summed over the cell). Returns ψ / √Σψ² (G, S, P) and the observed signed
    statistics Σ_s ψ_s / √Σψ² (G, P); NaN where a pair has no spread."""
    n_k = mom.count.sum(axis=1)                                 # (G, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = (mom.total - mom.ybar[:, None, None] * mom.count) / n_k[:, None, :]   # (G, S, K)
    i, j = pairs_of(mom.x.size)
    psi = e[:, :, j] - e[:, :, i]                                # (G, S, P)
    norm = np.sqrt((psi * psi).sum(axis=1))                      # (G, P)
    with np.errstate(divide="ignore", invalid="ignore"):
        psi = np.where(norm[:, None, :] > 0, psi / norm[:, None, :], 0.0)
        obs = np.where(norm > 0, psi.sum(axis=1), np.nan)
    return psi, obs


@dataclass
class PairCounts:
    """Exceedance counts of the max-T bootstrap of the pairwise differences of G groups over B draws."""

    omni: np.ndarray      # (G,) #{max_p |T*_p| >= max_p |T_p|}
    pair: np.ndarray      # (G, P) #{max_p' |T*_p'| >= |T_p|}: each pair's p adjusted for all pairs (single step)
    contrast: np.ndarray  # (G,) #{|T*_c| >= |T_c|} of the narrowest-vs-widest pair alone
    n: int


def pair_exceedances(V: np.ndarray, psi: np.ndarray, obs: np.ndarray, pairs: bool = True) -> PairCounts:
    """The max-T wild cluster bootstrap of :func:`pair_scores`: every draw's statistics are one product V @ ψ
    (``V`` (B, S) shared by the groups, or (G, B, S) each group's own). ``pairs=False`` skips the per-pair counts
    (left 0) and the contrast (the omnibus alone: a calibration)."""
    G, S, P = psi.shape
    absobs = np.abs(np.nan_to_num(obs, nan=0.0))
    omni_obs = absobs.max(axis=1) * (1 - _TIE)
    thr = absobs * (1 - _TIE)
    K = round((1 + np.sqrt(1 + 8 * P)) / 2)  # P = K(K − 1)/2
    i, j = pairs_of(K)
    c = int(np.flatnonzero((i == 0) & (j == K - 1))[0])  # the narrowest-vs-widest pair
    out = PairCounts(np.zeros(G, dtype=np.int64), np.zeros((G, P), dtype=np.int64), np.zeros(G, dtype=np.int64),
                     V.shape[-2])
    step = max(1, _CHUNK // max(V.shape[-2] * P, 1))
    for lo in range(0, G, step):
        sl = slice(lo, min(G, lo + step))
        g = sl.stop - sl.start
        if V.ndim == 2:
            tb = (V @ psi[sl].transpose(1, 0, 2).reshape(S, g * P)).reshape(-1, g, P)      # (B, g, P)
        else:  # each group's own weights: (g, B, S) @ (g, S, P), kept contiguous as (g, B, P)
            tb = np.matmul(V[sl], psi[sl])
        np.abs(tb, out=tb)
        mx = tb.max(axis=2)                                            # (B, g), or (g, B) with own weights
        if V.ndim == 3:
            out.omni[sl] = (mx >= omni_obs[sl][:, None]).sum(axis=1)
            if pairs:
                out.pair[sl] = (mx[:, :, None] >= thr[sl][:, None, :]).sum(axis=1)
                out.contrast[sl] = (tb[:, :, c] >= thr[sl][:, c, None]).sum(axis=1)
            continue
        out.omni[sl] = (mx >= omni_obs[sl]).sum(axis=0)
        if pairs:
            out.pair[sl] = (mx[:, :, None] >= thr[sl][None]).sum(axis=0)
            out.contrast[sl] = (tb[:, :, c] >= thr[sl][:, c]).sum(axis=0)
    return out


def p_from_counts(exceed: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """(1 + exceedances) / (1 + draws): the observed sample counts as one draw, so p >= 1/(n + 1)."""
    return (np.asarray(exceed, dtype=float) + 1.0) / (np.asarray(n, dtype=float) + 1.0)


# ---------------------------------------------------------------------------------------------------------
# The cluster (pairs) bootstrap: seeds resampled with replacement, each with all its widths


@lru_cache(maxsize=256)
def resample_counts(n: int, n_boot: int, stream: tuple[int, ...]) -> np.ndarray:
    """(n_boot, n): how often each of n seeds is drawn in each resample; cached and keyed by the stream only."""
    idx = np.random.default_rng(list(stream)).integers(0, n, size=(n_boot, n))
    counts = np.bincount((np.arange(n_boot)[:, None] * n + idx).ravel(), minlength=n_boot * n)
    out = counts.reshape(n_boot, n).astype(float)
    out.flags.writeable = False
    return out


def cluster_bootstrap(W: np.ndarray, mom: Moments) -> dict[str, np.ndarray]:
    """Slopes (B, G) and width means (B, G, K) of the resamples whose seed counts are the rows of ``W`` (B, S).

    From per-seed sufficient statistics (n, Σx, Σx², Σy, Σxy per seed), so an unbalanced design is resampled
    exactly: a resample's x̄ and Σ(x − x̄)² are its own. NaN where a resample has a single width."""
    cnt_s = mom.count.sum(axis=2).T                       # (S, G)
    x1 = (mom.count * mom.x).sum(axis=2).T
    x2 = (mom.count * mom.x * mom.x).sum(axis=2).T
    y1 = mom.total.sum(axis=2).T
    xy = (mom.total * mom.x).sum(axis=2).T
    n, sx, sxx, sy, sxy = W @ cnt_s, W @ x1, W @ x2, W @ y1, W @ xy
    G, S, K = mom.total.shape
    means = np.empty((W.shape[0], G, K))
    step = max(1, _CHUNK // max(W.shape[0] * K, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        den = sxx - sx * sx / n
        slope = np.where(den > 1e-12 * np.maximum(sxx, 1e-300), (sxy - sx * sy / n) / den, np.nan)
        for lo in range(0, G, step):
            sl = slice(lo, min(G, lo + step))
            g = sl.stop - sl.start
            num = W @ mom.total[sl].transpose(1, 0, 2).reshape(S, g * K)
            cnt = W @ mom.count[sl].transpose(1, 0, 2).reshape(S, g * K)
            means[:, sl] = (num / cnt).reshape(-1, g, K)
    return {"slope": slope, "means": means}
