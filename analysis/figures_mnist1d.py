"""Figures 11–13 and the MNIST-1D tables: the families with a real bottleneck.

- Figure 11: redundancy of the studied ``bottleneck`` layer against width for every MNIST-1D family sweep (the
  MLP classifier 40→100→w→100→10, the reference 1-D CNN with its middle convolution at w channels, and the MLP
  autoencoders D→100→w→100→D on MNIST-1D and digits): trained vs the same seeds at init vs the random null,
  with the data's dimension D and the neighbouring width (h, or the CNN's own C) marked.
- Figure 12: the task at every width: test accuracy of the classifier sweeps beside MNIST-1D's published
  baselines and this repository's own baseline runs (``mnist1d_baselines``), and the autoencoders'
  reconstruction error.
- Figure 13: the 1-D residual blocks, basic vs bottleneck at matched budgets (figure 10's code, ``figures_resnet``,
  with ``model="resnet1d"``).
- Tables: ``mnist1d_baselines.{csv,md}`` (:func:`baselines_table`) and ``mnist1d_resnet_{blocks,matched}``.

Each figure raises ``NoData`` when the results hold none of its families. The metric lists below are plain
constants: a new metric is one line in one of them, and a metric that the results do not hold (yet) is left out
of the figure rather than failing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import yaml
from matplotlib import ticker
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.figures_resnet import blocks_vs_params, write_blocks_table
from analysis.load import load_metadata
from analysis.plotting import (
    BOTTLENECK,
    COLUMN_WIDTH,
    FUNCTIONAL_COLUMNS,
    PALETTE,
    SHARE_METRICS,
    STYLE,
    SWEEP_PRESETS,
    UNIT_NAMES,
    NoData,
    _level_legend_handles,
    _level_panel,
    _summary_of,
    _width_axis,
    save,
    sweep_experiments,
)
from analysis.stats import bootstrap_mean_ci
from analysis.tables import final_epoch, to_markdown
from experiments.data import features

# ---------------------------------------------------------------------------------------------------------
# What the figures show

# The bottleneck families of figures 11 and 12, in panel order (the residual blocks are figure 13's).
CLASSIFIERS = ("mlp_classifier", "cnn1d")
AUTOENCODERS = ("autoencoder",)
FAMILIES = CLASSIFIERS + AUTOENCODERS
FAMILY_NAMES = {"mlp_classifier": "MLP classifier", "cnn1d": "1-D CNN", "autoencoder": "MLP autoencoder"}
DATA_NAMES = {"mnist1d": "MNIST-1D", "digits": "digits"}

# Figure 11's metrics, one row of panels per group: (metric, panel title). One line adds a metric; a metric
# absent from the results gets no panel, and a group with none of its metrics gets no row.
WEIGHT_METRICS = [
    ("mean_nn_abs_cos", "nearest-unit $|\\cos|$ of weights\nmean over units"),
    ("eff_rank_norm", "weight effective rank / k\nk = min($w$, fan-in)"),
    ("min_pair_l1", "closest pair (source metric)\nmin$_{i<j}$ mean $|W_i - W_j|$"),
    ("mean_nn_l1", "nearest-unit distance\nmean $|W_i - W_{nn(i)}|$"),
]
ACTIVATION_METRICS = [
    ("act_mean_nn_abs_corr", "nearest-unit |corr|\nof activations"),
    ("act_eff_rank_norm", "activation effective\nrank / $w$"),
    ("act_pc95_frac", "PCs for 95% of\nactivation variance / $w$"),
    ("act_dead_frac", "dead units\nshare of $w$"),
]
# Functional redundancy (Casper, Boix et al. 2021): the shared panels.
FUNCTIONAL_METRICS = FUNCTIONAL_COLUMNS
METRIC_GROUPS = [("weights", WEIGHT_METRICS), ("activations", ACTIVATION_METRICS),
                 ("functional", FUNCTIONAL_METRICS)]
# Shares of w: a 0-based axis that does not blow a constant 0 up to the whole panel.
FRACTION_METRICS = SHARE_METRICS

# Widths marked on the width axes, per family: the data's dimension D, the bottleneck's neighbouring hidden
# width h (the ``channels`` column: model.hidden) and, for the CNN, its own middle width C (model.channels;
# the reference CNN has C = 25). The CNN's channels are not comparable with the signal's 40 samples: no D.
REFERENCES = {"mlp_classifier": ("D", "h"), "autoencoder": ("D", "h"), "cnn1d": ("C",)}
REFERENCE_STYLE = {"D": {"color": "0.15", "ls": "-.", "lw": 0.9},
                   "h": {"color": PALETTE[7], "ls": (0, (1, 1.2)), "lw": 1.2},
                   "C": {"color": PALETTE[4], "ls": (0, (1, 1.2)), "lw": 1.2}}
REFERENCE_NAMES = {"D": "data dimension $D$", "h": "hidden width $h$", "C": "the CNN's own width $C$"}

# ---------------------------------------------------------------------------------------------------------
# MNIST-1D's published baselines

BASELINES_EXPERIMENT = "mnist1d_baselines"
# Test accuracy (%) of the reference models on MNIST-1D, from the table "Comparing MNIST and MNIST-1D" in the
# README of github.com/greydanus/mnist1d (Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D",
# ICML 2024). Keyed by this repository's implementation of each model (conf/model/<name>.yaml).
PUBLISHED_BASELINES = {"logistic": 32.0, "mlp_reference": 68.0, "cnn1d": 94.0}
PUBLISHED_SOURCE = ("greydanus/mnist1d README, table \"Comparing MNIST and MNIST-1D\" "
                    "(Greydanus & Kobak, ICML 2024)")
BASELINE_NAMES = {"logistic": "logistic regression", "mlp_reference": "MLP", "cnn1d": "CNN"}
BASELINE_COLORS = {"logistic": PALETTE[5], "mlp_reference": PALETTE[2], "cnn1d": PALETTE[4]}
BASELINE_COLUMNS = ["model", "baseline", "width", "n_seeds", "epochs", "steps", "published_pct",
                    "test_accuracy_mean_pct", "test_accuracy_lo_pct", "test_accuracy_hi_pct", "diff_pct"]


def data_dim(data: str) -> int:
    """D, the features of one example of data set ``data`` (``experiments.data.features``: 40 or 64)."""
    return features(SimpleNamespace(name=data))


# ---------------------------------------------------------------------------------------------------------
# Which sweeps


def mnist1d_sweeps(df: pd.DataFrame, families: Sequence[str] = FAMILIES,
                   experiments: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
    """(experiment, model, data) of every width sweep of ``families``: a random null, several seeds per width
    (``sweep_experiments``) and at least two widths (which leaves out ``mnist1d_baselines``, whose CNN runs at
    its own width only). Ordered by family, then experiment, then the data's dimension; ``experiments``, if
    given, keeps only those."""
    chosen = []
    for model in families:
        exps = sweep_experiments(df, model=model)
        if experiments is not None:
            exps = [e for e in exps if e in set(experiments)]
        if not exps:
            continue
        trained = df[(df["kind"] == "trained") & (df["model"] == model) & df["experiment"].isin(exps)]
        n_widths = trained.groupby(["experiment", "data"])["width"].nunique()
        keep = [(e, model, d) for (e, d), n in n_widths.items() if n >= 2]
        chosen += sorted(keep, key=lambda s: (exps.index(s[0]), data_dim(s[2]), s[2]))
    return chosen


def _no_sweep(families: Sequence[str]) -> NoData:
    return NoData(f"no {'/'.join(families)} sweep with a random null, several seeds and widths (run e.g. "
                  f"python run.py -m experiment={SWEEP_PRESETS[families[0]]})")


def _sweep_rows(table: pd.DataFrame, sweep: tuple[str, str, str]) -> pd.DataFrame:
    experiment, model, data = sweep
    return table[(table["experiment"] == experiment) & (table["model"] == model) & (table["data"] == data)]


def _architecture(model: str, data: str, channels: int) -> str:
    """The family's layer widths, e.g. "40→100→w→100→10"."""
    d = data_dim(data)
    return {"mlp_classifier": f"{d}→{channels}→w→{channels}→10", "autoencoder": f"{d}→{channels}→w→{channels}→{d}",
            "cnn1d": f"conv 1→{channels}→w→{channels}, linear→10"}.get(model, model)


