"""The study's hypothesis as tests (SPEC §9): does training change redundancy *differently* in narrow and wide layers?

Per experiment × layer × metric (every setting column of :data:`analysis.stats.GROUP` but the width) that was run
at ≥ 3 widths, from the paired change of each seed (final − initial, ``stats.paired_values``):

- the trend of the change over log2 width: the OLS slope over all seed-level points (change per doubling of the
  width), a two-sided permutation test of it (width labels permuted across seeds: seeds at different widths are
  independent models, so under H0 "the width does not matter" they are exchangeable) and a percentile-bootstrap
  CI (seeds resampled within each width); the Jonckheere–Terpstra test (normal approximation with ties) as a
  rank-based cross-check; the same slope for the final value alone (``end_slope``);
- the narrowest-vs-widest contrast: mean change at the widest width minus at the narrowest, bootstrap CI and a
  permutation p (labels permuted between the two ends);
- the standardised effect against the width-matched untrained null at each end,
  d = (final mean − null mean) / null SD, with a bootstrap CI (seeds and null draws resampled), beside the median
  percentile of the seeds' final values in the null;
- multiplicity: one declared family (:data:`FAMILY_METRICS` × :data:`STUDIED_LAYERS` × every sweep; see
  :func:`in_family`), Benjamini–Hochberg q-values over its trend tests, Holm over the declared headline subset
  (:data:`HEADLINE_METRICS` of the layer that takes the width, :data:`HEADLINE_LAYERS`); the ``verdict`` of a row
  uses Holm for a headline test and q for every other family test, never a raw p.

Every test reports its n: ``n_total`` seeds over the widths, the least and most at one width, and ``n_dropped``:
the replicates the experiment ran at those widths that the paired test could not use (e.g. ReLU seeds whose units
all died have no activation correlation).

Vectorised: groups with the same design (widths and seeds per width) share one matrix of permuted width labels
and one set of bootstrap resamples, so the tests of all of them are matrix products; no Python loop runs over
permutations or resamples. The random streams are seeded from ``seed`` and the design alone, so a group's
numbers do not depend on which other groups the frame holds or in which order they are visited.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.load import DEFAULT_ROOT
from analysis.stats import (
    BOOT_SEED,
    CI,
    GROUP,
    INDEX_METRICS,
    N_BOOT,
    null_percentile,
    paired_values,
    replicates_per_width,
)
from analysis.tables import to_markdown, write_csv_and_markdown

# One trend row per combination of these: every setting but the width.
TREND_GROUP = [c for c in GROUP if c != "width"]
# One experiment configuration (its replicates are counted over these, at each width).
CONFIG = [c for c in TREND_GROUP if c not in ("layer", "metric")]
MIN_WIDTHS = 3
N_PERM = 10_000  # smallest p = 1/10,001: Holm over ~20 headline tests can still reach ~2e-3, BH lower
ALPHA = 0.05
# The metrics are computed in float32: a spread of the changes (or final values) of a group below this share of the
# metric's magnitude is rounding (e.g. a linear MLP's activation |corr|, exactly 1 at every width, moves by ~1e-6),
# and its tests are reported as undefined (NaN) rather than as a trend in the rounding. On the current results the
# largest such spread is 6e-6 of the magnitude and the smallest real one 5e-4.
SPREAD_RTOL = 1e-5

# The declared family. Every trend test (slope of the paired change over log2 width) of
#   - a layer whose size is the swept width (STUDIED_LAYERS: the MLP/conv/autoencoder/1-D CNN ``bottleneck``; the
#     ResNet blocks' C→w ``reduce`` and the bottleneck block's w→w ``middle``),
#   - a redundancy metric (FAMILY_METRICS: weight, activation and functional redundancy; the ones the results do
#     not hold yet are simply absent),
#   - of a sweep: an experiment configuration with at least FAMILY_MIN_REPLICATES seeds per width (this leaves out
#     the single-seed ``source`` reproduction; the table needs >= MIN_WIDTHS widths anyway).
# BH q-values are computed over exactly these tests (those that are defined: a change that is identical for every
# seed has no test). Contrasts, end slopes and JT are reported beside them, not as separate claims.
STUDIED_LAYERS = ("bottleneck", "reduce", "middle")
FAMILY_METRICS = (
    "mean_nn_abs_cos", "eff_rank_norm", "mean_nn_l1", "min_pair_l1",                  # weights
    "act_mean_nn_abs_corr", "act_eff_rank_norm", "act_pc95_frac",                      # activations
    "prunable_frac", "redundant_frac", "act_r2_others_mean", "abl_top10_share",       # functional
)
FAMILY_MIN_REPLICATES = 5
# The headline claims, Holm-adjusted: per sweep, the layer that takes the width (``reduce`` in both ResNet blocks),
# one primary weight metric (pair-count-free nearest-unit |cos|), one primary activation metric (effective rank
# of the activations / w) and one functional metric (the share of prunable units, Casper, Boix et al. 2021).
HEADLINE_LAYERS = ("bottleneck", "reduce")
HEADLINE_METRICS = ("mean_nn_abs_cos", "act_eff_rank_norm", "prunable_frac")
# +1 where a larger value means more redundant units, -1 where it means less (for the verdict's wording).
REDUNDANCY_SIGN = {
    "mean_nn_abs_cos": 1, "eff_rank_norm": -1, "mean_nn_l1": -1, "min_pair_l1": -1,
    "act_mean_nn_abs_corr": 1, "act_eff_rank_norm": -1, "act_pc95_frac": -1,
    "prunable_frac": 1, "redundant_frac": 1, "act_r2_others_mean": 1, "abl_top10_share": 1,
}

TREND_COLUMNS = [
    *TREND_GROUP,
    "n_widths", "widths", "n_replicates", "n_total", "n_min_per_width", "n_max_per_width", "n_dropped",
    "slope", "slope_lo", "slope_hi", "intercept", "trend_p", "jt_p",
    "end_slope", "end_slope_lo", "end_slope_hi", "end_p",
    "narrow", "wide", "n_narrow", "n_wide", "change_narrow", "change_wide",
    "contrast", "contrast_lo", "contrast_hi", "contrast_p",
    "n_null_narrow", "d_narrow", "d_narrow_lo", "d_narrow_hi", "pct_narrow",
    "n_null_wide", "d_wide", "d_wide_lo", "d_wide_hi", "pct_wide",
    "in_family", "headline", "q", "holm", "verdict", "verdict_p",
]


# ---------------------------------------------------------------------------------------------------------
# Multiplicity


def _adjust_finite(p: np.ndarray, adjust) -> np.ndarray:
    """Apply ``adjust`` (sorted finite p -> adjusted, same order) to the finite entries of ``p``, in place of
    their sorted positions; NaN entries are no test: kept NaN and not counted in m."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        pv = p[ok]
        order = np.argsort(pv, kind="stable")
        adj = np.empty(pv.size)
        adj[order] = adjust(pv[order])
        out[ok] = adj
    return out


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values (step-up adjusted p) of ``p``; NaN entries are no test: kept NaN, not counted.

    q_(i) = min_{j >= i} p_(j) m / j over the sorted p, capped at 1 (as ``scipy.stats.false_discovery_control``)."""
    def step_up(ps: np.ndarray) -> np.ndarray:
        scaled = ps * ps.size / np.arange(1, ps.size + 1)
        return np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)

    return _adjust_finite(p, step_up)


def holm_adjust(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error); NaN entries kept NaN and not counted.

    p̃_(i) = max_{j <= i} min(1, (m − j + 1) p_(j)) over the sorted p."""
    return _adjust_finite(p, lambda ps: np.maximum.accumulate(np.minimum(ps * (ps.size - np.arange(ps.size)), 1.0)))


