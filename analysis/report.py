"""The study's report, written from the committed tables: ``python -m analysis.report`` → ``results/REPORT.md``.

Every number in the report is read from a table under ``results/tables/`` (written by ``analysis.figures``) and
formatted here; the prose around it is a template, and every word that states a direction (rises, falls, no
evidence) is computed from the same row whose numbers the sentence cites (:func:`trend_words`,
:func:`ledger_verdict`), so words cannot contradict data. Nothing is rerun: on a fresh clone the command rebuilds
the committed report byte for byte (no dates, no absolute paths, stable order). It also refreshes the blocks of
``README.md`` between ``<!-- report:NAME -->`` and ``<!-- /report:NAME -->`` (the few headline numbers and the
measured times), so the README's numbers come from the same tables.

Markdown only: this machine has no pandoc or LaTeX, and a matplotlib-drawn PDF of prose would read worse than
the Markdown a code host renders.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.hypothesis import (
    ALPHA,
    CONFIG,
    FAMILY_METRICS,
    FAMILY_MIN_REPLICATES,
    HEADLINE_LAYERS,
    HEADLINE_METRICS,
    N_PERM,
    REDUNDANCY_SIGN,
    STUDIED_LAYERS,
)
from analysis.load import DEFAULT_ROOT
from experiments.functional import THRESHOLD

VERDICTS = ("holds", "holds approximately", "holds conditionally", "does not hold as stated", "not tested")
REQUIRED = ("summary", "trend")
OPTIONAL = ("mnist1d_baselines", "resnet_matched", "mnist1d_resnet_matched", "compression_alds_vs_uniform",
            "claims", "timings")

METRIC_NAMES = {
    "mean_nn_abs_cos": "nearest-unit |cos| of the weights",
    "eff_rank_norm": "weight effective rank / k",
    "mean_nn_l1": "nearest-unit weight distance",
    "min_pair_l1": "closest-pair weight distance (the source's metric)",
    "act_mean_nn_abs_corr": "nearest-unit |corr| of the activations",
    "act_eff_rank_norm": "activation effective rank / w",
    "act_pc95_frac": "PCs for 95% of the activation variance / w",
    "prunable_frac": "share of prunable units",
    "redundant_frac": "share of redundant units",
    "act_r2_others_mean": "held-out R² of a unit from the others",
    "abl_top10_share": "share of the ablation loss carried by the top 10% of units",
}
FAMILY_NAMES = {
    "mlp": "MLP 1→32→w→1 learning the identity on 0..99 (the source's task)",
    "conv": "Conv2d 1→32→w→1 learning the identity on 8×8 digits",
    "resnet": "one residual block (C = 32) classifying 8×8 digits",
    "mlp_classifier": "MLP 40→100→w→100→10 classifying MNIST-1D",
    "cnn1d": "the reference 1-D CNN, middle convolution w channels, classifying MNIST-1D",
    "autoencoder": "MLP autoencoder D→100→w→100→D",
    "resnet1d": "one 1-D residual block (C = 32) classifying MNIST-1D",
}
# Figures of each family (file names under results/figures/, without extension).
FAMILY_FIGURES = {
    "mlp": ["fig2_min_pair_vs_width", "fig3_pair_free_vs_width", "fig3b_activation_vs_width",
            "fig3c_functional_vs_width", "fig4_loss_vs_width"],
    "conv": ["fig8_conv_redundancy_vs_width", "fig8b_conv_loss_vs_width"],
    "resnet": ["fig10_resnet_blocks_vs_params"],
    "mlp_classifier": ["fig11_mnist1d_redundancy_vs_width", "fig12_mnist1d_task_vs_width"],
    "cnn1d": ["fig11_mnist1d_redundancy_vs_width", "fig12_mnist1d_task_vs_width"],
    "autoencoder": ["fig11_mnist1d_redundancy_vs_width", "fig12_mnist1d_task_vs_width"],
    "resnet1d": ["fig13_mnist1d_resnet_blocks"],
}
FUNCTIONAL = ("prunable_frac", "redundant_frac")
REPRODUCE_COMMANDS = ("make reproduce", "make test")


# ---------------------------------------------------------------------------------------------------------
# Numbers and words


def num(v: float, digits: int = 3) -> str:
    """A number as the report prints it: ``digits`` significant digits, no trailing zeros; "n/a" for NaN."""
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{float(v):.{digits}g}"


def ci(v: float, lo: float, hi: float) -> str:
    return f"{num(v)} [{num(lo)}, {num(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else num(v)


def pval(p: float) -> str:
    return "n/a" if p is None or not np.isfinite(p) else f"{p:.2g}"


def trend_words(slope: float, adjusted_p: float, alpha: float = ALPHA) -> str:
    """How a trend sentence reads, from the slope and the adjusted p it cites."""
    if adjusted_p is None or not np.isfinite(adjusted_p) or not np.isfinite(slope):
        return "has no test (its change does not vary between seeds beyond rounding)"
    if adjusted_p >= alpha:
        return "shows no evidence of a width trend"
    return "rises with width" if slope > 0 else "falls with width"


def redundancy_words(metric: str, slope: float, adjusted_p: float, alpha: float = ALPHA) -> str:
    """What a significant trend of the change means for redundancy: who gains more of it in training."""
    if adjusted_p is None or not np.isfinite(adjusted_p) or adjusted_p >= alpha or not np.isfinite(slope):
        return "no evidence that training changes redundancy differently at different widths"
    more = np.sign(slope) * REDUNDANCY_SIGN.get(metric, 0)
    if more > 0:
        return "wider layers gain more redundancy in training than narrow ones"
    if more < 0:
        return "narrower layers gain more redundancy in training than wide ones"
    return "a width trend"


def ledger_verdict(supporting: int, opposing: int, tested: int) -> str:
    """The claim "narrow layers end less redundant than wide ones beyond their initialisation" for one family
    of headline tests: holds when every test supports it, conditionally when some do, not as stated otherwise."""
    if tested == 0:
        return "not tested"
    if supporting == tested:
        return "holds"
    if supporting > 0:
        return "holds conditionally"
    return "does not hold as stated"


# ---------------------------------------------------------------------------------------------------------
# Tables


@dataclass
class Tables:
    """The committed tables the report reads (``None`` where an optional table is absent)."""

    summary: pd.DataFrame
    trend: pd.DataFrame
    mnist1d_baselines: pd.DataFrame | None = None
    resnet_matched: pd.DataFrame | None = None
    mnist1d_resnet_matched: pd.DataFrame | None = None
    compression_alds_vs_uniform: pd.DataFrame | None = None
    claims: pd.DataFrame | None = None
    timings: pd.DataFrame | None = None


class ReportError(RuntimeError):
    """A table the report needs is missing or unreadable."""


def _read(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: cannot read ({err})") from err
    for col in frame.columns:  # text columns: NaN (an empty cell) reads as ""
        if frame[col].dtype == object or str(frame[col].dtype).startswith(("str", "string")):
            frame[col] = frame[col].fillna("").astype(str)
    return frame


def load_tables(tables_dir: Path) -> Tables:
    found = {}
    for name in (*REQUIRED, *OPTIONAL):
        path = tables_dir / f"{name}.csv"
        if path.exists():
            found[name] = _read(path)
        elif name in REQUIRED:
            raise ReportError(f"{path}: missing (run `python -m analysis.figures` after the experiments)")
    for col in ("in_family", "headline"):
        found["trend"][col] = found["trend"][col].astype(str).str.lower().eq("true")
    return Tables(**found)


# ---------------------------------------------------------------------------------------------------------
# Sections


def _configs(trend: pd.DataFrame) -> list[tuple]:
    fam = trend[trend["in_family"]]
    return list(fam[CONFIG].drop_duplicates().itertuples(index=False, name=None))


def _rows(frame: pd.DataFrame, config: tuple) -> pd.DataFrame:
    keep = np.ones(len(frame), dtype=bool)
    for col, value in zip(CONFIG, config, strict=True):
        keep &= frame[col].astype(str).to_numpy() == str(value)
    return frame[keep]


def config_label(config: tuple) -> str:
    c = dict(zip(CONFIG, config, strict=True))
    parts = [f"`{c['experiment']}`"]
    if c["block"] not in ("", "none"):
        parts.append(f"{c['block']} block")
    if c["model"] == "autoencoder":
        parts.append(f"on {c['data']}")
    if c["activation"] not in ("", "relu") or c["model"] in ("mlp", "conv"):
        parts.append({"none": "linear", "relu": "ReLU"}.get(c["activation"], c["activation"]))
    return ", ".join(parts)


def _headline_rows(trend: pd.DataFrame, config: tuple) -> pd.DataFrame:
    rows = _rows(trend, config)
    rows = rows[rows["headline"]]
    order = {m: i for i, m in enumerate(HEADLINE_METRICS)}
    return rows.assign(_o=rows["metric"].map(order)).sort_values(["layer", "_o"]).drop(columns="_o")


def trend_sentence(row: pd.Series) -> str:
    adj = row["holm"] if row["headline"] else row["q"]
    label = "Holm" if row["headline"] else "BH q"
    words = trend_words(row["slope"], adj)
    return (f"Training's change of the {METRIC_NAMES.get(row['metric'], row['metric'])} (`{row['metric']}`, "
            f"layer `{row['layer']}`) {words}: slope {ci(row['slope'], row['slope_lo'], row['slope_hi'])} per "
            f"doubling of w, permutation p = {pval(row['trend_p'])}, {label} = {pval(adj)}; change "
            f"{num(row['change_narrow'])} at w = {int(row['narrow'])} vs {num(row['change_wide'])} at "
            f"w = {int(row['wide'])} (wide − narrow {ci(row['contrast'], row['contrast_lo'], row['contrast_hi'])}); "
            f"n = {int(row['n_total'])} seeds{_dropped(row)}. So: "
            f"{redundancy_words(str(row['metric']), row['slope'], adj)}.{_null_effect(row)}")


def _null_effect(row: pd.Series) -> str:
    """The trained layers against the untrained null at both ends: d = (final mean − null mean) / null SD."""
    if not (np.isfinite(row["d_narrow"]) and np.isfinite(row["d_wide"]) and np.isfinite(row["trend_p"])):
        return ""  # a null with no spread, or a rounding-level metric: no effect size worth printing
    return (f" Against the untrained null the trained layer sits at d = "
            f"{ci(row['d_narrow'], row['d_narrow_lo'], row['d_narrow_hi'])} null SDs at w = {int(row['narrow'])} "
            f"(median percentile {num(row['pct_narrow'])}) and d = "
            f"{ci(row['d_wide'], row['d_wide_lo'], row['d_wide_hi'])} at w = {int(row['wide'])} "
            f"(percentile {num(row['pct_wide'])}).")


def _dropped(row: pd.Series) -> str:
    d = int(row["n_dropped"])
    return "" if d == 0 else f" ({d} of {int(row['n_replicates']) * int(row['n_widths'])} dropped: no value)"


def _summary_at(summary: pd.DataFrame, config: tuple, layer: str, metric: str, width: int) -> pd.Series | None:
    rows = _rows(summary, config)
    rows = rows[(rows["layer"] == layer) & (rows["metric"] == metric) & (rows["width"] == width)]
    return rows.iloc[0] if len(rows) else None


def functional_sentence(summary: pd.DataFrame, config: tuple, layer: str, narrow: int, wide: int) -> str:
    parts = []
    for metric in FUNCTIONAL:
        ends = [_summary_at(summary, config, layer, metric, w) for w in (narrow, wide)]
        if any(e is None for e in ends):
            continue
        a, b = ends
        parts.append(f"{METRIC_NAMES[metric]} {ci(a['end_mean'], a['end_lo'], a['end_hi'])} at w = {narrow} and "
                     f"{ci(b['end_mean'], b['end_lo'], b['end_hi'])} at w = {wide} after training (at "
                     f"initialisation {num(a['init_mean'])} and {num(b['init_mean'])}; untrained null "
                     f"{num(a['null_mean'])} and {num(b['null_mean'])})")
    return ("Functional redundancy of `" + layer + "`: " + "; ".join(parts) + ".") if parts else ""


def task_sentence(summary: pd.DataFrame, config: tuple, narrow: int, wide: int) -> str:
    for metric, name in (("test_accuracy", "test accuracy"), ("eval_loss", "held-out loss")):
        ends = [_summary_at(summary, config, "model", metric, w) for w in (narrow, wide)]
        if all(e is not None for e in ends):
            a, b = ends
            return (f"The task: {name} {ci(a['end_mean'], a['end_lo'], a['end_hi'])} at w = {narrow} and "
                    f"{ci(b['end_mean'], b['end_lo'], b['end_hi'])} at w = {wide}.")
    return ""


def results_section(t: Tables) -> str:
    out = ["## Results per family", ""]
    shown_figures: set[str] = set()
    by_model: dict[str, list[tuple]] = {}
    for config in _configs(t.trend):
        by_model.setdefault(dict(zip(CONFIG, config, strict=True))["model"], []).append(config)
    for model, configs in by_model.items():
        out += [f"### {FAMILY_NAMES.get(model, model)}", ""]
        for config in configs:
            head = _headline_rows(t.trend, config)
            if head.empty:
                continue
            r0 = head.iloc[0]
            out.append(f"**{config_label(config)}**: widths {int(head['narrow'].min())} to {int(head['wide'].max())}"
                       f", {int(head['n_replicates'].max())} seeds per width.")
            out.append("")
            for _, row in head.iterrows():
                out.append(f"- {trend_sentence(row)}")
            layers = [la for la in STUDIED_LAYERS if la in set(_rows(t.summary, config)["layer"])]
            for layer in layers:
                s = functional_sentence(t.summary, config, layer, int(r0["narrow"]), int(r0["wide"]))
                if s:
                    out.append(f"- {s}")
            s = task_sentence(t.summary, config, int(r0["narrow"]), int(r0["wide"]))
            if s:
                out.append(f"- {s}")
            out.append("")
        figs = [n for n in FAMILY_FIGURES.get(model, []) if n not in shown_figures]
        shown_figures.update(figs)
        if figs:
            out += [" ".join(f"![{n}](figures/{n}.png)" for n in figs), ""]
    return "\n".join(out)


def headline_counts(trend: pd.DataFrame) -> dict[str, int]:
    head = trend[trend["headline"]]
    counts = {"tests": 0, "wider": 0, "narrower": 0, "none": 0, "untested": 0}
    for _, row in head.iterrows():
        words = redundancy_words(str(row["metric"]), row["slope"], row["holm"])
        if not np.isfinite(row["holm"]):
            counts["untested"] += 1
            continue
        counts["tests"] += 1
        counts["wider" if words.startswith("wider") else "narrower" if words.startswith("narrower") else "none"] += 1
    return counts


def abstract(t: Tables) -> str:
    c = headline_counts(t.trend)
    head = t.trend[t.trend["headline"]]
    n_configs = len(set(head[CONFIG].itertuples(index=False, name=None)))
    n_models = head["model"].nunique()
    fam = t.trend[t.trend["in_family"]]
    n_family = int(fam["trend_p"].notna().sum())
    n_sig = int((fam["q"] < ALPHA).sum())
    return (
        "## Abstract\n\n"
        "A published experiment trained a linear MLP 1→32→w→1 to output its own input and read a larger closest-"
        "pair distance between bottleneck units at w = 8 than at w = 128 as \"bottlenecks learn less redundant "
        "units\". We reproduce it bit for bit and test the hypothesis itself, whether training changes redundancy "
        "differently in narrow and wide layers, as the trend of each seed's paired change (final − initial) over "
        f"log2 width, in {n_configs} sweeps of {n_models} model families (identity MLPs, conv identity nets, residual "
        "blocks, MNIST-1D classifiers, autoencoders narrower and wider than their data), with weight, activation "
        "and functional (ablation) measures of redundancy, against untrained nulls. "
        f"Of the {c['tests']} headline tests (Holm-adjusted, α = {ALPHA}), {c['wider']} find that wider layers gain "
        f"more redundancy in training, {c['narrower']} that narrower layers do, and {c['none']} find no evidence of "
        f"a width trend; over the whole declared family, {n_sig} of {n_family} trend tests have BH q < {ALPHA}. "
        f"{_overall(c)} (claims ledger below).\n")


def _overall(c: dict[str, int]) -> str:
    """The abstract's conclusion, from the headline counts it follows."""
    if c["wider"] and c["narrower"]:
        return ("The direction depends on the family and the metric: no single statement \"narrow layers are less "
                "redundant\" holds across them")
    if c["wider"]:
        return "Where there is a width trend, wider layers gain more redundancy in training"
    if c["narrower"]:
        return "Where there is a width trend, it is narrower layers that gain more redundancy in training"
    return "No headline test finds a width trend in what training does to redundancy"


