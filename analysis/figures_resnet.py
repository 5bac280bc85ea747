"""Figure 10: the ResNet family (one residual block on 8x8 digits), basic vs bottleneck blocks at matched budgets.

Test accuracy and the pair-count-free redundancy metrics of the block's narrow layers against the trainable
parameter count, both blocks on one log axis, so that a basic and a bottleneck block of about the same size
sit side by side. Made from ``model == "resnet"`` experiments with several seeds per (block, width); raises
``NoData`` when there are none.
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

from analysis.plotting import COLUMN_WIDTH, PALETTE, STYLE, NoData, _err, _experiments, save
from analysis.stats import bootstrap_diff_ci, summary
from analysis.tables import final_epoch, to_markdown

MODEL = "resnet"
# One series per narrow layer: (block, layer, colour, label). ``reduce`` is C -> w in both blocks (3x3 in the
# basic block, 1x1 in the bottleneck block); ``middle`` is the bottleneck block's 3x3 w -> w.
SERIES = [
    ("basic", "reduce", PALETTE[0], "basic: 3×3 C→w"),
    ("bottleneck", "reduce", PALETTE[3], "bottleneck: 1×1 C→w"),
    ("bottleneck", "middle", PALETTE[2], "bottleneck: 3×3 w→w"),
]
PANELS = [
    ("model", "test_accuracy", "test accuracy\n(eval mode)"),
    ("narrow", "act_mean_nn_abs_corr", "nearest-channel |corr|\nof activations"),
    ("narrow", "act_eff_rank_norm", "activation effective\nrank / $w$"),
    ("narrow", "act_dead_frac", "dead channels\nshare of $w$"),
    ("narrow", "mean_nn_abs_cos", "nearest-channel $|\\cos|$\nof weights"),
    ("narrow", "eff_rank_norm", "weight effective\nrank / k"),
]


def resnet_experiments(df: pd.DataFrame, experiments: Sequence[str] | None = None) -> list[str]:
    return _experiments(df, experiments, model=MODEL)


def resnet_table(df: pd.DataFrame, experiments: Sequence[str]) -> pd.DataFrame:
    """``stats.summary`` of what figure 10 shows, with each row's ``params`` (trainable, per replicate)."""
    metrics = [m for _, m, _ in PANELS] + ["params"]
    layers = {"model"} | {layer for _, layer, _, _ in SERIES}
    rows = df[df["experiment"].isin(experiments) & df["layer"].isin(layers) & df["metric"].isin(metrics)]
    table = summary(rows)
    if table.empty:
        raise NoData("no trained resnet rows")
    params = table[table["metric"] == "params"].set_index(["experiment", "block", "channels", "width"])["end_mean"]
    key = pd.MultiIndex.from_frame(table[["experiment", "block", "channels", "width"]])
    return table.assign(params=params.reindex(key).to_numpy())


