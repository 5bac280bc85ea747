"""Figures of the MLP family: the source table (figure 1) and redundancy vs width over many seeds
against the random null (figures 2–7, and 3b for the activation metrics).

Figures 2–7 and 3b show only MLP experiments (``model == "mlp"``); the conv family has its own figures in
``analysis.figures_conv``. Every function takes the tidy results frame and an output folder and returns the
paths it wrote; ``analysis.figures`` registers them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.lines import Line2D

from analysis.load import load_weights, results_root
from analysis.plotting import (
    BOTTLENECK,
    C_TRAINED,
    COLUMN_WIDTH,
    FUNCTIONAL_COLUMNS,
    PALETTE,
    STYLE,
    NoData,
    _columns_width,
    _err,
    _experiments,
    _level_legend_handles,
    _level_panel,
    _summary_of,
    _swept_widths,
    _title,
    _width_axis,
    _width_colors,
    _width_grid,
    _width_styles,
    save,
)
from analysis.tables import SOURCE_PRINTED, source_table, to_markdown
from experiments.metrics import abs_cos_matrix, singular_values

log = logging.getLogger(__name__)


def fig1_source_table(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The source's table reproduced: final loss and closest-pair distance at widths 8/32/128."""
    table = source_table(df)
    if table["loss (ours)"].isna().all():
        raise NoData("no runs of experiment 'source' with seed 10000")
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "fig1_source_table.md"
    md.write_text(
        "Source table reproduced (seed 10000, 100 epochs, Adam 1e-3)\n\n" + to_markdown(table))
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, 2, figsize=(COLUMN_WIDTH * 2, 2.2))
        labels = [str(w) for w in SOURCE_PRINTED.index]
        widths = list(range(len(labels)))
        panels = [("loss", "final training loss (MSE)"), ("min_pair_l1", r"closest pair: mean $|W_i - W_j|$")]
        for ax, (key, label) in zip(axes, panels, strict=True):
            ours = table[f"{key} (ours)"].to_numpy()
            ax.bar(widths, ours, color=sns.color_palette()[0], width=0.6, label="this repository")
            ax.scatter(widths, table[f"{key} (source)"], marker="x", color="black", s=40, zorder=3,
                       label="source (printed)")
            for x, v in zip(widths, ours, strict=True):
                if pd.notna(v):
                    ax.annotate(f"{v:.4f}", (x, v), textcoords="offset points", xytext=(0, 7), ha="center",
                                fontsize=6)
            ax.set_xticks(widths, labels)
            ax.set_xlabel("bottleneck width (units)")
            ax.set_ylabel(label)
            ax.margins(y=0.15)
        axes[0].legend(loc="lower right", frameon=True)
        fig.suptitle("Source experiment reproduced (seed 10000)", fontsize=8)
        fig.tight_layout()
        return [md, *save(fig, out_dir, "fig1_source_table")]


# ---------------------------------------------------------------------------------------------------
# Figures 2–7: redundancy vs width over many seeds, against the random null.

# Pair-count-free metrics (figure 3): (metric, axis label). stable_rank is divided by k = min(units, fan_in).
PAIR_FREE = [
    ("mean_nn_l1", "nearest-unit distance\nmean $|W_i - W_{nn(i)}|$"),
    ("mean_nn_abs_cos", "nearest-unit $|\\cos|$\nmean over units"),
    ("eff_rank_norm", "effective rank / k"),
    ("stable_rank", "stable rank / k"),
]
TRAJECTORY_METRICS = [
    ("min_pair_l1", "Δ closest pair\nmean $|W_i - W_j|$"),
    ("mean_nn_abs_cos", "Δ nearest-unit $|\\cos|$"),
    ("eff_rank_norm", "Δ effective rank / k"),
]