def threshold_check(summary: pd.DataFrame, trend: pd.DataFrame, threshold: float = THRESHOLD) -> str:
    """Why the functional threshold is where it is, from the data: the seed-to-seed spread of the held-out loss
    (SD over seeds / mean, recovered from the summary's bootstrap CI of the mean: half-width × √n / 1.96) in every
    (sweep, width) cell, against the threshold. A loss change below it is smaller than two trained networks of the
    same width differ by."""
    sweeps = {tuple(c) for c in trend.loc[trend["in_family"], CONFIG].itertuples(index=False, name=None)}
    rows = summary[(summary["layer"] == "model") & (summary["metric"] == "eval_loss")]
    keep = [tuple(r) in sweeps for r in rows[CONFIG].itertuples(index=False, name=None)]
    rows = rows[keep]
    if rows.empty:
        return ""
    rel_sd = (rows["end_hi"] - rows["end_lo"]) / 2 * np.sqrt(rows["n_seeds"]) / 1.96 / rows["end_mean"].abs()
    above = int((rel_sd > threshold).sum())
    return (f"The threshold is {threshold:g} of the loss: the held-out loss of two trained networks of the same "
            f"width differs by more than that in {above} of {len(rows)} (sweep, width) cells (seed-to-seed SD / mean "
            f"from {num(float(rel_sd.min()))} to {num(float(rel_sd.max()))}, median {num(float(rel_sd.median()))}),"
            f" so {'everywhere' if above == len(rows) else 'in those cells'} a unit whose removal changes the loss by "
            "less is within the variation between seeds.")


