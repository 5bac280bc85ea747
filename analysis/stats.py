"""Across-seed statistics of every logged metric: the paired tests of every metric, in one table.

The source compared one seed per width. Here each (experiment, model, activation, protocol, width,
layer, metric) gets: the mean over seeds of the initial (epoch 0) and final values with 95% bootstrap
confidence intervals; the paired change final − initial with its own CI and a Wilcoxon signed-rank
test (did training move the metric at all?); and the width-matched random null (untrained draws of
the same layer shape): its 2.5–97.5% band, where each seed's final value falls in it, and how many
seeds end outside it (did training move the metric beyond what chance initialisation gives?).

Every figure that shows a CI takes it from :func:`summary`, so there is one statistics code path.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.load import DEFAULT_ROOT
from analysis.tables import to_markdown, write_csv_and_markdown

# One summary row per combination of these columns.
GROUP = ["experiment", "model", "activation", "protocol", "data", "block", "channels", "width", "layer", "metric"]
# Unit indices, not measures: a mean or a CI of them means nothing.
INDEX_METRICS = ("min_pair_i", "min_pair_j")
N_BOOT = 2000
BOOT_SEED = 0
CI = 95.0
NULL_BAND = (2.5, 97.5)

COLUMNS = [
    *GROUP, "n_seeds", "n_dropped",
    "init_mean", "init_lo", "init_hi",
    "end_mean", "end_lo", "end_hi",
    "change_mean", "change_lo", "change_hi", "wilcoxon_p",
    "n_null", "null_mean", "null_lo", "null_hi",
    "init_null_pct", "end_null_pct", "frac_outside_null",
]


def _resampled_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, k) means of bootstrap resamples of the rows of ``values`` (n, k), all columns resampled with the
    *same* row indices. The resamples come from one (n_boot, n) index matrix, with no Python loop over them."""
    n = values.shape[0]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    # How often each seed is drawn in each resample: the resample means are then one matrix product.
    counts = np.bincount((np.arange(n_boot)[:, None] * n + idx).ravel(), minlength=n_boot * n)
    return counts.reshape(n_boot, n) @ values / n


