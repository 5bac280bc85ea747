"""Calibration of the width tests by simulation: their size and power with the sweeps' own spreads.

A test's size is checked, not assumed. For each tested row of a trend table (by default the headline tests), data
sets are simulated with that row's design: its widths, the seeds it has at each width, the seed-to-seed SD of its
outcome at each width (``sd_list``: spreads that differ by up to 100× between widths) and a seed effect shared by
all widths of a seed (``seed_corr``: the mean correlation across seeds between two widths, the crossed design's
clustering), as

    y[s, w] = μ_w + sd_w · (√ρ z_s + √(1 − ρ) ε_{s,w}),   z, ε ~ N(0, 1),

with μ_w = 0 (the null: no width effect) or μ_w = the row's observed mean outcome at each width (the power at the
observed effect). Every simulated data set is tested as :func:`analysis.hypothesis.trend_table` tests a row (the
same code, :mod:`analysis.inference`, vectorised over the data sets; :func:`simulate_tidy` writes the same data in
the tidy schema, and a test checks that ``trend_table`` on it gives the same p-values), and with the old
permutation test (:func:`analysis.hypothesis.permutation_trend_p`) on the same null data. The rejection rate at α
of a valid test lies within the binomial band of α for ``n_sim`` data sets (``band_lo``–``band_hi``, 95%).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis import inference as inf
from analysis.hypothesis import ALPHA, BOOT_SEED, TREND_GROUP, permutation_trend_p, trend_table
from analysis.load import DEFAULT_ROOT
from analysis.tables import to_markdown, write_csv_and_markdown

N_SIM = 1000
# Draws per simulated test: (N_DRAWS + 1)·α = 25 is an integer, so a bootstrap p <= α is an exact-level event
# under exchangeability; the verdicts themselves use N_PERM (9,999) and more.
N_DRAWS = 499
MAX_SEED_CORR = 0.95
BLOCK = 50  # simulated data sets that share one set of bootstrap draws (see simulated_pvalues)
LAST_EPOCH = 10

CALIBRATION_COLUMNS = [
    *TREND_GROUP, "outcome", "widths", "n_seeds", "seed_corr", "sd_ratio", "n_sim", "n_draws", "weights",
    "size", "size_lo", "size_hi", "band_lo", "band_hi", "size_ok",
    "omni_size", "omni_size_lo", "omni_size_hi", "omni_size_ok",
    "old_size", "old_size_lo", "old_size_hi", "old_size_ok",
    "power", "power_lo", "power_hi", "omni_power", "strict_alpha", "power_strict",
]


@dataclass(frozen=True)
class Design:
    """What a simulation needs of one row: widths, seeds per width (seeds 0..n_w − 1 at width w), the outcome's
    mean and SD at each width, and the shared seed effect ρ."""

    widths: np.ndarray
    n: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    rho: float

    @classmethod
    def from_row(cls, row: pd.Series) -> Design | None:
        """From a trend-table row (``width_list``, ``n_list``, ``mean_list``, ``sd_list``, ``seed_corr``); None where
        the row has no usable spread (no test, a width with a single seed)."""
        try:
            widths, n, mean, sd = (np.array([float(v) for v in str(row[c]).split(";")])
                                   for c in ("width_list", "n_list", "mean_list", "sd_list"))
        except (KeyError, ValueError):
            return None
        if not (widths.size == n.size == mean.size == sd.size) or widths.size < 2:
            return None
        if not (np.isfinite(sd).all() and (sd > 0).any() and np.isfinite(mean).all() and (n >= 2).all()):
            return None
        rho = float(row.get("seed_corr", 0.0))
        rho = float(np.clip(rho if np.isfinite(rho) else 0.0, 0.0, MAX_SEED_CORR))
        return cls(widths.astype(np.int64), n.astype(np.int64), mean, sd, rho)


def simulate(design: Design, n_sim: int, rng: np.random.Generator, effect: bool = False) -> np.ndarray:
    """(n_sim, S, K) simulated outcomes (NaN where seed s is not run at width k: s >= n_k)."""
    S, K = int(design.n.max()), design.widths.size
    z = rng.standard_normal((n_sim, S, 1))
    e = rng.standard_normal((n_sim, S, K))
    y = design.sd * (np.sqrt(design.rho) * z + np.sqrt(1 - design.rho) * e)
    if effect:
        y = y + design.mean
    present = np.arange(S)[:, None] < design.n[None, :]
    return np.where(present, y, np.nan)


def simulate_tidy(Y: np.ndarray, widths, metric: str = "sim", layer: str = "bottleneck",
                  init_seed: int = 0) -> pd.DataFrame:
    """The data sets ``Y`` (n_sim, S, K) in the tidy schema of ``load_runs``: one experiment per data set (``sim0``,
    ``sim1``, …), one run per width, epoch 0 and :data:`LAST_EPOCH` per seed, with initial values that vary by seed
    and final = initial + y, so that the paired change is the simulated outcome."""
    Y = np.asarray(Y, dtype=float)
    R, S, K = Y.shape
    r, s, k = (a.ravel() for a in np.meshgrid(np.arange(R), np.arange(S), np.arange(K), indexing="ij"))
    ok = np.isfinite(Y.ravel())
    r, s, k = r[ok], s[ok], k[ok]
    w = np.asarray(widths, dtype=np.int64)[k]
    init = 0.5 + 0.1 * np.random.default_rng(init_seed).standard_normal(r.size)
    end = init + Y.ravel()[ok]
    experiment = np.char.add("sim", r.astype(str))
    run = np.char.add(np.char.add(experiment, "-w"), w.astype(str))
    base = {"model": "mlp", "activation": "none", "protocol": "sim", "data": "sim", "block": "none",
            "channels": 1, "layer": layer, "metric": metric, "method": "none", "keep_ratio": 1.0, "stage": "none",
            "kind": "trained"}
    parts = [pd.DataFrame({**base, "experiment": experiment, "run_id": run, "width": w, "seed": s, "epoch": ep,
                           "value": v}) for ep, v in ((0, init), (LAST_EPOCH, end))]
    return pd.concat(parts, ignore_index=True)


def simulated_pvalues(Y: np.ndarray, widths, n_draws: int = N_DRAWS, seed: int = BOOT_SEED, old: bool = True,
                      shared_weights: bool = False) -> dict[str, np.ndarray]:
    """Trend, omnibus and (``old``) old-permutation p of every data set in ``Y`` (n_sim, S, K).

    ``shared_weights=True``: the draws ``trend_table`` would use for each of them (the same weights for every data
    set: seed ids 0..S − 1, the same stream), so the p-values are ``trend_table``'s. Otherwise (a calibration) each
    block of :data:`BLOCK` data sets gets its own independent draws (from ``seed``): the rejection rate then
    estimates the test's size itself, not its size given one set of draws, which varies by about
    √(α(1 − α)/n_draws) ≈ 0.01 around it; over n_sim/BLOCK = 20 independent sets that variation is ~0.002, a third of
    the binomial SD of the rate (0.007 at 1,000 data sets), while each block stays one matrix product."""
    x = np.log2(np.asarray(widths, dtype=float))
    total, count = inf.cells_from_values(Y)
    mom = inf.moments(total, count, x)
    R, S, _ = Y.shape
    kind = inf.weight_kind(int(mom.n_clusters.max()))
    psi, obs = inf.pair_scores(mom)
    out = {"t": mom.t, "clusters": mom.n_clusters}
    if shared_weights:
        V = inf.wild_weights(np.arange(S), n_draws, kind, (seed, 0, 0))
        out["trend"] = inf.p_from_counts(inf.trend_exceedances(V, mom), n_draws)
        out["omni"] = inf.p_from_counts(inf.pair_exceedances(V, psi, obs, pairs=False).omni, n_draws)
    else:
        rng = np.random.default_rng([seed, 13, R, S])
        trend, omni = np.zeros(R, np.int64), np.zeros(R, np.int64)
        for lo in range(0, R, BLOCK):
            sl = slice(lo, min(R, lo + BLOCK))
            idx = rng.integers(0, 2 if kind == "rademacher" else 6, size=(n_draws, S), dtype=np.int8)
            V = (2.0 * idx - 1.0) if kind == "rademacher" else inf.WEBB[idx]
            trend[sl] = inf.trend_exceedances(V, _subset(mom, sl), unit=kind == "rademacher")
            omni[sl] = inf.pair_exceedances(V, psi[sl], obs[sl], pairs=False).omni
        out["trend"], out["omni"] = inf.p_from_counts(trend, n_draws), inf.p_from_counts(omni, n_draws)
    if old:
        out["old"] = permutation_trend_p(Y, widths, n_draws, seed)
    return out


def _subset(mom: inf.Moments, sl: slice) -> inf.Moments:
    fields = ("total", "count", "n_obs", "n_clusters", "xbar", "ybar", "sxx", "slope", "intercept", "c", "m", "d",
              "q", "factor", "t")
    return inf.Moments(mom.x, *(getattr(mom, f)[sl] for f in fields))


def binomial_band(n_sim: int, alpha: float = ALPHA, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` range of the rejection rate of an exact level-α test over ``n_sim`` data sets."""
    lo, hi = sps.binom.interval(level, n_sim, alpha)
    return lo / n_sim, hi / n_sim


