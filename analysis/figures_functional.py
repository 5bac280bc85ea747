"""Functional redundancy across families (issue 18): the share of prunable / redundant units against the threshold,
one line per width (figure 15), and the growth of the anchor's prunable-unit count per doubling of width set beside
the numbers Casper, Boix et al. (AAAI 2021) published (``anchor_growth.csv``).

The anchor's count (``anchor_prunable_units``, ``experiments/functional.py``) is the fraction of a layer's units
that can be zero-ablated together at random before the agreement of the test predictions with the unablated
network falls to 0.8, times the width. Their headline is how that count grows when the layer doubles: a growth
factor g = 2 means the count doubles with the width (a constant share), g < 2 that wider layers have a smaller
prunable share, g > 2 a larger one. They report g as the mean over consecutive doublings of the ratio of counts
(their ``plot_ablation_thresholds.ipynb``); here the same ratio per seed, normalised to one doubling where two swept
widths are further apart, averaged over the consecutive width pairs, with a bootstrap CI over seeds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.plotting import COLUMN_WIDTH, STYLE, NoData, _title, _width_colors, save
from analysis.stats import bootstrap_mean_ci
from analysis.tables import final_epoch, to_markdown, write_csv_and_markdown
from experiments.functional import Protocol, grid_name

CONFIG = ["experiment", "model", "activation", "protocol", "data", "block", "channels"]
ANCHOR_METRIC = "anchor_prunable_units"
# Casper, Boix et al. (AAAI 2021), xboix/frivolous_dnns, plot_ablation_thresholds.ipynb: the mean over consecutive
# doublings of the ratio of prunable-unit counts, per experiment and initialisation (their three or four series).
PUBLISHED_GROWTH = [
    ("CIFAR-10 AlexNet, all layers (three initialisations)", (2.81, 2.29, 2.53)),
    ("CIFAR-10 AlexNet, conv2 (three initialisations)", (2.68, 2.11, 2.37)),
    ("CIFAR-10 AlexNet, uniform initialisations", (2.81, 2.36, 2.57)),
    ("ImageNet, batch sizes", (3.15, 2.31, 2.80, 2.93)),
    ("ImageNet, networks", (3.15, 3.86, 3.61)),
]
GROWTH_COLUMNS = [*CONFIG, "layer", "widths", "n_seeds", "growth", "growth_lo", "growth_hi", "share_narrow",
                  "share_wide", "source"]


def _per_seed_growth(rows: pd.DataFrame) -> pd.Series:
    """Per seed: the mean over consecutive swept widths of (count(w') / count(w)) ** (1 / log2(w' / w)); NaN for a
    seed whose count is 0 at some width (no ratio)."""
    wide = rows.pivot_table(index="seed", columns="width", values="value", aggfunc="mean").sort_index(axis=1)
    widths = wide.columns.to_numpy(dtype=float)
    counts = wide.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = counts[:, 1:] / counts[:, :-1]
        per_doubling = ratio ** (1.0 / np.log2(widths[1:] / widths[:-1]))
    per_doubling[~np.isfinite(per_doubling)] = np.nan
    ok = np.isfinite(per_doubling).all(axis=1)
    return pd.Series(np.where(ok, per_doubling.mean(axis=1) if per_doubling.size else np.nan, np.nan),
                     index=wide.index)


def anchor_growth_table(df: pd.DataFrame) -> pd.DataFrame:
    """Our growth factor per sweep and functional layer (final epoch, trained replicates, sweeps over >= 3 widths),
    followed by the published rows; columns :data:`GROWTH_COLUMNS`."""
    final = final_epoch(df)
    units = final[final["metric"] == ANCHOR_METRIC]
    frac = final[final["metric"] == "anchor_prunable_frac"]
    records = []
    for key, rows in units.groupby([*CONFIG, "layer"], observed=True, sort=True):
        widths = sorted(rows["width"].unique())
        if len(widths) < 3:
            continue
        g = _per_seed_growth(rows).dropna()
        if len(g) < 2:
            continue
        mean = float(g.mean())
        lo, hi = bootstrap_mean_ci(g.to_numpy())[:, 0]
        share = frac[(frac[[*CONFIG, "layer"]].astype(str) == [str(k) for k in key]).all(axis=1)]
        at = share.groupby("width")["value"].mean()
        records.append({**dict(zip([*CONFIG, "layer"], key, strict=True)), "widths": f"{widths[0]}-{widths[-1]}",
                        "n_seeds": len(g), "growth": float(mean), "growth_lo": float(lo), "growth_hi": float(hi),
                        "share_narrow": float(at.get(widths[0], np.nan)),
                        "share_wide": float(at.get(widths[-1], np.nan)), "source": "this repository"})
    for label, values in PUBLISHED_GROWTH:
        for v in values:
            records.append({"experiment": label, "growth": v, "source": "Casper, Boix et al. 2021"})
    return pd.DataFrame.from_records(records, columns=GROWTH_COLUMNS)


def write_anchor_growth_table(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    table = anchor_growth_table(df)
    if not (table["source"] == "this repository").any():
        return []
    shown = table[["source", "experiment", "model", "data", "block", "layer", "widths", "n_seeds", "growth",
                   "growth_lo", "growth_hi", "share_narrow", "share_wide"]].astype({"n_seeds": "Int64"})
    caption = ("Growth per doubling of width of the anchor's prunable-unit count (random joint zero-ablation, the "
               "fraction at 80% agreement × w; final epoch, trained replicates; mean over seeds with a 95% "
               "bootstrap CI), beside the values Casper, Boix et al. (AAAI 2021) published "
               "(xboix/frivolous_dnns, plot_ablation_thresholds.ipynb). 2 = the count doubles with the width (a "
               "constant share); share_narrow/_wide: the prunable fraction at the narrowest and widest width.\n\n")
    return write_csv_and_markdown(table, out_dir, "anchor_growth",
                                  caption + to_markdown(shown.set_index("source"), floatfmt=".3f"))


def fig15_functional_thresholds(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Rows: every sweep with the threshold grid; columns: the prunable and the redundant share of live units
    against the threshold (log scale), one line per width (final epoch, mean over seeds). A width trend that a
    single threshold shows and the others do not is the threshold's, not the layer's."""
    protocol = Protocol()
    names = {kind: [grid_name(f"{kind}_live_frac", t) for t in protocol.thresholds]
             for kind in ("prunable", "redundant")}
    final = final_epoch(df)
    final = final[final["metric"].isin(names["prunable"] + names["redundant"])
                  & final["layer"].isin(["bottleneck", "reduce"])]
    if final.empty:
        raise NoData("no threshold-grid functional metrics (runs older than the functional protocol)")
    sweeps = [(e, b) for (e, b), g in final.groupby(["experiment", "block"], sort=True)
              if g["width"].nunique() >= 3 and g.groupby("width")["seed"].nunique().min() >= 2]
    if not sweeps:
        raise NoData("no sweep with the threshold grid over >= 3 widths and >= 2 seeds per width")
    thresholds = np.asarray(protocol.thresholds)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(sweeps), 2, figsize=(1.4 * COLUMN_WIDTH, 1.25 * len(sweeps) + 0.6), squeeze=False,
                                 sharex=True, sharey=True)
        for i, (exp, block) in enumerate(sweeps):
            rows = final[(final["experiment"] == exp) & (final["block"] == block)]
            colors = _width_colors(sorted(rows["width"].unique()))
            for j, kind in enumerate(("prunable", "redundant")):
                ax = axes[i, j]
                for w, color in colors.items():
                    sel = rows[rows["width"] == w].groupby("metric")["value"].mean()
                    ax.plot(thresholds, [sel.get(n, np.nan) for n in names[kind]], color=color, marker="o", ms=2,
                            lw=0.9, label=f"{w}")
                ax.set_xscale("log")
                ax.set_ylim(-0.03, 1.03)
                if i == 0:
                    ax.set_title(f"{kind} (share of live units)", fontsize=7)
            title = _title(df, exp, sep="\n") + ("" if block in ("", "none") else f"\n{block} block")
            axes[i, 0].set_ylabel(title, fontsize=6)
            axes[i, 1].legend(fontsize=4.5, ncol=2, title="w", title_fontsize=5, frameon=False,
                              loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.supxlabel("threshold: loss increase as a share of the loss (log scale)", fontsize=7)
        fig.tight_layout(h_pad=0.4)
        return save(fig, out_dir, "fig15_functional_thresholds")
