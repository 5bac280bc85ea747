"""Residual blocks, basic vs bottleneck, at matched parameter budgets: figure 10 (the 2-D ``resnet`` family, one
block on 8x8 digits) and, from the same code, figure 13 (the 1-D ``resnet1d`` family on MNIST-1D).

Test accuracy and the pair-count-free redundancy metrics of the block's narrow layers against the trainable
parameter count, both blocks on one log axis, so that a basic and a bottleneck block of about the same size
sit side by side. Every function takes the family as ``model`` (default ``"resnet"``; :data:`BLOCK_FAMILIES`
says what differs between families: kernel names, captions, file names) and is made from that family's
experiments with several seeds per (block, width); it raises ``NoData`` when there are none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.lines import Line2D

from analysis.plotting import COLUMN_WIDTH, PALETTE, SHARE_METRICS, STYLE, NoData, _err, _experiments, save
from analysis.stats import bootstrap_diff_ci, summary
from analysis.tables import final_epoch, to_markdown

MODEL = "resnet"


def _series(k_wide: str, k_one: str) -> list[tuple[str, str, tuple, str]]:
    """One series per narrow layer: (block, layer, colour, label). ``reduce`` is C -> w in both blocks (the wide
    kernel in the basic block, 1-wide in the bottleneck block); ``middle`` is the bottleneck block's w -> w."""
    return [
        ("basic", "reduce", PALETTE[0], f"basic: {k_wide} C→w"),
        ("bottleneck", "reduce", PALETTE[3], f"bottleneck: {k_one} C→w"),
        ("bottleneck", "middle", PALETTE[2], f"bottleneck: {k_wide} w→w"),
    ]


@dataclass(frozen=True)
class BlockFamily:
    """What the blocks figure and tables need to know of a residual family besides its rows."""

    model: str
    figure: str          # the figure's file name
    tables: str          # prefix of its tables: <tables>_blocks.{csv,md}, <tables>_matched.csv
    data: str            # what it is trained on, for captions
    inputs: str          # what one input is called, for captions
    kernels: tuple[str, str]  # the wide and the 1-wide kernel's names
    matched_md: bool     # also write <tables>_matched.md (the blocks markdown holds the matched table either way)

    @property
    def series(self) -> list[tuple[str, str, tuple, str]]:
        return _series(*self.kernels)