def ols_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line of ``y`` on ``x``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    xc = x - x.mean()
    slope = float(xc @ (y - y.mean()) / (xc @ xc))
    return slope, float(y.mean() - slope * x.mean())


def permutation_slope_p(x: np.ndarray, Y: np.ndarray, n_perm: int = N_PERM,
                        rng: np.random.Generator | int = 0, atol: np.ndarray | float = 0.0) -> np.ndarray:
    """Two-sided permutation p of the OLS slope of every column of ``Y`` (n, G) on ``x`` (n,).

    The labels ``x`` are permuted across the n points (one permutation shared by all columns); since
    Σ(x − x̄)² does not change under permutation, the slope's statistic is Σ (x_π − x̄)(y − ȳ), and all n_perm ×
    G of them are one matrix product (in chunks of a few million numbers). p = (1 + #{|T_π| >= |T|}) / (n_perm + 1),
    so p >= 1/(n_perm + 1) and the test is exact at any n_perm. NaN for a column whose spread is <= ``atol``
    (no test: nothing varies, or only rounding does)."""
    rng = np.random.default_rng(rng)
    x = np.asarray(x, dtype=float)
    Y = np.asarray(Y, dtype=float).reshape(x.size, -1)
    xc = x - x.mean()
    Yc = Y - Y.mean(axis=0)
    obs = xc @ Yc
    # Rounding: a permutation that only swaps points within a width must count as "as extreme".
    thr = np.abs(obs) - 1e-9 * (np.abs(xc) @ np.abs(Yc))
    exceed = np.zeros(Y.shape[1], dtype=np.int64)
    chunk = max(1, min(n_perm, (1 << 22) // max(x.size, 1)))
    done = 0
    while done < n_perm:
        b = min(chunk, n_perm - done)
        perm = np.tile(xc, (b, 1))
        rng.permuted(perm, axis=1, out=perm)
        exceed += (np.abs(perm @ Yc) >= thr).sum(axis=0)
        done += b
    p = (exceed + 1.0) / (n_perm + 1.0)
    p[np.ptp(Y, axis=0) <= atol] = np.nan
    return p


def jonckheere_p(y: np.ndarray, sizes: np.ndarray) -> float:
    """Two-sided Jonckheere–Terpstra p of an ordered alternative, normal approximation with the tie correction.

    ``y`` holds the groups one after another in their order (``sizes`` values each). J = Σ_{i<j} U_ij, the
    Mann–Whitney counts (ties 1/2); U of group j against all earlier ones is its midrank sum in their pool
    minus n_j(n_j + 1)/2. Variance with ties: Hollander & Wolfe (1999), eq. 6.19. NaN without spread."""
    y = np.asarray(y, dtype=float)
    sizes = np.asarray(sizes, dtype=np.int64)
    ends = np.cumsum(sizes)
    J = 0.0
    for j in range(1, sizes.size):
        ranks = sps.rankdata(y[:ends[j]])
        J += ranks[ends[j - 1]:].sum() - sizes[j] * (sizes[j] + 1) / 2
    N = float(y.size)
    t = np.unique(y, return_counts=True)[1].astype(float)
    n = sizes.astype(float)
    mean = (N * N - (n * n).sum()) / 4
    var = ((N * (N - 1) * (2 * N + 5) - (n * (n - 1) * (2 * n + 5)).sum() - (t * (t - 1) * (2 * t + 5)).sum()) / 72
           + (n * (n - 1) * (n - 2)).sum() * (t * (t - 1) * (t - 2)).sum() / (36 * N * (N - 1) * (N - 2))
           + (n * (n - 1)).sum() * (t * (t - 1)).sum() / (8 * N * (N - 1)))
    if not var > 0:
        return float("nan")
    return float(2 * sps.norm.sf(abs(J - mean) / np.sqrt(var)))


@lru_cache(maxsize=128)
def _resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n): how often each of n items is drawn in each of n_boot bootstrap resamples (as
    ``stats._resampled_means``: resample means are then one matrix product). Cached: the same (n, seed) gives the
    same resamples, whichever group asks."""
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    counts = np.bincount((np.arange(n_boot)[:, None] * n + idx).ravel(), minlength=n_boot * n)
    out = counts.reshape(n_boot, n).astype(float)
    out.flags.writeable = False
    return out


def _percentile_ci(boot: np.ndarray, ci: float = CI) -> tuple[np.ndarray, np.ndarray]:
    tail = (100.0 - ci) / 2
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: a CI that does not exist stays NaN
        lo, hi = np.nanpercentile(boot, [tail, 100.0 - tail], axis=0)
    return lo, hi


# ---------------------------------------------------------------------------------------------------------
# The table


def _replicates(df: pd.DataFrame) -> pd.Series:
    """Replicates each experiment configuration ran: the most (run, seed) pairs at any one width, any metric."""
    return replicates_per_width(df).groupby(level=CONFIG, observed=True).max()


def _design_tests(x: np.ndarray, sizes: np.ndarray, C: np.ndarray, E: np.ndarray, atol: np.ndarray, n_perm: int,
                  n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Every width test of the groups of one design (log2 widths ``x`` per point, seeds per width ``sizes``):
    ``C`` (n, G) changes, ``E`` (n, G) final values, rows ordered by width; ``atol`` (G,) the spread below which
    a group's values are rounding (no test)."""
    xc = x - x.mean()
    sxx = xc @ xc
    both = np.hstack([C, E])
    slopes = xc @ (both - both.mean(axis=0)) / sxx
    design = [int(s) for s in sizes] + [round(2.0 ** v) for v in np.unique(x)]  # seeds per width, widths
    p = permutation_slope_p(x, both, n_perm, np.random.default_rng([seed, 0, *design]), np.r_[atol, atol])
    G = C.shape[1]
    # Bootstrap: seeds resampled within each width (a fixed count per width, so x̄ and Σ(x − x̄)² stay fixed and
    # the resampled slope is Σ_w n_w (x_w − x̄) mean*_w / Σ(x − x̄)²).
    ends = np.concatenate([[0], np.cumsum(sizes)])
    xw = x[ends[:-1]] - x.mean()
    boot_slope = np.zeros((n_boot, 2 * G))
    means = []
    for j, n_j in enumerate(sizes):
        m_j = _resample_counts(int(n_j), n_boot, seed + j) @ both[ends[j]:ends[j + 1]] / n_j
        boot_slope += n_j * xw[j] * m_j
        means.append(m_j)
    boot_slope /= sxx
    lo, hi = _percentile_ci(boot_slope)
    narrow, wide = both[:ends[1]], both[ends[-2]:]
    contrast = wide[:, :G].mean(axis=0) - narrow[:, :G].mean(axis=0)
    c_lo, c_hi = _percentile_ci(means[-1][:, :G] - means[0][:, :G])
    two = np.r_[np.zeros(len(narrow)), np.ones(len(wide))]
    c_p = permutation_slope_p(two, np.vstack([narrow[:, :G], wide[:, :G]]), n_perm,
                              np.random.default_rng([seed, 1, len(narrow), len(wide)]), atol)
    return {"slope": slopes[:G], "slope_lo": lo[:G], "slope_hi": hi[:G], "trend_p": p[:G],
            "intercept": C.mean(axis=0) - slopes[:G] * x.mean(),
            "end_slope": slopes[G:], "end_slope_lo": lo[G:], "end_slope_hi": hi[G:], "end_p": p[G:],
            "change_narrow": narrow[:, :G].mean(axis=0), "change_wide": wide[:, :G].mean(axis=0),
            "contrast": contrast, "contrast_lo": c_lo, "contrast_hi": c_hi, "contrast_p": c_p,
            "boot_end_narrow": means[0][:, G:], "boot_end_wide": means[-1][:, G:],
            "end_narrow": narrow[:, G:], "end_wide": wide[:, G:]}


def _null_effects(ends: list[np.ndarray], boot_ends: list[np.ndarray], nulls: list[np.ndarray | None],
                  n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """d = (final mean − null mean) / null SD (ddof 1) for each group, with a bootstrap CI (the seeds' resampled
    means ``boot_ends`` beside the null draws resampled on their own), and the median percentile of the seeds'
    final values in the null. Groups with the same null size share one matrix product."""
    k = len(ends)
    out = {name: np.full(k, np.nan) for name in ("d", "d_lo", "d_hi", "pct")}
    out["n_null"] = np.zeros(k, dtype=np.int64)
    by_size: dict[int, list[int]] = {}
    for i, ref in enumerate(nulls):
        if ref is not None and ref.size >= 2:
            by_size.setdefault(ref.size, []).append(i)
    for m, members in by_size.items():
        V = np.column_stack([nulls[i] for i in members])  # (m, g)
        counts = _resample_counts(m, n_boot, seed + 7919)
        mu_b = counts @ V / m
        var_b = (counts @ (V * V) - m * mu_b * mu_b) / (m - 1)
        mu, sd = V.mean(axis=0), V.std(axis=0, ddof=1)
        end_b = np.column_stack([boot_ends[i] for i in members])
        end_mean = np.array([ends[i].mean() for i in members])
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(sd > 0, (end_mean - mu) / sd, np.nan)
            d_b = (end_b - mu_b) / np.sqrt(np.clip(var_b, 0.0, None))
        d_b[:, ~(sd > 0)] = np.nan
        lo, hi = _percentile_ci(np.where(np.isfinite(d_b), d_b, np.nan))
        idx = np.asarray(members)
        out["d"][idx], out["d_lo"][idx], out["d_hi"][idx] = d, lo, hi
        out["n_null"][idx] = m
        out["pct"][idx] = [np.median(null_percentile(np.sort(nulls[i]), ends[i])) for i in members]
    return out


def in_family(table: pd.DataFrame) -> pd.Series:
    """The declared family (see :data:`FAMILY_METRICS`): studied layer, redundancy metric, a sweep's replicates."""
    return (table["layer"].isin(STUDIED_LAYERS) & table["metric"].isin(FAMILY_METRICS)
            & (table["n_replicates"] >= FAMILY_MIN_REPLICATES))


def _verdicts(table: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Per row: the verdict from the adjusted p (Holm for a headline test, BH q otherwise) and that value."""
    adj = np.where(table["headline"], table["holm"], table["q"]).astype(float)
    verdicts = []
    for fam, a, slope, metric in zip(table["in_family"], adj, table["slope"], table["metric"], strict=True):
        if not fam:
            verdicts.append("")  # outside the family: descriptive
        elif not np.isfinite(a):
            verdicts.append("no test (change is rounding)")
        elif a >= ALPHA:
            verdicts.append("no width trend")
        else:
            more = np.sign(slope) * REDUNDANCY_SIGN.get(str(metric), 0)
            verdicts.append("wider gains more redundancy" if more > 0 else "narrower gains more redundancy"
                            if more < 0 else "width trend")
    return verdicts, np.where(table["in_family"], adj, np.nan)


def _empty() -> pd.DataFrame:
    text = {*TREND_GROUP, "widths", "verdict"} - {"channels"}
    return pd.DataFrame({c: pd.Series(dtype=object if c in text else bool if c in ("in_family", "headline")
                                      else float) for c in TREND_COLUMNS})


def trend_table(df: pd.DataFrame, n_perm: int = N_PERM, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> pd.DataFrame:
    """The width tests of every (experiment, model, activation, protocol, data, block, channels, layer, metric) run
    at >= 3 widths; columns :data:`TREND_COLUMNS`, rows sorted by those keys.

    ``widths`` "narrow-wide" (the widths where the paired change exists); ``n_replicates`` seeds the configuration ran
    per width, ``n_total`` seeds used over all widths, ``n_dropped`` = n_replicates × n_widths − n_total (a width
    where the metric does not exist at all, a pair metric at w = 1, is not in ``n_widths`` and drops nothing).
    ``slope`` of the change per doubling of the width (OLS over all seed-level points; ``intercept`` at log2 w = 0)
    with its bootstrap CI and ``trend_p`` (permutation, two-sided), ``jt_p`` (Jonckheere–Terpstra); ``end_*`` the
    same for the final value. ``contrast`` = mean change at ``wide`` − at ``narrow`` (``n_wide``/``n_narrow`` seeds),
    CI and permutation ``contrast_p``. ``d_*`` = (final mean − null mean) / null SD at each end, CI, the null's size
    and ``pct_*`` the seeds' median percentile in the null. ``in_family``/``headline`` the declared sets, ``q`` the
    BH q-value over the family, ``holm`` over the headline set, ``verdict`` from ``verdict_p`` (Holm for headline
    rows, q otherwise)."""
    pairs = paired_values(df)
    if pairs.empty:
        return _empty()
    pairs = pairs.sort_values([*TREND_GROUP, "width", "seed"], kind="stable").reset_index(drop=True)
    width = pairs["width"].to_numpy(dtype=np.int64)
    change = pairs["change"].to_numpy(dtype=float)
    end = pairs["end"].to_numpy(dtype=float)
    magnitude = np.maximum(np.abs(pairs["init"].to_numpy(dtype=float)), np.abs(end))
    replicates = _replicates(df)
    null = df[(df["kind"] == "null") & ~df["metric"].isin(INDEX_METRICS)]
    null_by_group = {k: v[np.isfinite(v)] for k, v in
                     ((k, g.to_numpy(dtype=float)) for k, g in null.groupby(GROUP, observed=True, sort=False)["value"])}

    keys, designs = [], {}
    for key, pos in pairs.groupby(TREND_GROUP, observed=True, sort=True).indices.items():
        ws, sizes = np.unique(width[pos], return_counts=True)
        if ws.size < MIN_WIDTHS:
            continue
        designs.setdefault((tuple(ws), tuple(sizes)), []).append(len(keys))
        keys.append((key, pos, ws, sizes))
    if not keys:
        return _empty()

    cols: dict[str, np.ndarray] = {}
    ends, boot_ends, nulls = [None] * (2 * len(keys)), [None] * (2 * len(keys)), [None] * (2 * len(keys))
    for (ws, sizes), members in designs.items():
        pos = np.stack([keys[i][1] for i in members], axis=1)  # (n, g), rows sorted by width
        atol = SPREAD_RTOL * magnitude[pos].max(axis=0)
        res = _design_tests(np.log2(np.repeat(np.asarray(ws, dtype=float), sizes)), np.asarray(sizes),
                            change[pos], end[pos], atol, n_perm, n_boot, seed)
        for name, values in res.items():
            if name.startswith(("boot_", "end_narrow", "end_wide")):
                continue
            cols.setdefault(name, np.full(len(keys), np.nan))[members] = values
        for g, i in enumerate(members):
            key = keys[i][0]
            for side, w in ((0, ws[0]), (1, ws[-1])):
                j = 2 * i + side
                ends[j] = res["end_wide" if side else "end_narrow"][:, g]
                boot_ends[j] = res["boot_end_wide" if side else "boot_end_narrow"][:, g]
                full = (*key[:len(CONFIG)], int(w), *key[len(CONFIG):])
                nulls[j] = null_by_group.get(full)
    eff = _null_effects(ends, boot_ends, nulls, n_boot, seed)

    records = []
    for i, (key, pos, ws, sizes) in enumerate(keys):
        n_rep = int(replicates.get(tuple(key[:len(CONFIG)]), sizes.max()))
        rec = dict(zip(TREND_GROUP, key, strict=True))
        rec.update(n_widths=ws.size, widths=f"{ws[0]}-{ws[-1]}", n_replicates=n_rep, n_total=int(sizes.sum()),
                   n_min_per_width=int(sizes.min()), n_max_per_width=int(sizes.max()),
                   n_dropped=int(n_rep * ws.size - sizes.sum()),
                   jt_p=jonckheere_p(change[pos], sizes) if np.isfinite(cols["trend_p"][i]) else np.nan,
                   narrow=int(ws[0]), wide=int(ws[-1]), n_narrow=int(sizes[0]), n_wide=int(sizes[-1]))
        rec.update({name: values[i] for name, values in cols.items()})
        for side, tag in ((0, "narrow"), (1, "wide")):
            j = 2 * i + side
            rec.update({f"n_null_{tag}": int(eff["n_null"][j]), f"d_{tag}": eff["d"][j],
                        f"d_{tag}_lo": eff["d_lo"][j], f"d_{tag}_hi": eff["d_hi"][j], f"pct_{tag}": eff["pct"][j]})
        records.append(rec)
    out = pd.DataFrame.from_records(records)
    out["in_family"] = in_family(out)
    out["headline"] = out["in_family"] & out["layer"].isin(HEADLINE_LAYERS) & out["metric"].isin(HEADLINE_METRICS)
    out["q"] = np.nan
    out.loc[out["in_family"], "q"] = bh_qvalues(out.loc[out["in_family"], "trend_p"].to_numpy())
    out["holm"] = np.nan
    out.loc[out["headline"], "holm"] = holm_adjust(out.loc[out["headline"], "trend_p"].to_numpy())
    out["verdict"], out["verdict_p"] = _verdicts(out)
    out = out.reindex(columns=TREND_COLUMNS)
    return out.sort_values(TREND_GROUP, kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# Writing it


def _g(v: float, digits: int = 3) -> str:
    return "" if pd.isna(v) else f"{v:.{digits}g}"


def _with_ci(v: float, lo: float, hi: float) -> str:
    return "" if pd.isna(v) else f"{v:.3g} [{_g(lo)}, {_g(hi)}]"


def trend_markdown(table: pd.DataFrame) -> str:
    """A trend table as readable GitHub markdown: the headline tests, the rest of the family, then the
    descriptive rows; estimates with their CIs in one cell, p and q in scientific notation."""
    def view(rows: pd.DataFrame) -> str:
        shown = pd.DataFrame({
            "experiment": rows["experiment"].astype(str), "data": rows["data"].astype(str),
            "block": rows["block"].astype(str), "layer": rows["layer"].astype(str),
            "metric": rows["metric"].astype(str), "widths": rows["widths"],
            "n (dropped)": [f"{n} ({d})" if d else str(n) for n, d in zip(rows["n_total"], rows["n_dropped"],
                                                                          strict=True)],
            "slope/doubling [95% CI]": [_with_ci(*v) for v in rows[["slope", "slope_lo", "slope_hi"]].to_numpy()],
            "trend p": rows["trend_p"].map(_g), "JT p": rows["jt_p"].map(_g),
            "q (BH)": rows["q"].map(_g), "Holm": rows["holm"].map(_g),
            "wide − narrow [CI]": [_with_ci(*v) for v in rows[["contrast", "contrast_lo", "contrast_hi"]].to_numpy()],
            "d narrow [CI]": [_with_ci(*v) for v in rows[["d_narrow", "d_narrow_lo", "d_narrow_hi"]].to_numpy()],
            "d wide [CI]": [_with_ci(*v) for v in rows[["d_wide", "d_wide_lo", "d_wide_hi"]].to_numpy()],
            "pct wide": rows["pct_wide"].map(lambda v: "" if pd.isna(v) else f"{v:.1f}"),
            "verdict": rows["verdict"],
        })
        return to_markdown(shown.set_index("experiment"))

    parts = []
    for title, rows in (("Headline tests (Holm over this set)", table[table["headline"]]),
                        ("The rest of the family (BH q over the whole family)",
                         table[table["in_family"] & ~table["headline"]]),
                        ("Outside the family (descriptive: no verdict)", table[~table["in_family"]])):
        if len(rows):
            parts.append(f"## {title}\n\n{view(rows)}")
    return "\n".join(parts)


def write_trend_table(df: pd.DataFrame, out_dir: str | Path = DEFAULT_ROOT / "tables",
                      table: pd.DataFrame | None = None) -> list[Path]:
    """Write ``trend.csv`` (full precision) and ``trend.md`` into ``out_dir``; nothing when no group spans >= 3
    widths. ``table``: ``trend_table(df)`` if already computed. Returns the paths written, like
    ``stats.write_summary``."""
    table = trend_table(df) if table is None else table
    if table.empty:
        return []
    fam = table[table["in_family"]]
    header = (
        "# The width effect of training (SPEC §9)\n\n"
        "Per experiment × layer × metric run at ≥ 3 widths: the OLS slope of the paired change (final − initial) "
        "per doubling of the width over all seeds, its 95% bootstrap CI (seeds resampled within widths) and a "
        f"two-sided permutation p ({N_PERM:,} permutations of the width labels across seeds, so p >= 1/{N_PERM + 1:,}; "
        "JT: "
        "Jonckheere–Terpstra cross-check); the widest − narrowest contrast of the mean change; "
        "d = (final mean − null mean) / null SD at each end against the untrained null. n: seeds used over "
        "all widths (in brackets the replicates the experiment ran that the paired test could not use).\n\n"
        f"Declared family: every trend test of the layers that take the width ({', '.join(STUDIED_LAYERS)}) over "
        f"the redundancy metrics {', '.join(m for m in FAMILY_METRICS if m in set(fam['metric']))} of every sweep "
        f"(≥ {FAMILY_MIN_REPLICATES} seeds per width): {int(fam['trend_p'].notna().sum())} defined tests; q = "
        "Benjamini–Hochberg over it. Headline: "
        f"{', '.join(HEADLINE_METRICS)} of the {'/'.join(HEADLINE_LAYERS)} layer of every sweep, "
        f"{int(table['headline'].sum())} tests, Holm-adjusted. Verdicts (α = {ALPHA}) use Holm for headline "
        "tests and q otherwise, never a raw p.\n\n")
    return write_csv_and_markdown(table, out_dir, "trend", header + trend_markdown(table))