def clopper_pearson(k: np.ndarray, n: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial CI of a rate k/n."""
    k = np.asarray(k, dtype=float)
    tail = (1 - level) / 2
    lo = np.where(k > 0, sps.beta.ppf(tail, k, n - k + 1), 0.0)
    hi = np.where(k < n, sps.beta.ppf(1 - tail, k + 1, n - k), 1.0)
    return lo, hi


def _stream(row: pd.Series, seed: int) -> list[int]:
    key = "|".join(str(row.get(c, "")) for c in TREND_GROUP)
    return [seed, 11, zlib.crc32(key.encode())]


def calibration_table(trend_or_df: pd.DataFrame, n_sim: int = N_SIM, n_draws: int = N_DRAWS, alpha: float = ALPHA,
                      seed: int = BOOT_SEED, rows: str | pd.Series = "headline",
                      band_level: float = 0.95) -> pd.DataFrame:
    """Simulated size and power of the width tests of a trend table's rows; columns :data:`CALIBRATION_COLUMNS`.

    ``trend_or_df``: a trend table (``trend_table`` or ``trend.csv`` read back) or a tidy results frame (its trend
    table is computed first). ``rows``: ``"headline"``, ``"family"``, ``"all"`` or a boolean mask over the table;
    of those, the rows with a test (a finite ``trend_p``) are simulated.
    Per row: ``size`` = rejection rate at ``alpha`` of the new trend test on ``n_sim`` null data sets, with its
    Clopper–Pearson 95% CI (``size_lo``/``size_hi``), the central ``band_level`` binomial band of an exact level-α
    test's rate (``band_lo``/``band_hi``) and ``size_ok`` (size inside the band); ``omni_size*`` the same for the
    omnibus test;
    ``old_size*`` for the old permutation test on the same null data; ``power`` (CI) and ``omni_power``: the
    rejection rates when the data sets have the row's observed mean outcome at each width; ``power_strict``: the
    trend test's power at ``strict_alpha`` = α / (2 × the rows calibrated), Holm's strictest step over their two
    tests each, from the cluster-robust t against t(G − 1) (``n_draws`` draws cannot resolve so small a level).
    ``sd_ratio``: largest / smallest per-width SD, ``seed_corr`` the ρ simulated."""
    table = trend_or_df if "width_list" in trend_or_df.columns else trend_table(trend_or_df)
    if isinstance(rows, str):
        pick = {"headline": lambda t: t["headline"].astype(str).str.lower().eq("true"),
                "family": lambda t: t["in_family"].astype(str).str.lower().eq("true"),
                "all": lambda t: pd.Series(True, index=t.index)}[rows](table)
    else:
        pick = rows
    chosen = table[pick.to_numpy(bool) & np.isfinite(pd.to_numeric(table["trend_p"], errors="coerce").to_numpy())]
    designs = [(row, Design.from_row(row)) for _, row in chosen.iterrows()]
    designs = [(row, d) for row, d in designs if d is not None]
    strict = alpha / max(2 * len(designs), 1)
    band_lo, band_hi = binomial_band(n_sim, alpha, band_level)
    records = []
    for row, d in designs:
        rng = np.random.default_rng(_stream(row, seed))
        with inf.one_blas_thread():
            null = simulated_pvalues(simulate(d, n_sim, rng), d.widths, n_draws, seed)
            alt = simulated_pvalues(simulate(d, n_sim, rng, effect=True), d.widths, n_draws, seed, old=False)
        rec = {c: row.get(c) for c in TREND_GROUP}
        rec.update(outcome=row.get("outcome"), widths=f"{d.widths[0]}-{d.widths[-1]}", n_seeds=int(d.n.max()),
                   seed_corr=d.rho, sd_ratio=float(d.sd.max() / d.sd[d.sd > 0].min()), n_sim=n_sim,
                   n_draws=n_draws, weights=inf.weight_kind(int(d.n.max())), band_lo=band_lo, band_hi=band_hi,
                   strict_alpha=strict)
        for name, p in (("size", null["trend"]), ("omni_size", null["omni"]), ("old_size", null["old"])):
            k = int((p <= alpha).sum())
            lo, hi = clopper_pearson(k, n_sim)
            rec.update({name: k / n_sim, f"{name}_lo": float(lo), f"{name}_hi": float(hi),
                        f"{name}_ok": bool(band_lo <= k / n_sim <= band_hi)})
        k = int((alt["trend"] <= alpha).sum())
        lo, hi = clopper_pearson(k, n_sim)
        rec.update(power=k / n_sim, power_lo=float(lo), power_hi=float(hi),
                   omni_power=float((alt["omni"] <= alpha).mean()),
                   power_strict=float((np.abs(alt["t"]) >= sps.t.isf(strict / 2, alt["clusters"] - 1)).mean()))
        records.append(rec)
    out = pd.DataFrame.from_records(records, columns=CALIBRATION_COLUMNS)
    return out.reset_index(drop=True)


def write_calibration_table(table: pd.DataFrame, out_dir: str | Path = DEFAULT_ROOT / "tables") -> list[Path]:
    """Write ``calibration.csv`` and ``calibration.md`` (a :func:`calibration_table`) into ``out_dir``; nothing when
    it is empty. Returns the paths written."""
    if table.empty:
        return []
    row = table.iloc[0]
    header = (
        "# Calibration of the width tests by simulation\n\n"
        f"Per test: {int(row['n_sim']):,} simulated data sets with the row's widths, seeds per width, per-width SD "
        "of the outcome and shared seed effect (seed_corr), tested as trend.md tests them "
        f"({int(row['n_draws'])} bootstrap draws each). size: rejection rate at α under no width effect, with its "
        f"Clopper–Pearson 95% CI; a valid test's rate lies in the binomial band {row['band_lo']:.3f}–"
        f"{row['band_hi']:.3f}. old: the old permutation test on the same null data. power: rejection rate with "
        f"the row's observed mean outcome at each width; power_strict at α = {row['strict_alpha']:.2g} (Holm's "
        "strictest step).\n\n")
    shown = table[[*TREND_GROUP, "outcome", "widths", "n_seeds", "sd_ratio", "seed_corr", "size", "size_ok",
                   "omni_size", "old_size", "power", "omni_power", "power_strict"]].copy()
    for col in ("sd_ratio", "seed_corr", "size", "omni_size", "old_size", "power", "omni_power", "power_strict"):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
    return write_csv_and_markdown(table, out_dir, "calibration", header + to_markdown(shown.set_index("experiment")))