def _sweep_label(table: pd.DataFrame, sweep: tuple[str, str, str]) -> str:
    """One line naming a sweep: experiment, family with its widths, data with D, seeds per width."""
    experiment, model, data = sweep
    rows = _sweep_rows(table, sweep)
    n = int(rows["n_seeds"].max())
    arch = _architecture(model, data, int(rows["channels"].iloc[0]))
    return (f"{experiment}: {FAMILY_NAMES.get(model, model)} {arch}"
            f" on {DATA_NAMES.get(data, data)} (D = {data_dim(data)}), {n} seed{'s' if n != 1 else ''}/width")


def _set_width_limits(ax: plt.Axes, widths: Sequence[int], marks: list[tuple[str, int]]) -> None:
    """The same x range in every panel of a sweep (pair metrics have no point at w = 1): every swept and marked
    width, with a margin on the log2 axis."""
    xs = [*widths, *(v for _, v in marks)]
    ax.set_xlim(min(xs) / 1.4, max(xs) * 1.4)


def _references(sweep: tuple[str, str, str], channels: int) -> list[tuple[str, int]]:
    """The marked widths of one sweep: [(kind, width)], kind one of :data:`REFERENCES`' letters."""
    _, model, data = sweep
    value = {"D": data_dim(data), "h": channels, "C": channels}
    return [(kind, value[kind]) for kind in REFERENCES.get(model, ())]


