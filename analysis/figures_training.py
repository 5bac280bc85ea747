"""How far training moved the studied layers (issue 19): figure 16, weight movement against width per sweep, and the
``movement.csv`` table the report reads (does a wider layer move less?).

A width trend in what training does to redundancy could simply mean that wider layers moved less from their
initialisation (lazy training; Chizat et al., NeurIPS 2019). The movement metrics (``experiments/metrics.py``:
``rel_move`` = ‖W_T − W_0‖_F / ‖W_0‖_F, its spectral version, the mean angle between each unit's initial and
final weight vector) answer that per seed; the table gives, per sweep and studied layer, the slope of the final
``rel_move`` on log2 width (OLS over seeds, the per-width means with bootstrap CIs at both ends).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.plotting import COLUMN_WIDTH, PALETTE, STYLE, NoData, save
from analysis.stats import bootstrap_mean_ci
from analysis.tables import final_epoch, to_markdown, write_csv_and_markdown
from experiments.metrics import MOVEMENT_METRICS

STUDIED = ("bottleneck", "reduce")
LABELS = {"rel_move": "$\\|W_T - W_0\\|_F / \\|W_0\\|_F$", "rel_move_spectral": "$\\|W_T - W_0\\|_2 / \\|W_0\\|_2$",
          "unit_angle_deg": "mean angle of a unit's\nweights to its initial (°)"}
MOVEMENT_COLUMNS = ["experiment", "model", "data", "block", "layer", "widths", "n_seeds", "narrow", "wide",
                    "move_narrow", "move_narrow_lo", "move_narrow_hi", "move_wide", "move_wide_lo", "move_wide_hi",
                    "slope_per_doubling", "wider_moved_less"]


def _movement_rows(df: pd.DataFrame) -> pd.DataFrame:
    final = final_epoch(df)
    return final[final["metric"].isin(MOVEMENT_METRICS) & final["layer"].isin(STUDIED)]


def _sweeps(rows: pd.DataFrame) -> list[tuple]:
    keys = ["experiment", "model", "data", "block", "layer"]
    return [k for k, g in rows.groupby(keys, observed=True, sort=True)
            if g["width"].nunique() >= 3 and g.groupby("width")["seed"].nunique().min() >= 2]


def movement_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per sweep and studied layer (>= 3 widths): final ``rel_move`` at the narrowest and widest width with 95%
    bootstrap CIs over seeds, the OLS slope of the seeds' values on log2 width, and whether the widest layer moved
    less than the narrowest (CIs apart)."""
    rows = _movement_rows(df)
    rows = rows[rows["metric"] == "rel_move"]
    records = []
    for key in _sweeps(rows):
        g = rows[(rows[["experiment", "model", "data", "block", "layer"]] == list(key)).all(axis=1)]
        widths = sorted(g["width"].unique())
        ends = {}
        for w in (widths[0], widths[-1]):
            v = g.loc[g["width"] == w, "value"].to_numpy(dtype=float)
            lo, hi = bootstrap_mean_ci(v)[:, 0]
            ends[w] = (float(v.mean()), float(lo), float(hi))
        x, y = np.log2(g["width"].to_numpy(dtype=float)), g["value"].to_numpy(dtype=float)
        ok = np.isfinite(y)
        slope = float(np.polyfit(x[ok], y[ok], 1)[0]) if ok.sum() > 2 else np.nan
        (mn, mn_lo, mn_hi), (mw, mw_lo, mw_hi) = ends[widths[0]], ends[widths[-1]]
        records.append({**dict(zip(["experiment", "model", "data", "block", "layer"], key, strict=True)),
                        "widths": f"{widths[0]}-{widths[-1]}", "n_seeds": int(g.groupby("width")["seed"].nunique()
                                                                             .min()),
                        "narrow": widths[0], "wide": widths[-1], "move_narrow": mn, "move_narrow_lo": mn_lo,
                        "move_narrow_hi": mn_hi, "move_wide": mw, "move_wide_lo": mw_lo, "move_wide_hi": mw_hi,
                        "slope_per_doubling": slope, "wider_moved_less": bool(mw_hi < mn_lo)})
    return pd.DataFrame.from_records(records, columns=MOVEMENT_COLUMNS)


def write_movement_table(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    table = movement_table(df)
    if table.empty:
        return []
    caption = ("How far training moved the studied layer: rel_move = ‖W_T − W_0‖_F / ‖W_0‖_F at the final epoch, mean "
               "over seeds with a 95% bootstrap CI at the narrowest and widest width; slope_per_doubling: OLS of the "
               "seeds' values on log2 width; wider_moved_less: the widest width's CI lies below the narrowest's.\n\n")
    return write_csv_and_markdown(table, out_dir, "movement",
                                  caption + to_markdown(table.set_index("experiment"), floatfmt=".3g"))


def fig16_movement_vs_width(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Columns: the three movement metrics of the studied layer at the final epoch; one line per sweep (mean over
    seeds with a 95% bootstrap CI) against width."""
    rows = _movement_rows(df)
    sweeps = _sweeps(rows)
    if not sweeps:
        raise NoData("no weight-movement metrics over >= 3 widths (runs older than the movement metrics)")
    colors = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(sweeps)}
    markers = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(MOVEMENT_METRICS), figsize=(2 * COLUMN_WIDTH, 2.3), squeeze=False)
        for j, metric in enumerate(MOVEMENT_METRICS):
            ax = axes[0, j]
            for i, key in enumerate(sweeps):
                g = rows[(rows[["experiment", "model", "data", "block", "layer"]] == list(key)).all(axis=1)
                         & (rows["metric"] == metric)]
                stats = []
                for w, v in g.groupby("width")["value"]:
                    lo, hi = bootstrap_mean_ci(v.to_numpy(dtype=float))[:, 0]
                    stats.append((w, v.mean(), lo, hi))
                if not stats:
                    continue
                w, m, lo, hi = (np.asarray(c, dtype=float) for c in zip(*stats, strict=True))
                label = f"{key[0]}" + ("" if key[3] in ("", "none") else f" {key[3]}") + f" ({key[4]})"
                ax.errorbar(w, m, np.vstack([m - lo, hi - m]), color=colors[key], marker=markers[i % len(markers)],
                            ms=3, lw=0.9, capsize=1.5, label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log" if metric != "unit_angle_deg" else "linear")
            ax.set_title(LABELS[metric], fontsize=7)
            ax.set_xlabel("width $w$ (log scale)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=5.5, frameon=False,
                   bbox_to_anchor=(0.5, 0.02))
        fig.suptitle("how far training moved the studied layer's weights (final epoch, mean over seeds, 95% CI)",
                     fontsize=7)
        fig.tight_layout()
        return save(fig, out_dir, "fig16_movement_vs_width")