def methods_section(t: Tables) -> str:
    fam = t.trend[t.trend["in_family"]]
    n_family = int(fam["trend_p"].notna().sum())
    n_head = int(t.trend["headline"].sum())
    present = [m for m in FAMILY_METRICS if m in set(fam["metric"])]
    reps = t.trend.loc[t.trend["in_family"], "n_replicates"]
    return (
        "## Methods\n\n"
        "**Protocols.** Every preset (`conf/experiment/*.yaml`) trains all its seeds as replicates of one "
        "stacked model (`experiments/ensemble.py`) in a fixed mini-batch order, logs every metric at epoch 0 and "
        "at its metric epochs, and measures a width-matched untrained null: fresh draws of each studied layer for "
        "the weight metrics, whole untrained models for the activation and functional metrics. Each preset's "
        "comment says what a user with a GPU would set for the full protocol. Seeds per width in the sweeps: "
        f"{int(reps.min())} to {int(reps.max())}.\n\n"
        "**Metrics.** Weights (`experiments/metrics.py`): nearest-unit |cos|, effective rank / min(w, fan-in), "
        "the source's closest-pair distance and its nearest-neighbour mean. Activations on held-out data: "
        "nearest-unit |corr|, effective rank / w, PCs for 95% of the variance / w, dead units. Functional "
        "(`experiments/functional.py`; Casper, Boix et al., AAAI 2021): mean ablation and least-squares "
        "compensation of each unit, fitted on one half of the held-out examples and scored on the other, with a "
        "unit prunable (redundant) when its removal (replacement) raises the held-out loss by less than the "
        "configured threshold (`functional.threshold`); held-out R² of a unit from the others; the share of the "
        f"layer's ablation loss carried by its top 10% of units. {threshold_check(t.summary, t.trend)}\n\n"
        "**Statistics** (`analysis/stats.py`, `analysis/hypothesis.py`). Means over seeds with 95% percentile-"
        "bootstrap CIs; the paired change with a Wilcoxon signed-rank test; the null's 2.5–97.5% band and each "
        "seed's percentile in it; the effect size against the null, d = (final mean − null mean) / null SD, with "
        "a bootstrap CI. The hypothesis: per experiment × layer × metric, the OLS slope of the paired change on "
        f"log2 width, a two-sided permutation test of it ({N_PERM:,} permutations of width labels across seeds; "
        f"p ≥ 1/{N_PERM + 1:,}), a bootstrap CI, Jonckheere–Terpstra as a rank cross-check, and the widest − "
        "narrowest contrast. Multiplicity: the declared family is every trend test of the layers that take the "
        f"width ({', '.join(f'`{x}`' for x in STUDIED_LAYERS)}) over the redundancy metrics "
        f"{', '.join(f'`{m}`' for m in present)} in every sweep with ≥ {FAMILY_MIN_REPLICATES} seeds per width: "
        f"{n_family} defined tests, Benjamini–Hochberg q-values over them. The headline claims are "
        f"{', '.join(f'`{m}`' for m in HEADLINE_METRICS)} of the {'/'.join(HEADLINE_LAYERS)} layer of every sweep: "
        f"{n_head} tests, Holm-adjusted. Every verdict uses adjusted values, never a raw p; every test reports its "
        "n and how many seeds it dropped (a metric undefined for a seed, e.g. every unit dead).\n")