def fig10_resnet_blocks_vs_params(df: pd.DataFrame, out_dir: Path, *,
                                  experiments: Sequence[str] | None = None) -> list[Path]:
    """Basic vs bottleneck residual blocks: accuracy and redundancy of the narrow layers against parameters.

    x: trainable parameters per replicate (log scale; each point is one width w, labelled in the accuracy
    panel). Accuracy: both blocks, final mean ± 95% CI over seeds. Redundancy panels: the block's narrow layers
    (``reduce`` of both blocks, the bottleneck's 3x3 ``middle``), activation metrics on the test images in eval
    mode (channels are units, positions x images samples) and weight metrics, final (solid) and the same seeds
    at initialisation (dotted, open markers). One row per experiment.
    """
    exps = resnet_experiments(df, experiments)
    table = resnet_table(df, exps)
    n_cols = len(PANELS)
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(len(exps), n_cols, figsize=(COLUMN_WIDTH * 2.6, 2.0 * len(exps) + 0.4),
                                 squeeze=False)
        for i, exp in enumerate(exps):
            rows_e = table[table["experiment"] == exp]
            for j, (where, metric, label) in enumerate(PANELS):
                ax = axes[i, j]
                for block, layer, color, _ in SERIES:
                    if where == "model" and layer != "reduce":
                        continue
                    sel = rows_e[(rows_e["block"] == block) & (rows_e["metric"] == metric)
                                 & (rows_e["layer"] == ("model" if where == "model" else layer))]
                    sel = sel.sort_values("params")
                    if sel.empty:
                        continue
                    x = sel["params"].to_numpy(dtype=float)
                    end = [sel[c].to_numpy(dtype=float) for c in ("end_mean", "end_lo", "end_hi")]
                    init = [sel[c].to_numpy(dtype=float) for c in ("init_mean", "init_lo", "init_hi")]
                    if where != "model":
                        ax.errorbar(x, init[0], _err(*init), color=color, ls=":", marker="o", ms=3, mfc="white",
                                    lw=0.8, capsize=1.5)
                    ax.errorbar(x, end[0], _err(*end), color=color, marker="o", ms=3, lw=1, capsize=1.5)
                    if where == "model":
                        for xi, yi, w in zip(x, end[0], sel["width"], strict=True):
                            ax.annotate(f"{w}", (xi, yi), textcoords="offset points", xytext=(0, -9 if
                                        block == "basic" else 4), ha="center", fontsize=5.5, color=color)
                ax.set_xscale("log")
                if i == 0:
                    ax.set_title(label, fontsize=7)
                if metric == "act_dead_frac":
                    ax.set_ylim(-0.02, max(0.2, float(np.nanmax(rows_e.loc[rows_e["metric"] == metric,
                                                                          ["end_hi", "init_hi"]].to_numpy())) * 1.1))
            n = rows_e["n_seeds"].max()
            channels = ", ".join(str(c) for c in sorted(rows_e["channels"].unique()))
            axes[i, 0].set_ylabel(f"{exp}\nC = {channels}, {n} seeds", fontweight="bold")
        fig.supxlabel("trainable parameters per model (log scale; accuracy panel: labels are the width w)",
                      fontsize=8)
        handles = [Line2D([], [], color=c, marker="o", ms=3, lw=1, label=lab) for _, _, c, lab in SERIES]
        handles += [Line2D([], [], color="0.3", marker="o", ms=3, lw=1, label="trained, mean ± 95% CI"),
                    Line2D([], [], color="0.3", ls=":", marker="o", ms=3, mfc="white", lw=0.8,
                           label="same seeds at init")]
        fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False, bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout()
        return save(fig, out_dir, "fig10_resnet_blocks_vs_params")


# The blocks' table: per (experiment, block, width) its size, accuracy and the narrow layers' redundancy.
TABLE_METRICS = [("model", "test_accuracy"), ("model", "train_accuracy"), ("reduce", "act_mean_nn_abs_corr"),
                 ("reduce", "act_eff_rank_norm"), ("middle", "act_mean_nn_abs_corr"), ("middle", "act_eff_rank_norm")]


