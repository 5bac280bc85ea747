"""Figure 9 and the compression tables: low-rank compression (ALDS and baselines) of trained and initial weights.

Made from ``kind == "compressed"`` rows (``python run.py experiment=compression``); every function raises
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

from analysis.plotting import COLUMN_WIDTH, PALETTE, STYLE, NoData, _err, save
from analysis.stats import bootstrap_mean_ci
from analysis.tables import to_markdown

METHOD_STYLE = {"alds": (PALETTE[0], "ALDS"), "uniform": (PALETTE[1], "uniform rank"),
                "svd_energy": (PALETTE[2], "SVD energy"), "best_k": (PALETTE[4], "best single k")}
TABLE_RATIOS = (0.25, 0.5)
ACHIEVED = ("achieved_keep_ratio: kept / original weights of the compressible layers, mean over replicates, "
            "never above the requested keep_ratio")
DODGE = 0.012  # x offset (keep ratio units) between the series of a panel, so that their error bars do not overlap
GROUP = ["model", "block", "width", "stage", "method", "keep_ratio", "metric"]


def compressed_rows(df: pd.DataFrame) -> pd.DataFrame:
    rows = df[df["kind"] == "compressed"]
    if rows.empty:
        raise NoData("no compression rows (run python run.py experiment=compression)")
    return rows


def source_label(model: str, block: str, width: int) -> str:
    return f"conv identity, w = {width}" if model == "conv" else f"ResNet {block}, w = {width}"


def _sources(rows: pd.DataFrame) -> list[tuple[str, str, int]]:
    keys = rows[["model", "block", "width"]].drop_duplicates()
    return sorted(((m, b, int(w)) for m, b, w in keys.itertuples(index=False)), key=lambda s: (s[0], s[1], s[2]))


def _task_metric(model_rows: pd.DataFrame) -> tuple[str, str, bool]:
    """(metric, axis label, log scale): test accuracy for classifiers, the evaluation loss otherwise."""
    if (model_rows["metric"] == "test_accuracy").any():
        return "test_accuracy", "test accuracy", False
    return "eval_loss", "evaluation loss (MSE)", True


def _mean_ci(model_rows: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Mean and 95% bootstrap CI over replicates (seeds) of each (source, stage, method, keep ratio, metric) in
    ``metrics``: columns ``mean``, ``lo``, ``hi`` indexed by ``GROUP`` (NaN bounds for a single replicate)."""
    rows = model_rows[model_rows["metric"].isin(metrics)]
    out = []
    for key, g in rows.groupby(GROUP, sort=True):
        lo, hi = bootstrap_mean_ci(g["value"].to_numpy())[:, 0]
        out.append((*key, g["value"].mean(), lo, hi))
    return pd.DataFrame(out, columns=[*GROUP, "mean", "lo", "hi"]).set_index(GROUP)


def _series(stats: pd.DataFrame, stage: str, method: str, metric: str) -> pd.DataFrame | None:
    """One line's points (index keep ratio; mean, lo, hi), or None when the source has none."""
    try:
        return stats.loc[(stage, method)].xs(metric, level="metric")
    except KeyError:
        return None


def _errorbar(ax, line: pd.DataFrame, offset: float, **kwargs) -> None:
    x = line.index.to_numpy(dtype=float) + offset
    m = line["mean"].to_numpy()
    ax.errorbar(x, m, _err(m, line["lo"].to_numpy(), line["hi"].to_numpy()), elinewidth=0.7, capsize=1.2,
                capthick=0.7, **kwargs)