def source_section(figures_dir: Path) -> str:
    path = figures_dir / "fig1_source_table.md"
    if not path.exists():
        return ""
    body = path.read_text().strip()
    return f"## The source experiment, reproduced\n\n{body}\n\n![figure 1](figures/fig1_source_table.png)\n"


def baselines_section(t: Tables) -> str:
    b = t.mnist1d_baselines
    if b is None or b.empty:
        return ""
    lines = ["## MNIST-1D: the pipeline against the published baselines", "",
             "| model | seeds | steps | test accuracy % (ours, 95% CI) | published % | ours − published |",
             "|---|---:|---:|---|---:|---:|"]
    for _, r in b.iterrows():
        lines.append(f"| {r['baseline']} | {int(r['n_seeds'])} | {int(r['steps'])} | "
                     f"{ci(r['test_accuracy_mean_pct'], r['test_accuracy_lo_pct'], r['test_accuracy_hi_pct'])} | "
                     f"{num(r['published_pct'])} | {num(r['diff_pct'])} |")
    lines += ["", "Published numbers: greydanus/mnist1d README (Greydanus & Kobak, ICML 2024).", ""]
    return "\n".join(lines)


def _matched_lines(m: pd.DataFrame | None, title: str) -> list[str]:
    if m is None or m.empty:
        return []
    acc = m[m["metric"] == "test_accuracy"]
    lines = [f"**{title}** (test accuracy, bottleneck − basic at about the same parameters):", ""]
    for _, r in acc.iterrows():
        d = ci(r["diff"], r["diff_lo"], r["diff_hi"])
        word = ("higher" if r["diff_lo"] > 0 else "lower" if r["diff_hi"] < 0 else "no different (CI spans 0)")
        lines.append(f"- basic w = {int(r['basic_width'])} ({int(r['basic_params']):,} params) vs bottleneck "
                     f"w = {int(r['bottleneck_width'])} ({int(r['bottleneck_params']):,}): {d}, the bottleneck "
                     f"block's accuracy is {word}.")
    return [*lines, ""]