def fig2_min_pair_vs_width(df: pd.DataFrame, out_dir: Path, *,
                           experiments: Sequence[str] | None = None) -> list[Path]:
    """The source metric over many seeds: does the trained closest pair differ from init and from chance?

    Top row: the closest-pair distance at init, after training and for untrained random layers of the
    same shape. Bottom row: the paired training effect (final − initial, same seed) with its CI, on its
    own scale, because it is far smaller than the width trend every curve shares.
    """
    exps = _experiments(df, experiments)
    table = _summary_of(df, exps, BOTTLENECK, ["min_pair_l1"])
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(2, len(exps), figsize=(_columns_width(len(exps)), 3.5), sharey="row",
                                 squeeze=False, gridspec_kw={"height_ratios": [1.6, 1]})
        for j, exp in enumerate(exps):
            rows = table[table["experiment"] == exp].sort_values("width")
            top, bottom = axes[0, j], axes[1, j]
            _level_panel(top, rows)
            top.set_title(_title(df, exp))
            top.set_xlabel("")
            w = rows["width"].to_numpy(dtype=float)
            m = rows["change_mean"].to_numpy()
            bottom.axhline(0, color="black", lw=0.6)
            bottom.errorbar(w, m, _err(m, rows["change_lo"].to_numpy(), rows["change_hi"].to_numpy()),
                            color=C_TRAINED, marker="o", ms=3, lw=1, capsize=1.5)
        # Not sharex (one tick locator: the last panel's widths would be everyone's): each column its widths.
        _width_grid(axes, [[_swept_widths(table, exp) for exp in exps]] * 2)
        fig.supxlabel("bottleneck width $w$ (units)", fontsize=8)
        axes[0, 0].set_ylabel("closest pair of units\nmin$_{i<j}$ mean $|W_i - W_j|$")
        axes[1, 0].set_ylabel("training effect\nfinal − initial")
        fig.legend(handles=_level_legend_handles(), loc="lower center", ncol=2, frameon=False,
                   bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout()
        return save(fig, out_dir, "fig2_min_pair_vs_width")


def _rank_dims(table: pd.DataFrame) -> pd.Series:
    """k = min(units, fan_in) per (experiment, width), recovered exactly as eff_rank / eff_rank_norm.

    The logged metrics already contain it, so figure 3 need not know the model's fan-in.
    """
    er = table[table["metric"] == "eff_rank"].set_index(["experiment", "width"])["init_mean"]
    ern = table[table["metric"] == "eff_rank_norm"].set_index(["experiment", "width"])["init_mean"]
    return (er / ern).round()


def fig3_pair_free_vs_width(df: pd.DataFrame, out_dir: Path, *,
                            experiments: Sequence[str] | None = None) -> list[Path]:
    """Figure 2's layout for metrics with no pair-count effect: a width trend here is not a counting artefact.

    Rows are experiments, columns metrics (a two-column-wide figure). ``stable_rank`` is divided by
    k = min(units, fan_in) so that layers of different widths share a 0–1 scale (``eff_rank_norm``
    already is).
    """
    exps = _experiments(df, experiments)
    metrics = [m for m, _ in PAIR_FREE]
    table = _summary_of(df, exps, BOTTLENECK, [*metrics, "eff_rank"])
    dims = _rank_dims(table)
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(len(exps), len(PAIR_FREE), figsize=(COLUMN_WIDTH * 2, 1.6 * len(exps) + 0.9),
                                 squeeze=False, sharey="col")
        for i, exp in enumerate(exps):
            for j, (metric, label) in enumerate(PAIR_FREE):
                ax = axes[i, j]
                rows = table[(table["experiment"] == exp) & (table["metric"] == metric)].sort_values("width")
                if rows.empty:
                    ax.set_axis_off()
                    continue
                scale: np.ndarray | float = 1.0
                if metric == "stable_rank":
                    k = dims.reindex(list(zip(rows["experiment"], rows["width"], strict=True))).to_numpy()
                    if np.isnan(k).any():
                        label, k = "stable rank (raw)", np.ones(len(rows))
                    scale = k
                _level_panel(ax, rows, scale)
                if i == 0:
                    ax.set_title(label)
            axes[i, 0].set_ylabel(_title(df, exp), fontweight="bold")
        # Each row its experiment's widths; labelled under a row only where the row below has other widths.
        _width_grid(axes, [[_swept_widths(table, exp)] * len(PAIR_FREE) for exp in exps], label=True)
        fig.legend(handles=_level_legend_handles(), loc="lower center", ncol=4, frameon=False,
                   bbox_to_anchor=(0.5, 1.0))
        fig.text(1.0, 0.0, "k = min(units, fan-in) of the bottleneck weight", ha="right", va="top", fontsize=6)
        fig.tight_layout()
        return save(fig, out_dir, "fig3_pair_free_vs_width")


def fig4_loss_vs_width(df: pd.DataFrame, out_dir: Path, *,
                       experiments: Sequence[str] | None = None) -> list[Path]:
    """Final training loss vs width, one line per experiment: which widths actually learn the task.

    A redundancy difference between widths means little if the narrow model has not fitted the data,
    so the loss is shown on the same width axis (log scale: the losses span orders of magnitude).
    """
    exps = _experiments(df, experiments)
    table = _summary_of(df, exps, "model", ["loss"])
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
        for k, exp in enumerate(exps):
            rows = table[table["experiment"] == exp].sort_values("width")
            w = rows["width"].to_numpy(dtype=float)
            m = rows["end_mean"].to_numpy()
            color = PALETTE[(2 * k) % len(PALETTE)]
            ax.fill_between(w, rows["end_lo"].to_numpy(), rows["end_hi"].to_numpy(), color=color, alpha=0.25, lw=0)
            ax.plot(w, m, color=color, marker="o", ms=3, lw=1, label=_title(df, exp, sep=": "))
        ax.set_yscale("log")
        _width_axis(ax, sorted(table["width"].unique().tolist()), narrow=False)
        ax.set_ylabel("final training loss (MSE)")
        ax.legend(title="final loss: mean over seeds, 95% CI band", frameon=False, loc="lower center",
                  bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout()
        return save(fig, out_dir, "fig4_loss_vs_width")


def fig5_trajectories(df: pd.DataFrame, out_dir: Path, *,
                      experiments: Sequence[str] | None = None) -> list[Path]:
    """How each bottleneck metric moves during training, per width: change from epoch 0, mean over seeds.

    Shown as the change from the same seed's initial value, because the widths start at very different
    levels (figure 2) and only the movement says what training did. Each width has its own colour from the
    qualitative colour-blind-safe palette and its own marker (``_width_styles``; about six markers per line,
    staggered between widths), so that widths stay distinguishable where their lines cross; the legend runs
    from the narrowest width to the widest.
    """
    exps = _experiments(df, experiments)
    metrics = [m for m, _ in TRAJECTORY_METRICS]
    rows = df[(df["kind"] == "trained") & df["experiment"].isin(exps) & (df["layer"] == BOTTLENECK)
              & df["metric"].isin(metrics)].sort_values("epoch", kind="stable")
    if rows.empty:
        raise NoData("no trained bottleneck rows")
    start = rows.groupby(["experiment", "run_id", "seed", "metric"])["value"].transform("first")
    rows = rows.assign(change=rows["value"] - start)
    curves = rows.groupby(["experiment", "metric", "width", "epoch"], as_index=False)["change"].mean()
    styles = _width_styles(curves["width"].unique().tolist())
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(len(metrics), len(exps), figsize=(_columns_width(len(exps)), 1.3 * len(metrics) + 0.8),
                                 squeeze=False, sharex=True, sharey="row")
        for j, exp in enumerate(exps):
            for i, (metric, label) in enumerate(TRAJECTORY_METRICS):
                ax = axes[i, j]
                ax.axhline(0, color="black", lw=0.6)
                for width, c in curves[(curves["experiment"] == exp) & (curves["metric"] == metric)].groupby("width"):
                    k, step = list(styles).index(width), max(1, len(c) // 6)
                    ax.plot(c["epoch"], c["change"], **styles[width], lw=1, ms=3.2, mew=0.6, label=f"{width}",
                            markevery=(k * step // len(styles), step))
                if j == 0:
                    ax.set_ylabel(label)
                if i == len(metrics) - 1:
                    ax.set_xlabel("epoch")
            axes[0, j].set_title(_title(df, exp))
        handles = [Line2D([], [], **style, lw=1, ms=3.5, mew=0.6, label=str(w)) for w, style in sorted(styles.items())]
        fig.legend(handles=handles, title="bottleneck width $w$ (mean over seeds)", loc="lower center",
                   ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, 1.0), columnspacing=1.0, handlelength=1.2)
        fig.tight_layout()
        return save(fig, out_dir, "fig5_trajectories")


def _runs_by_width(df: pd.DataFrame, experiment: str) -> dict[int, str]:
    """The run id holding each width of an experiment (the one with most seeds if a width ran twice)."""
    trained = df[(df["experiment"] == experiment) & (df["kind"] == "trained")]
    n = trained.groupby(["width", "run_id"])["seed"].nunique().reset_index()
    n = n.sort_values(["width", "seed", "run_id"], ascending=[True, False, True]).drop_duplicates("width")
    return dict(zip(n["width"].astype(int), n["run_id"], strict=True))


def _bottleneck_weights(df: pd.DataFrame, experiments: Sequence[str]) -> dict[tuple[str, int], dict]:
    """Saved initial/final bottleneck weights and seeds per (experiment, width); widths without a file are left out.

    The results root comes from ``df.attrs["results_root"]`` (set by ``load_runs``): a figure function
    only receives the frame, and the weights live beside the runs, not beside the figures.
    """
    root = df.attrs.get("results_root")
    if root is None:
        raise NoData("results root unknown (load the frame with analysis.load.load_runs)")
    found = {}
    for exp in experiments:
        for width, run_id in _runs_by_width(df, exp).items():
            try:
                w = load_weights(results_root(root), exp, run_id)
            except FileNotFoundError as why:
                log.warning("%s", why)
                continue
            # Files written before biases were saved name the weight "initial/bottleneck", not ".weight".
            keys = {stage: next((k for k in (f"{stage}/{BOTTLENECK}.weight", f"{stage}/{BOTTLENECK}") if k in w), None)
                    for stage in ("initial", "final")}
            if None in keys.values() or "seeds" not in w:
                log.warning("run %s of %s: no initial/final %s weights saved", run_id, exp, BOTTLENECK)
                continue
            found[(exp, width)] = {stage: w[key] for stage, key in keys.items()}
            found[(exp, width)]["seeds"] = w["seeds"]
    if not found:
        raise NoData(f"no saved {BOTTLENECK} weights under {root}/weights")
    return found


# Figure 6: a heatmap shows at most HEATMAP_UNITS units a side, and every cell takes at least HEATMAP_MIN_PX device
# pixels at the saved resolution (STYLE's savefig.dpi), so that no cell is averaged away.
HEATMAP_UNITS = 64
HEATMAP_MIN_PX = 2.5


def _heatmap_block(cos: np.ndarray) -> np.ndarray:
    """What figure 6 shows of a layer's |cos| matrix: all of it up to ``HEATMAP_UNITS`` units, else the block of
    the first ``HEATMAP_UNITS`` units in stored order (a random sample of units: a layer's units are exchangeable)."""
    return cos[:HEATMAP_UNITS, :HEATMAP_UNITS]


def fig6_cos_heatmaps(df: pd.DataFrame, out_dir: Path, *,
                      experiments: Sequence[str] | None = None) -> list[Path]:
    """|cos| between pairs of bottleneck units, one panel per width, initial and final weights.

    One seed (the lowest) per width; units in their stored order, neither sorted nor clustered. A layer of up to
    ``HEATMAP_UNITS`` (64) units is shown whole. A wider layer is shown as the block of its first 64 units (titled
    "units 1–64"): a 256 × 256 matrix at a readable figure size would put less than a device pixel on each cell
    (averaging the cells away), and the first 64 units in stored order are an unpicked sample (the units of a
    layer are exchangeable), so the block shows the same kind of pairs as the whole matrix, not a selection of
    the brightest. Every cell shown takes at least ``HEATMAP_MIN_PX`` device pixels at ``savefig.dpi``. Under
    each panel is the largest off-diagonal |cos| over all w(w−1)/2 pairs of the layer, shown or not, so that a
    block cannot hide the layer's most similar pair. (With one seed, a wider layer's first units can start as the
    narrower layer's units did, so the initial blocks of w = 64, 128, 256 may look alike.) Redundant units would
    show as bright off-diagonal cells; the initial rows show what chance alone gives at that width.
    """
    exps = _experiments(df, experiments)
    weights = _bottleneck_weights(df, exps)
    widths = sorted({w for _, w in weights})
    rows = [(exp, stage) for exp in exps for stage in ("initial", "final")]
    dpi = float(STYLE["savefig.dpi"])
    # Layout in inches, so that the panels keep their size: row labels, panels, colour bar.
    left, right, top, bottom, gap_x, gap_y = 0.5, 0.7, 0.75, 0.1, 0.1, 0.24
    side = max(HEATMAP_MIN_PX * min(max(widths), HEATMAP_UNITS) / dpi,
               min(0.95, (COLUMN_WIDTH * 2 - left - right) / len(widths) - gap_x))
    fig_w = left + len(widths) * side + (len(widths) - 1) * gap_x + right
    fig_h = top + len(rows) * side + (len(rows) - 1) * gap_y + bottom
    with mpl.rc_context(STYLE):
        fig = plt.figure(figsize=(fig_w, fig_h))
        image = None
        for i, (exp, stage) in enumerate(rows):
            for j, width in enumerate(widths):
                x, y = left + j * (side + gap_x), fig_h - top - side - i * (side + gap_y)
                ax = fig.add_axes((x / fig_w, y / fig_h, side / fig_w, side / fig_h))
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"$w$ = {width}" + (f"\nunits 1–{HEATMAP_UNITS}" if width > HEATMAP_UNITS else ""))
                if j == 0:
                    ax.set_ylabel(f"{exp}\n{stage}", fontsize=7)
                if (exp, width) not in weights:
                    ax.text(0.5, 0.5, "no weights\nsaved", ha="center", va="center", fontsize=6, transform=ax.transAxes)
                    continue
                entry = weights[(exp, width)]
                first = int(entry["seeds"].argmin())
                cos = abs_cos_matrix(entry[stage][first : first + 1].double())[0].numpy()
                image = ax.imshow(_heatmap_block(cos), vmin=0, vmax=1, cmap="magma", interpolation="nearest")
                if width > 1:
                    off = cos[~np.eye(width, dtype=bool)]
                    ax.set_xlabel(f"max {off.max():.2f}", fontsize=6, labelpad=1.5)
        seed = int(next(iter(weights.values()))["seeds"].min())
        fig.suptitle(f"|cos| between bottleneck units (seed {seed}; units in stored order)\n"
                     f"$w$ ≤ {HEATMAP_UNITS}: all units; $w$ > {HEATMAP_UNITS}: the first {HEATMAP_UNITS} units only. "
                     "Under each panel: the largest |cos| over all pairs of units of the layer",
                     fontsize=7, y=1 - 0.08 / fig_h, va="top")
        if image is not None:
            span = len(rows) * side + (len(rows) - 1) * gap_y
            box = (fig_w - right + 0.15, fig_h - top - span, 0.1, span)  # inches: x, y, width, height
            cax = fig.add_axes((box[0] / fig_w, box[1] / fig_h, box[2] / fig_w, box[3] / fig_h))
            fig.colorbar(image, cax=cax, label="|cos|")
        return save(fig, out_dir, "fig6_cos_heatmaps")


def fig7_spectra(df: pd.DataFrame, out_dir: Path, *,
                 experiments: Sequence[str] | None = None) -> list[Path]:
    """Normalised singular-value spectra of the bottleneck per width, initial vs final, mean over seeds.

    s / s_max against index / k (k = min(units, fan_in)) puts all widths on one 0–1 grid. The bottom row
    shows final − initial, since the two spectra nearly coincide and the change is what training did.
    """
    exps = _experiments(df, experiments)
    weights = _bottleneck_weights(df, exps)
    colors = _width_colors(sorted({w for _, w in weights}))
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(2, len(exps), figsize=(_columns_width(len(exps)), 3.5), squeeze=False, sharex=True,
                                 sharey="row", gridspec_kw={"height_ratios": [1.6, 1]})
        for j, exp in enumerate(exps):
            top, bottom = axes[0, j], axes[1, j]
            for (e, width), entry in sorted(weights.items()):
                if e != exp:
                    continue
                spectra = {}
                for stage in ("initial", "final"):
                    s = singular_values(entry[stage].double())
                    spectra[stage] = torch.nanmean(s / s[:, :1], dim=0).numpy()  # a diverged seed is NaN
                k = spectra["final"].size
                x = np.arange(1, k + 1) / k
                top.plot(x, spectra["final"], color=colors[width], lw=1)
                top.plot(x, spectra["initial"], color=colors[width], lw=0.8, ls=":")
                bottom.plot(x, spectra["final"] - spectra["initial"], color=colors[width], lw=1)
            top.set_yscale("log")
            top.set_title(_title(df, exp))
            bottom.axhline(0, color="black", lw=0.6)
            bottom.set_xlabel("singular value index / k")
        axes[0, 0].set_ylabel("$s_i / s_1$ (mean over seeds)")
        axes[1, 0].set_ylabel("final − initial")
        handles = [Line2D([], [], color=c, lw=1.5, label=str(w)) for w, c in colors.items()]
        handles += [Line2D([], [], color="0.3", lw=1, label="final"),
                    Line2D([], [], color="0.3", lw=0.8, ls=":", label="initial")]
        fig.legend(handles=handles, title="bottleneck width $w$", loc="lower center", ncol=5, frameon=False,
                   bbox_to_anchor=(0.5, 1.0), columnspacing=1.0, handlelength=1.5)
        fig.tight_layout()
        return save(fig, out_dir, "fig7_spectra")




# Activation metrics of the bottleneck on the evaluation batch (figure 3b): (metric, column title).
ACTIVATION_COLUMNS = [
    ("act_mean_nn_abs_corr", "nearest-unit |corr|\nmean over units"),
    ("act_max_abs_corr", "closest pair |corr|\nmax over pairs"),
    ("act_eff_rank_norm", "effective rank\n(directions)"),
    ("act_pc95_frac", "PCs for 95%\nof variance"),
]
DEAD_COLUMN = ("act_dead_frac", "dead units\nshare of $w$")
# Shown multiplied by the width: in directions, not as a share of w (see fig3b_activation_vs_width).
RANK_METRICS = ("act_eff_rank_norm", "act_pc95_frac")


def fig3b_activation_vs_width(df: pd.DataFrame, out_dir: Path, *,
                              experiments: Sequence[str] | None = None) -> list[Path]:
    """Figure 3's layout for what the bottleneck units compute: activation metrics on the evaluation batch.

    Rows are experiments; columns the mean nearest-unit and the maximum pairwise |Pearson r| between unit
    activations (fixed 0–1 axes), and the activations' effective rank and the number of principal components
    holding 95% of their variance. Those two are logged divided by the width (``act_eff_rank_norm``,
    ``act_pc95_frac``) and shown multiplied back by w, in directions: divided by w they all lie on 1/w,
    which hides how far from one direction a layer is. A ReLU experiment adds the share of dead units
    (constant on the batch), which are left out of the correlations (a seed with fewer than two live units
    has no correlation, so those columns can have fewer seeds at narrow widths). Trained (final) and initial
    values are means ± 95% CI over seeds; the null band comes from untrained whole models.

    In the linear MLP every unit is an affine function of the scalar input, so every |corr| is 1 and the
    activations span one direction at every width, trained or not: that row shows 1 everywhere by
    construction. With ReLU the units are piecewise linear in the input and only dead units and kinks break
    the perfect correlation.
    """
    exps = _experiments(df, experiments)
    relu = df.loc[df["experiment"].isin(exps) & (df["kind"] == "trained"), "activation"].eq("relu").any()
    columns = [*ACTIVATION_COLUMNS, DEAD_COLUMN] if relu else ACTIVATION_COLUMNS
    return _bottleneck_grid(df, out_dir, exps, columns, "fig3b_activation_vs_width",
                            "bottleneck activations on the evaluation batch; null: untrained whole models")


def fig3c_functional_vs_width(df: pd.DataFrame, out_dir: Path, *,
                              experiments: Sequence[str] | None = None) -> list[Path]:
    """Figure 3b's layout for functional redundancy (``experiments/functional.py``): the share of prunable
    units (mean ablation raises the held-out loss by less than the threshold), of redundant units (replaced
    by their least-squares prediction from the other units), the mean held-out R² of a unit from the others,
    and the share of the total ablation loss carried by the top 10% of units. In the linear MLP every unit is
    affine in the scalar input, so each is an exact affine function of any other: R² = 1 and every unit is
    redundant at every width ≥ 2, by construction."""
    exps = _experiments(df, experiments)
    table = _summary_of(df, exps, BOTTLENECK, [m for m, _ in FUNCTIONAL_COLUMNS])
    if table.empty:
        raise NoData("no functional metrics in the MLP sweeps (runs older than experiments/functional.py)")
    return _bottleneck_grid(df, out_dir, exps, FUNCTIONAL_COLUMNS, "fig3c_functional_vs_width",
                            "bottleneck; replacements fitted on the training inputs; null: untrained models")


def _bottleneck_grid(df: pd.DataFrame, out_dir: Path, exps: list[str], columns: list[tuple[str, str]], name: str,
                     note: str) -> list[Path]:
    """Rows: experiments; columns: bottleneck metrics on fixed 0–1 axes (``RANK_METRICS`` in directions)."""
    table = _summary_of(df, exps, BOTTLENECK, [m for m, _ in columns])
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(len(exps), len(columns), figsize=(COLUMN_WIDTH * 2, 1.5 * len(exps) + 1.0),
                                 squeeze=False, sharey="col")
        for i, exp in enumerate(exps):
            for j, (metric, label) in enumerate(columns):
                ax = axes[i, j]
                rows = table[(table["experiment"] == exp) & (table["metric"] == metric)]
                if rows.empty:
                    ax.set_axis_off()
                    continue
                if metric in RANK_METRICS:
                    ax.axhline(1.0, color="black", ls=":", lw=0.9, zorder=1)
                    _level_panel(ax, rows, scale=1.0 / rows.sort_values("width")["width"].to_numpy(dtype=float))
                else:
                    _level_panel(ax, rows)
                ax.set_xlabel("")
                if i == 0:
                    ax.set_title(label)
            axes[i, 0].set_ylabel(_title(df, exp), fontweight="bold")
        for j, (metric, _) in enumerate(columns):
            # Fixed limits: a column whose values are all equal (the linear MLP) must not get a zero-height axis.
            if metric in RANK_METRICS:
                rows = table[table["metric"] == metric]
                top = (rows[["end_hi", "init_hi", "null_hi", "end_mean"]].max(axis=1) * rows["width"]).max()
                axes[0, j].set_ylim(0.9, max(1.3, 1.05 * float(top)))
            else:
                axes[0, j].set_ylim(-0.04, 1.04)
        # Not sharex (one tick locator: the last panel's widths would be everyone's): each row its experiment's.
        _width_grid(axes, [[_swept_widths(table, exp)] * len(columns) for exp in exps])
        fig.supxlabel("bottleneck width $w$ (units)", fontsize=8)
        handles = [*_level_legend_handles(),
                   Line2D([], [], color="black", ls=":", lw=0.9, label="one direction (rank one)")]
        fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.0))
        fig.text(1.0, 0.0, note, ha="right", va="top", fontsize=6)
        fig.tight_layout()
        return save(fig, out_dir, name)