BLOCK_FAMILIES: dict[str, BlockFamily] = {
    "resnet": BlockFamily("resnet", "fig10_resnet_blocks_vs_params", "resnet", "digits", "images", ("3×3", "1×1"),
                          matched_md=False),
    "resnet1d": BlockFamily("resnet1d", "fig13_mnist1d_resnet_blocks", "mnist1d_resnet", "MNIST-1D", "signals",
                            ("k3", "k1"), matched_md=True),
}
SERIES = list(BLOCK_FAMILIES[MODEL].series)  # figure 10's series (kept for callers of the 2-D family)
PANELS = [
    ("model", "test_accuracy", "test accuracy\n(eval mode)"),
    ("narrow", "act_mean_nn_abs_corr", "nearest-channel |corr|\nof activations"),
    ("narrow", "act_eff_rank_norm", "activation effective\nrank / $w$"),
    ("narrow", "act_dead_frac", "dead channels\nshare of $w$"),
    ("narrow", "abl_eff_frac", "channels that matter / $w$\n(ablation effects)"),
    ("narrow", "anchor_prunable_frac", "prunable share at 80%\nagreement (joint ablation)"),
    ("narrow", "mean_nn_abs_cos", "nearest-channel $|\\cos|$\nof weights"),
    ("narrow", "eff_rank_norm", "weight effective\nrank / k"),
]
# Width labels sit beside the accuracy markers, basic to the left and bottleneck to the right (points), so that
# they cover neither the markers nor the vertical error bars, and blocks of similar size label apart.
LABEL_OFFSET = {"basic": (-4, 0, "right"), "bottleneck": (4, 0, "left")}


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis over [lo, hi]: the powers of ten, else 1-2-5, 1-2-3-5-7 or every mantissa times a
    power of ten, whichever first gives at least three ticks in range; thinned to at most four (a narrow panel)."""
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    ticks: list[float] = []
    for subs in ((1,), (1, 2, 5), (1, 2, 3, 5, 7), tuple(range(1, 10))):
        ticks = [m * 10.0 ** k for k in decades for m in subs if lo <= m * 10.0 ** k <= hi]
        if len(ticks) >= 3:
            break
    return ticks[::-(-len(ticks) // 4)] if ticks else ticks


def _params_axis(ax: plt.Axes) -> None:
    """Log x axis of parameter counts with a few ticks written plainly (500, 1k, 20k) and no minor-tick labels
    (matplotlib's own, 4×10² 6×10², collide in a narrow panel). Call once the axis' range is final."""
    lo, hi = ax.get_xlim()
    ax.xaxis.set_major_locator(ticker.FixedLocator(_log_ticks(lo, hi)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())


def block_family(model: str) -> BlockFamily:
    if model not in BLOCK_FAMILIES:
        raise ValueError(f"no residual-block family {model!r}; known: {', '.join(BLOCK_FAMILIES)}")
    return BLOCK_FAMILIES[model]


def resnet_experiments(df: pd.DataFrame, experiments: Sequence[str] | None = None, model: str = MODEL) -> list[str]:
    return _experiments(df, experiments, model=model)


def resnet_table(df: pd.DataFrame, experiments: Sequence[str], model: str = MODEL) -> pd.DataFrame:
    """``stats.summary`` of what the blocks figure shows, with each row's ``params`` (trainable, per replicate)."""
    metrics = [m for _, m, _ in PANELS] + ["params"]
    layers = {"model"} | {layer for _, layer, _, _ in block_family(model).series}
    rows = df[df["experiment"].isin(experiments) & (df["model"] == model) & df["layer"].isin(layers)
              & df["metric"].isin(metrics)]
    table = summary(rows)
    if table.empty:
        raise NoData(f"no trained {model} rows")
    params = table[table["metric"] == "params"].set_index(["experiment", "block", "channels", "width"])["end_mean"]
    key = pd.MultiIndex.from_frame(table[["experiment", "block", "channels", "width"]])
    return table.assign(params=params.reindex(key).to_numpy())


def blocks_vs_params(df: pd.DataFrame, out_dir: Path, model: str = MODEL, *,
                     experiments: Sequence[str] | None = None) -> list[Path]:
    """Basic vs bottleneck residual blocks of family ``model``: accuracy and redundancy of the narrow layers
    against parameters (the body of figures 10 and 13).

    x: trainable parameters per replicate (log scale; each point is one width w, labelled beside its marker in
    the accuracy panel). Accuracy: both blocks, final mean ± 95% CI over seeds. Redundancy panels: the block's
    narrow layers (``reduce`` of both blocks, the bottleneck's ``middle``), activation metrics on the test
    inputs in eval mode (channels are units, positions x inputs samples) and weight metrics, final (solid) and
    the same seeds at initialisation (dotted, open markers). One row per experiment.
    """
    fam = block_family(model)
    exps = resnet_experiments(df, experiments, model=model)
    table = resnet_table(df, exps, model=model)
    n_cols = len(PANELS)
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(len(exps), n_cols, figsize=(COLUMN_WIDTH * 2.6, 2.0 * len(exps) + 0.4),
                                 squeeze=False, sharex="row")
        for i, exp in enumerate(exps):
            rows_e = table[table["experiment"] == exp]
            for j, (where, metric, label) in enumerate(PANELS):
                ax = axes[i, j]
                for block, layer, color, _ in fam.series:
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
                        dx, dy, ha = LABEL_OFFSET.get(block, (4, 0, "left"))
                        for xi, yi, w in zip(x, end[0], sel["width"], strict=True):
                            ax.annotate(f"{w}", (xi, yi), textcoords="offset points", xytext=(dx, dy), ha=ha,
                                        va="center", fontsize=5.5, color=color)
                ax.set_xscale("log")
                ax.margins(x=0.12)  # room for the width labels beside the outermost markers
                if i == 0:
                    ax.set_title(label, fontsize=7)
                if metric in SHARE_METRICS and (rows_e["metric"] == metric).any():
                    ax.set_ylim(-0.02, max(0.2, float(np.nanmax(rows_e.loc[rows_e["metric"] == metric,
                                                                          ["end_hi", "init_hi"]].to_numpy())) * 1.1))
            _params_axis(axes[i, 0])  # the row shares its x axis: its range is final once every panel is drawn
            n = rows_e["n_seeds"].max()
            channels = ", ".join(str(c) for c in sorted(rows_e["channels"].unique()))
            axes[i, 0].set_ylabel(f"{exp}\nC = {channels}, {n} seeds", fontweight="bold")
        fig.supxlabel("trainable parameters per model (log scale; accuracy panel: labels are the width w)",
                      fontsize=8)
        handles = [Line2D([], [], color=c, marker="o", ms=3, lw=1, label=lab) for _, _, c, lab in fam.series]
        handles += [Line2D([], [], color="0.3", marker="o", ms=3, lw=1, label="trained, mean ± 95% CI"),
                    Line2D([], [], color="0.3", ls=":", marker="o", ms=3, mfc="white", lw=0.8,
                           label="same seeds at init")]
        fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False, bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout()
        return save(fig, out_dir, fam.figure)


def fig10_resnet_blocks_vs_params(df: pd.DataFrame, out_dir: Path, *,
                                  experiments: Sequence[str] | None = None) -> list[Path]:
    """Figure 10: :func:`blocks_vs_params` of the 2-D ``resnet`` family (one block on 8x8 digits)."""
    return blocks_vs_params(df, out_dir, MODEL, experiments=experiments)


# The blocks' table: per (experiment, block, width) its size, accuracy and the narrow layers' redundancy.
TABLE_METRICS = [("model", "test_accuracy"), ("model", "train_accuracy"), ("reduce", "act_mean_nn_abs_corr"),
                 ("reduce", "act_eff_rank_norm"), ("middle", "act_mean_nn_abs_corr"), ("middle", "act_eff_rank_norm")]


def _column_name(layer: str, metric: str) -> str:
    return metric if layer == "model" else f"{layer} {metric}"


def blocks_table(df: pd.DataFrame, experiments: Sequence[str] | None = None, model: str = MODEL) -> pd.DataFrame:
    """One row per (experiment, block, width) of family ``model``, sorted by parameters: final mean [95% CI] of
    each of :data:`TABLE_METRICS` over seeds (``reduce`` of both blocks, ``middle`` of the bottleneck block), so
    that blocks of similar size sit next to each other."""
    table = resnet_table(df, resnet_experiments(df, experiments, model=model), model=model)
    names = pd.Series([_column_name(lay, m) for lay, m in zip(table["layer"], table["metric"], strict=True)],
                      index=table.index)
    order = [_column_name(lay, m) for lay, m in TABLE_METRICS]
    table = table[names.isin(order)].assign(name=names)
    cell = [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in
            zip(table["end_mean"], table["end_lo"], table["end_hi"], strict=True)]
    out = table.assign(cell=cell).pivot_table(index=["experiment", "params", "block", "width", "n_seeds"],
                                              columns="name", values="cell", aggfunc="first")
    out = out.reindex(columns=[c for c in order if c in out.columns]).fillna("")
    out = out.reset_index()
    out["params"] = out["params"].astype(int)
    return out.sort_values(["experiment", "params"], kind="stable").reset_index(drop=True)


def write_blocks_table(df: pd.DataFrame, out_dir: Path, model: str = MODEL) -> list[Path]:
    """``<prefix>_blocks.{csv,md}`` and ``<prefix>_matched.csv`` (and ``.md`` where the family asks for it) in
    ``out_dir``, ``<prefix>`` being the family's :attr:`BlockFamily.tables` (``resnet`` for the 2-D family,
    ``mnist1d_resnet`` for ``resnet1d``); nothing when there is no sweep of the family: the blocks table, then
    the matched-budget comparison."""
    fam = block_family(model)
    try:
        table = blocks_table(df, model=model)
    except NoData:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, md, matched_csv, matched_md = (out_dir / f"{fam.tables}_{name}" for name in
                                        ("blocks.csv", "blocks.md", "matched.csv", "matched.md"))
    table.to_csv(csv, index=False)
    matched = matched_budgets(df, model=model)
    matched.to_csv(matched_csv, index=False)
    md.write_text(f"ResNet blocks on {fam.data}, sorted by trainable parameters: final mean [95% bootstrap CI] over "
                  f"seeds. Accuracies in eval mode on the training {fam.inputs} and the held-out test {fam.inputs}; "
                  f"activation metrics of the block's narrow layers on the test {fam.inputs} (reduce: C→w in both "
                  f"blocks; middle: the bottleneck block's {fam.kernels[0]} w→w).\n\n"
                  + to_markdown(table.set_index("experiment")) + "\n" + MATCHED_CAPTION + "\n\n"
                  + matched_markdown(matched))
    written = [csv, md, matched_csv]
    if fam.matched_md:
        matched_md.write_text(f"ResNet blocks on {fam.data}. " + MATCHED_CAPTION + "\n\n" + matched_markdown(matched))
        written.append(matched_md)
    return written


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
                    max_ratio: float = MAX_BUDGET_RATIO, model: str = MODEL) -> pd.DataFrame:
    """Pairs (bottleneck width, nearest basic width in parameters) per experiment of family ``model``, and for
    each of :data:`MATCHED_METRICS` the two blocks' final means and their difference with a 95% bootstrap CI."""
    exps = resnet_experiments(df, experiments, model=model)
    runs = df[df["experiment"].isin(exps) & (df["model"] == model)]
    last = final_epoch(runs)
    first = runs[(runs["kind"] == "trained") & (runs["epoch"] == 0)]
    params = last[last["metric"] == "params"].groupby(["experiment", "block", "width"])["value"].first()
    # Each (stage, experiment, layer, metric, block, width): its seeds' values, grouped once.
    key = ["experiment", "layer", "metric", "block", "width"]
    wanted = pd.MultiIndex.from_tuples(MATCHED_METRICS, names=["layer", "metric"])
    values = {stage: {k: g.to_numpy(dtype=float) for k, g in
                      frame[pd.MultiIndex.from_frame(frame[["layer", "metric"]]).isin(wanted)].groupby(key)["value"]}
              for stage, frame in (("init_", first), ("", last))}
    records = []
    for exp in exps:
        basic = params.get((exp, "basic"))
        bottleneck = params.get((exp, "bottleneck"))
        if basic is None or bottleneck is None:
            continue
        # For every bottleneck width at once: the basic block nearest in parameters (log ratio).
        ratios = np.exp(np.abs(np.log(basic.to_numpy()[None, :] / bottleneck.to_numpy()[:, None])))
        nearest = ratios.argmin(axis=1)
        for (w_b, p_b), k, r in zip(bottleneck.items(), nearest, ratios[np.arange(len(nearest)), nearest],
                                    strict=True):
            if r > max_ratio:
                continue
            w_a, p_a = int(basic.index[k]), float(basic.iloc[k])
            for layer, metric in MATCHED_METRICS:
                rec = {"experiment": exp, "basic_width": w_a, "basic_params": int(p_a), "bottleneck_width": int(w_b),
                       "bottleneck_params": int(p_b), "metric": _column_name(layer, metric)}
                for pre, by_key in values.items():
                    a = by_key.get((exp, layer, metric, "basic", w_a))
                    b = by_key.get((exp, layer, metric, "bottleneck", int(w_b)))
                    if a is None or b is None:
                        continue
                    lo, hi = bootstrap_diff_ci(a, b)[:, 0]
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
