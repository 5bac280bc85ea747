"""The answer at a glance (issue 21): figure 0, every sweep × the three levels of redundancy, and figure 0b, the
threshold-free functional measure of every family against width relative to the layer before it.

Figure 0 reads the trend table (the verdicts) and the effects table (the per-width means): one row per sweep, grouped
by task in the report's order, one column per level (weights, activations, function), each panel the headline
measure's outcome (training's change, or the final value where the metric is degenerate at initialisation) against
width with its 95% CI, coloured by the row's verdict: narrower layers gain more redundancy, wider layers do, a
non-monotone width effect, or no evidence. It is built to be read at one paper column's width.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from analysis.hypothesis import CONFIG, HEADLINE_BY_LEVEL, METRIC_LEVEL, effects_table, rests_on_pairs, trend_table
from analysis.plotting import COLUMN_WIDTH, PALETTE, STYLE, NoData, save
from analysis.tables import final_epoch

# The report's order of the families: the source's task, conv identity, residual blocks, MNIST-1D classifiers,
# autoencoders.
FAMILY_ORDER = ("mlp", "conv", "resnet", "resnet1d", "mlp_classifier", "cnn1d", "autoencoder")
LEVELS = ("weights", "activations", "function")
CATEGORIES = {  # verdict category -> (colour, legend text)
    "narrower": (PALETTE[0], "narrower layers gain more redundancy"),
    "wider": (PALETTE[1], "wider layers gain more redundancy"),
    "non-monotone": (PALETTE[4], "non-monotone width effect"),
    "none": ("0.45", "no evidence of a width effect"),
    "untested": ("0.75", "no test"),
}
# Marks a rising/falling verdict that rests on pairs of widths alone (its slope over all widths is not significant).
PAIRS_MARK = "†"
LEVEL_TITLES = {"weights": "weights\nnearest-unit |cos|", "activations": "activations\neffective rank / w",
                "function": "function\nunits that matter / w"}


def category(verdict: str) -> str:
    """The colour class of a trend-table verdict."""
    v = str(verdict)
    if v.startswith("narrower"):
        return "narrower"
    if v.startswith("wider"):
        return "wider"
    if v.startswith("non-monotone"):
        return "non-monotone"
    if v.startswith("no evidence"):
        return "none"
    return "untested"


def sweep_label(row: pd.Series) -> str:
    parts = [str(row["experiment"])]
    if str(row["block"]) not in ("", "none", "nan"):
        parts.append(str(row["block"]))
    if row["model"] == "autoencoder":
        parts.append(str(row["data"]))
    return " ".join(parts)


def short_label(row: pd.Series) -> str:
    """Two short lines that fit a row of figure 0: the preset without "_sweep", then its block, data or activation."""
    name = str(row["experiment"]).removesuffix("_sweep").replace("_", " ")
    second = ""
    if str(row["block"]) not in ("", "none", "nan"):
        second = str(row["block"])
    elif row["model"] == "autoencoder":
        second = str(row["data"])
    elif str(row["activation"]) == "none":
        second = "linear"
    return f"{name}\n{second}" if second else name


def headline_rows(trend: pd.DataFrame) -> pd.DataFrame:
    """The trend table's headline rows, one per sweep × level, sweeps in :data:`FAMILY_ORDER`."""
    head = trend[trend["headline"].astype(str).str.lower().eq("true")].copy()
    if head.empty:
        raise NoData("no headline tests in the trend table (run the sweeps, then python -m analysis.figures)")
    head["level"] = head["metric"].map(METRIC_LEVEL)
    head["_family"] = head["model"].map({m: i for i, m in enumerate(FAMILY_ORDER)}).fillna(len(FAMILY_ORDER))
    return head.sort_values(["_family", "experiment", "block", "data"], kind="stable")