def blocks_section(t: Tables) -> str:
    lines = _matched_lines(t.resnet_matched, "2-D block on digits")
    lines += _matched_lines(t.mnist1d_resnet_matched, "1-D block on MNIST-1D")
    return "\n".join(["## Residual blocks at matched budgets", "", *lines]) if lines else ""


def _alds_claim(c: pd.DataFrame | None) -> tuple[str, str, str] | None:
    if c is None or c.empty:
        return None
    rows = c[c["metric"] == "max_rel_error"]
    better = int((rows["diff_hi"] < 0).sum())
    worse = int((rows["diff_lo"] > 0).sum())
    n = len(rows)
    verdict = "holds" if better == n else "holds conditionally" if better else "does not hold as stated"
    where = "; ".join(f"{r['source']} at keep {num(r['keep_ratio'])}" for _, r in rows[rows["diff_hi"] < 0].iterrows())
    computed = (f"ALDS has a lower max relative error than the uniform allocation in {better} of {n} "
                f"(model, keep ratio) cells (95% CI of the difference below 0), higher in {worse}")
    return computed, verdict, (f"holds for: {where}" if verdict == "holds conditionally" else "")


def _who(words: str) -> str:
    return "wider" if words.startswith("wider") else "narrower" if words.startswith("narrower") else "none"