def fig9_compression(df: pd.DataFrame, out_dir: Path, *, experiments: Sequence[str] | None = None) -> list[Path]:
    """Largest relative error (top) and the task metric (bottom) against the keep ratio, per source model.

    Top: the largest exact relative spectral error over the compressible layers, mean over replicates, for
    each method on the trained (final) weights (solid) and for ALDS on the same replicates' initial weights
    (dashed grey): the gap between them is what training changed about compressibility. Bottom: test accuracy
    (ResNets) or evaluation MSE (conv identity, log scale) of the compressed final models without fine-tuning,
    the uncompressed models' level (dotted), and after the short fine-tune at the keep ratios that get one
    (stars). Every point is a mean over replicates with its 95% bootstrap CI over them (error bars); the series
    of a panel are offset by a few thousandths along x so that their bars stay apart. A keep ratio below what
    rank 1 everywhere keeps has no allocation within budget and no point.
    """
    rows = compressed_rows(df)
    if experiments is not None:
        rows = rows[rows["experiment"].isin(experiments)]
        if rows.empty:
            raise NoData(f"no compression rows in {list(experiments)}")
    sources = _sources(rows)
    model_rows = rows[rows["layer"] == "model"]
    tasks = {model: _task_metric(model_rows[model_rows["model"] == model]) for model, _, _ in sources}
    metrics = {"max_rel_error"} | {t[0] for t in tasks.values()} | {f"{t[0]}_finetuned" for t in tasks.values()}
    stats = _mean_ci(model_rows, sorted(metrics))
    series = [*METHOD_STYLE, "alds initial"]  # x offsets: one slot per series, centred on the keep ratio
    offset = {name: (i - (len(series) - 1) / 2) * DODGE for i, name in enumerate(series)}
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(2, len(sources), figsize=(max(COLUMN_WIDTH * 2, 1.6 * len(sources)), 3.6),
                                 squeeze=False, sharex=True)
        for c, (model, block, width) in enumerate(sources):
            top, bottom = axes[0, c], axes[1, c]
            src = stats.loc[(model, block, width)]
            for method, (color, _) in reversed(METHOD_STYLE.items()):  # ALDS drawn last, on top
                err = _series(src, "final", method, "max_rel_error")
                if err is not None:
                    _errorbar(top, err, offset[method], color=color, marker="o", ms=2.5,
                              lw=1.6 if method == "alds" else 1)
            err0 = _series(src, "initial", "alds", "max_rel_error")
            if err0 is not None:
                _errorbar(top, err0, offset["alds initial"], color="0.45", ls="--", lw=1)
            metric, label, log = tasks[model]
            base = _series(src, "final", "none", metric)
            if base is not None:
                bottom.axhline(float(base["mean"].iloc[0]), color="0.3", ls=":", lw=1)
            for method, (color, _) in reversed(METHOD_STYLE.items()):
                values = _series(src, "final", method, metric)
                if values is None:
                    continue
                _errorbar(bottom, values, offset[method], color=color, marker="o", ms=2.5,
                          lw=1.6 if method == "alds" else 1)
                tuned = _series(src, "final", method, f"{metric}_finetuned")
                if tuned is not None:
                    _errorbar(bottom, tuned, offset[method], color=color, marker="*", ms=6, ls="none")
            if log:
                bottom.set_yscale("log")
            top.set_title(source_label(model, block, width), fontsize=7)
            top.set_ylim(0, 1.02)
            bottom.set_xlabel("keep ratio")
            if c == 0:
                top.set_ylabel("largest relative\nspectral error")
            bottom.set_ylabel(label)
        handles = [Line2D([], [], color=col, marker="o", ms=2.5, lw=1, label=lab) for col, lab in METHOD_STYLE.values()]
        handles += [Line2D([], [], color="0.45", ls="--", lw=1, label="ALDS on the initial weights"),
                    Line2D([], [], color="0.3", ls=":", lw=1, label="uncompressed"),
                    Line2D([], [], color="0.3", marker="*", ms=6, ls="none", label="after fine-tuning")]
        fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, 1.0),
                   title="mean over replicates, bars: 95% bootstrap CI", title_fontsize=7)
        fig.tight_layout()
        return save(fig, out_dir, "fig9_compression")


def _achieved(rows: pd.DataFrame) -> pd.Series:
    """Mean over replicates of the achieved keep ratio (kept / original weights of the compressible layers, as
    the allocator counts them), per (model, block, width, stage, method, keep_ratio)."""
    at = rows[(rows["layer"] == "model") & (rows["metric"] == "keep_ratio_achieved")]
    return at.groupby(["model", "block", "width", "stage", "method", "keep_ratio"])["value"].mean()


