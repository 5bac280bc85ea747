"""Figure 14: the width effect of training, per family.

For every sweep (experiment configuration) and each headline metric of the layer that takes the width
(``analysis.hypothesis.HEADLINE_METRICS`` of ``HEADLINE_LAYERS``, declared in ``conf/analysis/hypothesis.yaml``:
``bottleneck``, or ``reduce``, C→w, in the ResNet blocks): each seed's tested outcome against the width on a log2
axis with a tick at every swept width (the row's ``outcome``: the paired change final − initial, or the final value
where the metric has no spread at initialisation), the mean ± 95% CI per width (``stats.summary``, the one code path
for per-width CIs), the OLS line of ``hypothesis.trend_table`` (outcome per doubling of the width), coloured by the
row's ``profile`` (rising, falling, non-monotone, no evidence, no test), and, in the panel, the slope with its
cluster bootstrap CI, the wild cluster bootstrap p of the trend and the omnibus p, their Holm-adjusted values over
the headline set, the profile (marked borderline where a p is within Monte Carlo error of its cut-off) and the n the
test used. Raises ``NoData`` when no sweep has a headline test.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from analysis.hypothesis import (
    CONFIG,
    FAMILY_METRICS,
    HEADLINE_LAYERS,
    HEADLINE_METRICS,
    STUDIED_LAYERS,
    TREND_GROUP,
    trend_table,
)
from analysis.plotting import C_TRAINED, COLUMN_WIDTH, PALETTE, STYLE, UNIT_NAMES, NoData, _err, _width_axis, save
from analysis.stats import paired_values, summary

METRIC_TITLES = {
    "mean_nn_abs_cos": "nearest-unit $|\\cos|$ of weights",
    "act_eff_rank_norm": "activation effective rank / $w$",
    "eff_rank_norm": "weight effective rank / k",
    "act_mean_nn_abs_corr": "nearest-unit |corr| of activations",
    "abl_eff_frac": "effective share of units that matter",
    "anchor_prunable_frac": "anchor prunable fraction",
}
C_FIT = PALETTE[3]
# The fitted line's colour says the row's profile (``analysis.hypothesis.PROFILES``).
PROFILE_COLOURS = {"rising": PALETTE[2], "falling": PALETTE[3], "non-monotone": PALETTE[4], "no evidence": "0.45",
                   "no test": "0.7"}
# The per-seed value and the summary columns of each outcome.
OUTCOME_COLUMNS = {"change": ("change", "change_mean", "change_lo", "change_hi"),
                   "final": ("end", "end_mean", "end_lo", "end_hi")}
C_SEEDS = "0.55"
PANELS_PER_ROW = 4


def _fmt(v: float) -> str:
    return "–" if pd.isna(v) else f"{v:.2g}"


def _label(row: pd.Series, varying: dict[str, list[str]]) -> str:
    """The sweep's name: its experiment, plus whichever settings tell it apart from the other sweeps of that
    experiment (the data set of the autoencoders, the block of the ResNets)."""
    extra = [str(row[c]) for c in varying.get(row["experiment"], [])]
    return f"{row['experiment']}" + (f" ({', '.join(extra)})" if extra else "")


def _panel_text(row: pd.Series) -> str:
    if pd.isna(row["trend_p"]):
        return f"no test: the {_outcome(row)}\nhas no spread beyond rounding"
    dropped = f" ({int(row['n_dropped'])} dropped)" if row["n_dropped"] else ""
    borderline = " (borderline)" if str(row.get("borderline", "")).lower() == "true" else ""
    return (f"{row['profile']}{borderline}\n"
            f"slope {_fmt(row['slope'])} [{_fmt(row['slope_lo'])}, {_fmt(row['slope_hi'])}]\n"
            f"p trend {_fmt(row['trend_p'])}, omnibus {_fmt(row['omni_p'])}\n"
            f"Holm {_fmt(row['holm'])} / {_fmt(row['omni_holm'])}, n {int(row['n_total'])}{dropped}")


def _outcome(row: pd.Series) -> str:
    return "final value" if str(row.get("outcome", "change")) == "final" else "change"


def _ylim(ax: plt.Axes, seeds: np.ndarray, lo: np.ndarray, hi: np.ndarray, fit: np.ndarray) -> None:
    """The means' CIs, the fit, zero and the central 96% of the seeds in view (a few outlying seeds may be cut),
    with headroom at the top for the panel's text."""
    values = np.concatenate([np.percentile(seeds, [2, 98]), lo, hi, fit, [0.0]])
    values = values[np.isfinite(values)]
    bottom, top = values.min(), values.max()
    span = (top - bottom) or max(abs(top), 1e-12)
    ax.set_ylim(bottom - 0.08 * span, top + 0.55 * span)