def _family_claims(t: Tables) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for config in _configs(t.trend):
        head = _headline_rows(t.trend, config)
        tested = head[np.isfinite(head["holm"].to_numpy(dtype=float))]
        words = [redundancy_words(str(r["metric"]), r["slope"], r["holm"]) for _, r in tested.iterrows()]
        support = sum(w.startswith("wider") for w in words)
        oppose = sum(w.startswith("narrower") for w in words)
        verdict = ledger_verdict(support, oppose, len(tested))
        detail = ", ".join(f"`{r['metric']}`: {pval(r['holm'])} ({_who(w)})"
                           for (_, r), w in zip(tested.iterrows(), words, strict=True))
        cond = ""
        if verdict == "does not hold as stated":
            cond = ("the opposite holds for " + ", ".join(f"`{r['metric']}`" for (_, r), w in
                                                           zip(tested.iterrows(), words, strict=True)
                                                           if w.startswith("narrower"))
                    if oppose else "no evidence of a width trend in any headline test")
        if verdict == "holds conditionally":
            cond = "holds for " + ", ".join(f"`{r['metric']}`" for (_, r), w in
                                            zip(tested.iterrows(), words, strict=True) if w.startswith("wider"))
        rows.append((f"narrow layers end less redundant than wide ones beyond their initialisation "
                     f"({config_label(config)})", "the study's hypothesis",
                     f"{support} of {len(tested)} headline tests support it, {oppose} oppose it; Holm: {detail}",
                     verdict, cond))
    return rows