def allocation_table(df: pd.DataFrame, ratios: Sequence[float] = TABLE_RATIOS) -> pd.DataFrame:
    """Per source, keep ratio in ``ratios``, method and compressible layer of the final weights: the achieved
    keep ratio of the whole allocation (mean over replicates), the groups k and rank j (``k×j``, the most common
    over replicates, with the mean j when replicates differ) and the exact relative error (mean over
    replicates)."""
    rows = compressed_rows(df)
    achieved = _achieved(rows)
    rows = rows[(rows["stage"] == "final") & (rows["layer"] != "model") & rows["keep_ratio"].round(6).isin(ratios)
                & rows["metric"].isin(["k", "j", "rel_error", "intact"])]
    wide = rows.pivot_table(index=["model", "block", "width", "keep_ratio", "method", "layer", "seed"],
                            columns="metric", values="value", aggfunc="first").reset_index()
    out = []
    for key, g in wide.groupby(["model", "block", "width", "keep_ratio", "method", "layer"], sort=True):
        k = int(g["k"].mode().iloc[0])
        j = g["j"].to_numpy()
        kj = "intact" if g["intact"].all() else (f"{k}×{int(j[0])}" if np.all(j == j[0]) else f"{k}×{j.mean():.1f}")
        out.append({"source": source_label(key[0], key[1], int(key[2])), "keep_ratio": key[3], "method": key[4],
                    "achieved_keep_ratio": achieved.get((*key[:3], "final", key[4], key[3]), np.nan),
                    "layer": key[5], "k×j": kj, "rel_error": g["rel_error"].mean()})
    table = pd.DataFrame(out)
    if table.empty:
        raise NoData(f"no compression rows at keep ratios {list(ratios)}")
    return table


def summary_table(df: pd.DataFrame, ratios: Sequence[float] = TABLE_RATIOS) -> pd.DataFrame:
    """Per source, stage and keep ratio in ``ratios``: the smallest keep ratio any allocation reaches
    (``min_keep_ratio``, rank 1 everywhere), and each method's achieved keep ratio, largest relative error and
    task metric after compression and after fine-tuning (means over replicates), beside the uncompressed
    model's."""
    rows = compressed_rows(df)
    model_rows = rows[rows["layer"] == "model"]
    means = model_rows.groupby(["model", "block", "width", "stage", "method", "keep_ratio", "metric"])["value"].mean()
    out = []
    for (model, block, width) in _sources(rows):
        metric, _, _ = _task_metric(model_rows[model_rows["model"] == model])
        src = means.loc[(model, block, width)]
        for stage in ("final", "initial"):
            if stage not in src.index.get_level_values("stage"):
                continue
            none = src.loc[(stage, "none")]
            base = float(none.xs(metric, level="metric").iloc[0])
            least = none.xs("keep_ratio_min", level="metric") if "keep_ratio_min" in \
                none.index.get_level_values("metric") else None
            for ratio in ratios:
                rec = {"source": source_label(model, block, width), "stage": stage, "keep_ratio": ratio,
                       "min_keep_ratio": float(least.iloc[0]) if least is not None else np.nan,
                       "task metric": metric, "uncompressed": base}
                for method in METHOD_STYLE:
                    try:
                        sel = src.loc[(stage, method)]
                    except KeyError:
                        continue
                    at = sel[np.isclose(sel.index.get_level_values("keep_ratio"), ratio)]
                    if at.empty:
                        continue
                    at = at.droplevel("keep_ratio")
                    rec[f"{method} achieved_keep_ratio"] = at.get("keep_ratio_achieved", np.nan)
                    rec[f"{method} max error"] = at.get("max_rel_error", np.nan)
                    rec[f"{method} {metric}"] = at.get(metric, np.nan)
                    rec[f"{method} {metric} fine-tuned"] = at.get(f"{metric}_finetuned", np.nan)
                out.append(rec)
    return pd.DataFrame(out)


def layer_table(df: pd.DataFrame) -> pd.DataFrame:
    """Each compressible layer on its own: the relative error of its best approximation at 25% and 50% of its
    rank (k = 1), initial vs final weights of the same replicates: means, and the paired change with a 95%
    bootstrap CI over replicates. Lower error = more compressible = more redundant."""
    rows = compressed_rows(df)
    rows = rows[rows["metric"].str.startswith("rel_error_at_")]
    if rows.empty:
        raise NoData("no per-layer rank-fraction errors in the compression rows")
    out = []
    for (model, block, width, layer, metric), g in rows.groupby(["model", "block", "width", "layer", "metric"]):
        paired = g.pivot_table(index="seed", columns="stage", values="value").dropna()
        values = np.column_stack([paired["initial"], paired["final"], paired["final"] - paired["initial"]])
        lo, hi = bootstrap_mean_ci(values)
        mean = values.mean(axis=0)
        out.append({"source": source_label(model, block, int(width)), "layer": layer,
                    "rank kept": metric.removeprefix("rel_error_at_").removesuffix("_rank").replace("pct", "%"),
                    "n": len(paired), "initial": mean[0], "final": mean[1], "change": mean[2],
                    "change_lo": lo[2], "change_hi": hi[2]})
    return pd.DataFrame(out)


