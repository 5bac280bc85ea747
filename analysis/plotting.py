"""What every figure shares: paper styling, saving, choosing the experiments, and the width-sweep panels.

The figures themselves live by topic in ``analysis.figures_mlp`` (figures 1–7 and 3b, the MLP family),
``analysis.figures_conv`` (figures 8 and 8b, the conv family), ``analysis.figures_resnet`` (figure 10) and
``analysis.figures_mnist1d`` (figures 11–13, the MNIST-1D families and autoencoders); ``analysis.figures``
registers them all. The
underscored helpers here are shared by those modules, not an API of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.stats import summary

# Paper-column styling: embedded TrueType fonts (pdf.fonttype 42), readable small sizes.
STYLE = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "figure.dpi": 150,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
}
COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper

BOTTLENECK = "bottleneck"
PALETTE = sns.color_palette("colorblind")
C_TRAINED, C_INIT, C_NULL = PALETTE[0], PALETTE[1], "0.55"
ACTIVATION_NAMES = {"none": "linear", "relu": "ReLU", "tanh": "tanh"}
# What one unit of a layer is called on a width axis, per model family.
UNIT_NAMES = {"mlp": "units", "conv": "channels", "resnet": "channels", "mlp_classifier": "units",
              "autoencoder": "units", "cnn1d": "channels", "resnet1d": "channels"}
# The preset that makes a family's sweep, named when a figure has no data for that family.
SWEEP_PRESETS = {"mlp": "mlp_sweep", "conv": "conv_sweep", "resnet": "resnet_sweep",
                 "mlp_classifier": "mnist1d_mlp_sweep", "cnn1d": "mnist1d_cnn_sweep",
                 "autoencoder": "autoencoder_sweep", "resnet1d": "mnist1d_resnet_sweep"}


# Functional redundancy of a layer (experiments/functional.py; Casper, Boix et al., AAAI 2021), statistics fitted on
# training data and losses scored on the whole held-out set: one panel each in every family's redundancy-vs-width
# figure. All four are shares or R² in [0, 1].
FUNCTIONAL_COLUMNS = [
    ("abl_eff_frac", "units that matter / $w$\n(exp-entropy of ablation effects)"),
    ("anchor_prunable_frac", "prunable share at 80% agreement\n(random joint ablation)"),
    ("prunable_frac@0.01", "prunable units (Δloss < 1%)\nshare of $w$"),
    ("act_r2_others_mean", "held-out $R^2$ of a unit\nfrom the others (mean)"),
]
# Shares of w: a 0-based axis that does not blow a constant 0 up to the whole panel.
SHARE_METRICS = ("act_dead_frac", "prunable_frac@0.01", "redundant_frac@0.01", "abl_top10_share", "abl_eff_frac",
                 "anchor_prunable_frac")


class NoData(LookupError):
    """The results hold nothing this figure is made from."""


def save(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.pdf", out_dir / f"{name}.png"]
    for path in paths:
        # No creation date in the PDF: rebuilding the same figure gives the same bytes.
        fig.savefig(path, metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


def sweep_experiments(df: pd.DataFrame, min_seeds: int = 2, model: str | None = "mlp") -> list[str]:
    """Experiments of model family ``model`` that the width-sweep figures can be made from: a random null
    and ≥ ``min_seeds`` seeds at a width.

    ``model="mlp"`` (the default) gives figures 2–7's experiments, ``model="conv"`` figure 8's; ``None``
    admits every family. One seed per width (the source) gives no confidence interval, which is the point
    of these figures; ``min_seeds=1`` admits it anyway for a preview. Linear models come first, then by
    name, so the panels read "the source setting, then its variants".
    """
    trained = df[df["kind"] == "trained"]
    if model is not None:
        trained = trained[trained["model"] == model]
    if trained.empty:
        return []
    seeds = trained.groupby(["experiment", "width"])["seed"].nunique().groupby(level="experiment").max()
    with_null = set(df.loc[df["kind"] == "null", "experiment"].unique())
    names = [e for e, n in seeds.items() if n >= min_seeds and e in with_null]
    activation = trained.groupby("experiment")["activation"].first()
    return sorted(names, key=lambda e: (activation[e] != "none", e))


def _experiments(df: pd.DataFrame, experiments: Sequence[str] | None, model: str = "mlp") -> list[str]:
    """The experiments a sweep figure shows: ``experiments`` if given, else every sweep of ``model``; only
    those of family ``model`` either way (a figure's metrics and weight shapes are its family's)."""
    if experiments is None:
        chosen = sweep_experiments(df, model=model)
    else:
        family = set(df.loc[df["model"] == model, "experiment"])
        chosen = [e for e in experiments if e in family]
    if not chosen:
        preset = SWEEP_PRESETS.get(model, "<preset>")
        raise NoData(f"no {model} experiment with a random null and several seeds per width "
                     f"(run e.g. python run.py -m experiment={preset})")
    return chosen


def _model_of(df: pd.DataFrame, experiment: str) -> str:
    return str(df.loc[df["experiment"] == experiment, "model"].iloc[0])


def _title(df: pd.DataFrame, experiment: str, sep: str = "\n") -> str:
    """Panel title: experiment name, activation and seed count, so a panel is readable on its own."""
    rows = df[(df["experiment"] == experiment) & (df["kind"] == "trained")]
    act = ACTIVATION_NAMES.get(str(rows["activation"].iloc[0]), str(rows["activation"].iloc[0]))
    n = rows.groupby("width")["seed"].nunique().max()
    return f"{experiment} ({act}){sep}{n} seed{'s' if n != 1 else ''}/width"


def _columns_width(n_panels: int) -> float:
    """Figure width for panels side by side: one paper column for up to two, then a column per two."""
    return COLUMN_WIDTH * max(1.0, n_panels / 2)


def _summary_of(df: pd.DataFrame, experiments: Sequence[str], layer: str, metrics: Sequence[str]) -> pd.DataFrame:
    """``stats.summary`` of just the rows a figure shows (much faster than the whole table)."""
    rows = df[df["experiment"].isin(experiments) & (df["layer"] == layer) & df["metric"].isin(metrics)]
    table = summary(rows)
    if table.empty:
        raise NoData(f"no trained {layer} rows for {', '.join(metrics)}")
    return table


def _width_axis(ax: plt.Axes, widths: Sequence[int], label: bool = True, narrow: bool = True,
                unit: str = "units") -> None:
    """Log2 width axis with a labelled tick at every width run and at no other width (no minor ticks). In a
    ``narrow`` panel with more than five widths the labels stand vertically, so that 64, 128, 256 do not collide.

    Panels whose x-axes are shared (``sharex``) share one tick locator, so the last call sets every panel's
    ticks: a grid of panels takes :func:`_width_grid` instead.
    """
    widths = sorted({int(w) for w in widths})
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    ax.set_xticks(widths, [str(w) for w in widths])
    if narrow and len(widths) > 5:
        ax.tick_params(axis="x", labelrotation=90)
    ax.set_xlabel(f"bottleneck width $w$ ({unit})" if label else "")


def _width_grid(axes: np.ndarray, widths: Sequence[Sequence[Sequence[int] | None]], label: bool = False,
                narrow: bool = True, unit: str = "units") -> None:
    """Width axes of a grid of panels, instead of ``sharex``: panel ``axes[i, j]`` gets ticks at exactly
    ``widths[i][j]`` (the widths its experiment swept; ``None`` for a panel without a width axis), every panel
    the same x range (all widths shown, with a margin), and tick labels only where the panel below in its
    column (if any) has other widths. ``label`` writes the axis label under each panel that keeps its labels.
    """
    cells = [(i, j) for i in range(axes.shape[0]) for j in range(axes.shape[1])
             if widths[i][j] is not None and axes[i, j].axison]
    if not cells:
        return
    every = sorted({int(w) for i, j in cells for w in widths[i][j]})
    for i, j in cells:
        ax, own = axes[i, j], sorted({int(w) for w in widths[i][j]})
        _width_axis(ax, own, label=label, narrow=narrow, unit=unit)
        ax.set_xlim(every[0] / 1.4, every[-1] * 1.4)
        below = next((widths[k][j] for k in range(i + 1, axes.shape[0])
                      if widths[k][j] is not None and axes[k, j].axison), None)
        if below is not None and sorted({int(w) for w in below}) == own:
            ax.tick_params(axis="x", labelbottom=False)
            ax.set_xlabel("")


def _swept_widths(table: pd.DataFrame, experiment: str) -> list[int]:
    """The widths ``experiment`` swept, as far as a figure's ``stats.summary`` table holds them (any metric)."""
    return sorted({int(w) for w in table.loc[table["experiment"] == experiment, "width"]})


