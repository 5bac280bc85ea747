"""Figure 14 (SPEC §8.13): the width effect of training, per family.

For every sweep (experiment configuration) and each headline metric of the layer that takes the width
(``analysis.hypothesis.HEADLINE_METRICS`` of ``HEADLINE_LAYERS``: ``bottleneck``, or ``reduce``, C→w, in the ResNet
blocks): each seed's paired change (final − initial) against the width on a log2 axis with a tick at every swept
width, the mean ± 95% CI per width (``stats.summary``, the one code path for per-width CIs), the OLS line of
``hypothesis.trend_table`` (change per doubling of the width) and, in the panel, the slope with its bootstrap CI,
the BH q over the declared family, the Holm-adjusted p over the headline set and the n the test used. Raises
``NoData`` when no sweep has a headline test.
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
}
C_FIT = PALETTE[3]
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
        return "no test: the change is rounding"
    dropped = f" ({int(row['n_dropped'])} dropped)" if row["n_dropped"] else ""
    return (f"slope {_fmt(row['slope'])} [{_fmt(row['slope_lo'])}, {_fmt(row['slope_hi'])}]\n"
            f"q {_fmt(row['q'])}, Holm {_fmt(row['holm'])}, n {int(row['n_total'])}{dropped}")


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
            w = seeds["width"].to_numpy(dtype=float)
            ax.scatter(w * np.exp2(rng.uniform(-0.15, 0.15, w.size)), seeds["change"], s=2, color=C_SEEDS,
                       alpha=0.35, lw=0, rasterized=True)
            m = means["change_mean"].to_numpy(dtype=float)
            ax.errorbar(means["width"].to_numpy(dtype=float), m,
                        _err(m, means["change_lo"].to_numpy(dtype=float), means["change_hi"].to_numpy(dtype=float)),
                        color=C_TRAINED, marker="o", ms=3, lw=1, capsize=1.5, zorder=3)
            grid = np.geomspace(widths[0], widths[-1], 50)
            fit = row["intercept"] + row["slope"] * np.log2(grid)
            ax.plot(grid, fit, color=C_FIT, ls="--", lw=1, zorder=4)
            ax.axhline(0.0, color="0.3", lw=0.6, zorder=1)
            _width_axis(ax, widths, label=False, unit=UNIT_NAMES.get(str(row["model"]), "units"))
            ax.set_xlim(widths[0] / 1.5, widths[-1] * 1.5)
            _ylim(ax, seeds["change"].to_numpy(dtype=float), means["change_lo"].to_numpy(dtype=float),
                  means["change_hi"].to_numpy(dtype=float), fit)
            text = ax.text(0.03, 0.97, _panel_text(row), transform=ax.transAxes, va="top", ha="left", fontsize=5,
                           bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.8", "alpha": 0.85}, zorder=5)
            text.set_in_layout(False)  # inside the panel: the layout need not make room for it
            title = METRIC_TITLES.get(str(row["metric"]), str(row["metric"]))
            ax.set_title(f"{_label(row, varying)}\n{title}", fontsize=6)
        for r in range(n_rows):
            axes[r, 0].set_ylabel("paired change\nfinal − initial")
        fig.supxlabel("bottleneck width $w$ (log$_2$ axis; units or channels)", fontsize=8)
        handles = [Line2D([], [], color=C_SEEDS, marker="o", ms=2, lw=0, label="one seed"),
                   Line2D([], [], color=C_TRAINED, marker="o", ms=3, lw=1, label="mean ± 95% CI"),
                   Line2D([], [], color=C_FIT, ls="--", lw=1, label="OLS trend on log$_2 w$ (all seeds)")]
        fig.legend(handles=handles, loc="outside upper center", ncol=3, frameon=False)
        return save(fig, out_dir, "fig14_width_trend")