def versus_table(df: pd.DataFrame, method: str = "alds", baseline: str = "uniform",
                 ratios: Sequence[float] = TABLE_RATIOS) -> pd.DataFrame:
    """``method`` against ``baseline`` on the same replicates' final weights at ``ratios``: the largest relative
    error and the task metric after compression and after fine-tuning, means and the paired difference
    (method − baseline) with a 95% bootstrap CI over replicates, beside each one's achieved keep ratio (mean
    over replicates)."""
    rows = compressed_rows(df)
    achieved = _achieved(rows)
    rows = rows[(rows["layer"] == "model") & (rows["stage"] == "final")]
    out = []
    for (model, block, width), g in rows.groupby(["model", "block", "width"]):
        task, _, _ = _task_metric(g)
        for ratio in ratios:
            at = g[np.isclose(g["keep_ratio"], ratio) & g["method"].isin([method, baseline])]
            for metric in ("max_rel_error", task, f"{task}_finetuned"):
                paired = at[at["metric"] == metric].pivot_table(index="seed", columns="method", values="value").dropna()
                if paired.empty or method not in paired or baseline not in paired:
                    continue
                diff = (paired[method] - paired[baseline]).to_numpy()
                lo, hi = bootstrap_mean_ci(diff)[:, 0]
                got = {m: achieved[(model, block, width, "final", m)] for m in (method, baseline)}
                got = {m: float(v[np.isclose(v.index, ratio)].iloc[0]) for m, v in got.items()}
                out.append({"source": source_label(model, block, int(width)), "keep_ratio": ratio,
                            f"{method} achieved_keep_ratio": got[method],
                            f"{baseline} achieved_keep_ratio": got[baseline], "metric": metric,
                            "n": len(paired), method: paired[method].mean(), baseline: paired[baseline].mean(),
                            "diff": diff.mean(), "diff_lo": lo, "diff_hi": hi})
    return pd.DataFrame(out)


def write_compression_tables(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``compression_allocations.{csv,md}`` and ``compression_summary.{csv,md}`` (nothing without compression rows)."""
    try:
        alloc, summ, per_layer, versus = allocation_table(df), summary_table(df), layer_table(df), versus_table(df)
    except NoData:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / n for n in ("compression_allocations.csv", "compression_allocations.md",
                                   "compression_summary.csv", "compression_summary.md",
                                   "compression_layers.csv", "compression_layers.md",
                                   "compression_alds_vs_uniform.csv", "compression_alds_vs_uniform.md")]
    alloc.to_csv(paths[0], index=False)
    paths[1].write_text("Per-layer allocations of the final weights at keep ratios 0.25 and 0.5: the achieved keep "
                        f"ratio of the whole allocation ({ACHIEVED}), k groups × rank j "
                        "(most common k over replicates; mean j when they differ), and the exact relative "
                        "spectral error (mean over replicates).\n\n" + to_markdown(alloc.set_index("source"), ".3f"))
    summ.to_csv(paths[2], index=False)
    paths[3].write_text("Achieved keep ratio, largest relative error and task metric (test accuracy, or evaluation "
                        "MSE) after compression and after the short fine-tune (final weights only), mean over "
                        f"replicates. {ACHIEVED[0].upper() + ACHIEVED[1:]}; min_keep_ratio is the smallest any "
                        "allocation reaches (rank 1 in every layer): below it no method has an allocation.\n\n"
                        + to_markdown(summ.set_index("source"), ".4g"))
    per_layer.to_csv(paths[4], index=False)
    paths[5].write_text("Each layer on its own: relative spectral error of its best approximation keeping 25% or "
                        "50% of its rank (k = 1), initial vs final weights of the same replicates; change = final − "
                        "initial with a 95% bootstrap CI. Lower = more compressible.\n\n"
                        + to_markdown(per_layer.set_index("source"), ".3f"))
    versus.to_csv(paths[6], index=False)
    paths[7].write_text("ALDS against the uniform-rank baseline on the same replicates' final weights: means and the "
                        "paired difference (ALDS − uniform) with a 95% bootstrap CI, beside each one's achieved "
                        f"keep ratio ({ACHIEVED}).\n\n"
                        + to_markdown(versus.set_index("source"), ".3f"))
    return paths