def _mark(ax: plt.Axes, marks: list[tuple[str, int]], seen: dict[str, dict[int, set[str]]], data: str) -> None:
    """Vertical lines at the marked widths; ``seen`` collects them for the legend (kind -> width -> data sets)."""
    for kind, value in marks:
        ax.axvline(value, zorder=0.8, **REFERENCE_STYLE[kind])
        seen.setdefault(kind, {}).setdefault(value, set()).add(data)


def _reference_handles(seen: dict[str, dict[int, set[str]]]) -> list[Line2D]:
    """One legend entry per kind of marked width, with its values: "data dimension D = 40 (MNIST-1D), 64 (digits)"."""
    handles = []
    for kind in REFERENCE_STYLE:
        if kind not in seen:
            continue
        values = seen[kind]
        if kind == "D" and len(values) > 1:
            text = ", ".join(f"{v} ({'/'.join(DATA_NAMES.get(d, d) for d in sorted(ds))})"
                             for v, ds in sorted(values.items()))
        else:
            text = ", ".join(str(v) for v in sorted(values))
        handles.append(Line2D([], [], **REFERENCE_STYLE[kind], label=f"{REFERENCE_NAMES[kind]} = {text}"))
    return handles


def _fraction_ylim(ax: plt.Axes, rows: pd.DataFrame) -> None:
    top = rows[["end_hi", "init_hi", "null_hi", "end_mean", "init_mean"]].max().max()
    ax.set_ylim(-0.02, max(0.2, 1.1 * float(np.nan_to_num(top))))


# ---------------------------------------------------------------------------------------------------------
# Figure 11