def _source_claim(t: Tables) -> tuple[str, str, str, str, str] | None:
    rows = t.trend[(t.trend["experiment"] == "mlp_sweep") & (t.trend["metric"] == "min_pair_l1")
                   & (t.trend["layer"] == "bottleneck")]
    if rows.empty:
        return None
    r = rows.iloc[0]
    init_slope = r["end_slope"] - r["slope"]  # OLS is linear in y over the same x: slope(init) = slope(end − change)
    words = redundancy_words("min_pair_l1", r["slope"], r["q"])
    at_init = init_slope / r["end_slope"] if r["end_slope"] else np.nan  # share of the final trend there at init
    verdict = "holds" if words.startswith("wider") and at_init < 0.5 else "does not hold as stated"
    computed = (f"final closest-pair distance per doubling of w "
                f"{ci(r['end_slope'], r['end_slope_lo'], r['end_slope_hi'])} (p = {pval(r['end_p'])}), already "
                f"{num(init_slope)} at initialisation; training's change "
                f"{ci(r['slope'], r['slope_lo'], r['slope_hi'])} (BH q = {pval(r['q'])}): {words}")
    note = (f"{at_init:.0%} of the final trend is there before training (the minimum over w(w−1)/2 pairs shrinks as w "
            "grows for untrained weights too); the source compared one seed's final distances and read all of it as "
            "learned")
    return ("bottlenecks learn less redundant units (closest pair farther apart at w = 8 than at w = 128)",
            "the published MLP experiment", computed, verdict, note)