def fig14_width_trend(df: pd.DataFrame, out_dir: Path, *, table: pd.DataFrame | None = None,
                      metrics: Sequence[str] = HEADLINE_METRICS) -> list[Path]:
    """The paired change against width with the fitted trend, one panel per sweep × headline metric.

    ``table`` is ``hypothesis.trend_table`` of the results; without it the family's rows (the studied layers'
    redundancy metrics) are tested here, which gives the same q and Holm values, since the family is all of them
    and every group's numbers depend on its own rows only.
    """
    rows = df[df["layer"].isin(STUDIED_LAYERS) & df["metric"].isin(FAMILY_METRICS)]
    if table is None:
        table = trend_table(rows)
    shown = table[table["headline"] & table["metric"].isin(list(metrics))] if len(table) else table
    if shown.empty:
        raise NoData("no sweep with >= 3 widths and several seeds has a headline metric "
                     f"({', '.join(metrics)}) of its {'/'.join(HEADLINE_LAYERS)} layer")
    order = {m: i for i, m in enumerate(metrics)}
    shown = shown.assign(_m=shown["metric"].map(order)).sort_values([*CONFIG, "layer", "_m"], kind="stable")
    picked = rows[rows["layer"].isin(HEADLINE_LAYERS) & rows["metric"].isin(list(metrics))]
    picked = picked[picked["experiment"].isin(set(shown["experiment"]))]
    pairs = paired_values(picked)
    pairs_by = dict(tuple(pairs.groupby(TREND_GROUP, observed=True, sort=False)))
    per_width = dict(tuple(summary(picked).groupby(TREND_GROUP, observed=True, sort=False)))
    # The settings that tell sweeps of one experiment apart (named in the panel titles).
    n_values = shown.groupby("experiment", observed=True)[CONFIG[1:]].nunique()
    varying = {str(e): [c for c in CONFIG[1:] if n_values.loc[e, c] > 1] for e in n_values.index}

    n = len(shown)
    n_cols = min(PANELS_PER_ROW, n)
    n_rows = -(-n // n_cols)
    rng = np.random.default_rng(0)
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(n_rows, n_cols, figsize=(COLUMN_WIDTH * 2.2, 1.8 * n_rows + 0.6), squeeze=False,
                                 layout="constrained")
        for ax in axes.ravel()[n:]:
            ax.set_axis_off()
        for ax, (_, row) in zip(axes.ravel(), shown.iterrows(), strict=False):
            key = tuple(row[c] for c in TREND_GROUP)
            seeds = pairs_by[key]
            means = per_width[key].sort_values("width")
            widths = sorted(means["width"].astype(int).tolist())
            value, mean_col, lo_col, hi_col = OUTCOME_COLUMNS.get(str(row.get("outcome", "change")),
                                                                  OUTCOME_COLUMNS["change"])
            w = seeds["width"].to_numpy(dtype=float)
            ax.scatter(w * np.exp2(rng.uniform(-0.15, 0.15, w.size)), seeds[value], s=2, color=C_SEEDS,
                       alpha=0.35, lw=0, rasterized=True)
            m = means[mean_col].to_numpy(dtype=float)
            lo, hi = means[lo_col].to_numpy(dtype=float), means[hi_col].to_numpy(dtype=float)
            ax.errorbar(means["width"].to_numpy(dtype=float), m, _err(m, lo, hi), color=C_TRAINED, marker="o", ms=3,
                        lw=1, capsize=1.5, zorder=3)
            grid = np.geomspace(widths[0], widths[-1], 50)
            fit = row["intercept"] + row["slope"] * np.log2(grid)
            ax.plot(grid, fit, color=PROFILE_COLOURS.get(str(row.get("profile", "")), C_FIT), ls="--", lw=1.2,
                    zorder=4)
            ax.axhline(0.0, color="0.3", lw=0.6, zorder=1)
            _width_axis(ax, widths, label=False, unit=UNIT_NAMES.get(str(row["model"]), "units"))
            ax.set_xlim(widths[0] / 1.5, widths[-1] * 1.5)
            _ylim(ax, seeds[value].to_numpy(dtype=float), lo, hi, fit)
            text = ax.text(0.03, 0.97, _panel_text(row), transform=ax.transAxes, va="top", ha="left", fontsize=5,
                           bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.8", "alpha": 0.85}, zorder=5)
            text.set_in_layout(False)  # inside the panel: the layout need not make room for it
            title = METRIC_TITLES.get(str(row["metric"]), str(row["metric"]))
            final = " (final value)" if _outcome(row) == "final value" else ""
            ax.set_title(f"{_label(row, varying)}\n{title}{final}", fontsize=6)
        for r in range(n_rows):
            axes[r, 0].set_ylabel("paired change final − initial\n(or final value, where marked)")
        fig.supxlabel("bottleneck width $w$ (log$_2$ axis; units or channels)", fontsize=8)
        handles = [Line2D([], [], color=C_SEEDS, marker="o", ms=2, lw=0, label="one seed"),
                   Line2D([], [], color=C_TRAINED, marker="o", ms=3, lw=1, label="mean ± 95% CI"),
                   *(Line2D([], [], color=c, ls="--", lw=1.2, label=f"OLS trend on log$_2 w$: {p}")
                     for p, c in PROFILE_COLOURS.items() if p in set(shown["profile"].astype(str)))]
        fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 4), frameon=False)
        return save(fig, out_dir, "fig14_width_trend")