def fig11_mnist1d_redundancy_vs_width(df: pd.DataFrame, out_dir: Path, *,
                                      experiments: Sequence[str] | None = None) -> list[Path]:
    """Bottleneck redundancy vs width in the MNIST-1D families and the autoencoders.

    One block of rows per sweep (experiment × data set): a row of weight metrics (:data:`WEIGHT_METRICS`: the
    nearest-unit |cos|, the effective rank / min(w, fan-in), the source's closest pair and its pair-count-free
    companion, each unit's distance to its nearest other unit), a row of activation
    metrics on the held-out evaluation batch (:data:`ACTIVATION_METRICS`) and, once the runs log them, a row of
    functional metrics (:data:`FUNCTIONAL_METRICS`: prunable and redundant shares, held-out R² from the
    other units, the share of the ablation loss its top 10% of units carry). Each panel: trained (final)
    mean ± 95% CI over seeds, the same seeds at init, the random null's 2.5–97.5% band and mean
    (``stats.summary``), on a log2 width axis
    with a tick at every swept width; vertical lines mark the data's dimension D and the hidden width h = 100
    of the MLPs (the CNN: its own C = 25). A CNN's units are channels, and its weight rows are kernels over
    C × 3 inputs; its activation samples are positions × signals.
    """
    sweeps = mnist1d_sweeps(df, FAMILIES, experiments)
    if not sweeps:
        raise _no_sweep(FAMILIES)
    metrics = [m for _, group in METRIC_GROUPS for m, _ in group]
    table = _summary_of(df, sorted({s[0] for s in sweeps}), BOTTLENECK, metrics)
    # One block of rows per sweep: [(group, [(metric, title) the results hold for that sweep])], empty groups left out.
    blocks = []
    for sweep in sweeps:
        present = set(_sweep_rows(table, sweep)["metric"])
        groups = [(group, [(m, t) for m, t in columns if m in present]) for group, columns in METRIC_GROUPS]
        groups = [(group, shown) for group, shown in groups if shown]
        if groups:
            blocks.append((sweep, groups))
    if not blocks:
        raise NoData("no bottleneck metric of figure 11 in the MNIST-1D sweeps")
    n_rows = sum(len(groups) for _, groups in blocks)
    n_cols = max(len(shown) for _, groups in blocks for _, shown in groups)
    seen: dict[str, dict[int, set[str]]] = {}
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        height = 1.55 * n_rows + 0.45 * len(blocks) + 0.6
        fig = plt.figure(figsize=(COLUMN_WIDTH * 2, height), layout="constrained")
        subfigs = np.atleast_1d(fig.subfigures(len(blocks), 1, height_ratios=[len(g) + 0.45 for _, g in blocks],
                                               hspace=0.02))
        for subfig, (sweep, groups) in zip(subfigs, blocks, strict=True):
            rows_s = _sweep_rows(table, sweep)
            unit = UNIT_NAMES.get(sweep[1], "units")
            widths = sorted(rows_s["width"].unique().tolist())
            marks = _references(sweep, int(rows_s["channels"].iloc[0]))
            axes = subfig.subplots(len(groups), n_cols, squeeze=False)
            for r, (group, shown) in enumerate(groups):
                for j in range(n_cols):
                    ax = axes[r, j]
                    if j >= len(shown):
                        ax.set_axis_off()
                        continue
                    metric, title = shown[j]
                    rows = rows_s[rows_s["metric"] == metric]
                    _level_panel(ax, rows, unit=unit)
                    _mark(ax, marks, seen, sweep[2])
                    _width_axis(ax, widths, label=False, unit=unit)
                    _set_width_limits(ax, widths, marks)
                    if metric in FRACTION_METRICS:
                        _fraction_ylim(ax, rows)
                    ax.set_title(title, fontsize=7)
                axes[r, 0].set_ylabel(group, fontweight="bold")
            subfig.suptitle(_sweep_label(table, sweep), fontsize=8, fontweight="bold")
            subfig.supxlabel(f"bottleneck width $w$ ({unit})", fontsize=8)
        handles = _level_legend_handles() + _reference_handles(seen)
        fig.legend(handles=handles, loc="outside upper center", ncol=3, frameon=False)
        return save(fig, out_dir, "fig11_mnist1d_redundancy_vs_width")


# ---------------------------------------------------------------------------------------------------------
# Baselines table