def _as_columns(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[:, None] if values.ndim == 1 else values


def bootstrap_mean_ci(values: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                      ci: float = CI) -> np.ndarray:
    """Percentile-bootstrap CI of the mean over axis 0, for every column of ``values`` at once.

    ``values`` is (n_seeds, k): the columns (e.g. initial, final, change) are resampled with the *same*
    seed indices, so paired quantities stay paired. A fixed generator seed makes the table reproducible and
    independent of the order groups are visited in. Returns (2, k): lower and upper bounds; NaN for
    fewer than two seeds, where a resampling CI would be a meaningless zero-width interval.
    """
    values = _as_columns(values)
    if values.shape[0] < 2:
        return np.full((2, values.shape[1]), np.nan)
    tail = (100.0 - ci) / 2
    return np.percentile(_resampled_means(values, n_boot, seed), [tail, 100.0 - tail], axis=0)


def bootstrap_diff_ci(a: np.ndarray, b: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                      ci: float = CI) -> np.ndarray:
    """Percentile-bootstrap CI of mean(b) − mean(a) for two independent groups (unpaired: e.g. two model
    families' seeds), each resampled on its own; columns as in :func:`bootstrap_mean_ci`. (2, k); NaN when
    either group has fewer than two values."""
    a, b = _as_columns(a), _as_columns(b)
    if min(a.shape[0], b.shape[0]) < 2:
        return np.full((2, a.shape[1]), np.nan)
    diff = _resampled_means(b, n_boot, seed + 1) - _resampled_means(a, n_boot, seed)
    tail = (100.0 - ci) / 2
    return np.percentile(diff, [tail, 100.0 - tail], axis=0)


def wilcoxon_p(changes: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired changes; NaN when the test is undefined.

    Undefined means fewer than two pairs or no nonzero change (e.g. a metric training cannot move):
    reporting p = 1 there would pretend a test was run.
    """
    changes = np.asarray(changes, dtype=float)
    if changes.size < 2 or not np.any(changes != 0):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small-sample / ties notices
        return float(sps.wilcoxon(changes).pvalue)


def null_percentile(null_sorted: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Percentile (0–100) of each ``x`` within the sorted null sample; ties count half.

    The same convention as ``scipy.stats.percentileofscore(kind="mean")``, vectorised with two binary
    searches instead of one scan per value.
    """
    below = np.searchsorted(null_sorted, x, side="left")
    at_or_below = np.searchsorted(null_sorted, x, side="right")
    return 100.0 * (below + at_or_below) / (2.0 * null_sorted.size)


def end_epochs(trained: pd.DataFrame, at: float) -> pd.Series:
    """Per trained row, the end point that ``at`` picks: among the epochs its run logged its (layer, metric) at,
    excluding epoch 0, the one closest to ``at`` × the run's last epoch (a tie goes to the later epoch, so "half
    the budget" never means less than half). Indexed like ``trained``."""
    if not 0 < at <= 1:
        raise ValueError(f"at must be a fraction of the last epoch in (0, 1], got {at}")
    keys = ["run_id", "layer", "metric"]
    last = trained.groupby("run_id", observed=True)["epoch"].max().rename("last")
    logged = trained.loc[trained["epoch"] > 0, [*keys, "epoch"]].drop_duplicates()
    logged = logged.join(last, on="run_id")
    logged["dist"] = (logged["epoch"] - at * logged["last"]).abs()
    logged["neg"] = -logged["epoch"]
    chosen = logged.sort_values([*keys, "dist", "neg"], kind="stable").drop_duplicates(keys)
    chosen = chosen.set_index(keys)["epoch"].rename("end_epoch")
    return trained[keys].join(chosen, on=keys)["end_epoch"]


def paired_values(df: pd.DataFrame, at: float | None = None) -> pd.DataFrame:
    """One row per trained replicate and metric: its value at epoch 0 (``init``) and at its run's last epoch.

    Pairs are formed within a run (``run_id``, ``seed``), so two runs that share a width but differ in
    another setting never pair with each other; they pool in the summary row as separate replicates.
    Replicates without a finite value at both ends (a diverged seed stops early) are dropped.

    ``at`` (a fraction in (0, 1], e.g. 0.5): the end point is instead each run's checkpoint epoch closest to
    ``at`` × its last epoch, among the epochs the run logged that metric at, never epoch 0 (:func:`end_epochs`);
    the verdicts at half the budget can then be compared with the final ones.
    """
    trained = df[(df["kind"] == "trained") & ~df["metric"].isin(INDEX_METRICS)]
    last = trained.groupby("run_id")["epoch"].transform("max") if at is None else end_epochs(trained, at)
    key = [*GROUP, "run_id", "seed"]
    init = trained[trained["epoch"] == 0].set_index(key)["value"].rename("init")
    end = trained[trained["epoch"] == last].set_index(key)["value"].rename("end")
    pairs = pd.concat([init, end], axis=1, join="inner").reset_index()
    finite = np.isfinite(pairs["init"].to_numpy()) & np.isfinite(pairs["end"].to_numpy())
    return pairs[finite].assign(change=lambda p: p["end"] - p["init"])


def replicates_per_width(df: pd.DataFrame) -> pd.Series:
    """(run, seed) replicates each configuration ran at each width (any metric at epoch 0), indexed by every
    ``GROUP`` column but layer and metric."""
    started = df[(df["kind"] == "trained") & (df["epoch"] == 0)][[*GROUP[:-2], "run_id", "seed"]].drop_duplicates()
    return started.groupby(GROUP[:-2], observed=True, sort=False).size()


def summary(df: pd.DataFrame, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> pd.DataFrame:
    """The paired tests for every (experiment, model, activation, protocol, width, layer, metric).

    Columns (see :data:`COLUMNS`): ``n_seeds`` paired replicates, ``n_dropped`` the replicates the configuration
    ran at that width that have no finite pair for this metric (e.g. a correlation of a seed whose units all died);
    ``init_*``/``end_*``: mean over seeds at
    epoch 0 / at the last epoch with 95% bootstrap CI; ``change_*``: paired end − init, its CI and
    ``wilcoxon_p``; ``null_mean``, ``null_lo``/``null_hi`` (2.5/97.5 percentiles of the untrained null of
    the same experiment, width, layer and metric), ``init_null_pct``/``end_null_pct`` (median over seeds of
    each seed's percentile in the null: ~50 means "looks like a random draw"), and ``frac_outside_null``
    (share of seeds whose final value is outside the null band). Null columns are NaN where no null exists
    (``loss``). Rows are sorted by the group columns.
    """
    pairs = paired_values(df)
    if pairs.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c in GROUP else float) for c in COLUMNS})
    # A paired test that keeps fewer seeds than were run (a metric undefined for some) reports how many it dropped.
    replicates = replicates_per_width(df).to_dict()
    null = df[(df["kind"] == "null") & ~df["metric"].isin(INDEX_METRICS)]
    null_by_group = {k: np.sort(g["value"].to_numpy(dtype=float)) for k, g in null.groupby(GROUP, sort=False)}
    records = []
    all_vals = pairs[["init", "end", "change"]].to_numpy(dtype=float)
    for key, pos in pairs.groupby(GROUP, sort=True).indices.items():
        vals = all_vals[pos]
        lo, hi = bootstrap_mean_ci(vals, n_boot=n_boot, seed=seed)
        mean = vals.mean(axis=0)
        rec = dict(zip(GROUP, key, strict=True))
        rec.update(n_seeds=len(pos), n_dropped=int(replicates.get(tuple(key[:-2]), len(pos))) - len(pos),
                   init_mean=mean[0], init_lo=lo[0], init_hi=hi[0],
                   end_mean=mean[1], end_lo=lo[1], end_hi=hi[1],
                   change_mean=mean[2], change_lo=lo[2], change_hi=hi[2],
                   wilcoxon_p=wilcoxon_p(vals[:, 2]))
        ref = null_by_group.get(key)
        ref = ref[np.isfinite(ref)] if ref is not None else None
        if ref is not None and ref.size:
            band = np.percentile(ref, NULL_BAND)
            rec.update(n_null=ref.size, null_mean=ref.mean(), null_lo=band[0], null_hi=band[1],
                       init_null_pct=float(np.median(null_percentile(ref, vals[:, 0]))),
                       end_null_pct=float(np.median(null_percentile(ref, vals[:, 1]))),
                       frac_outside_null=float(np.mean((vals[:, 1] < band[0]) | (vals[:, 1] > band[1]))))
        else:
            rec.update(n_null=0)
        records.append(rec)
    out = pd.DataFrame.from_records(records).reindex(columns=COLUMNS)
    out = out.astype({"n_seeds": "int64", "n_dropped": "int64", "n_null": "int64", "width": "int64"})
    return out.sort_values(GROUP, kind="stable").reset_index(drop=True)