def fig0_answer(df: pd.DataFrame, out_dir: Path, table: pd.DataFrame | None = None,
                effects: pd.DataFrame | None = None) -> list[Path]:
    """Rows: sweeps; columns: levels; each panel the headline outcome vs width (mean, 95% CI), coloured by verdict.
    ``table``/``effects``: ``trend_table(df)``/``effects_table(df)`` if already computed."""
    trend = trend_table(df) if table is None else table
    if trend.empty:
        raise NoData("no sweep with >= 3 widths: no trend table")
    head = headline_rows(trend)
    effects = effects_table(df) if effects is None else effects
    sweeps = head[CONFIG].drop_duplicates().reset_index(drop=True)
    n = len(sweeps)
    with plt.rc_context({**STYLE, "font.size": 5.5, "axes.titlesize": 6, "xtick.labelsize": 4.5,
                         "ytick.labelsize": 4.5}):
        fig, axes = plt.subplots(n, len(LEVELS), figsize=(COLUMN_WIDTH, 0.55 * n + 0.9), squeeze=False)
        for i, sweep in sweeps.iterrows():
            rows = head[(head[CONFIG].astype(str) == sweep.astype(str).to_numpy()).all(axis=1)]
            for j, level in enumerate(LEVELS):
                ax = axes[i, j]
                row = rows[rows["level"] == level]
                ax.tick_params(length=1.5, pad=1)
                if row.empty:
                    ax.text(0.5, 0.5, "not measured", ha="center", va="center", fontsize=4.5, color="0.5",
                            transform=ax.transAxes)
                    ax.set_xticks([])
                    ax.set_yticks([])
                else:
                    r = row.iloc[0]
                    cat = category(r["verdict"])
                    keep = (effects[CONFIG].astype(str) == sweep.astype(str).to_numpy()).all(axis=1)
                    e = effects[keep & (effects["layer"] == r["layer"]) & (effects["metric"] == r["metric"])]
                    e = e.sort_values("width")
                    color = CATEGORIES[cat][0]
                    w = e["width"].to_numpy(dtype=float)
                    m, lo, hi = (e[c].to_numpy(dtype=float) for c in ("outcome_mean", "outcome_lo", "outcome_hi"))
                    ax.fill_between(w, lo, hi, color=color, alpha=0.25, lw=0)
                    ax.plot(w, m, color=color, marker="o", ms=1.6, lw=0.9, ls="-" if r["outcome"] == "change" else ":")
                    ax.axhline(0, color="0.7", lw=0.4, zorder=0) if r["outcome"] == "change" else None
                    ax.set_xscale("log", base=2)
                    step = 2 if len(w) > 5 else 1  # every other label where the widths crowd the axis
                    ax.set_xticks(w)
                    ax.set_xticklabels([f"{int(x)}" if k % step == 0 else "" for k, x in enumerate(w)], fontsize=4)
                    ax.minorticks_off()
                    p = float(r["verdict_p"])  # the smaller adjusted p of the trend and the omnibus test (Holm)
                    mark = PAIRS_MARK if rests_on_pairs(r) else ""
                    ax.set_title("no test" if not np.isfinite(p) else f"adj. p = {p:.2g}{mark}", fontsize=4.2,
                                 color=color, loc="right", pad=1.5)
            axes[i, 0].set_ylabel(short_label(sweep), fontsize=4.5, labelpad=2)
        for j, level in enumerate(LEVELS):  # level titles above the first row's p-values
            axes[0, j].annotate(LEVEL_TITLES[level], (0.5, 1.0), xytext=(0, 9), xycoords="axes fraction",
                                textcoords="offset points", ha="center", va="bottom", fontsize=5.5)
        handles = [Line2D([], [], color=c, lw=1.5, label=t) for c, t in CATEGORIES.values()]
        fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=4.5, frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
        fig.text(0.5, 0.055, "width w (log scale); y: training's change (final − initial) of the headline measure "
                 "(dotted: its final value),\nmean over seeds, 95% CI; adj. p: Holm; "
                 f"{PAIRS_MARK}: a verdict from pairs of widths only, its slope not significant", ha="center",
                 va="center", fontsize=4.5)
        fig.tight_layout(rect=(0, 0.07, 1, 0.97), h_pad=0.35, w_pad=0.3)
        return save(fig, out_dir, "fig0_answer")


def fig0b_functional_vs_relative_width(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The threshold-free functional measure (``abl_eff_frac``, final epoch, mean over seeds with a 95% CI) of every
    sweep's studied layer against w / h, the width relative to the layer before it (the ``channels`` column: the
    hidden width of the MLPs and autoencoders, the outer channels C of the residual blocks), on one axis."""
    metric = HEADLINE_BY_LEVEL.get("function", "abl_eff_frac")
    final = final_epoch(df)
    rows = final[(final["metric"] == metric) & final["layer"].isin(["bottleneck", "reduce"])]
    rows = rows[rows["channels"].astype(float) > 0]
    groups = [(k, g) for k, g in rows.groupby([*CONFIG, "layer"], observed=True, sort=False)
              if g["width"].nunique() >= 3 and g.groupby("width")["seed"].nunique().min() >= 2]
    if not groups:
        raise NoData(f"no sweep with {metric} over >= 3 widths and >= 2 seeds")
    groups.sort(key=lambda kg: (FAMILY_ORDER.index(kg[0][1]) if kg[0][1] in FAMILY_ORDER else 99, str(kg[0])))
    markers = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p", "d")
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.6))
        for i, (key, g) in enumerate(groups):
            stats = g.groupby("width")["value"].agg(["mean", "std", "count"])
            x = stats.index.to_numpy(dtype=float) / float(g["channels"].iloc[0])
            half = 1.96 * stats["std"].to_numpy() / np.sqrt(stats["count"].to_numpy())
            label = sweep_label(pd.Series(dict(zip([*CONFIG, "layer"], key, strict=True))))
            ax.errorbar(x, stats["mean"], half, color=PALETTE[i % len(PALETTE)], marker=markers[i % len(markers)],
                        ms=3, lw=0.9, capsize=1.2, label=label)
        ax.axvline(1.0, color="0.3", lw=0.6, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("w / h: width relative to the layer before (log scale)")
        ax.set_ylabel("units that matter / w\n(final, mean over seeds, 95% CI)")
        ax.legend(fontsize=4.5, ncol=2, frameon=False, loc="best")
        fig.tight_layout()
        return save(fig, out_dir, "fig0b_functional_vs_relative_width")
