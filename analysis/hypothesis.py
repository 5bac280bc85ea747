"""The study's hypothesis as tests: does training change redundancy *differently* in narrow and wide layers?

Per experiment × layer × metric (every setting column of :data:`analysis.stats.GROUP` but the width) run at
>= :data:`MIN_WIDTHS` widths, from each seed's values at epoch 0 and at the end (``stats.paired_values``; ``at``
picks a checkpoint before the end, e.g. half the budget):

- the **outcome** (column ``outcome``): the paired change final − initial, or the final value where the metric is
  degenerate at initialisation (no spread over seeds at any width, or none in the untrained null: float32 rounding,
  :data:`SPREAD_RTOL`). Every test of the row is of this outcome;
- the **design**: the same seeds at every width (cluster = seed) and spreads that differ by up to 100× between
  widths. The tests are those of :mod:`analysis.inference`, valid under both: the **trend** is the OLS slope of the
  outcome on log2 w over all seed-level points (``statsmodels`` OLS with the cluster-robust CR1 variance by seed:
  ``slope_se`` and its analytic t-test ``trend_p_cr``, a cross-check), with ``trend_p`` from the restricted wild
  cluster bootstrap of that t (Rademacher weights, Webb's with fewer than 12 seeds); the **omnibus** test of any
  width effect (``omni_p``) is the max-T wild cluster bootstrap over every pair of widths, which also gives each pair
  a p adjusted for all pairs; the narrowest-vs-widest **contrast** (``contrast_p``) is its own pair's p. CIs of the
  slope and the contrast resample seeds with all their widths (cluster bootstrap);
- the **profile** (``profile``): ``rising``/``falling`` where the only evidence of a width effect (a significant
  trend, or pairs of widths that differ significantly) points one way, ``non-monotone`` where it points both ways
  (e.g. a peak: a significant rise between two widths and a significant fall between two others), ``no evidence``
  only where neither the trend nor the omnibus test rejects, ``no test`` where nothing varies beyond rounding or
  fewer than :data:`MIN_SEEDS` seeds remain. In the family the decisions use the adjusted cut-offs below (a pair at
  the omnibus' cut-off), outside it the raw p at α (descriptive);
- **effects on one scale** (:func:`effects_table`, one row per width; the ends here): the trained − null ``gap`` in
  the metric's units with its CI, ``gap_z`` = gap / ``gap_scale`` where ``gap_scale`` is one yardstick per row (the
  root mean square over widths of the seed-to-seed SD of the trained value), so it cannot shrink with width; the
  old d = gap / null SD stays as ``d_*``, labelled for what it is: its denominator shrinks with width;
- **multiplicity**: the declared family, headline set and α are in ``conf/analysis/hypothesis.yaml``
  (:data:`CONFIG_FILE`); every family row contributes two tests (trend and omnibus): ``q``/``omni_q`` are
  Benjamini–Hochberg over all of them, ``holm``/``omni_holm`` Holm over the headline rows' tests. A row's
  ``verdict`` follows its ``profile`` under these adjusted cut-offs (Holm for a headline row, q otherwise) and
  ``verdict_p`` is the smaller of its two adjusted values; no raw p decides a verdict;
- **Monte Carlo precision**: every bootstrap p starts from :data:`N_PERM` draws; a family test whose p lies within
  :data:`MC_SE` Monte Carlo standard errors of its cut-off (the raw p at which its adjusted value would be α, its
  multiplier held fixed: α·p/adjusted) gets more draws, doubling up to :data:`MAX_DRAWS`; one still that close is
  flagged ``borderline``. ``n_draws`` is the number behind the row's p-values (its floor is 1/(n_draws + 1)).

Columns added by this version (see :data:`TREND_COLUMNS`): ``level``, ``outcome``, ``slope_se``, ``trend_p_cr``,
``omni_p``, ``profile``, ``n_rising_pairs``, ``n_falling_pairs``, ``argmax_width``, ``argmin_width``,
``outcome_narrow``, ``outcome_wide``, ``gap_*``, ``gap_z_*``, ``gap_scale``, ``weights``, ``n_draws``, ``seed_corr``,
``width_list``, ``n_list``, ``mean_list``, ``sd_list`` (";"-joined per-width n, mean and SD of the outcome: what
:func:`analysis.calibration.calibration_table` simulates from), ``omni_q``, ``omni_holm``, ``borderline``. Removed:
``jt_p`` (Jonckheere–Terpstra assumes independent widths and equal spreads: invalid here). The old permutation test
(width labels permuted across all seed-level points: too liberal under unequal spreads) stays as
:func:`permutation_slope_p` / :func:`permutation_trend_p`, used only to compare sizes.

Writers: :func:`write_trend_table` (``trend.csv/.md``, or another ``name``, e.g. ``trend_half`` for ``at=0.5``) and
:func:`write_effects_table` (``effects.csv/.md``, columns :data:`EFFECT_COLUMNS`).

Bad input raises :class:`TrendInputError` (a ``ValueError``) with a one-line message: missing columns always; too
few widths when ``strict=True`` (by default such a frame gives an empty table, which ``build_all`` relies on).

Vectorised: groups with the same design (widths and seeds) share one matrix of wild bootstrap weights and one of
resampled seeds, so the tests of all of them are matrix products; no Python loop runs over draws. Weights are drawn
per seed id and resamples per design from ``seed``, so a group's numbers do not depend on which other groups the
frame holds (only its extra draws do, since they depend on the family's adjusted cut-offs).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import yaml

from analysis import inference as inf
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

CONFIG_FILE = Path(__file__).resolve().parents[1] / "conf" / "analysis" / "hypothesis.yaml"
LEVELS = ("weights", "activations", "function")


class HypothesisConfigError(ValueError):
    """``conf/analysis/hypothesis.yaml`` is unreadable or inconsistent; the message names the entry."""


class TrendInputError(ValueError):
    """A frame ``trend_table``/``effects_table`` cannot test: the one-line message names the missing column(s) or
    the count of widths."""


class SuffixMap(Mapping):
    """A read-only mapping whose keys may end in ``@<t>``: such a key answers for every threshold of the metric
    (``prunable_frac@0.01`` finds ``prunable_frac@<t>``) and for its bare name (the default threshold)."""

    def __init__(self, data: Mapping):
        self._data = dict(data)

    def __getitem__(self, key: str):
        key = str(key)
        if key in self._data:
            return self._data[key]
        base = key.partition("@")[0]
        if f"{base}@<t>" in self._data:  # any threshold, or the bare name (the metric at its default threshold)
            return self._data[f"{base}@<t>"]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"SuffixMap({self._data!r})"


def load_config(path: str | Path = CONFIG_FILE) -> dict:
    """The declared family (plain YAML), checked: every family metric has a level and a sign ±1, the headline
    metrics and layers are in the family, 0 < α < 1."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise HypothesisConfigError(f"{path}: cannot read ({type(err).__name__})") from err
    try:
        alpha = float(cfg["alpha"])
        fam = cfg["family"]
        layers, metrics = list(fam["layers"]), {lv: list(fam["metrics"].get(lv) or []) for lv in LEVELS}
        min_rep = int(fam["min_replicates_per_width"])
        head = cfg["headline"]
        head_layers, head_metrics = list(head["layers"]), dict(head["metrics"])
        signs = {str(k): int(v) for k, v in cfg["redundancy_sign"].items()}
        extra_levels = {str(k): str(v) for k, v in (cfg.get("descriptive_levels") or {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise HypothesisConfigError(f"{path}: missing or malformed entry ({err})") from err
    problems = []
    if not 0 < alpha < 1:
        problems.append(f"alpha {alpha} not in (0, 1)")
    if set(fam["metrics"]) - set(LEVELS):
        problems.append(f"unknown level(s) {sorted(set(fam['metrics']) - set(LEVELS))}")
    for m in (m for ms in metrics.values() for m in ms):
        if m not in signs:
            problems.append(f"family metric {m} has no redundancy_sign")
    if any(v not in (-1, 1) for v in signs.values()):
        problems.append("redundancy_sign values must be +1 or -1")
    for lv, m in head_metrics.items():
        if lv not in LEVELS or m not in metrics.get(lv, []):
            problems.append(f"headline metric {m} ({lv}) is not a family metric of that level")
    if set(head_layers) - set(layers):
        problems.append(f"headline layer(s) {sorted(set(head_layers) - set(layers))} not in family layers")
    if set(extra_levels.values()) - set(LEVELS):
        problems.append("descriptive_levels names an unknown level")
    if problems:
        raise HypothesisConfigError(f"{path}: " + "; ".join(problems))
    return {"alpha": alpha, "layers": layers, "metrics": metrics, "min_replicates": min_rep,
            "headline_layers": head_layers, "headline_metrics": head_metrics, "signs": signs,
            "levels": {**{m: lv for lv, ms in metrics.items() for m in ms}, **extra_levels}}


_CFG = load_config()
# Views of the config file (read-only): change the file, not these.
ALPHA: float = _CFG["alpha"]
STUDIED_LAYERS: tuple[str, ...] = tuple(_CFG["layers"])
FAMILY_METRICS: tuple[str, ...] = tuple(m for lv in LEVELS for m in _CFG["metrics"][lv])
FAMILY_MIN_REPLICATES: int = _CFG["min_replicates"]
HEADLINE_LAYERS: tuple[str, ...] = tuple(_CFG["headline_layers"])
HEADLINE_BY_LEVEL: Mapping[str, str] = MappingProxyType(dict(_CFG["headline_metrics"]))
HEADLINE_METRICS: tuple[str, ...] = tuple(HEADLINE_BY_LEVEL[lv] for lv in LEVELS if lv in HEADLINE_BY_LEVEL)
REDUNDANCY_SIGN: Mapping[str, int] = SuffixMap(_CFG["signs"])
METRIC_LEVEL: Mapping[str, str] = SuffixMap(_CFG["levels"])


def redundancy_sign(metric: str) -> int:
    """+1 where a larger value means more redundancy, −1 where less, 0 for a metric without a declared sign."""
    return int(REDUNDANCY_SIGN.get(str(metric), 0))


def metric_level(metric: str) -> str:
    """``weights``, ``activations`` or ``function`` for a declared metric, "" otherwise."""
    return str(METRIC_LEVEL.get(str(metric), ""))


def adjusted_p(row: Mapping) -> tuple[str, float, float]:
    """The adjusted p-values a trend row's verdict follows: (label, trend, omnibus): Holm for a headline row, BH q in
    the rest of the family, the raw p outside it (descriptive)."""
    def p(key: str) -> float:  # NaN for a missing or malformed cell, as the report prints "n/a"
        try:
            return float(row[key])
        except (TypeError, ValueError):
            return float("nan")

    if bool(row["headline"]):
        return "Holm", p("holm"), p("omni_holm")
    if bool(row["in_family"]):
        return "BH q", p("q"), p("omni_q")
    return "raw p (descriptive)", p("trend_p"), p("omni_p")


def rests_on_pairs(row: Mapping) -> bool:
    """Whether a trend row's rising/falling profile rests on pairs of widths alone: some pairs differ significantly,
    all one way, but the slope over all widths does not reject at its adjusted cut-off (e.g. a dip at one width
    followed by a significant rise, the widths before the dip too noisy for their fall to count). Readers are told,
    because the slope printed beside such a verdict may even have the other sign."""
    if str(row["profile"]) not in ("rising", "falling"):
        return False
    trend = adjusted_p(row)[1]
    return not (np.isfinite(trend) and trend <= ALPHA + 1e-9)


# One trend row per combination of these: every setting but the width.
TREND_GROUP = [c for c in GROUP if c != "width"]
# One experiment configuration (its replicates are counted over these, at each width).
CONFIG = [c for c in TREND_GROUP if c not in ("layer", "metric")]
MIN_WIDTHS = 3
MIN_SEEDS = 3  # a cluster-robust variance needs a few clusters; fewer seeds: no test
# Bootstrap draws every p starts from (also the old permutation test's default): p >= 1/(N_PERM + 1) = 1e-4, below
# Holm's smallest cut-off over ~80 headline tests (α/80 = 6e-4) by more than 3 Monte Carlo SEs.
N_PERM = 9_999
MAX_DRAWS = 16 * N_PERM  # the most a test near its cut-off is given (doubling: 2, 4, 8, 16 × N_PERM)
MC_SE = 3.0  # a p within this many Monte Carlo SEs of its cut-off gets more draws, then is flagged borderline
# The metrics are computed in float32: a spread of a group's values below this share of the metric's magnitude is
# rounding (e.g. a linear MLP's activation |corr|, exactly 1 at every width, moves by ~1e-6); its tests are reported
# as undefined (NaN) rather than as a trend in the rounding. On the current results the largest such spread is 6e-6
# of the magnitude and the smallest real one 5e-4. The same rule decides whether a metric is degenerate at
# initialisation (then its final value is tested instead of the change).
SPREAD_RTOL = 1e-5
REQUIRED_COLUMNS = (*GROUP, "run_id", "kind", "seed", "epoch", "value")

PROFILES = ("rising", "falling", "non-monotone", "no evidence", "no test")

TREND_COLUMNS = [
    *TREND_GROUP, "level", "outcome",
    "n_widths", "widths", "n_replicates", "n_total", "n_min_per_width", "n_max_per_width", "n_dropped",
    "slope", "slope_lo", "slope_hi", "slope_se", "intercept", "trend_p", "trend_p_cr",
    "omni_p", "profile", "n_rising_pairs", "n_falling_pairs", "argmax_width", "argmin_width",
    "end_slope", "end_slope_lo", "end_slope_hi", "end_p",
    "narrow", "wide", "n_narrow", "n_wide", "change_narrow", "change_wide", "outcome_narrow", "outcome_wide",
    "contrast", "contrast_lo", "contrast_hi", "contrast_p",
    "n_null_narrow", "gap_narrow", "gap_narrow_lo", "gap_narrow_hi", "gap_z_narrow", "gap_z_narrow_lo",
    "gap_z_narrow_hi", "d_narrow", "d_narrow_lo", "d_narrow_hi", "pct_narrow",
    "n_null_wide", "gap_wide", "gap_wide_lo", "gap_wide_hi", "gap_z_wide", "gap_z_wide_lo", "gap_z_wide_hi",
    "d_wide", "d_wide_lo", "d_wide_hi", "pct_wide", "gap_scale",
    "weights", "n_draws", "seed_corr", "width_list", "n_list", "mean_list", "sd_list",
    "in_family", "headline", "q", "holm", "omni_q", "omni_holm", "verdict", "verdict_p", "borderline",
]
_TEXT = {*TREND_GROUP, "level", "outcome", "widths", "profile", "weights", "width_list", "n_list", "mean_list",
         "sd_list", "verdict"} - {"channels"}
_BOOL = ("in_family", "headline", "borderline")

EFFECT_COLUMNS = [
    *TREND_GROUP, "width", "level", "outcome", "n_seeds", "n_null",
    "outcome_mean", "outcome_lo", "outcome_hi", "final_mean", "final_sd", "null_mean", "null_sd",
    "gap", "gap_lo", "gap_hi", "gap_scale", "gap_z", "gap_z_lo", "gap_z_hi", "d_null", "d_null_lo", "d_null_hi",
    "pct_null",
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


# ---------------------------------------------------------------------------------------------------------
# The old test (kept to compare sizes: not used for any verdict)


def ols_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line of ``y`` on ``x``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    xc = x - x.mean()
    slope = float(xc @ (y - y.mean()) / (xc @ xc))
    return slope, float(y.mean() - slope * x.mean())


def permutation_slope_p(x: np.ndarray, Y: np.ndarray, n_perm: int = N_PERM,
                        rng: np.random.Generator | int = 0, atol: np.ndarray | float = 0.0) -> np.ndarray:
    """The OLD test: two-sided permutation p of the OLS slope of every column of ``Y`` (n, G) on ``x`` (n,).

    The labels ``x`` are permuted across all n points (one permutation shared by all columns), which assumes the
    points exchangeable under H0: false for the sweeps (unequal spreads across widths, the same seeds at every
    width), where it rejects 10–20% of true nulls at 5% (see :mod:`analysis.calibration`). Kept only to measure
    that. p = (1 + #{|T_π| >= |T|}) / (n_perm + 1); NaN for a column whose spread is <= ``atol``."""
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


def permutation_trend_p(Y: np.ndarray, widths, n_perm: int = N_PERM, seed: int = BOOT_SEED) -> np.ndarray:
    """The OLD trend test of :func:`permutation_slope_p` on (G, S, K) arrays (NaN: no value) over ``widths``:
    groups with the same pattern of present values share one set of permutations."""
    Y = np.asarray(Y, dtype=float)
    x = np.log2(np.asarray(widths, dtype=float))
    ok = np.isfinite(Y)
    out = np.full(Y.shape[0], np.nan)
    patterns, inverse = np.unique(ok.reshape(Y.shape[0], -1), axis=0, return_inverse=True)
    for i, pat in enumerate(patterns):
        members = np.flatnonzero(inverse.ravel() == i)
        mask = pat.reshape(Y.shape[1:])
        xs = np.broadcast_to(x, Y.shape[1:])[mask]
        if np.unique(xs).size < 2:
            continue
        out[members] = permutation_slope_p(xs, Y[members][:, mask].T, n_perm, np.random.default_rng([seed, 9]))
    return out


# ---------------------------------------------------------------------------------------------------------
# Input


def _check_columns(df: pd.DataFrame, who: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TrendInputError(f"{who}: expected a tidy results DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise TrendInputError(f"{who}: the frame lacks column(s) {', '.join(missing)}")


def _replicates(df: pd.DataFrame) -> pd.Series:
    """Replicates each experiment configuration ran: the most (run, seed) pairs at any one width, any metric."""
    return replicates_per_width(df).groupby(level=CONFIG, observed=True).max()


def _nulls(df: pd.DataFrame) -> dict[tuple, np.ndarray]:
    null = df[(df["kind"] == "null") & ~df["metric"].isin(INDEX_METRICS)]
    out = {}
    for key, g in null.groupby(GROUP, observed=True, sort=False)["value"]:
        v = g.to_numpy(dtype=float)
        out[key] = v[np.isfinite(v)]
    return out


class _Group:
    """One configuration × layer × metric: its seeds × widths grids and what the tests decide about it."""

    __slots__ = ("atol", "end_flat", "flat", "key", "nulls", "outcome", "pos", "seeds", "widths")

    def __init__(self, key, pos, widths, seeds):
        self.key, self.pos, self.widths, self.seeds = key, pos, widths, seeds


def _groups(pairs: pd.DataFrame, nulls: dict, min_widths: int) -> list[_Group]:
    """The groups with >= ``min_widths`` widths, in sorted key order, with their outcome chosen (see the module
    docstring) and the rounding tolerance of their values."""
    width = pairs["width"].to_numpy(dtype=np.int64)
    seed = pairs["seed"].to_numpy(dtype=np.int64)
    init = pairs["init"].to_numpy(dtype=float)
    end = pairs["end"].to_numpy(dtype=float)
    out = []
    for key, pos in pairs.groupby(TREND_GROUP, observed=True, sort=True).indices.items():
        ws = np.unique(width[pos])
        if ws.size < min_widths:
            continue
        g = _Group(key, pos, ws, np.unique(seed[pos]))
        magnitude = max(np.abs(init[pos]).max(), np.abs(end[pos]).max())
        g.atol = SPREAD_RTOL * magnitude
        g.nulls = [nulls.get((*key[:len(CONFIG)], int(w), *key[len(CONFIG):])) for w in ws]
        init_flat = all(np.ptp(init[pos][width[pos] == w]) <= g.atol for w in ws)
        have = [v for v in g.nulls if v is not None and v.size]
        null_flat = bool(have) and all(np.ptp(v) <= SPREAD_RTOL * max(np.abs(v).max(), magnitude) for v in have)
        g.outcome = "final" if (init_flat or null_flat) else "change"
        y = (end if g.outcome == "final" else pairs["change"].to_numpy(dtype=float))[pos]
        # An outcome with no spread across seeds at any width is exact, not a sample: no test.
        g.flat = all(np.ptp(y[width[pos] == w]) <= g.atol for w in ws)
        g.end_flat = all(np.ptp(end[pos][width[pos] == w]) <= g.atol for w in ws)
        out.append(g)
    return out


def _grids(groups: list[_Group], pairs: pd.DataFrame, column_of) -> tuple[np.ndarray, np.ndarray]:
    """(total, count) cells (G, S, K) of the groups (one design: same widths and seeds), ``column_of(group)`` the
    pairs column to take."""
    g0 = groups[0]
    S, K = g0.seeds.size, g0.widths.size
    total, count = np.zeros((len(groups), S, K)), np.zeros((len(groups), S, K))
    width = pairs["width"].to_numpy(dtype=np.int64)
    seed = pairs["seed"].to_numpy(dtype=np.int64)
    cols = {c: pairs[c].to_numpy(dtype=float) for c in ("change", "end")}
    for i, g in enumerate(groups):
        s = np.searchsorted(g0.seeds, seed[g.pos])
        k = np.searchsorted(g0.widths, width[g.pos])
        np.add.at(total[i], (s, k), cols[column_of(g)][g.pos])
        np.add.at(count[i], (s, k), 1.0)
    return total, count


# ---------------------------------------------------------------------------------------------------------
# Effects against the null, per width


def _percentile_ci(boot: np.ndarray, ci: float = CI, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    tail = (100.0 - ci) / 2
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: a CI that does not exist stays NaN
        lo, hi = np.nanpercentile(boot, [tail, 100.0 - tail], axis=axis)
    return lo, hi


def _cell_effects(finals: list[np.ndarray], outcomes: list[np.ndarray], nulls: list[np.ndarray | None],
                  n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Per cell (a group at one width): the outcome's mean with a percentile-bootstrap CI over seeds; the trained
    final mean, its seed-to-seed SD, the null's mean and SD; gap = final mean − null mean with a CI (seeds and null
    draws resampled independently), d = gap / null SD with a CI and the seeds' median percentile in the null.
    Cells with the same (seeds, null draws) sizes share one matrix product; the resamples are keyed by those
    sizes and ``seed`` only."""
    n_cells = len(finals)
    names = ("outcome_mean", "outcome_lo", "outcome_hi", "final_mean", "final_sd", "null_mean", "null_sd", "gap",
             "gap_lo", "gap_hi", "d", "d_lo", "d_hi", "pct")
    out = {name: np.full(n_cells, np.nan) for name in names}
    out["n"] = np.array([f.size for f in finals], dtype=np.int64)
    out["n_null"] = np.array([0 if v is None else v.size for v in nulls], dtype=np.int64)
    by_size: dict[tuple[int, int], list[int]] = {}
    for i in range(n_cells):
        by_size.setdefault((int(out["n"][i]), int(out["n_null"][i])), []).append(i)
    for (n, m), members in by_size.items():
        idx = np.asarray(members)
        F = np.column_stack([finals[i] for i in members])       # (n, c)
        Y = np.column_stack([outcomes[i] for i in members])
        out["outcome_mean"][idx] = Y.mean(axis=0)
        out["final_mean"][idx] = F.mean(axis=0)
        if n >= 2:
            out["final_sd"][idx] = F.std(axis=0, ddof=1)
            W = inf.resample_counts(n, n_boot, (seed, 3, n))
            out["outcome_lo"][idx], out["outcome_hi"][idx] = _percentile_ci(W @ Y / n)
            f_b = W @ F / n
        if m == 0:
            continue
        N = np.column_stack([nulls[i] for i in members])       # (m, c)
        mu, sd = N.mean(axis=0), (N.std(axis=0, ddof=1) if m >= 2 else np.full(len(members), np.nan))
        out["null_mean"][idx], out["null_sd"][idx] = mu, sd
        out["gap"][idx] = F.mean(axis=0) - mu
        with np.errstate(divide="ignore", invalid="ignore"):
            out["d"][idx] = np.where(sd > 0, (F.mean(axis=0) - mu) / sd, np.nan)
        out["pct"][idx] = [np.median(null_percentile(np.sort(nulls[i]), finals[i])) for i in members]
        if n < 2 or m < 2:
            continue
        Wn = inf.resample_counts(m, n_boot, (seed, 4, m))
        mu_b = Wn @ N / m
        var_b = (Wn @ (N * N) - m * mu_b * mu_b) / (m - 1)
        out["gap_lo"][idx], out["gap_hi"][idx] = _percentile_ci(f_b - mu_b)
        with np.errstate(divide="ignore", invalid="ignore"):
            d_b = (f_b - mu_b) / np.sqrt(np.clip(var_b, 0.0, None))
        d_b[:, ~(sd > 0)] = np.nan
        out["d_lo"][idx], out["d_hi"][idx] = _percentile_ci(np.where(np.isfinite(d_b), d_b, np.nan))
    return out


def _effects_of(groups: list[_Group], pairs: pd.DataFrame, n_boot: int, seed: int) -> list[dict[str, np.ndarray]]:
    """:func:`_cell_effects` of every width of every group, returned per group (arrays over its widths), with the
    group's ``gap_scale`` (RMS over widths of the trained value's seed-to-seed SD) and ``gap_z``."""
    width = pairs["width"].to_numpy(dtype=np.int64)
    cols = {c: pairs[c].to_numpy(dtype=float) for c in ("change", "end")}
    finals, outcomes, nulls, spans = [], [], [], []
    for g in groups:
        start = len(finals)
        w_of = width[g.pos]
        for w, ref in zip(g.widths, g.nulls, strict=True):
            sel = g.pos[w_of == w]
            finals.append(cols["end"][sel])
            outcomes.append(cols["change" if g.outcome == "change" else "end"][sel])
            nulls.append(ref)
        spans.append(slice(start, len(finals)))
    cells = _cell_effects(finals, outcomes, nulls, n_boot, seed)
    out = []
    for g, span in zip(groups, spans, strict=True):
        e = {name: values[span] for name, values in cells.items()}
        sd = e["final_sd"][np.isfinite(e["final_sd"])]
        scale = float(np.sqrt(np.mean(sd * sd))) if sd.size else np.nan
        scale = scale if scale > g.atol else np.nan  # a spread that is rounding is no yardstick
        e["gap_scale"] = np.full(span.stop - span.start, scale)
        with np.errstate(divide="ignore", invalid="ignore"):
            for a, b in (("gap_z", "gap"), ("gap_z_lo", "gap_lo"), ("gap_z_hi", "gap_hi")):
                e[a] = e[b] / scale if scale > 0 else np.full(span.stop - span.start, np.nan)
        out.append(e)
    return out


def effects_table(df: pd.DataFrame, n_boot: int = N_BOOT, seed: int = BOOT_SEED, at: float | None = None,
                  min_widths: int = 1) -> pd.DataFrame:
    """Effects on one scale, one row per configuration × layer × metric × width (groups with >= ``min_widths``
    widths); columns :data:`EFFECT_COLUMNS`.

    ``outcome`` (change or final, as in :func:`trend_table`) and its mean at that width with a 95% bootstrap CI
    (``outcome_lo``/``_hi``); ``final_mean``/``final_sd``: the trained value's mean and seed-to-seed SD; the untrained
    null's ``null_mean``/``null_sd`` (``n_null`` draws); ``gap`` = final mean − null mean in the metric's own units
    with its CI (seeds and null draws resampled independently); ``gap_z`` = gap / ``gap_scale``, one yardstick per
    configuration × layer × metric (root mean square over its widths of ``final_sd``), so the standardised gap is on
    one scale across widths and its denominator cannot shrink with width; ``d_null`` = gap / null SD (the old d:
    its denominator, the SD of a mean over w units, shrinks with width) with CI; ``pct_null`` the seeds' median
    percentile in the null. ``at``: as in :func:`trend_table`."""
    _check_columns(df, "effects_table")
    pairs = paired_values(df, at=at)
    if pairs.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c in _TEXT else float) for c in EFFECT_COLUMNS})
    pairs = pairs.sort_values([*TREND_GROUP, "width", "seed"], kind="stable").reset_index(drop=True)
    groups = _groups(pairs, _nulls(df), min_widths)
    effects = _effects_of(groups, pairs, n_boot, seed)
    records = []
    for g, e in zip(groups, effects, strict=True):
        base = dict(zip(TREND_GROUP, g.key, strict=True))
        base.update(level=metric_level(base["metric"]), outcome=g.outcome)
        for k, w in enumerate(g.widths):
            rec = {**base, "width": int(w), "n_seeds": int(e["n"][k]), "n_null": int(e["n_null"][k])}
            for name in ("outcome_mean", "outcome_lo", "outcome_hi", "final_mean", "final_sd", "null_mean",
                         "null_sd", "gap", "gap_lo", "gap_hi", "gap_scale", "gap_z", "gap_z_lo", "gap_z_hi"):
                rec[name] = e[name][k]
            rec.update(d_null=e["d"][k], d_null_lo=e["d_lo"][k], d_null_hi=e["d_hi"][k], pct_null=e["pct"][k])
            records.append(rec)
    out = pd.DataFrame.from_records(records).reindex(columns=EFFECT_COLUMNS)
    return out.sort_values([*TREND_GROUP, "width"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# The tests of one design


class _Design:
    """The groups of one design (same widths and seeds) and everything their tests accumulate over the rounds."""

    def __init__(self, rows: list[int], groups: list[_Group], pairs: pd.DataFrame):
        self.rows, self.groups = rows, groups
        self.widths, self.seeds = groups[0].widths, groups[0].seeds
        self.x = np.log2(self.widths.astype(float))
        out_t, out_c = _grids(groups, pairs, lambda g: "change" if g.outcome == "change" else "end")
        end_t, end_c = _grids(groups, pairs, lambda g: "end")
        self.mom = inf.moments(out_t, out_c, self.x)
        self.end = inf.moments(end_t, end_c, self.x)
        self.kind = inf.weight_kind(int(self.mom.n_clusters.max()))
        self.psi, self.pair_obs = inf.pair_scores(self.mom)
        G, P = len(groups), self.psi.shape[2]
        self.t_obs = self.mom.t.copy()
        self.ex = {"trend": np.zeros(G, np.int64), "end": np.zeros(G, np.int64), "omni": np.zeros(G, np.int64),
                   "contrast": np.zeros(G, np.int64), "pair": np.zeros((G, P), np.int64)}
        self.n = np.zeros(G, np.int64)
        self.testable = np.zeros(0, np.int64)

    def draw(self, members: np.ndarray, n: int, round_: int, seed: int) -> None:
        """``n`` more wild bootstrap draws (stream ``round_``) for the groups ``members`` (indices into the design)."""
        V = inf.wild_weights(self.seeds, n, self.kind, (seed, 0, round_))
        sub = _subset(self.mom, members)
        self.ex["trend"][members] += inf.trend_exceedances(V, sub, self.t_obs[members])
        self.ex["end"][members] += inf.trend_exceedances(V, _subset(self.end, members))
        pc = inf.pair_exceedances(V, self.psi[members], self.pair_obs[members])
        self.ex["omni"][members] += pc.omni
        self.ex["contrast"][members] += pc.contrast
        self.ex["pair"][members] += pc.pair
        self.n[members] += n


def _subset(mom: inf.Moments, idx: np.ndarray) -> inf.Moments:
    fields = ("total", "count", "n_obs", "n_clusters", "xbar", "ybar", "sxx", "slope", "intercept", "c", "m", "d",
              "q", "factor", "t")
    return inf.Moments(mom.x, *(getattr(mom, f)[idx] for f in fields))


def _statsmodels_fits(groups: list[_Group], pairs: pd.DataFrame) -> dict[str, np.ndarray]:
    """The OLS of each group's outcome on log2 w with the cluster-robust (by seed) CR1 variance, by ``statsmodels``:
    slope, intercept, its SE and the analytic t-test p (t with G − 1 degrees of freedom)."""
    from statsmodels.regression.linear_model import OLS  # here: the rest of the analysis does not need it

    width = np.log2(pairs["width"].to_numpy(dtype=float))
    seed = pairs["seed"].to_numpy(dtype=np.int64)
    cols = {c: pairs[c].to_numpy(dtype=float) for c in ("change", "end")}
    out = {k: np.full(len(groups), np.nan) for k in ("slope", "intercept", "se", "p")}
    for i, g in enumerate(groups):
        y = cols["change" if g.outcome == "change" else "end"][g.pos]
        x = width[g.pos]
        if y.size <= 2 or np.unique(seed[g.pos]).size < 2 or np.unique(x).size < 2:
            continue  # no residual degrees of freedom or no clusters to vary over: no test (NaN)
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore")
            fit = OLS(y, np.column_stack([np.ones_like(x), x])).fit(
                cov_type="cluster", cov_kwds={"groups": seed[g.pos]}, use_t=True)
            out["slope"][i], out["intercept"][i] = fit.params[1], fit.params[0]
            out["se"][i], out["p"][i] = fit.bse[1], fit.pvalues[1]
    return out


def _seed_corr(mom: inf.Moments) -> np.ndarray:
    """Mean over pairs of widths of the correlation across seeds of the values at the two widths (the shared seed
    effect), from seeds present at both; NaN where no pair has >= 3 common seeds with spread."""
    with np.errstate(divide="ignore", invalid="ignore"):
        Y = np.where(mom.count > 0, mom.total / mom.count, np.nan)    # (G, S, K)
    i, j = inf.pairs_of(Y.shape[2])
    rs = np.full((Y.shape[0], i.size), np.nan)
    for p, (a, b) in enumerate(zip(i, j, strict=True)):
        ya, yb = Y[:, :, a], Y[:, :, b]
        ok = np.isfinite(ya) & np.isfinite(yb)
        n = ok.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ma = np.where(ok, ya, 0).sum(axis=1) / n
            mb = np.where(ok, yb, 0).sum(axis=1) / n
            da, db = np.where(ok, ya - ma[:, None], 0), np.where(ok, yb - mb[:, None], 0)
            r = (da * db).sum(axis=1) / np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
        rs[:, p] = np.where(n >= 3, r, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(rs, axis=1)


def _joined(values) -> str:
    return ";".join("nan" if not np.isfinite(v) else repr(float(v)) for v in values)


# ---------------------------------------------------------------------------------------------------------
# The table


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in _TEXT else bool if c in _BOOL else float)
                         for c in TREND_COLUMNS})


def in_family(table: pd.DataFrame) -> pd.Series:
    """The declared family (see ``conf/analysis/hypothesis.yaml``): studied layer, family metric, a sweep's
    replicates."""
    return (table["layer"].isin(STUDIED_LAYERS) & table["metric"].isin(FAMILY_METRICS)
            & (table["n_replicates"] >= FAMILY_MIN_REPLICATES))


def _adjust(table: pd.DataFrame) -> pd.DataFrame:
    """q/omni_q (BH over the family's trend and omnibus tests together) and holm/omni_holm (over the headline
    rows' tests)."""
    out = table.copy()
    for col in ("q", "holm", "omni_q", "omni_holm"):
        out[col] = np.nan
    for flag, names in (("in_family", ("q", "omni_q")), ("headline", ("holm", "omni_holm"))):
        rows = out.index[out[flag]]
        p = np.r_[out.loc[rows, "trend_p"].to_numpy(float), out.loc[rows, "omni_p"].to_numpy(float)]
        adj = bh_qvalues(p) if flag == "in_family" else holm_adjust(p)
        out.loc[rows, names[0]], out.loc[rows, names[1]] = adj[:len(rows)], adj[len(rows):]
    return out


def _cutoffs(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The raw-p cut-off of each row's trend and omnibus test: α·p/adjusted in the family (the p at which the
    adjusted value reaches α, its multiplier held fixed), α outside it."""
    fam, head = table["in_family"].to_numpy(bool), table["headline"].to_numpy(bool)
    res = []
    for p_col, q_col, h_col in (("trend_p", "q", "holm"), ("omni_p", "omni_q", "omni_holm")):
        p = table[p_col].to_numpy(float)
        adj = np.where(head, table[h_col].to_numpy(float), table[q_col].to_numpy(float))
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(fam, np.where(adj > 0, ALPHA * p / adj, np.nan), ALPHA)
        res.append(c)
    return res[0], res[1]


def _near_cutoff(p: np.ndarray, cut: np.ndarray, n: np.ndarray) -> np.ndarray:
    se = np.sqrt(p * (1 - p) / np.maximum(n, 1))
    with np.errstate(invalid="ignore"):
        return np.isfinite(p) & np.isfinite(cut) & (np.abs(p - cut) < MC_SE * se)


def trend_table(df: pd.DataFrame, n_perm: int = N_PERM, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                at: float | None = None, strict: bool = False, max_draws: int | None = None) -> pd.DataFrame:
    """The width tests of every configuration × layer × metric run at >= 3 widths; columns :data:`TREND_COLUMNS`
    (documented in the module docstring), rows sorted by :data:`TREND_GROUP`.

    ``n_perm``: wild bootstrap draws each test starts from; ``max_draws`` (default 16 × n_perm): the most a
    family test near its cut-off is given. ``n_boot``: cluster-bootstrap resamples of the CIs. ``at``: a fraction
    of each run's last epoch: the tests use each run's checkpoint closest to it (see ``stats.paired_values``), e.g.
    ``at=0.5`` for the verdicts at half the budget. ``strict``: raise :class:`TrendInputError` when no group has
    >= 3 widths instead of returning an empty table. Raises :class:`TrendInputError` for a frame without the
    columns it needs."""
    _check_columns(df, "trend_table")
    with inf.one_blas_thread():
        return _trend_table(df, n_perm, n_boot, seed, at, strict, 16 * n_perm if max_draws is None else max_draws)


def _trend_table(df: pd.DataFrame, n_perm: int, n_boot: int, seed: int, at: float | None, strict: bool,
                 max_draws: int) -> pd.DataFrame:
    pairs = paired_values(df, at=at)
    pairs = pairs.sort_values([*TREND_GROUP, "width", "seed"], kind="stable").reset_index(drop=True)
    groups = _groups(pairs, _nulls(df), MIN_WIDTHS) if len(pairs) else []
    if not groups:
        if strict:
            most = int(pairs.groupby(TREND_GROUP, observed=True)["width"].nunique().max()) if len(pairs) else 0
            raise TrendInputError(f"trend_table: no configuration × layer × metric has >= {MIN_WIDTHS} widths with "
                                  f"paired values (the most is {most})")
        return _empty()

    designs: dict[tuple, list[int]] = {}
    for i, g in enumerate(groups):
        designs.setdefault((tuple(g.widths), tuple(g.seeds)), []).append(i)
    sm_fit = _statsmodels_fits(groups, pairs)
    effects = _effects_of(groups, pairs, n_boot, seed)
    n_rows = len(groups)
    cols: dict[str, np.ndarray] = {}

    def put(name: str, rows, values) -> None:
        cols.setdefault(name, np.full(n_rows, np.nan, dtype=object if isinstance(values, list) else float))
        cols[name][rows] = values

    built: list[_Design] = []
    for members in designs.values():
        d = _Design(members, [groups[i] for i in members], pairs)
        rows = np.asarray(members)
        # The observed t is statsmodels' (the same CR1 formula as the bootstrap's, which the tests check).
        with np.errstate(divide="ignore", invalid="ignore"):
            slope, se = sm_fit["slope"][rows], sm_fit["se"][rows]
            d.t_obs = np.where(se > 0, slope / se, np.where(slope == 0, 0.0, np.sign(slope) * np.inf))
        testable = np.flatnonzero([not g.flat and d.mom.n_clusters[k] >= MIN_SEEDS
                                   for k, g in enumerate(d.groups)])
        if testable.size:
            d.draw(testable, n_perm, 0, seed)
        d.testable = testable
        built.append(d)
        # Cluster bootstrap: seeds resampled with all their widths.
        W = inf.resample_counts(d.seeds.size, n_boot, (seed, 1, *d.widths.tolist(), *d.seeds.tolist()))
        bo, be = inf.cluster_bootstrap(W, d.mom), inf.cluster_bootstrap(W, d.end)
        lo, hi = _percentile_ci(bo["slope"])
        elo, ehi = _percentile_ci(be["slope"])
        clo, chi = _percentile_ci(bo["means"][:, :, -1] - bo["means"][:, :, 0])
        few = d.mom.n_clusters < 2
        for name, v in (("slope_lo", lo), ("slope_hi", hi), ("end_slope_lo", elo), ("end_slope_hi", ehi),
                        ("contrast_lo", clo), ("contrast_hi", chi)):
            put(name, rows, np.where(few, np.nan, v))
        with np.errstate(divide="ignore", invalid="ignore"):
            means = d.mom.total.sum(axis=1) / d.mom.count.sum(axis=1)       # (G, K)
            ch_t, ch_c = _grids(d.groups, pairs, lambda g: "change")
            ch_means = ch_t.sum(axis=1) / ch_c.sum(axis=1)
        cell = np.where(d.mom.count > 0, d.mom.total / np.where(d.mom.count > 0, d.mom.count, 1), np.nan)
        n_k = (d.mom.count > 0).sum(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sds = np.nanstd(cell, axis=1, ddof=1)                          # (G, K): seeds' SD at each width
        put("end_slope", rows, d.end.slope)
        put("outcome_narrow", rows, means[:, 0])
        put("outcome_wide", rows, means[:, -1])
        put("change_narrow", rows, ch_means[:, 0])
        put("change_wide", rows, ch_means[:, -1])
        put("contrast", rows, means[:, -1] - means[:, 0])
        put("seed_corr", rows, _seed_corr(d.mom))
        put("argmax_width", rows, d.widths[np.argmax(np.nan_to_num(means, nan=-np.inf), axis=1)].astype(float))
        put("argmin_width", rows, d.widths[np.argmin(np.nan_to_num(means, nan=np.inf), axis=1)].astype(float))
        put("mean_list", rows, [_joined(m) for m in means])
        put("sd_list", rows, [_joined(s) for s in sds])
        put("n_list", rows, [";".join(str(int(v)) for v in n) for n in n_k])

    records = []
    replicates = _replicates(df)
    for i, g in enumerate(groups):
        sizes = np.array([np.unique(pairs["seed"].to_numpy()[g.pos][pairs["width"].to_numpy()[g.pos] == w]).size
                          for w in g.widths])
        n_rep = int(replicates.get(tuple(g.key[:len(CONFIG)]), sizes.max()))
        e = effects[i]
        rec = dict(zip(TREND_GROUP, g.key, strict=True))
        rec.update(level=metric_level(rec["metric"]), outcome=g.outcome, n_widths=g.widths.size,
                   widths=f"{g.widths[0]}-{g.widths[-1]}", n_replicates=n_rep, n_total=len(g.pos),
                   n_min_per_width=int(sizes.min()), n_max_per_width=int(sizes.max()),
                   n_dropped=int(max(n_rep * g.widths.size - len(g.pos), 0)),
                   slope=sm_fit["slope"][i], intercept=sm_fit["intercept"][i], slope_se=sm_fit["se"][i],
                   narrow=int(g.widths[0]), wide=int(g.widths[-1]), n_narrow=int(sizes[0]), n_wide=int(sizes[-1]),
                   width_list=";".join(str(int(w)) for w in g.widths), gap_scale=e["gap_scale"][0])
        for side, tag in ((0, "narrow"), (-1, "wide")):
            rec.update({f"n_null_{tag}": int(e["n_null"][side]), f"gap_{tag}": e["gap"][side],
                        f"gap_{tag}_lo": e["gap_lo"][side], f"gap_{tag}_hi": e["gap_hi"][side],
                        f"gap_z_{tag}": e["gap_z"][side], f"gap_z_{tag}_lo": e["gap_z_lo"][side],
                        f"gap_z_{tag}_hi": e["gap_z_hi"][side], f"d_{tag}": e["d"][side],
                        f"d_{tag}_lo": e["d_lo"][side], f"d_{tag}_hi": e["d_hi"][side], f"pct_{tag}": e["pct"][side]})
        records.append(rec)
    out = pd.DataFrame.from_records(records)
    for name, values in cols.items():
        out[name] = values
    testable = np.zeros(n_rows, bool)
    for d in built:
        testable[np.asarray(d.rows)[d.testable]] = True
    out["trend_p_cr"] = np.where(testable, sm_fit["p"], np.nan)
    out["_flat"] = [g.flat for g in groups]
    out["weights"] = ""
    for d in built:
        out.loc[d.rows, "weights"] = d.kind
    out["in_family"] = in_family(out)
    out["headline"] = out["in_family"] & out["layer"].isin(HEADLINE_LAYERS) & out["metric"].isin(HEADLINE_METRICS)

    # Monte Carlo precision: more draws for family tests near their cut-off, doubling, until none is or the cap.
    round_, total = 0, n_perm
    while True:
        _collect_p(out, built)
        out = _adjust(out)
        cut_t, cut_o = _cutoffs(out)
        n = out["n_draws"].to_numpy(float)
        near = out["in_family"].to_numpy(bool) & (
            _near_cutoff(out["trend_p"].to_numpy(float), cut_t, n) | _near_cutoff(out["omni_p"].to_numpy(float),
                                                                                   cut_o, n))
        if not near.any() or 2 * total > max_draws:
            break
        round_ += 1
        for d in built:
            members = np.flatnonzero(near[d.rows])
            members = members[np.isin(members, d.testable)]
            if members.size:
                d.draw(members, total, round_, seed)
        total *= 2
    out["borderline"] = near
    _profiles(out, built, cut_t, cut_o)
    out = out.reindex(columns=TREND_COLUMNS)
    for col in ("n_draws", "n_rising_pairs", "n_falling_pairs", "argmax_width", "argmin_width"):
        out[col] = out[col].astype("int64")
    return out.sort_values(TREND_GROUP, kind="stable").reset_index(drop=True)


def _collect_p(out: pd.DataFrame, built: list[_Design]) -> None:
    for name in ("trend_p", "end_p", "omni_p", "contrast_p"):
        out[name] = np.nan
    out["n_draws"] = 0
    for d in built:
        rows = np.asarray(d.rows)[d.testable]
        n = d.n[d.testable]
        out.loc[rows, "n_draws"] = n
        for name, key in (("trend_p", "trend"), ("end_p", "end"), ("omni_p", "omni"), ("contrast_p", "contrast")):
            out.loc[rows, name] = inf.p_from_counts(d.ex[key][d.testable], n)
        end_flat = np.array([d.groups[k].end_flat for k in d.testable], dtype=bool)
        out.loc[rows[end_flat], "end_p"] = np.nan  # the final value alone has no spread across seeds: no test


def _profiles(out: pd.DataFrame, built: list[_Design], cut_t: np.ndarray, cut_o: np.ndarray) -> None:
    """``profile``, the significant rising/falling pairs, ``verdict`` and ``verdict_p`` of every row."""
    profile = np.array(["no test"] * len(out), dtype=object)
    n_up, n_down = np.zeros(len(out)), np.zeros(len(out))
    for d in built:
        for k in d.testable:
            r = d.rows[k]
            sig = inf.p_from_counts(d.ex["pair"][k], d.n[k]) <= cut_o[r]
            sign = np.sign(np.nan_to_num(d.pair_obs[k]))
            n_up[r], n_down[r] = (sig & (sign > 0)).sum(), (sig & (sign < 0)).sum()
            trend = np.sign(out.at[r, "slope"]) if out.at[r, "trend_p"] <= cut_t[r] else 0.0
            up, down = n_up[r] + (trend > 0), n_down[r] + (trend < 0)
            profile[r] = ("non-monotone" if up and down else "rising" if up else "falling" if down
                          else "no evidence")
    out["profile"] = profile
    out["n_rising_pairs"], out["n_falling_pairs"] = n_up, n_down
    fam, head = out["in_family"].to_numpy(bool), out["headline"].to_numpy(bool)
    adj_t = np.where(head, out["holm"], out["q"]).astype(float)
    adj_o = np.where(head, out["omni_holm"], out["omni_q"]).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["verdict_p"] = np.where(fam, np.fmin(adj_t, adj_o), np.nan)
    out["verdict"] = [_verdict(f, pr, str(m), oc, fl) for f, pr, m, oc, fl in
                      zip(fam, out["profile"], out["metric"], out["outcome"], out["_flat"], strict=True)]


def _verdict(family: bool, profile: str, metric: str, outcome: str, flat: bool) -> str:
    if not family:
        return ""  # outside the family: descriptive
    if profile == "no test":
        return ("no test (no spread across seeds beyond rounding)" if flat
                else f"no test (fewer than {MIN_SEEDS} seeds)")
    if profile == "no evidence":
        return "no evidence of a width effect"
    if profile == "non-monotone":
        return "non-monotone width effect"
    verb = "gains" if outcome == "change" else "ends with"
    more = (1 if profile == "rising" else -1) * redundancy_sign(metric)
    if more > 0:
        return f"wider {verb} more redundancy"
    if more < 0:
        return f"narrower {verb} more redundancy"
    return profile


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
        def ci(cols):
            return [_with_ci(*v) for v in rows[cols].to_numpy()]

        shown = pd.DataFrame({
            "experiment": rows["experiment"].astype(str), "data": rows["data"].astype(str),
            "block": rows["block"].astype(str), "layer": rows["layer"].astype(str),
            "metric": rows["metric"].astype(str), "outcome": rows["outcome"], "widths": rows["widths"],
            "n (dropped)": [f"{n} ({d})" if d else str(n) for n, d in zip(rows["n_total"], rows["n_dropped"],
                                                                          strict=True)],
            "slope/doubling [95% CI]": ci(["slope", "slope_lo", "slope_hi"]),
            "trend p": rows["trend_p"].map(_g), "omnibus p": rows["omni_p"].map(_g),
            "q trend/omni": [f"{_g(a)}/{_g(b)}" if pd.notna(a) else "" for a, b in zip(rows["q"], rows["omni_q"],
                                                                                      strict=True)],
            "Holm trend/omni": [f"{_g(a)}/{_g(b)}" if pd.notna(a) else ""
                                for a, b in zip(rows["holm"], rows["omni_holm"], strict=True)],
            "profile": rows["profile"],
            "wide − narrow [CI]": ci(["contrast", "contrast_lo", "contrast_hi"]),
            "gap narrow [CI]": ci(["gap_narrow", "gap_narrow_lo", "gap_narrow_hi"]),
            "gap wide [CI]": ci(["gap_wide", "gap_wide_lo", "gap_wide_hi"]),
            "gap/scale narrow, wide": [f"{_g(a)}, {_g(b)}" if pd.notna(a) else ""
                                       for a, b in zip(rows["gap_z_narrow"], rows["gap_z_wide"], strict=True)],
            "d vs null SD narrow, wide": [f"{_g(a)}, {_g(b)}" if pd.notna(a) else ""
                                          for a, b in zip(rows["d_narrow"], rows["d_wide"], strict=True)],
            "verdict": [f"{v} (borderline)" if b and v else v for v, b in zip(rows["verdict"], rows["borderline"],
                                                                             strict=True)],
        })
        return to_markdown(shown.set_index("experiment"))

    parts = []
    for title, rows in (("Headline tests (Holm over this set)", table[table["headline"]]),
                        ("The rest of the family (BH q over the whole family)",
                         table[table["in_family"] & ~table["headline"]]),
                        ("Outside the family (descriptive: no verdict; profiles at the raw α)",
                         table[~table["in_family"]])):
        if len(rows):
            parts.append(f"## {title}\n\n{view(rows)}")
    return "\n".join(parts)


def write_effects_table(df: pd.DataFrame, out_dir: str | Path = DEFAULT_ROOT / "tables",
                        table: pd.DataFrame | None = None) -> list[Path]:
    """Write ``effects.csv`` (full precision) and ``effects.md`` (:func:`effects_table`, one row per width) into
    ``out_dir``; nothing when there are no paired values. Returns the paths written."""
    table = effects_table(df) if table is None else table
    if table.empty:
        return []
    header = (
        "# Trained − null effects per width\n\n"
        "Per configuration × layer × metric × width: the tested outcome's mean (change or final value, as in "
        "trend.md) with a 95% bootstrap CI; the gap = trained final mean − untrained null mean in the metric's "
        "units with its CI (seeds and null draws resampled); gap_z = gap / gap_scale, one yardstick per "
        "configuration × layer × metric (RMS over widths of the trained value's seed-to-seed SD), so gap_z is on one "
        "scale across widths; d_null = gap / null SD, the old d, whose denominator (the SD of a mean over w units) "
        "shrinks with width.\n\n")
    shown = table.copy()
    for col in shown.columns:
        if shown[col].dtype == float:
            shown[col] = shown[col].map(_g)
    return write_csv_and_markdown(table, out_dir, "effects", header + to_markdown(shown.set_index("experiment")))


def write_trend_table(df: pd.DataFrame, out_dir: str | Path = DEFAULT_ROOT / "tables",
                      table: pd.DataFrame | None = None, name: str = "trend") -> list[Path]:
    """Write ``<name>.csv`` (full precision) and ``<name>.md`` into ``out_dir`` (``name`` e.g. ``trend_half`` for
    ``trend_table(df, at=0.5)`` passed as ``table``); nothing when no group spans >= 3 widths. ``table``:
    ``trend_table(df)`` if already computed. Returns the paths written, like ``stats.write_summary``."""
    table = trend_table(df) if table is None else table
    if table.empty:
        return []
    fam = table[table["in_family"]]
    n_tests = int(fam["trend_p"].notna().sum() + fam["omni_p"].notna().sum())
    header = (
        "# The width effect of training\n\n"
        "Per experiment × layer × metric run at ≥ 3 widths, the outcome is each seed's paired change (final − "
        "initial), or its final value where the metric has no spread at initialisation (`outcome`). The same seeds "
        "are used at every width, so every test treats the seed as the unit (cluster) and allows any spread at "
        "each width: the OLS slope of the outcome per doubling of the width over all seeds, its cluster-robust "
        "(by seed) CR1 standard error (statsmodels) and a restricted wild cluster bootstrap p of its t "
        f"(Rademacher weights, Webb's below 12 seeds; {N_PERM:,} draws, more near a cut-off: `n_draws`); "
        "95% CIs resample seeds with all their widths. The omnibus p tests any width effect: the largest "
        "studentised difference between two widths' means, with the same bootstrap (max-T); the profile "
        "(rising, falling, non-monotone, no evidence) follows the significant trend and pairs of widths. Wide − "
        "narrow: the contrast of the mean outcome with its own p. Effects against the untrained null at each end: "
        "the gap (final mean − null mean, the metric's units) with its CI, the gap over one yardstick per row (RMS "
        "over widths of the trained value's seed SD: `gap_scale`), and the old d = gap / null SD, whose "
        "denominator shrinks with width. n: seeds used over all widths (in brackets the replicates the experiment "
        "ran that the paired test could not use).\n\n"
        f"Declared family (conf/analysis/hypothesis.yaml): the trend and omnibus tests of the layers that take the "
        f"width ({', '.join(STUDIED_LAYERS)}) over the redundancy metrics "
        f"{', '.join(m for m in FAMILY_METRICS if m in set(fam['metric']))} of every sweep "
        f"(≥ {FAMILY_MIN_REPLICATES} seeds per width): {n_tests} defined tests; q = "
        "Benjamini–Hochberg over them. Headline: "
        f"{', '.join(HEADLINE_METRICS)} of the {'/'.join(HEADLINE_LAYERS)} layer of every sweep, "
        f"{int(table['headline'].sum())} rows (two tests each), Holm-adjusted. Verdicts (α = {ALPHA}) follow the "
        "profile under Holm for headline rows and q otherwise, never a raw p; a verdict whose p still lies within "
        f"{MC_SE:g} Monte Carlo SEs of its cut-off after the most draws it may get (here "
        f"{int(table['n_draws'].max()):,}) is marked borderline.\n\n")
    return write_csv_and_markdown(table, out_dir, name, header + trend_markdown(table))
