"""Figures of the conv family (Conv2d 1→32→w→1 learning the identity on 8×8 digits): figures 8 and 8b.

Figure 8 is the conv counterpart of figures 2–3 and 3b in one: redundancy of the bottleneck's weights and
activations against width, trained vs initial vs random null. Figure 8b shows that the conv models learned
the task at every width (the counterpart of figure 4). Both show only ``model == "conv"`` experiments with
a random null and several seeds per width, and raise ``NoData`` when there are none.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import yaml
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.plotting import (
    ACTIVATION_NAMES,
    BOTTLENECK,
    COLUMN_WIDTH,
    FUNCTIONAL_COLUMNS,
    PALETTE,
    SHARE_METRICS,
    STYLE,
    UNIT_NAMES,
    _experiments,
    _level_legend_handles,
    _level_panel,
    _summary_of,
    _swept_widths,
    _title,
    _width_axis,
    _width_grid,
    save,
)
from experiments.config import CONF_DIR
from experiments.data import digits

MODEL = "conv"
UNIT = UNIT_NAMES[MODEL]
# Figure 8's two rows per experiment: (metric, panel title). Weight metrics flatten each output channel's
# kernel to one vector (fan-in = input channels x 3 x 3); activation metrics take the channels as units and
# every position of every evaluation image as a sample.
CONV_WEIGHT_COLUMNS = [
    ("min_pair_l1", "closest pair (source metric)\nmin$_{i<j}$ mean $|W_i - W_j|$"),
    ("mean_nn_l1", "nearest-channel distance\nmean $|W_i - W_{nn(i)}|$"),
    ("mean_nn_abs_cos", "nearest-channel $|\\cos|$\nmean over channels"),
    ("eff_rank_norm", "weight effective rank / k\nk = min($w$, fan-in)"),
]
CONV_ACTIVATION_COLUMNS = [
    ("act_mean_nn_abs_corr", "nearest-channel |corr|\nof activations"),
    ("act_eff_rank_norm", "activation effective\nrank / $w$"),
    ("act_pc95_frac", "PCs for 95% of\nactivation variance / $w$"),
    ("act_dead_frac", "dead channels\nshare of $w$"),
]
LOSS_PANELS = [("loss", "training loss (MSE)"), ("eval_loss", "evaluation loss (MSE)")]


def _row_label(df: pd.DataFrame, experiment: str) -> str:
    """``_title`` in three short lines (name; activation, seeds), to fit beside one row of panels."""
    rows = df[(df["experiment"] == experiment) & (df["kind"] == "trained")]
    act = ACTIVATION_NAMES.get(str(rows["activation"].iloc[0]), str(rows["activation"].iloc[0]))
    n = rows.groupby("width")["seed"].nunique().max()
    return f"{experiment}\n{act}, {n} seed{'s' if n != 1 else ''}"


def fig8_conv_redundancy_vs_width(df: pd.DataFrame, out_dir: Path, *,
                                  experiments: Sequence[str] | None = None) -> list[Path]:
    """Conv bottleneck redundancy vs width: weights (top row of each experiment), activations and functional
    redundancy (the shared ``FUNCTIONAL_COLUMNS``: a channel ablated or replaced at every position).

    Weights: the source's closest-pair distance, its pair-count-free companion (each channel's distance to
    its nearest other channel, averaged; the minimum over w(w−1)/2 pairs shrinks with w even at random, the
    nearest-neighbour mean much less), the nearest-channel |cos| and the effective rank / min(w, fan-in).
    Activations on the evaluation batch: the nearest-channel |Pearson r| (mean over live channels), the
    effective rank and the principal components for 95% of the variance, both / w, and the share of dead
    (constant) channels, which is 0 by construction without ReLU and is kept as a check. Every panel shows
    trained (final) means ± 95% CI over seeds, the same seeds at init and the random null's band (untrained
    layers of the same shape for the weights, untrained whole models for the activations), all from
    ``stats.summary``. Panels of the same metric share their y-axis across experiments.
    """
    exps = _experiments(df, experiments, model=MODEL)
    blocks = [("weights", CONV_WEIGHT_COLUMNS), ("activations", CONV_ACTIVATION_COLUMNS)]
    metrics = [m for _, columns in blocks for m, _ in columns]
    table = _summary_of(df, exps, BOTTLENECK, metrics + [m for m, _ in FUNCTIONAL_COLUMNS])
    if table["metric"].isin([m for m, _ in FUNCTIONAL_COLUMNS]).any():  # runs older than the functional metrics
        blocks.append(("functional", FUNCTIONAL_COLUMNS))
    n_blocks = len(blocks)
    n_rows, n_cols = n_blocks * len(exps), len(CONV_WEIGHT_COLUMNS)
    label_of = {exp: _row_label(df, exp) for exp in exps}
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(n_rows, n_cols, figsize=(COLUMN_WIDTH * 2, 1.55 * n_rows + 0.5), squeeze=False)
        for i, exp in enumerate(exps):
            for b, (block, columns) in enumerate(blocks):
                r = n_blocks * i + b
                for j, (metric, label) in enumerate(columns):
                    ax = axes[r, j]
                    if i > 0:
                        ax.sharey(axes[b, j])  # same metric, same scale in every experiment
                    rows = table[(table["experiment"] == exp) & (table["metric"] == metric)]
                    ax.set_title(label, fontsize=7)
                    if rows.empty:
                        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
                    else:
                        _level_panel(ax, rows, unit=UNIT)
                axes[r, 0].set_ylabel(f"{label_of[exp]}\n{block}", fontweight="bold")
        # Not sharex (one tick locator: the last panel's widths would be everyone's): each experiment's rows get
        # its swept widths, labelled under its last row (and above any experiment that swept other widths).
        _width_grid(axes, [[_swept_widths(table, exp)] * n_cols for exp in exps for _ in blocks], unit=UNIT)
        for b, (_, columns) in enumerate(blocks):
            for j, (metric, _) in enumerate(columns):
                if metric in SHARE_METRICS:  # shares: a 0-based axis
                    top = table.loc[table["metric"] == metric, ["end_hi", "init_hi", "null_hi", "end_mean"]].max().max()
                    axes[b, j].set_ylim(-0.02, max(0.2, 1.1 * float(top)))
        fig.supxlabel(f"bottleneck width $w$ ({UNIT})", fontsize=8)
        fig.legend(handles=_level_legend_handles(), loc="lower center", ncol=4, frameon=False,
                   bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout(h_pad=0.6)
        return save(fig, out_dir, "fig8_conv_redundancy_vs_width")


def fig8b_conv_loss_vs_width(df: pd.DataFrame, out_dir: Path, *,
                            experiments: Sequence[str] | None = None) -> list[Path]:
    """Did the conv models learn the identity? Training and evaluation MSE vs width, initial and final.

    One colour per conv experiment: the final loss (mean over seeds, solid line, 95% CI band) and the same
    seeds' loss at initialisation (dotted, open markers), on a log scale because training lowers it by about
    two orders of magnitude. The training loss is on the training images, the evaluation loss on the held-out
    evaluation batch that the activation metrics use.
    """
    exps = _experiments(df, experiments, model=MODEL)
    table = _summary_of(df, exps, "model", [m for m, _ in LOSS_PANELS])
    widths = sorted(table["width"].unique().tolist())
    colors = {exp: PALETTE[(2 * k) % len(PALETTE)] for k, exp in enumerate(exps)}
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(LOSS_PANELS), figsize=(COLUMN_WIDTH, 2.0), sharey=True, squeeze=False)
        for ax, (metric, label) in zip(axes[0], LOSS_PANELS, strict=True):
            for exp in exps:
                rows = table[(table["experiment"] == exp) & (table["metric"] == metric)].sort_values("width")
                if rows.empty:
                    continue
                w = rows["width"].to_numpy(dtype=float)
                c = colors[exp]
                ax.plot(w, rows["init_mean"], color=c, ls=":", lw=1, marker="o", ms=3, mfc="white")
                ax.fill_between(w, rows["end_lo"], rows["end_hi"], color=c, alpha=0.25, lw=0)
                ax.plot(w, rows["end_mean"], color=c, lw=1, marker="o", ms=3)
            ax.set_yscale("log")
            _width_axis(ax, widths, label=False, narrow=False, unit=UNIT)
            ax.set_title(label)
        axes[0, 0].set_ylabel("MSE (mean over seeds)")
        fig.supxlabel(f"bottleneck width $w$ ({UNIT})", fontsize=8)
        handles = [Patch(color=colors[e], label=_title(df, e, sep=": ")) for e in exps]
        handles += [Line2D([], [], color="0.3", lw=1, marker="o", ms=3, label="final, 95% CI band"),
                    Line2D([], [], color="0.3", lw=1, ls=":", marker="o", ms=3, mfc="white", label="at init")]
        fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout()
        return save(fig, out_dir, "fig8b_conv_loss_vs_width")


def task_examples(n: int = 10, preset: str = "conv_sweep") -> bytes:
    """PNG of the first ``n`` evaluation images of a conv preset's digits split (``data.n_train``/``n_eval`` of
    ``conf/experiment/<preset>.yaml``): the conv models' input and target. For notebooks; not a paper figure,
    so it is not in ``FIGURES`` and is written to no folder."""
    split = yaml.safe_load((CONF_DIR / "experiment" / f"{preset}.yaml").read_text())["data"]
    images = digits(int(split["n_train"]), int(split["n_eval"])).eval_x[:n, 0].numpy()
    with mpl.rc_context(STYLE):
        fig, axes = plt.subplots(1, n, figsize=(COLUMN_WIDTH * 2, COLUMN_WIDTH * 2 / n + 0.3), squeeze=False)
        for ax, image in zip(axes[0], images, strict=True):
            ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
        fig.suptitle("8×8 digits, scaled to [0, 1]: each is the input and the target", fontsize=8)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
    return buffer.getvalue()