def _steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one epoch (``experiments.train.minibatches``: the last batch may be smaller; batch size
    0 or ≥ the data is full-batch, one step)."""
    return -(-n_train // batch_size) if 0 < batch_size < n_train else 1


def _run_steps(df: pd.DataFrame, run_ids: Sequence[str]) -> dict[str, int]:
    """Steps per epoch of each run, from its file's config (the results root in ``df.attrs``); {} without it."""
    root = df.attrs.get("results_root")
    if not root or not Path(root).exists():
        return {}
    meta = load_metadata(root)
    meta = meta[meta["run_id"].isin(set(run_ids))]
    steps = {}
    for run_id, config in zip(meta["run_id"], meta["config"], strict=True):
        config = yaml.safe_load(config) if isinstance(config, str) else config
        try:
            steps[run_id] = _steps_per_epoch(int(config["data"]["n_train"]), int(config["optim"]["batch_size"]))
        except (KeyError, TypeError):
            continue
    return steps


def baselines_table(df: pd.DataFrame) -> pd.DataFrame:
    """This repository's MNIST-1D baselines beside the published ones: one row per (model, width, training
    length) of the ``mnist1d_baselines`` runs, its test accuracy at the run's last epoch (%) over seeds: mean and
    95% bootstrap CI (``stats.bootstrap_mean_ci``), the number of seeds, epochs and optimizer steps, the
    published accuracy (:data:`PUBLISHED_BASELINES`) and the difference ours − published (percentage points).
    Columns :data:`BASELINE_COLUMNS`, full precision; models in the order of :data:`PUBLISHED_BASELINES`."""
    runs = df[(df["experiment"] == BASELINES_EXPERIMENT) & (df["kind"] == "trained")]
    last = final_epoch(runs)
    acc = last[(last["layer"] == "model") & (last["metric"] == "test_accuracy") & np.isfinite(last["value"])]
    if acc.empty:
        raise NoData(f"no {BASELINES_EXPERIMENT} runs (run python run.py -m experiment={BASELINES_EXPERIMENT})")
    per_epoch = _run_steps(df, acc["run_id"].unique().tolist())
    acc = acc.assign(steps=[per_epoch.get(r, np.nan) * e for r, e in zip(acc["run_id"], acc["epoch"], strict=True)])
    records = []
    for (model, width, epochs, steps), rows in acc.groupby(["model", "width", "epoch", "steps"], dropna=False):
        values = 100.0 * rows["value"].to_numpy(dtype=float)
        lo, hi = bootstrap_mean_ci(values)[:, 0]
        published = PUBLISHED_BASELINES.get(model, np.nan)
        records.append({"model": model, "baseline": BASELINE_NAMES.get(model, model), "width": int(width),
                        "n_seeds": int(rows["seed"].nunique()), "epochs": int(epochs),
                        "steps": pd.NA if pd.isna(steps) else int(steps), "published_pct": published,
                        "test_accuracy_mean_pct": values.mean(), "test_accuracy_lo_pct": lo,
                        "test_accuracy_hi_pct": hi, "diff_pct": values.mean() - published})
    order = {m: i for i, m in enumerate(PUBLISHED_BASELINES)}
    out = pd.DataFrame.from_records(records, columns=BASELINE_COLUMNS).astype({"steps": "Int64"})
    out = out.assign(_o=out["model"].map(order).fillna(len(order)))
    return out.sort_values(["_o", "model", "width", "epochs"], kind="stable").drop(columns="_o").reset_index(drop=True)


def baselines_markdown(table: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "model": table["model"], "baseline": table["baseline"], "width": table["width"],
        "published (%)": [f"{p:.0f}" if pd.notna(p) else "" for p in table["published_pct"]],
        "ours (%) [95% CI]": [f"{m:.1f} [{lo:.1f}, {hi:.1f}]" if pd.notna(lo) else f"{m:.1f}" for m, lo, hi in
                              zip(table["test_accuracy_mean_pct"], table["test_accuracy_lo_pct"],
                                  table["test_accuracy_hi_pct"], strict=True)],
        "ours − published (pp)": [f"{d:+.1f}" if pd.notna(d) else "" for d in table["diff_pct"]],
        "seeds": table["n_seeds"], "epochs": table["epochs"],
        "steps": ["" if pd.isna(s) else str(s) for s in table["steps"]],
    })
    return to_markdown(shown.set_index("model"))