def _err(mean: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Asymmetric error bars from a CI; no bar (0) where the CI is undefined (one seed).

    Clipped at 0: when every seed has the same value (a linear MLP's activation |corr| is exactly 1), the
    bootstrap's matrix-product means can differ from ``mean`` in the last bit, on either side.
    """
    return np.clip(np.nan_to_num(np.vstack([mean - lo, hi - mean]), nan=0.0), 0.0, None)


def _level_panel(ax: plt.Axes, rows: pd.DataFrame, scale: np.ndarray | float = 1.0, unit: str = "units") -> None:
    """Null band and mean, initial mean ± CI, trained mean ± CI, against width (one metric, one experiment).

    The initial and trained markers are nudged apart on the log axis so their CIs do not hide each other.
    """
    rows = rows.sort_values("width")
    w = rows["width"].to_numpy(dtype=float)
    col = {c: rows[c].to_numpy(dtype=float) / scale for c in
           ("null_lo", "null_hi", "null_mean", "init_mean", "init_lo", "init_hi", "end_mean", "end_lo", "end_hi")}
    ax.fill_between(w, col["null_lo"], col["null_hi"], color=C_NULL, alpha=0.25, lw=0)
    ax.plot(w, col["null_mean"], color=C_NULL, ls="--", lw=1)
    ax.errorbar(w / 1.06, col["init_mean"], _err(col["init_mean"], col["init_lo"], col["init_hi"]),
                color=C_INIT, marker="o", ms=3, mfc="white", lw=0.8, capsize=1.5)
    ax.errorbar(w * 1.06, col["end_mean"], _err(col["end_mean"], col["end_lo"], col["end_hi"]),
                color=C_TRAINED, marker="o", ms=3, lw=1, capsize=1.5)
    _width_axis(ax, rows["width"].tolist(), unit=unit)


def _level_legend_handles() -> list:
    return [
        Line2D([], [], color=C_TRAINED, marker="o", ms=3, lw=1, label="trained (final), mean ± 95% CI"),
        Line2D([], [], color=C_INIT, marker="o", ms=3, mfc="white", lw=0.8, label="same seeds at init"),
        Patch(color=C_NULL, alpha=0.25, lw=0, label="random null, 2.5–97.5%"),
        Line2D([], [], color=C_NULL, ls="--", lw=1, label="random null, mean"),
    ]


def _width_colors(widths: Sequence[int]) -> dict[int, tuple]:
    colors = sns.color_palette("viridis", len(widths))
    return dict(zip(sorted(widths), colors, strict=True))


# One marker per width (with a colour from PALETTE), in ascending width order: see _width_styles.
WIDTH_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")


def _width_styles(widths: Sequence[int]) -> dict[int, dict]:
    """Line style per width, narrowest first: a colour of the qualitative colour-blind-safe ``PALETTE`` and a
    distinct marker, so that every width stays distinguishable where lines cross (a sequential palette makes
    neighbouring widths near-identical). Keyword arguments for ``ax.plot`` / ``Line2D``."""
    return {w: {"color": PALETTE[k % len(PALETTE)], "marker": WIDTH_MARKERS[k % len(WIDTH_MARKERS)]}
            for k, w in enumerate(sorted({int(w) for w in widths}))}
