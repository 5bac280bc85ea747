"""Figures of the MLP family (SPEC §8): the source table (figure 1) and redundancy vs width over many seeds
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
    PALETTE,
    STYLE,
    NoData,
    _columns_width,
    _err,
    _experiments,
    _level_legend_handles,
    _level_panel,
    _summary_of,
    _title,
    _width_axis,
    _width_colors,
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
        "Source table reproduced (seed 10000, 100 epochs, Adam 1e-3; SPEC §2)\n\n" + to_markdown(table))
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
# Figures 2–7: redundancy vs width over many seeds, against the random null (SPEC §3, §8).

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
        fig, axes = plt.subplots(2, len(exps), figsize=(_columns_width(len(exps)), 3.5), sharex="col",
                                 sharey="row", squeeze=False, gridspec_kw={"height_ratios": [1.6, 1]})
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
            _width_axis(bottom, rows["width"].tolist(), label=False)
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
                                 squeeze=False, sharex=True, sharey="col")
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
                if i < len(exps) - 1:
                    ax.set_xlabel("")
            axes[i, 0].set_ylabel(_title(df, exp), fontweight="bold")
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
    levels (figure 2) and only the movement says what training did.
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
    colors = _width_colors(curves["width"].unique().tolist())
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(len(metrics), len(exps), figsize=(_columns_width(len(exps)), 1.3 * len(metrics) + 0.8),
                                 squeeze=False, sharex=True, sharey="row")
        for j, exp in enumerate(exps):
            for i, (metric, label) in enumerate(TRAJECTORY_METRICS):
                ax = axes[i, j]
                ax.axhline(0, color="black", lw=0.6)
                for width, c in curves[(curves["experiment"] == exp) & (curves["metric"] == metric)].groupby("width"):
                    ax.plot(c["epoch"], c["change"], color=colors[width], lw=1, label=f"{width}")
                if j == 0:
                    ax.set_ylabel(label)
                if i == len(metrics) - 1:
                    ax.set_xlabel("epoch")
            axes[0, j].set_title(_title(df, exp))
        handles = [Line2D([], [], color=c, lw=1.5, label=str(w)) for w, c in colors.items()]
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


def fig6_cos_heatmaps(df: pd.DataFrame, out_dir: Path, *,
                      experiments: Sequence[str] | None = None) -> list[Path]:
    """|cos| between every pair of bottleneck units, one panel per width, initial and final weights.

    One seed (the lowest) per width; units in their stored order. Redundant units would show as bright
    off-diagonal cells; the initial row shows what chance alone gives at that width.
    """
    exps = _experiments(df, experiments)
    weights = _bottleneck_weights(df, exps)
    widths = sorted({w for _, w in weights})
    rows = [(exp, stage) for exp in exps for stage in ("initial", "final")]
    with mpl.rc_context(STYLE):
        panel = min(1.0, COLUMN_WIDTH * 2 / (len(widths) + 0.4))
        fig, axes = plt.subplots(len(rows), len(widths), figsize=(panel * len(widths) + 0.6, panel * len(rows) + 0.4),
                                 squeeze=False)
        image = None
        for i, (exp, stage) in enumerate(rows):
            for j, width in enumerate(widths):
                ax = axes[i, j]
                ax.set_xticks([])
                ax.set_yticks([])
                if (exp, width) not in weights:
                    ax.set_axis_off()
                    continue
                entry = weights[(exp, width)]
                first = int(entry["seeds"].argmin())
                cos = abs_cos_matrix(entry[stage][first : first + 1].double())[0].numpy()
                image = ax.imshow(cos, vmin=0, vmax=1, cmap="magma", interpolation="nearest")
                if i == 0:
                    ax.set_title(f"$w$ = {width}")
                if j == 0:
                    ax.set_ylabel(f"{exp}\n{stage}", fontsize=7)
        seed = int(next(iter(weights.values()))["seeds"].min())
        fig.suptitle(f"|cos| between bottleneck units (seed {seed}; units in stored order)", fontsize=8)
        fig.tight_layout(rect=(0, 0, 0.92, 1))
        if image is not None:
            cax = fig.add_axes((0.93, 0.15, 0.015, 0.7))
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
    table = _summary_of(df, exps, BOTTLENECK, [m for m, _ in columns])
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(len(exps), len(columns), figsize=(COLUMN_WIDTH * 2, 1.5 * len(exps) + 1.0),
                                 squeeze=False, sharex=True, sharey="col")
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
        _width_axis(axes[-1, 0], table["width"].unique().tolist(), label=False)  # shared: every width shown
        fig.supxlabel("bottleneck width $w$ (units)", fontsize=8)
        handles = [*_level_legend_handles(),
                   Line2D([], [], color="black", ls=":", lw=0.9, label="one direction (rank one)")]
        fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.0))
        fig.text(1.0, 0.0, "bottleneck activations on the evaluation batch; null: untrained whole models",
                 ha="right", va="top", fontsize=6)
        fig.tight_layout()
        return save(fig, out_dir, "fig3b_activation_vs_width")
