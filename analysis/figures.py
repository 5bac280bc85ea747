"""One function per paper figure (SPEC §8); ``python -m analysis.figures`` rebuilds them all.

Every figure function takes the tidy results frame and an output folder and returns the paths it
wrote (PDF and PNG). Figures whose data are absent are skipped with a message, not faked.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.load import DEFAULT_ROOT, ResultsError, load_runs, load_weights, results_root
from analysis.stats import summary, write_summary
from analysis.tables import SOURCE_PRINTED, source_table, to_markdown
from experiments.metrics import abs_cos_matrix, singular_values

log = logging.getLogger(__name__)

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

BOTTLENECK = "bottleneck"
PALETTE = sns.color_palette("colorblind")
C_TRAINED, C_INIT, C_NULL = PALETTE[0], PALETTE[1], "0.55"
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
ACTIVATION_NAMES = {"none": "linear", "relu": "ReLU", "tanh": "tanh"}


def sweep_experiments(df: pd.DataFrame, min_seeds: int = 2) -> list[str]:
    """Experiments that figures 2–7 can be made from: a random null and ≥ ``min_seeds`` seeds at a width.

    One seed per width (the source) gives no confidence interval, which is the point of these figures;
    ``min_seeds=1`` admits it anyway for a preview. Linear models come first, then by name, so the
    panels read "the source setting, then its variants".
    """
    trained = df[df["kind"] == "trained"]
    if trained.empty:
        return []
    seeds = trained.groupby(["experiment", "width"])["seed"].nunique().groupby(level="experiment").max()
    with_null = set(df.loc[df["kind"] == "null", "experiment"].unique())
    names = [e for e, n in seeds.items() if n >= min_seeds and e in with_null]
    activation = trained.groupby("experiment")["activation"].first()
    return sorted(names, key=lambda e: (activation[e] != "none", e))


def _experiments(df: pd.DataFrame, experiments: Sequence[str] | None) -> list[str]:
    chosen = sweep_experiments(df) if experiments is None else [e for e in experiments if e in set(df["experiment"])]
    if not chosen:
        raise NoData("no experiment with a random null and several seeds per width "
                     "(run e.g. python run.py -m experiment=mlp_sweep)")
    return chosen


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


def _width_axis(ax: plt.Axes, widths: Sequence[int], label: bool = True, narrow: bool = True) -> None:
    """Log2 width axis with a tick at every width run. In a ``narrow`` panel with more than five widths only
    every other one is labelled (counting down from the widest), so that 64, 128, 256 do not collide."""
    widths = sorted(widths)
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    labelled = set(widths[::-1][::2]) if narrow and len(widths) > 5 else set(widths)
    ax.set_xticks(widths, [str(w) if w in labelled else "" for w in widths])
    ax.set_xlabel("bottleneck width $w$ (units)" if label else "")


def _err(mean: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Asymmetric error bars from a CI; no bar (0) where the CI is undefined (one seed)."""
    return np.nan_to_num(np.vstack([mean - lo, hi - mean]), nan=0.0)


def _level_panel(ax: plt.Axes, rows: pd.DataFrame, scale: np.ndarray | float = 1.0) -> None:
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
    _width_axis(ax, rows["width"].tolist())


def _level_legend_handles() -> list:
    return [
        Line2D([], [], color=C_TRAINED, marker="o", ms=3, lw=1, label="trained (final), mean ± 95% CI"),
        Line2D([], [], color=C_INIT, marker="o", ms=3, mfc="white", lw=0.8, label="same seeds at init"),
        Patch(color=C_NULL, alpha=0.25, lw=0, label="random null, 2.5–97.5%"),
        Line2D([], [], color=C_NULL, ls="--", lw=1, label="random null, mean"),
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


def _width_colors(widths: Sequence[int]) -> dict[int, tuple]:
    colors = sns.color_palette("viridis", len(widths))
    return dict(zip(sorted(widths), colors, strict=True))


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


FIGURES: dict[str, Callable[[pd.DataFrame, Path], list[Path]]] = {
    "fig1_source_table": fig1_source_table,
    "fig2_min_pair_vs_width": fig2_min_pair_vs_width,
    "fig3_pair_free_vs_width": fig3_pair_free_vs_width,
    "fig4_loss_vs_width": fig4_loss_vs_width,
    "fig5_trajectories": fig5_trajectories,
    "fig6_cos_heatmaps": fig6_cos_heatmaps,
    "fig7_spectra": fig7_spectra,
}


def build_all(root: Path = DEFAULT_ROOT, out_dir: Path | None = None, on_error: str = "raise",
              tables_dir: Path | None = None) -> list[Path]:
    """Rebuild every figure and the summary table the results under ``root`` support; returns the files written.

    The summary of every metric (``analysis.stats.write_summary``) goes to ``tables_dir``, by default
    ``<results root>/tables`` next to ``<results root>/figures``; nothing is written when there are no runs.
    """
    df = load_runs(root, on_error=on_error)
    out_dir = out_dir or Path(root) / "figures"
    tables_dir = tables_dir or results_root(root) / "tables"
    written: list[Path] = write_summary(df, tables_dir)
    if written:
        log.info("summary table: %s", ", ".join(str(p) for p in written))
    for name, make in FIGURES.items():
        try:
            paths = make(df, out_dir)
        except NoData as why:
            log.warning("%s skipped: %s", name, why)
            continue
        written += paths
        log.info("%s: %s", name, ", ".join(p.name for p in paths))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild all figures and tables from results/runs/.")
    parser.add_argument("--results", type=Path, default=DEFAULT_ROOT, help="results root (holds runs/)")
    parser.add_argument("--out", type=Path, default=None, help="figure folder (default: <results>/figures)")
    parser.add_argument("--tables", type=Path, default=None, help="table folder (default: <results>/tables)")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable results files with a warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    try:
        written = build_all(args.results, args.out, "skip" if args.skip_bad else "raise", args.tables)
    except ResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    table = (args.out or args.results / "figures") / "fig1_source_table.md"
    if table.exists():
        print(table.read_text())
    tables = args.tables or results_root(args.results) / "tables"
    print(f"{len(written)} files written under {args.out or args.results / 'figures'} and {tables}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