def write_baselines_table(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``mnist1d_baselines.{csv,md}`` in ``out_dir``; nothing when there are no baseline runs."""
    try:
        table = baselines_table(df)
    except NoData:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, md = out_dir / "mnist1d_baselines.csv", out_dir / "mnist1d_baselines.md"
    table.to_csv(csv, index=False)
    md.write_text(
        "MNIST-1D baselines: test accuracy on the held-out test signals (1,000 in the published split) at each "
        f"run's last epoch, mean over seeds with a 95% bootstrap CI, beside the published accuracy "
        f"({PUBLISHED_SOURCE}). width: logistic regression its 10 outputs, MLP its hidden width, CNN its middle "
        "channels (the reference CNN: 25). steps: optimizer steps per replicate (the reference protocol: 6,000).\n\n"
        + baselines_markdown(table))
    return [csv, md]


def write_mnist1d_tables(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Every MNIST-1D table the results support: the baselines and the 1-D residual blocks."""
    return write_baselines_table(df, out_dir) + write_blocks_table(df, out_dir, model="resnet1d")


# ---------------------------------------------------------------------------------------------------------
# Figure 12


def _loss_scale(ax: plt.Axes, rows: pd.DataFrame) -> None:
    """Log y when the losses shown span more than a factor 3 (ticks at 1, 2, 5 × 10^k, written plainly), else
    linear: a log axis over a narrow range only shows crowded minor-tick labels."""
    values = rows[["init_mean", "end_mean", "init_hi", "end_lo"]].to_numpy(dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() / values.min() > 3:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(ticker.NullLocator())


def _baseline_lines(ax: plt.Axes, ours: pd.DataFrame | None) -> None:
    """Published accuracies (dashed) and this repository's baseline runs (solid, 95% CI band), horizontal."""
    for model, published in PUBLISHED_BASELINES.items():
        color = BASELINE_COLORS[model]
        ax.axhline(published, color=color, ls="--", lw=0.9, zorder=0.8)
        if ours is not None and model in set(ours["model"]):
            row = ours[ours["model"] == model].iloc[-1]
            if pd.notna(row["test_accuracy_lo_pct"]):
                ax.axhspan(row["test_accuracy_lo_pct"], row["test_accuracy_hi_pct"], color=color, alpha=0.18, lw=0,
                           zorder=0.7)
            ax.axhline(row["test_accuracy_mean_pct"], color=color, ls="-", lw=0.9, zorder=0.8)


def _baseline_handles(ours: pd.DataFrame | None) -> list:
    handles = []
    for model, published in PUBLISHED_BASELINES.items():
        text = f"{BASELINE_NAMES[model]}: published {published:.0f}%"
        if ours is not None and model in set(ours["model"]):
            row = ours[ours["model"] == model].iloc[-1]
            text += f", ours {row['test_accuracy_mean_pct']:.1f}%"
        handles.append(Patch(color=BASELINE_COLORS[model], label=text))
    handles.append(Line2D([], [], color="0.3", ls="--", lw=0.9, label=f"published ({PUBLISHED_SOURCE.split(',')[0]})"))
    if ours is not None:
        seeds = sorted(set(ours["n_seeds"]))
        epochs = sorted(set(ours["epochs"]))
        seeds = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
        epochs = f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]}"
        handles.append(Line2D([], [], color="0.3", lw=0.9,
                              label=f"ours ({BASELINES_EXPERIMENT}: {seeds} seeds, {epochs} epochs), 95% CI band"))
    return handles