def ledger_section(t: Tables) -> str:
    rows: list[tuple[str, str, str, str, str]] = []
    src = _source_claim(t)
    if src:
        rows.append(src)
    rows += _family_claims(t)
    if t.claims is not None:
        for _, r in t.claims.iterrows():
            cond = "; ".join(str(r[c]) for c in ("condition", "note") if c in r and str(r[c]))
            rows.append((str(r["claim"]), str(r["source"]), str(r["computed"]), str(r["verdict"]), cond))
    alds = _alds_claim(t.compression_alds_vs_uniform)
    if alds:
        rows.append(("ALDS's layer-wise allocation beats a uniform one at the same budget",
                     "Liebenwein et al., NeurIPS 2021", alds[0], alds[1], alds[2]))
    lines = ["## Claims ledger", "",
             f"Verdicts: {', '.join(VERDICTS)}.", "",
             "| claim | source | what the code computes | verdict | condition / what the source says |",
             "|---|---|---|---|---|"]
    for claim, source, computed, verdict, cond in rows:
        cells = [x.replace("|", "\\|").replace("\n", " ") for x in (claim, source, computed, verdict, cond)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def limitations_section(t: Tables) -> str:
    fam = t.trend[t.trend["in_family"]]
    n_drop = int((fam["n_dropped"] > 0).sum())
    floor = int((fam["trend_p"] <= 1.0 / (N_PERM + 1) + 1e-12).sum())
    return (
        "## Limitations\n\n"
        "- CPU-scale protocols: every preset is sized for two CPU cores (short training, small evaluation sets, "
        "widths up to a few hundred units); the presets' comments give the full protocol for a GPU. Trends over "
        "width may change with longer training.\n"
        "- The slope is a linear summary of the change over log2 width; where Jonckheere–Terpstra and the slope "
        "disagree, the change is not monotone in width (the trend table lists both).\n"
        f"- {floor} family tests sit at the permutation floor p = 1/{N_PERM + 1:,}: their q and Holm values are "
        "bounds, not estimates.\n"
        f"- {n_drop} family tests dropped seeds (a metric undefined for a seed, e.g. fewer than two live units); "
        "their n is reported.\n"
        "- The functional metrics fit each unit's replacement on half of `functional.samples` held-out examples "
        "(see each preset): where a layer has more units than that half, the compensating regression is "
        "underdetermined and held only by its ridge, so compensated redundancy and R² are underestimated in the "
        "widest layers.\n"
        "- The untrained null is a floor for the functional metrics (an untrained network's output barely "
        "depends on any one unit): the comparison that carries the question is across widths after training.\n"
        "- Two tasks with real bottlenecks (MNIST-1D, 8×8 digits) and small models: nothing here speaks to "
        "ImageNet-scale networks.\n")


def reproduce_section(t: Tables) -> str:
    lines = ["## How to reproduce", "",
             "```bash", "make reproduce   # every experiment, figure, table and this report",
             "make test        # lint and the whole test suite", "python -m analysis.report   # this report alone, "
             "from the committed tables", "```", ""]
    tm = t.timings
    if tm is not None and not tm.empty:
        lines += ["Measured times (`results/tables/timings.csv`):", "", "| command | CPU | kernels | seconds |",
                  "|---|---|---|---:|"]
        total = tm[tm["step"] == "total"]
        for _, r in total.iterrows():
            lines.append(f"| `{r['command']}` | {r['cpu']} | {r['capability']} | {round(r['seconds'])} |")
        lines.append("")
    return "\n".join(lines)


def build_report(tables_dir: Path, figures_dir: Path, t: Tables | None = None) -> str:
    """The report's text; ``t``: the tables of ``tables_dir`` if already loaded."""
    t = load_tables(tables_dir) if t is None else t
    parts = [
        "# Do narrow layers learn less redundant units? A report generated from the data",
        "Generated by `python -m analysis.report` from `results/tables/` and `results/figures/`; do not edit by "
        "hand. Every number below is read from those tables.",
        abstract(t),
        "## The question\n\n"
        "Is a bottleneck's redundancy a consequence of training, and does training make narrow layers less "
        "redundant than wide ones? Redundancy is measured on weights, on activations and functionally; every "
        "measurement is paired with the same seed's initialisation and a width-matched untrained null, because "
        "several of them depend on the width before any training.\n",
        methods_section(t),
        source_section(figures_dir),
        results_section(t),
        "The width trends of the headline metrics: ![figure 14](figures/fig14_width_trend.png)\n",
        baselines_section(t),
        blocks_section(t),
        ledger_section(t),
        limitations_section(t),
        reproduce_section(t),
    ]
    return "\n\n".join(p.strip() for p in parts if p.strip()) + "\n"


# ---------------------------------------------------------------------------------------------------------
# README blocks


def readme_blocks(tables_dir: Path, figures_dir: Path | None = None, t: Tables | None = None) -> dict[str, str]:
    """The README's generated blocks: ``headline`` (the abstract's counts), ``times`` (measured totals) and
    ``source`` (the reproduced source table, from ``figures_dir``, by default beside ``tables_dir``); ``t``: the
    tables of ``tables_dir`` if already loaded."""
    t = load_tables(tables_dir) if t is None else t
    figures_dir = figures_dir or tables_dir.parent / "figures"
    c = headline_counts(t.trend)
    blocks = {"headline": (
        f"Of the {c['tests']} headline tests of the width × training hypothesis (Holm-adjusted, α = {ALPHA}), "
        f"{c['wider']} find that wider layers gain more redundancy in training, {c['narrower']} that narrower "
        f"layers do, and {c['none']} find no evidence of a width trend: see the claims ledger in "
        "[`results/REPORT.md`](results/REPORT.md).")}
    tm = t.timings
    if tm is not None and not tm.empty:
        total = tm[tm["step"] == "total"]
        blocks["times"] = "\n".join(f"- `{r['command']}`: {round(r['seconds'])} s on {r['cpu']} "
                                    f"(kernels: {r['capability']})" for _, r in total.iterrows())
    source = figures_dir / "fig1_source_table.md"
    if source.exists():
        blocks["source"] = "\n".join(line for line in source.read_text().splitlines() if line.startswith("|"))
    return blocks


def fill_blocks(text: str, blocks: dict[str, str]) -> str:
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- report:{name} -->\n)(?:.*?\n)?(<!-- /report:{name} -->)", re.S)
        text = pattern.sub(lambda m, b=body: m.group(1) + b + "\n" + m.group(2), text)
    return text


def write(results: Path = DEFAULT_ROOT, readme: Path | None = None) -> list[Path]:
    results = Path(results)
    report = results / "REPORT.md"
    t = load_tables(results / "tables")  # read once: the report and the README blocks share them
    text = build_report(results / "tables", results / "figures", t)
    report.write_text(text)
    written = [report]
    if readme is not None and readme.exists():
        old = readme.read_text()
        new = fill_blocks(old, readme_blocks(results / "tables", t=t))
        if new != old:
            readme.write_text(new)
            written.append(readme)
    return written


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write results/REPORT.md (and README's generated blocks) from "
                                                 "the committed tables.")
    parser.add_argument("--results", type=Path, default=DEFAULT_ROOT, help="results root (holds tables/, figures/)")
    parser.add_argument("--readme", default=str(DEFAULT_ROOT.parent / "README.md"),
                        help="README whose <!-- report:NAME --> blocks to refresh ('' for none)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        written = write(args.results, Path(args.readme) if args.readme else None)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