def select(table: pd.DataFrame, layer: str | None = None, widths: Iterable[int] | None = None,
           metrics: Sequence[str] | None = None, experiments: Iterable[str] | None = None) -> pd.DataFrame:
    """Rows of a summary table for a readable view (a notebook, a report); ``None`` keeps everything.

    Experiments and metrics keep the order given, so a table can be read experiment by experiment and
    metric by metric; widths ascend within each.
    """
    keep = pd.Series(True, index=table.index)
    if layer is not None:
        keep &= table["layer"] == layer
    if widths is not None:
        keep &= table["width"].isin(list(widths))
    out = table[keep]
    exp_order = {e: i for i, e in enumerate(experiments if experiments is not None else sorted(set(out["experiment"])))}
    metric_order = {m: i for i, m in enumerate(metrics if metrics is not None else sorted(set(out["metric"])))}
    out = out[out["experiment"].isin(exp_order) & out["metric"].isin(metric_order)]
    out = out.assign(_e=out["experiment"].map(exp_order), _m=out["metric"].map(metric_order))
    out = out.sort_values(["_e", "_m", "width", *GROUP], kind="stable").drop(columns=["_e", "_m"])
    return out.reset_index(drop=True)


def summary_markdown(table: pd.DataFrame, drop: Sequence[str] = ()) -> str:
    """A summary table (or a :func:`select` of it) as GitHub markdown, readable as well as exact enough.

    p-values are written in scientific notation (0.0000 would hide how small they are), null
    percentiles with one decimal; ``drop`` leaves out columns that are constant in a view (e.g. ``layer``).
    """
    shown = table.drop(columns=list(drop))
    if "wilcoxon_p" in shown:
        shown["wilcoxon_p"] = [("" if pd.isna(p) else f"{p:.2g}") for p in shown["wilcoxon_p"]]
    for col in ("init_null_pct", "end_null_pct"):
        if col in shown:
            shown[col] = [("" if pd.isna(v) else f"{v:.1f}") for v in shown[col]]
    if "frac_outside_null" in shown:
        shown["frac_outside_null"] = [("" if pd.isna(v) else f"{v:.2f}") for v in shown["frac_outside_null"]]
    keys = [c for c in GROUP if c in shown]
    return to_markdown(shown.set_index(keys) if keys else shown)


def write_summary(df: pd.DataFrame, out_dir: str | Path = DEFAULT_ROOT / "tables") -> list[Path]:
    """Write ``summary.csv`` (full precision) and ``summary.md`` into ``out_dir``; nothing when no runs.

    Returns the paths written, like the figure functions, so ``build_all`` can list them.
    """
    table = summary(df)
    if table.empty:
        return []
    header = (
        "Summary of every metric across seeds. n_seeds: paired seeds used; n_dropped: seeds the "
        "configuration ran at that width without a value for the metric. init/end: mean over seeds at epoch 0 / "
        "last epoch with 95% bootstrap CI; change: paired end − init with CI and Wilcoxon signed-rank p; null: "
        "2.5–97.5% band of untrained draws of the same layer shape; *_null_pct: median percentile of the "
        "seeds in the null; frac_outside_null: share of seeds ending outside the null band.\n\n")
    return write_csv_and_markdown(table, out_dir, "summary", header + summary_markdown(table))