def fig12_mnist1d_task_vs_width(df: pd.DataFrame, out_dir: Path, *,
                                experiments: Sequence[str] | None = None) -> list[Path]:
    """Did the bottleneck models learn their task, and how far from the reference models are they?

    Top row, one panel per classifier sweep (MLP classifier, 1-D CNN): test accuracy on the 1,000 held-out
    signals (%) vs width, trained (final) and the same seeds at init, mean ± 95% CI over seeds, with MNIST-1D's
    published test accuracies (logistic regression 32%, MLP 68%, CNN 94%: :data:`PUBLISHED_BASELINES`, dashed) and
    this repository's own runs of those reference models (``mnist1d_baselines``: mean at the last epoch, solid,
    with its 95% CI band) as horizontal lines. Bottom row, one panel per autoencoder data set: reconstruction
    MSE on held-out data (``eval_loss``, log scale) vs width. Widths D and h (or C) are marked as in figure 11.
    """
    classifiers = mnist1d_sweeps(df, CLASSIFIERS, experiments)
    autoencoders = mnist1d_sweeps(df, AUTOENCODERS, experiments)
    if not classifiers and not autoencoders:
        raise _no_sweep(FAMILIES)
    parts = [(s, "test_accuracy") for s in classifiers], [(s, "eval_loss") for s in autoencoders]
    exps = sorted({s[0] for s in classifiers + autoencoders})
    table = _summary_of(df, exps, "model", ["test_accuracy", "eval_loss"])
    try:
        ours = baselines_table(df)
        ours = ours[ours["model"].isin(PUBLISHED_BASELINES)].drop_duplicates("model", keep="last")
    except NoData:
        ours = None
    rows_of_panels = [p for p in parts if p]
    n_cols = max(2, max(len(p) for p in rows_of_panels))
    seen: dict[str, dict[int, set[str]]] = {}
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(len(rows_of_panels), n_cols, figsize=(COLUMN_WIDTH * 2,
                                                     2.1 * len(rows_of_panels) + 0.6),
                                 squeeze=False)
        for r, panels in enumerate(rows_of_panels):
            for j in range(n_cols):
                ax = axes[r, j]
                if j >= len(panels):
                    ax.set_axis_off()
                    continue
                sweep, metric = panels[j]
                rows = _sweep_rows(table, sweep)
                rows = rows[rows["metric"] == metric]
                unit = UNIT_NAMES.get(sweep[1], "units")
                if rows.empty:
                    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
                    continue
                if metric == "test_accuracy":
                    _level_panel(ax, rows, scale=0.01, unit=unit)
                    _baseline_lines(ax, ours)
                    ax.set_ylim(0, 100)
                    ax.set_ylabel("test accuracy (%)")
                else:
                    _level_panel(ax, rows, unit=unit)
                    _loss_scale(ax, rows)
                    ax.set_ylabel("reconstruction MSE\n(held-out, per feature)")
                _mark(ax, _references(sweep, int(rows["channels"].iloc[0])), seen, sweep[2])
                n = int(rows["n_seeds"].max())
                ax.set_title(f"{FAMILY_NAMES.get(sweep[1], sweep[1])}, {DATA_NAMES.get(sweep[2], sweep[2])}\n"
                             f"{sweep[0]}, {n} seeds/width", fontsize=7)
        handles = _level_legend_handles()[:2]
        if classifiers:
            handles += _baseline_handles(ours)
        handles += _reference_handles(seen)
        fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout()
        return save(fig, out_dir, "fig12_mnist1d_task_vs_width")


# ---------------------------------------------------------------------------------------------------------
# Figure 13


def fig13_mnist1d_resnet_blocks(df: pd.DataFrame, out_dir: Path, *,
                                experiments: Sequence[str] | None = None) -> list[Path]:
    """The 1-D residual blocks on MNIST-1D at matched parameter budgets: figure 10's panels
    (``figures_resnet.blocks_vs_params``) for ``model == "resnet1d"``: test accuracy and the narrow layers'
    (``reduce``; the bottleneck block's ``middle``) redundancy against trainable parameters, basic vs bottleneck."""
    return blocks_vs_params(df, out_dir, "resnet1d", experiments=experiments)