def blocks_table(df: pd.DataFrame, experiments: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (experiment, block, width), sorted by parameters: final mean [95% CI] of each of
    :data:`TABLE_METRICS` over seeds (``reduce`` of both blocks, ``middle`` of the bottleneck block), so that
    blocks of similar size sit next to each other."""
    table = resnet_table(df, resnet_experiments(df, experiments))
    wanted = {(layer if layer != "model" else "model", m) for layer, m in TABLE_METRICS}
    table = table[[(lay, m) in wanted for lay, m in zip(table["layer"], table["metric"], strict=True)]]
    cell = [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in
            zip(table["end_mean"], table["end_lo"], table["end_hi"], strict=True)]
    table = table.assign(cell=cell, name=[m if lay == "model" else f"{lay} {m}" for lay, m in
                                          zip(table["layer"], table["metric"], strict=True)])
    out = table.pivot_table(index=["experiment", "params", "block", "width", "n_seeds"], columns="name",
                            values="cell", aggfunc="first")
    order = [m if lay == "model" else f"{lay} {m}" for lay, m in TABLE_METRICS]
    out = out.reindex(columns=[c for c in order if c in out.columns]).fillna("")
    out = out.reset_index()
    out["params"] = out["params"].astype(int)
    return out.sort_values(["experiment", "params"], kind="stable").reset_index(drop=True)


def write_blocks_table(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``resnet_blocks.{csv,md}`` and ``resnet_matched.csv`` in ``out_dir`` (nothing when there is no ResNet
    sweep): the blocks table, then the matched-budget comparison."""
    try:
        table = blocks_table(df)
    except NoData:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, md, matched_csv = (out_dir / f"resnet_{name}" for name in ("blocks.csv", "blocks.md", "matched.csv"))
    table.to_csv(csv, index=False)
    matched = matched_budgets(df)
    matched.to_csv(matched_csv, index=False)
    md.write_text("ResNet blocks on digits, sorted by trainable parameters: final mean [95% bootstrap CI] over "
                  "seeds. Accuracies in eval mode on the training images and the held-out test images; "
                  "activation metrics of the block's narrow layers on the test images (reduce: C→w in both "
                  "blocks; middle: the bottleneck block's 3×3 w→w).\n\n" + to_markdown(table.set_index("experiment"))
                  + "\n" + MATCHED_CAPTION + "\n\n" + matched_markdown(matched))
    return [csv, md, matched_csv]


# Matched budgets: a bottleneck block and the basic block nearest to it in parameters, within this ratio.
MAX_BUDGET_RATIO = 1.35
MATCHED_METRICS = [("model", "test_accuracy"), ("reduce", "act_mean_nn_abs_corr"), ("reduce", "act_eff_rank_norm"),
                   ("reduce", "mean_nn_abs_cos")]
MATCHED_CAPTION = (
    f"Matched budgets: each bottleneck block next to the basic block nearest to it in trainable parameters "
    f"(kept when the larger is at most {MAX_BUDGET_RATIO}× the smaller). basic, bottleneck: final means over seeds; "
    "diff = bottleneck − basic, at initialisation and after training, with a 95% bootstrap CI (the two groups "
    "resampled independently).")


def matched_budgets(df: pd.DataFrame, experiments: Sequence[str] | None = None,
                    max_ratio: float = MAX_BUDGET_RATIO) -> pd.DataFrame:
    """Pairs (bottleneck width, nearest basic width in parameters) per experiment, and for each of
    :data:`MATCHED_METRICS` the two blocks' final means and their difference with a 95% bootstrap CI."""
    exps = resnet_experiments(df, experiments)
    runs = df[df["experiment"].isin(exps) & (df["model"] == MODEL)]
    last = final_epoch(runs)
    first = runs[(runs["kind"] == "trained") & (runs["epoch"] == 0)]
    params = last[last["metric"] == "params"].groupby(["experiment", "block", "width"])["value"].first()
    records = []
    for exp in exps:
        basic = params.get((exp, "basic"))
        bottleneck = params.get((exp, "bottleneck"))
        if basic is None or bottleneck is None:
            continue
        for w_b, p_b in bottleneck.items():
            ratios = np.exp(np.abs(np.log(basic.to_numpy() / p_b)))
            nearest = int(np.argmin(ratios))
            if ratios[nearest] > max_ratio:
                continue
            w_a, p_a = int(basic.index[nearest]), float(basic.iloc[nearest])
            for layer, metric in MATCHED_METRICS:
                rec = {"experiment": exp, "basic_width": w_a, "basic_params": int(p_a), "bottleneck_width": int(w_b),
                       "bottleneck_params": int(p_b), "metric": metric if layer == "model" else f"{layer} {metric}"}
                for stage, frame in (("init", first), ("", last)):
                    rows = frame[(frame["experiment"] == exp) & (frame["layer"] == layer) & (frame["metric"] == metric)]
                    a = rows[(rows["block"] == "basic") & (rows["width"] == w_a)]["value"].to_numpy(dtype=float)
                    b = rows[(rows["block"] == "bottleneck") & (rows["width"] == w_b)]["value"].to_numpy(dtype=float)
                    if not (a.size and b.size):
                        continue
                    lo, hi = bootstrap_diff_ci(a, b)[:, 0]
                    pre = f"{stage}_" if stage else ""
                    rec.update({f"{pre}basic": a.mean(), f"{pre}bottleneck": b.mean(),
                                f"{pre}diff": b.mean() - a.mean(), f"{pre}diff_lo": lo, f"{pre}diff_hi": hi})
                if "diff" in rec:
                    records.append(rec)
    return pd.DataFrame.from_records(records)


def matched_markdown(matched: pd.DataFrame) -> str:
    if matched.empty:
        return "(no bottleneck block has a basic block within the budget ratio)\n"
    def ci(pre: str) -> list[str]:
        return [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in
                zip(matched[f"{pre}diff"], matched[f"{pre}diff_lo"], matched[f"{pre}diff_hi"], strict=True)]

    shown = matched.assign(**{"diff at init [95% CI]": ci("init_"), "diff trained [95% CI]": ci("")})
    shown = shown[["experiment", "basic_width", "basic_params", "bottleneck_width", "bottleneck_params", "metric",
                   "basic", "bottleneck", "diff at init [95% CI]", "diff trained [95% CI]"]]
    return to_markdown(shown.set_index("experiment"), floatfmt=".3f")
