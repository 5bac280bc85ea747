"""The study's report, written from the committed tables: ``python -m analysis.report`` → ``results/REPORT.md``.

Every number in the report is read from a table under ``results/tables/`` (written by ``analysis.figures``) and
formatted here; the prose around it is a template, and every word that states a direction (rises, falls,
non-monotone, no evidence) or a verdict is computed from the same row whose numbers the sentence cites
(:func:`trend_words`, :func:`redundancy_words`, :func:`ledger_verdict`), so words cannot contradict data. The words
follow the row's ``profile`` (``analysis.hypothesis.PROFILES``), which the trend table decides under the adjusted
cut-offs (Holm for a headline row, BH q otherwise); the report checks that each profile agrees with the adjusted p
it cites. Every count is computed once (:func:`report_counts`) and used wherever the report states it. The
declared family, the headline set and α are those of ``conf/analysis/hypothesis.yaml``, which the report cites.

Nothing is rerun: on a fresh clone the command rebuilds the committed report byte for byte (no dates, no absolute
paths, stable order). It also refreshes the blocks of ``README.md`` between ``<!-- report:NAME -->`` and
``<!-- /report:NAME -->`` (the few headline numbers and the measured times), so the README's numbers come from the
same tables.

Tables: ``summary`` and ``trend`` are required; a required table that is missing, empty, or lacks a column the
report reads is one line ``error: <path>: ...`` on stderr and exit status 2 (:class:`ReportError`), never a
traceback. The optional tables (:data:`OPTIONAL`, e.g. ``effects`` and ``calibration``) add their sections when
present and are otherwise left out.

Markdown only: this machine has no pandoc or LaTeX, and a matplotlib-drawn PDF of prose would read worse than
the Markdown a code host renders.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.figures_answer import FAMILY_ORDER
from analysis.hypothesis import (
    ALPHA,
    CONFIG,
    CONFIG_FILE,
    FAMILY_METRICS,
    FAMILY_MIN_REPLICATES,
    HEADLINE_BY_LEVEL,
    HEADLINE_LAYERS,
    HEADLINE_METRICS,
    LEVELS,
    MC_SE,
    MIN_SEEDS,
    N_PERM,
    PROFILES,
    STUDIED_LAYERS,
    adjusted_p,
    redundancy_sign,
    rests_on_pairs,
)
from analysis.load import DEFAULT_ROOT
from analysis.report_answer import anchor_section, answer_section, movement_section
from experiments.functional import Protocol

# The declared family, headline set and α, as the report cites them (a path relative to the repository).
CONFIG_PATH = CONFIG_FILE.relative_to(CONFIG_FILE.parents[2]).as_posix()
PROTOCOL = Protocol()  # the functional metrics' defaults (thresholds, agreement criterion, accuracy drop)
DEFAULT_THRESHOLD = PROTOCOL.threshold

VERDICTS = ("holds", "holds approximately", "holds conditionally", "mixed", "does not hold as stated",
            "not tested")
REQUIRED = ("summary", "trend")
OPTIONAL = ("mnist1d_baselines", "resnet_matched", "mnist1d_resnet_matched", "compression_alds_vs_uniform",
            "claims", "timings", "effects", "calibration", "anchor_growth", "movement")
# The columns the report reads from each table (a required table without one of them is an error; so is an
# optional table that is present but lacks one).
_MATCHED = ("metric", "basic_width", "basic_params", "bottleneck_width", "bottleneck_params", "diff", "diff_lo",
            "diff_hi")
COLUMNS = {
    "summary": (*CONFIG, "width", "layer", "metric", "n_seeds", "init_mean", "end_mean", "end_lo", "end_hi",
                "null_mean"),
    "trend": (*CONFIG, "layer", "metric", "outcome", "n_widths", "n_replicates", "n_total", "n_dropped",
              "slope", "slope_lo", "slope_hi", "trend_p", "omni_p", "profile", "argmax_width", "argmin_width",
              "end_slope", "end_slope_lo", "end_slope_hi", "end_p", "narrow", "wide", "outcome_narrow",
              "outcome_wide", "contrast", "contrast_lo", "contrast_hi",
              "gap_narrow", "gap_narrow_lo", "gap_narrow_hi", "gap_z_narrow", "gap_z_narrow_lo", "gap_z_narrow_hi",
              "gap_wide", "gap_wide_lo", "gap_wide_hi", "gap_z_wide", "gap_z_wide_lo", "gap_z_wide_hi",
              "d_narrow", "d_wide", "n_draws", "in_family", "headline", "q", "holm", "omni_q", "omni_holm",
              "verdict_p", "borderline"),
    "mnist1d_baselines": ("baseline", "n_seeds", "steps", "test_accuracy_mean_pct", "test_accuracy_lo_pct",
                          "test_accuracy_hi_pct", "published_pct", "diff_pct"),
    "resnet_matched": _MATCHED,
    "mnist1d_resnet_matched": _MATCHED,
    "compression_alds_vs_uniform": ("source", "keep_ratio", "metric", "diff_lo", "diff_hi"),
    "claims": ("claim", "source", "computed", "verdict"),
    "timings": ("command", "cpu", "capability", "step", "seconds"),
    "effects": (*CONFIG, "width", "layer", "metric", "gap", "gap_z"),
    "anchor_growth": ("source", "experiment", "model", "data", "block", "layer", "widths", "n_seeds", "growth",
                      "growth_lo", "growth_hi", "share_narrow", "share_wide"),
    "movement": ("experiment", "model", "data", "block", "layer", "narrow", "wide", "move_narrow", "move_narrow_lo",
                 "move_narrow_hi", "move_wide", "move_wide_lo", "move_wide_hi", "wider_moved_less"),
    "calibration": (*CONFIG, "layer", "metric", "n_sim", "size", "size_lo", "size_hi", "band_lo", "band_hi",
                    "size_ok", "omni_size", "omni_size_ok", "old_size", "old_size_ok", "power", "power_lo",
                    "power_hi", "omni_power", "strict_alpha", "power_strict"),
}
_TEXT = {*CONFIG, "layer", "metric", "level", "outcome", "widths", "profile", "weights", "width_list", "n_list",
         "mean_list", "sd_list", "verdict", "baseline", "source", "claim", "computed", "condition", "note",
         "command", "cpu", "capability", "step", "model"}
_BOOL = ("in_family", "headline", "borderline", "size_ok", "omni_size_ok", "old_size_ok")

# Plain names of the metrics; a key ending in @<t> names every point of that metric's grid ({t}: the point).
METRIC_NAMES = {
    "mean_nn_abs_cos": "nearest-unit |cos| of the weights",
    "eff_rank_norm": "weight effective rank / k",
    "mean_nn_l1": "nearest-unit weight distance",
    "min_pair_l1": "closest-pair weight distance (the source's metric)",
    "act_mean_nn_abs_corr": "nearest-unit |corr| of the activations",
    "act_eff_rank_norm": "activation effective rank / w",
    "act_pc95_frac": "PCs for 95% of the activation variance / w",
    "abl_eff_frac": "effective share of units that matter (exp-entropy of the single-unit ablation effects / w)",
    "abl_top10_share": "share of the ablation loss carried by the top 10% of units",
    "abl_delta_loss_mean": "mean relative loss rise when one unit is mean-ablated",
    "comp_delta_loss_mean": "mean relative loss rise when one unit is replaced by its prediction from the others",
    "anchor_prunable_frac": "fraction of units zeroed together at which agreement with the unablated network "
                            "falls to 0.8 (Casper et al.)",
    "anchor_prunable_units": "number of units zeroed together at which agreement falls to 0.8 (Casper et al.)",
    "anchor_agreement@<t>": "agreement with the unablated network when a random {t} of the units is zeroed",
    "joint_prunable_frac": "share of units removable together within the loss criterion",
    "act_r2_others_mean": "held-out R² of a unit from the others",
    "act_r2_others_max": "largest held-out R² of a unit from the others",
    "fit_dead_frac": "share of dead units on the training examples",
    "acc_prunable_frac": "share of units whose mean-ablation costs less than the accuracy criterion",
    "acc_redundant_frac": "share of units whose compensated ablation costs less than the accuracy criterion",
    "prunable_frac@<t>": "share of units whose mean-ablation raises the held-out loss by less than {t}",
    "redundant_frac@<t>": "share of units whose compensated ablation raises the held-out loss by less than {t}",
    "prunable_live_frac@<t>": "share of live units whose mean-ablation raises the held-out loss by less than {t}",
    "redundant_live_frac@<t>": "share of live units whose compensated ablation raises the held-out loss by less "
                               "than {t}",
}
FAMILY_NAMES = {
    "mlp": "MLP 1→32→w→1 learning the identity on 0..99 (the source's task)",
    "conv": "Conv2d 1→32→w→1 learning the identity on 8×8 digits",
    "resnet": "One residual block (C = 32) classifying 8×8 digits",
    "mlp_classifier": "MLP 40→100→w→100→10 classifying MNIST-1D",
    "cnn1d": "The reference 1-D CNN, middle convolution w channels, classifying MNIST-1D",
    "autoencoder": "MLP autoencoder D→100→w→100→D",
    "resnet1d": "One 1-D residual block (C = 32) classifying MNIST-1D",
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
# The functional measures each layer's results cite: the threshold-free ones, then the shares at the default
# threshold of the protocol.
FUNCTIONAL = ("abl_eff_frac", "anchor_prunable_frac", f"prunable_frac@{DEFAULT_THRESHOLD:g}",
              f"redundant_frac@{DEFAULT_THRESHOLD:g}")
REPRODUCE_COMMANDS = ("make reproduce", "make test")
# Profile words of a trend sentence (the profile is decided under the adjusted cut-offs in the trend table).
PROFILE_WORDS = {"rising": "rises with width", "falling": "falls with width",
                 "non-monotone": "changes with width, not monotonically",
                 "no evidence": "shows no evidence of a width effect",
                 "no test": "has no test (no spread across seeds beyond rounding, or too few seeds)"}
_EFFECT = {"rising": 1, "falling": -1}
# Adjusted p-values are compared with α; a profile that claims an effect with an adjusted p above α by more than
# rounding contradicts its own numbers.
_TOL = 1e-9


# ---------------------------------------------------------------------------------------------------------
# Numbers and words


def num(v: float, digits: int = 3) -> str:
    """A number as the report prints it: ``digits`` significant digits, no trailing zeros; "n/a" for NaN."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return f"{v:.{digits}g}" if np.isfinite(v) else "n/a"


def count(v: float) -> str:
    """A count as the report prints it: an integer, "n/a" where the table has none."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return str(int(v)) if np.isfinite(v) else "n/a"


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def ci(v: float, lo: float, hi: float) -> str:
    return f"{num(v)} [{num(lo)}, {num(hi)}]" if np.isfinite(_f(lo)) and np.isfinite(_f(hi)) else num(v)


def pval(p: float) -> str:
    p = _f(p)
    return "n/a" if not np.isfinite(p) else f"{p:.2g}"


def metric_name(metric: str) -> str:
    """The plain name of ``metric``; a grid point ``name@t`` reads its template with t filled in."""
    metric = str(metric)
    if metric in METRIC_NAMES:
        return METRIC_NAMES[metric]
    base, _, point = metric.partition("@")
    template = METRIC_NAMES.get(f"{base}@<t>")
    if template is None or not point:
        return metric
    return template.format(t=f"{_f(point):.0%}" if "frac" in base and "anchor" not in base else point)


def trend_words(profile: str, p_adjusted: float, alpha: float = ALPHA) -> str:
    """How a trend sentence reads: the row's ``profile``; ``p_adjusted`` the smaller of its two adjusted p-values
    (trend and omnibus; the raw ones outside the family). "no evidence" only where the profile says so. Raises
    ``ValueError`` for an unknown profile, and for a profile that claims a width effect while the adjusted p it
    cites is above α (the row would contradict its own numbers)."""
    profile = str(profile)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (not one of {', '.join(PROFILES)})")
    if profile in ("no test", "no evidence"):
        return PROFILE_WORDS[profile]
    p = _f(p_adjusted)
    if not np.isfinite(p) or p > alpha + _TOL:
        raise ValueError(f"profile {profile!r} but adjusted p {pval(p)} is not <= α = {alpha}")
    return PROFILE_WORDS[profile]


def direction(metric: str, profile: str) -> int:
    """+1 where wider layers end with (gain) more redundancy, −1 where narrower ones do, 0 otherwise (non-monotone,
    no evidence, no test, or a metric without a declared sign)."""
    return _EFFECT.get(str(profile), 0) * redundancy_sign(str(metric))


def redundancy_words(metric: str, profile: str, outcome: str = "change") -> str:
    """What the row's profile means for redundancy: who gains more of it in training (who ends with more, where
    the final value is tested)."""
    profile, final = str(profile), str(outcome) == "final"
    if profile == "no test":
        return "no test"
    if profile == "no evidence":
        return ("no evidence that the final redundancy differs between widths" if final
                else "no evidence that training changes redundancy differently at different widths")
    if profile == "non-monotone":
        return "a width effect that is not monotone in the width"
    more = direction(metric, profile)
    verb = "end with more redundancy than" if final else "gain more redundancy in training than"
    if more > 0:
        return f"wider layers {verb} narrow ones"
    if more < 0:
        return f"narrower layers {verb} wide ones"
    return "a width trend"


def ledger_verdict(supporting: int, opposing: int, tested: int) -> str:
    """The claim "narrow layers end less redundant than wide ones beyond their initialisation" over a set of
    headline tests: "holds" where every test supports it, "holds conditionally" where some support and none
    oppose, "mixed" where some support and some oppose, "does not hold as stated" otherwise (none supports)."""
    if tested == 0:
        return "not tested"
    if supporting == tested:
        return "holds"
    if supporting > 0:
        return "mixed" if opposing > 0 else "holds conditionally"
    return "does not hold as stated"


# ---------------------------------------------------------------------------------------------------------
# Tables


@dataclass(frozen=True)
class Counts:
    """Every count the report states, computed once from the trend table (:func:`report_counts`)."""

    configs: int  # sweeps with a headline row
    models: int  # model families among them
    headline_rows: int  # headline (sweep, layer, metric) rows
    headline_tests: int  # their defined tests (trend and omnibus each): Holm's m
    headline_tested: int  # headline rows with a test
    wider: int  # headline rows: wider layers gain (end with) more redundancy
    narrower: int  # ... narrower layers do
    on_pairs: int  # ... of the wider/narrower ones: resting on pairs of widths alone (slope not significant)
    non_monotone: int
    no_evidence: int
    untested: int
    family_rows: int
    family_tests: int  # defined tests of the family (trend and omnibus each): BH's m
    family_effects: int  # family rows whose profile shows a width effect
    borderline: int  # family rows flagged borderline
    dropped: int  # family rows that dropped seeds
    seeds_min: int
    seeds_max: int
    max_draws: int


def report_counts(trend: pd.DataFrame) -> Counts:
    """The counts of the report, from the trend table (its ``in_family``/``headline`` flags already boolean)."""
    fam = trend[trend["in_family"]]
    head = trend[trend["headline"]]
    dirs = [direction(m, p) for m, p in zip(head["metric"], head["profile"], strict=True)]
    prof = head["profile"].astype(str)

    def n_defined(rows: pd.DataFrame) -> int:
        return int(np.isfinite(rows["trend_p"].to_numpy(float)).sum() + np.isfinite(rows["omni_p"].to_numpy(float))
                   .sum())

    reps = fam["n_replicates"].to_numpy(float)
    reps = reps[np.isfinite(reps)]
    draws = trend["n_draws"].to_numpy(float)
    draws = draws[np.isfinite(draws)]
    return Counts(
        configs=len(set(head[CONFIG].astype(str).itertuples(index=False, name=None))),
        models=int(head["model"].nunique()), headline_rows=len(head), headline_tests=n_defined(head),
        headline_tested=int((prof != "no test").sum()),
        wider=sum(d > 0 for d in dirs), narrower=sum(d < 0 for d in dirs),
        on_pairs=sum(bool(d) and rests_on_pairs(r) for d, (_, r) in zip(dirs, head.iterrows(), strict=True)),
        non_monotone=int((prof == "non-monotone").sum()), no_evidence=int((prof == "no evidence").sum()),
        untested=int((prof == "no test").sum()),
        family_rows=len(fam), family_tests=n_defined(fam),
        family_effects=int(fam["profile"].isin(["rising", "falling", "non-monotone"]).sum()),
        borderline=int(fam["borderline"].sum()), dropped=int((fam["n_dropped"].to_numpy(float) > 0).sum()),
        seeds_min=int(reps.min()) if reps.size else 0, seeds_max=int(reps.max()) if reps.size else 0,
        max_draws=int(draws.max()) if draws.size else N_PERM)


@dataclass
class Tables:
    """The committed tables the report reads (``None`` where an optional table is absent); ``counts``: every
    count the report states, computed once from ``trend``."""

    summary: pd.DataFrame
    trend: pd.DataFrame
    mnist1d_baselines: pd.DataFrame | None = None
    resnet_matched: pd.DataFrame | None = None
    mnist1d_resnet_matched: pd.DataFrame | None = None
    compression_alds_vs_uniform: pd.DataFrame | None = None
    claims: pd.DataFrame | None = None
    timings: pd.DataFrame | None = None
    effects: pd.DataFrame | None = None
    calibration: pd.DataFrame | None = None
    anchor_growth: pd.DataFrame | None = None
    movement: pd.DataFrame | None = None
    counts: Counts = field(init=False)

    def __post_init__(self) -> None:
        self.counts = report_counts(self.trend)


class ReportError(RuntimeError):
    """A table the report needs is missing, empty, unreadable or malformed; the message names it, in one line."""


def _read(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: cannot read ({_one_line(err)})") from err
    for col in frame.columns:
        if col in _BOOL:
            frame[col] = frame[col].astype(str).str.strip().str.lower().eq("true")
        elif col in _TEXT or frame[col].dtype == object or str(frame[col].dtype).startswith(("str", "string")):
            if col in _TEXT:  # text columns: NaN (an empty cell) reads as ""
                frame[col] = frame[col].astype(object).where(frame[col].notna(), "").astype(str)
            else:  # a numeric column with a stray text cell: that cell is no value
                frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _check(name: str, path: Path, frame: pd.DataFrame) -> None:
    missing = [c for c in COLUMNS.get(name, ()) if c not in frame.columns]
    if missing:
        raise ReportError(f"{path}: lacks column(s) {', '.join(missing)} (rebuild it with "
                          "`python -m analysis.figures`)")


def _check_trend(path: Path, trend: pd.DataFrame) -> None:
    """Every row's profile is one of ``PROFILES`` and agrees with the numbers its sentence cites: an effect
    profile with an adjusted p <= α; a significant trend with a profile of its sign (or non-monotone)."""
    for i, row in trend.iterrows():
        label, adj_t, adj_o = adjusted_p(row)
        try:
            trend_words(row["profile"], np.fmin(adj_t, adj_o))
        except ValueError as err:
            raise ReportError(f"{path}: row {i} ({row['experiment']}, {row['layer']}, {row['metric']}): "
                              f"{err}") from err
        slope = _f(row["slope"])
        if np.isfinite(adj_t) and adj_t <= ALPHA and np.isfinite(slope) and slope != 0:
            agree = {"rising": slope > 0, "falling": slope < 0}.get(str(row["profile"]), True)
            if not agree:
                raise ReportError(f"{path}: row {i} ({row['experiment']}, {row['layer']}, {row['metric']}): profile "
                                  f"{row['profile']!r} but a significant slope of {num(slope)} ({label} "
                                  f"{pval(adj_t)})")


def load_tables(tables_dir: Path) -> Tables:
    """Read the tables of ``tables_dir``; raises :class:`ReportError` (one line, naming the table) where a required
    table is missing, empty or lacks a column the report reads, or an optional one present lacks one."""
    tables_dir = Path(tables_dir)
    found = {}
    for name in (*REQUIRED, *OPTIONAL):
        path = tables_dir / f"{name}.csv"
        if not path.exists():
            if name in REQUIRED:
                raise ReportError(f"{path}: missing (run `python -m analysis.figures` after the experiments)")
            continue
        frame = _read(path)
        _check(name, path, frame)
        if frame.empty:
            if name in REQUIRED:
                raise ReportError(f"{path}: has no rows (run `python -m analysis.figures` after the experiments)")
            continue
        found[name] = frame
    _check_trend(tables_dir / "trend.csv", found["trend"])
    try:
        return Tables(**found)
    except (KeyError, ValueError, TypeError) as err:
        raise ReportError(f"{tables_dir / 'trend.csv'}: cannot count its tests ({_one_line(err)})") from err


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
    c = {k: str(v) for k, v in zip(CONFIG, config, strict=True)}
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
    """One trend row in words, every word computed from the numbers it cites."""
    label, adj_t, adj_o = adjusted_p(row)
    metric, final = str(row["metric"]), str(row["outcome"]) == "final"
    where = f"`{metric}`, layer `{row['layer']}`"
    subject = (f"The final value of the {metric_name(metric)} ({where}; no spread at initialisation, so the final "
               f"value is tested)" if final else f"Training's change of the {metric_name(metric)} ({where})")
    what = "final value" if final else "change"
    words = trend_words(row["profile"], np.fmin(adj_t, adj_o))
    if rests_on_pairs(row):
        up = str(row["profile"]) == "rising"
        n_pairs = count(row["n_rising_pairs" if up else "n_falling_pairs"])
        one = n_pairs == "1"
        words = (f"{'rises' if up else 'falls'} between some widths ({n_pairs} pair{'' if one else 's'} of widths "
                 f"differ{'s' if one else ''} significantly, all {'upward' if up else 'downward'}; the slope over all "
                 "widths is not significant after adjustment)")
    narrow, wide = count(row["narrow"]), count(row["wide"])
    peak = ""
    if str(row["profile"]) == "non-monotone":
        peak = f" (largest at w = {count(row['argmax_width'])}, smallest at w = {count(row['argmin_width'])})"
    return (f"{subject} {words}: slope {ci(row['slope'], row['slope_lo'], row['slope_hi'])} per doubling of w "
            f"(cluster-robust by seed), bootstrap p = {pval(row['trend_p'])}, omnibus p = {pval(row['omni_p'])}; "
            f"{label} = {pval(adj_t)} (trend), {pval(adj_o)} (omnibus); {what} {num(row['outcome_narrow'])} at "
            f"w = {narrow} vs {num(row['outcome_wide'])} at w = {wide} (wide − narrow "
            f"{ci(row['contrast'], row['contrast_lo'], row['contrast_hi'])}){peak}; {_null_effect(row)}"
            f"n = {count(row['n_total'])} seeds{_dropped(row)}. So: "
            f"{redundancy_words(metric, row['profile'], row['outcome'])}.{_borderline(row)}")


def _null_effect(row: pd.Series) -> str:
    """The trained layer against the untrained null at both ends: the gap (final mean − null mean) with its CI,
    standardised by the row's seed-to-seed SD of the trained value (one yardstick for all widths), and the old
    d = gap / null SD, labelled for what it is."""
    if not (np.isfinite(_f(row["gap_narrow"])) and np.isfinite(_f(row["gap_wide"]))):
        return ""  # no null for this metric (the loss) or none at an end
    narrow, wide = count(row["narrow"]), count(row["wide"])
    out = (f"trained − null gap {ci(row['gap_narrow'], row['gap_narrow_lo'], row['gap_narrow_hi'])} at w = {narrow} "
           f"and {ci(row['gap_wide'], row['gap_wide_lo'], row['gap_wide_hi'])} at w = {wide}")
    if np.isfinite(_f(row["gap_z_narrow"])) and np.isfinite(_f(row["gap_z_wide"])):
        out += (f", standardised {ci(row['gap_z_narrow'], row['gap_z_narrow_lo'], row['gap_z_narrow_hi'])} and "
                f"{ci(row['gap_z_wide'], row['gap_z_wide_lo'], row['gap_z_wide_hi'])} seed-to-seed SDs of the trained "
                "value")
    if np.isfinite(_f(row["d_narrow"])) and np.isfinite(_f(row["d_wide"])):
        out += (f" (effect vs the untrained null's SD: d = {num(row['d_narrow'])} and {num(row['d_wide'])}, a "
                "denominator that shrinks with width)")
    return out + "; "


def _dropped(row: pd.Series) -> str:
    d = _f(row["n_dropped"])
    if not np.isfinite(d) or d == 0:
        return ""
    total = _f(row["n_replicates"]) * _f(row["n_widths"])
    return f" ({count(d)} of {count(total)} dropped: no value)"


def _borderline(row: pd.Series) -> str:
    if not row["borderline"]:
        return ""
    draws = _f(row["n_draws"])
    return (f" **Borderline**: a p within {MC_SE:g} Monte Carlo SEs of its adjusted cut-off after "
            f"{f'{int(draws):,}' if np.isfinite(draws) else 'n/a'} draws.")


def _summary_at(summary: pd.DataFrame, config: tuple, layer: str, metric: str, width: float) -> pd.Series | None:
    rows = _rows(summary, config)
    rows = rows[(rows["layer"] == layer) & (rows["metric"] == metric) & (rows["width"].to_numpy(float) == width)]
    return rows.iloc[0] if len(rows) else None


def functional_sentence(summary: pd.DataFrame, config: tuple, layer: str, narrow: float, wide: float) -> str:
    parts = []
    for metric in FUNCTIONAL:
        ends = [_summary_at(summary, config, layer, metric, w) for w in (narrow, wide)]
        if any(e is None for e in ends):
            continue
        a, b = ends
        has_null = np.isfinite(_f(a["null_mean"])) and np.isfinite(_f(b["null_mean"]))
        null = f"; untrained null {num(a['null_mean'])} and {num(b['null_mean'])}" if has_null else ""
        parts.append(f"{metric_name(metric)} (`{metric}`) {ci(a['end_mean'], a['end_lo'], a['end_hi'])} at "
                     f"w = {count(narrow)} and {ci(b['end_mean'], b['end_lo'], b['end_hi'])} at w = {count(wide)} "
                     f"after training (at initialisation {num(a['init_mean'])} and {num(b['init_mean'])}{null})")
    return ("Functional redundancy of `" + layer + "`: " + "; ".join(parts) + ".") if parts else ""


# What a held-out loss is, per data set, so that a value like 1e3 reads as what it is.
LOSS_UNITS = {"integers": "mean squared error on the raw integers 0–99 (a loss of 100 is outputs off by about 10)",
              "digits": "mean squared error per pixel of images scaled to [0, 1]",
              "mnist1d": "mean squared error per sample of the signals"}


def task_sentence(summary: pd.DataFrame, config: tuple, narrow: float, wide: float) -> str:
    for metric, name in (("test_accuracy", "test accuracy"), ("eval_loss", "held-out loss")):
        ends = [_summary_at(summary, config, "model", metric, w) for w in (narrow, wide)]
        if all(e is not None for e in ends):
            a, b = ends
            data = str(dict(zip(CONFIG, config, strict=True)).get("data", ""))
            unit = f" ({LOSS_UNITS[data]})" if metric == "eval_loss" and data in LOSS_UNITS else ""
            return (f"The task: {name} {ci(a['end_mean'], a['end_lo'], a['end_hi'])} at w = {count(narrow)} and "
                    f"{ci(b['end_mean'], b['end_lo'], b['end_hi'])} at w = {count(wide)}{unit}.")
    return ""


def results_section(t: Tables) -> str:
    out = ["## Results per family", ""]
    if t.effects is not None:
        out += ["The trained − null effects at every width (gap in the metric's units and standardised, and the "
                "effect vs the untrained null's SD) are in `results/tables/effects.md`.", ""]
    shown_figures: set[str] = set()
    by_model: dict[str, list[tuple]] = {}
    for config in _configs(t.trend):
        by_model.setdefault(str(dict(zip(CONFIG, config, strict=True))["model"]), []).append(config)
    order = {m: i for i, m in enumerate(FAMILY_ORDER)}  # the source's task, conv, blocks, classifiers, autoencoders
    for model, configs in sorted(by_model.items(), key=lambda kv: order.get(kv[0], len(order))):
        out += [f"### {FAMILY_NAMES.get(model, model)}", ""]
        for config in configs:
            head = _headline_rows(t.trend, config)
            if head.empty:
                continue
            narrow, wide = _f(head["narrow"].min()), _f(head["wide"].max())
            out.append(f"**{config_label(config)}**: widths {count(narrow)} to {count(wide)}, "
                       f"{count(head['n_replicates'].max())} seeds per width.")
            out.append("")
            for _, row in head.iterrows():
                out.append(f"- {trend_sentence(row)}")
            layers = [la for la in STUDIED_LAYERS if la in set(_rows(t.summary, config)["layer"])]
            for layer in layers:
                s = functional_sentence(t.summary, config, layer, narrow, wide)
                if s:
                    out.append(f"- {s}")
            s = task_sentence(t.summary, config, narrow, wide)
            if s:
                out.append(f"- {s}")
            out.append("")
        figs = [n for n in FAMILY_FIGURES.get(model, []) if n not in shown_figures]
        shown_figures.update(figs)
        if figs:
            out += ["Figures: " + ", ".join(f"[{n}](#{n})" for n in figs) + " (appendix).", ""]
    return "\n".join(out)


# The appendix's headings: what each per-family figure shows (the figure's file name stays the link target).
FIGURE_TITLES = {
    "fig2_min_pair_vs_width": "Figure 2: the source's closest-pair distance against width, trained, initial and null",
    "fig3_pair_free_vs_width": "Figure 3: weight measures without a pair-count effect against width",
    "fig3b_activation_vs_width": "Figure 3b: activation measures against width",
    "fig3c_functional_vs_width": "Figure 3c: functional measures against width",
    "fig4_loss_vs_width": "Figure 4: final training loss against width",
    "fig8_conv_redundancy_vs_width": "Figure 8: conv bottleneck redundancy against width",
    "fig8b_conv_loss_vs_width": "Figure 8b: conv training and evaluation loss against width",
    "fig10_resnet_blocks_vs_params": "Figure 10: basic and bottleneck residual blocks against parameters (digits)",
    "fig13_mnist1d_resnet_blocks": "Figure 13: 1-D residual blocks at matched parameter budgets (MNIST-1D)",
    "fig11_mnist1d_redundancy_vs_width": "Figure 11: redundancy against width, MNIST-1D classifiers and autoencoders",
    "fig12_mnist1d_task_vs_width": "Figure 12: task performance against width, MNIST-1D classifiers and autoencoders",
    "fig14_width_trend": "Figure 14: the paired change of every headline metric against width, with the fitted trend",
}


def _appendix_figure(name: str, text: str = "") -> list[str]:
    """An appendix entry: an anchor named after the figure file (the per-family sections link to it), a heading
    saying what it shows, optional text, the image."""
    return [f'<a id="{name}"></a>', "", f"### {FIGURE_TITLES.get(name, name)}", "",
            *([text, ""] if text else []), f"![{name}](figures/{name}.png)", ""]


def appendix_section(t: Tables) -> str:
    """The per-family figure grids, once each, in the order of the results."""
    models = {str(dict(zip(CONFIG, c, strict=True))["model"]) for c in _configs(t.trend)}
    order = {m: i for i, m in enumerate(FAMILY_ORDER)}
    out, shown = ["## Appendix: per-family figures", ""], set()
    for model in sorted(models, key=lambda m: order.get(m, len(order))):
        for name in FAMILY_FIGURES.get(model, []):
            if name not in shown:
                shown.add(name)
                out += _appendix_figure(name)
    out += _appendix_figure("fig14_width_trend", "The width effects of every headline metric, one panel per sweep × "
                            "metric, with the fitted slope.")
    return "\n".join(out)


def _headline_summary(c: Counts) -> str:
    """The headline counts in one sentence (the abstract's and the README's)."""
    return (f"Of the {c.headline_tested} tested headline comparisons ({c.headline_tests} tests, a trend and an "
            f"omnibus test each, Holm-adjusted, α = {ALPHA}; declared in `{CONFIG_PATH}`), {c.wider} find that wider "
            f"layers gain more redundancy in training, {c.narrower} that narrower layers do ({c.on_pairs} of these "
            f"{c.wider + c.narrower} on pairs of widths alone, the slope over all widths not significant), "
            f"{c.non_monotone} find a width effect that is not monotone, and {c.no_evidence} find no evidence of a "
            "width effect")


def abstract(t: Tables) -> str:
    c = t.counts
    one = c.untested == 1
    untested = f" ({c.untested} headline row{'' if one else 's'} {'has' if one else 'have'} no test)"
    untested = untested if c.untested else ""
    return (
        "## Abstract\n\n"
        "A published experiment trained a linear MLP 1→32→w→1 to output its own input and read a larger closest-"
        "pair distance between bottleneck units at w = 8 than at w = 128 as \"bottlenecks learn less redundant "
        "units\". We reproduce it bit for bit and test the hypothesis itself, whether training changes redundancy "
        "differently in narrow and wide layers, from each seed's paired change (final − initial) over log2 width, "
        f"in {c.configs} sweeps of {c.models} model families (identity MLPs, conv identity nets, residual blocks, "
        "MNIST-1D classifiers, autoencoders narrower and wider than their data), with weight, activation and "
        "functional (ablation) measures of redundancy, against untrained nulls. "
        f"{_headline_summary(c)}{untested}; over the whole declared family, {c.family_effects} of {c.family_rows} "
        f"rows ({c.family_tests} tests) show a width effect at their adjusted cut-offs (Holm for a headline row, BH "
        f"q otherwise, α = {ALPHA}). {_overall(c)} (claims ledger below).\n")


def _overall(c: Counts) -> str:
    """The abstract's conclusion, from the headline counts it follows."""
    if c.wider and c.narrower:
        return ("The direction depends on the family and the metric: no single statement \"narrow layers are less "
                "redundant\" holds across them")
    if c.wider:
        return "Where there is a monotone width effect, wider layers gain more redundancy in training"
    if c.narrower:
        return "Where there is a monotone width effect, it is narrower layers that gain more redundancy in training"
    if c.non_monotone:
        return "No headline test finds a monotone width trend in what training does to redundancy"
    return "No headline test finds a width effect in what training does to redundancy"


def threshold_check(summary: pd.DataFrame, trend: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> str:
    """Where the functional threshold (by default the protocol's, ``Protocol().threshold``) sits against the data:
    the seed-to-seed spread of the held-out loss (SD over seeds / mean, recovered from the summary's bootstrap CI
    of the mean: half-width × √n / 1.96) in every (sweep, width) cell. A loss change below it is smaller than two
    trained networks of the same width differ by."""
    sweeps = {tuple(str(v) for v in c) for c in trend.loc[trend["in_family"], CONFIG].itertuples(index=False,
                                                                                                   name=None)}
    rows = summary[(summary["layer"] == "model") & (summary["metric"] == "eval_loss")]
    keep = np.array([tuple(str(v) for v in r) in sweeps for r in rows[CONFIG].itertuples(index=False, name=None)],
                    dtype=bool)
    rows = rows[keep]
    rel_sd = ((rows["end_hi"] - rows["end_lo"]) / 2 * np.sqrt(rows["n_seeds"]) / 1.96 / rows["end_mean"].abs())
    rel_sd = rel_sd[np.isfinite(rel_sd.to_numpy(float))]
    if rel_sd.empty:
        return ""
    above = int((rel_sd > threshold).sum())
    return (f"The default threshold is {threshold:g} of the loss (`functional.threshold`): the held-out loss of two "
            f"trained networks of the same width differs by more than that in {above} of {len(rel_sd)} (sweep, "
            f"width) cells (seed-to-seed SD / mean from {num(float(rel_sd.min()))} to {num(float(rel_sd.max()))}, "
            f"median {num(float(rel_sd.median()))}), so {'everywhere' if above == len(rel_sd) else 'in those cells'} "
            "a unit whose removal changes the loss by less is within the variation between seeds; the grid of "
            "thresholds shows where a share depends on the cut, and `abl_eff_frac` and `anchor_prunable_frac` "
            "need none.")


def methods_section(t: Tables) -> str:
    c = t.counts
    fam = t.trend[t.trend["in_family"]]
    present = [m for m in FAMILY_METRICS if m in set(fam["metric"])]
    headline = "; ".join(f"{lv}: `{HEADLINE_BY_LEVEL[lv]}`" for lv in LEVELS if lv in HEADLINE_BY_LEVEL)
    thresholds = ", ".join(f"{x:g}" for x in PROTOCOL.thresholds)
    return (
        "## Methods\n\n"
        "**Protocols.** Every preset (`conf/experiment/*.yaml`) trains all its seeds as replicates of one "
        "stacked model (`experiments/ensemble.py`) in a fixed mini-batch order, logs every metric at epoch 0 and "
        "at its metric epochs, and measures a width-matched untrained null: fresh draws of each studied layer for "
        "the weight metrics, whole untrained models for the activation and functional metrics. Each preset's "
        "comment says what a user with a GPU would set for the full protocol. Seeds per width in the family's "
        f"sweeps: {c.seeds_min} to {c.seeds_max}.\n\n"
        "**Metrics.** Weights (`experiments/metrics.py`): nearest-unit |cos|, effective rank / min(w, fan-in), "
        "the source's closest-pair distance and its nearest-neighbour mean. Activations on held-out data: "
        "nearest-unit |corr|, effective rank / w, PCs for 95% of the variance / w, dead units. Functional "
        "(`experiments/functional.py`; Casper, Boix et al., AAAI 2021): every replacement statistic (a unit's "
        "mean, its ridge prediction from the layer's other units, λ per unit by generalised cross-validation) is "
        "fitted on the training examples and every loss is scored on the whole held-out set (the integer source "
        "task has no held-out data: it fits and scores on its 100 inputs). `abl_eff_frac`: the exp-entropy "
        "effective number of units that matter ÷ w, from the single-unit mean-ablation effects (no threshold); "
        "`anchor_prunable_frac`: the anchor's random joint zero-ablation, the fraction of units zeroed together at "
        f"which agreement with the unablated network's test predictions falls to {PROTOCOL.agreement:g}; "
        "`prunable_frac@t` (`redundant_frac@t`): the share of units whose mean-ablation (compensated ablation) "
        f"raises the held-out loss by less than t, for t in {thresholds} (`*_live_frac@t`: among live units); "
        "`joint_prunable_frac`: the share removable together within the loss criterion; `act_r2_others_mean`: "
        "held-out R² of a unit from the others; for classifiers `acc_prunable_frac` / `acc_redundant_frac`, with a "
        f"test-accuracy drop below {PROTOCOL.acc_drop:g} as the criterion. {threshold_check(t.summary, t.trend)}\n\n"
        "**Statistics** (`analysis/stats.py`, `analysis/inference.py`, `analysis/hypothesis.py`). Per width: "
        "means over seeds with 95% percentile-bootstrap CIs, the paired change with a Wilcoxon signed-rank test, "
        "the null's 2.5–97.5% band and each seed's percentile in it. The hypothesis, per sweep × layer × metric: "
        "the outcome is each seed's paired change (final − initial), or its final value where the metric has no "
        "spread at initialisation. The same seeds run at every width, so the seed is the unit (cluster): the trend "
        "is the OLS slope of the outcome on log2 width over all seeds with a cluster-robust (CR1, by seed) "
        f"standard error, its p from a restricted wild cluster bootstrap of the t ({N_PERM:,} draws, more near a "
        "cut-off); the omnibus test of any width effect is the largest studentised difference between two widths' "
        "means with the same bootstrap (max-T), valid under unequal spreads; CIs resample seeds with all their "
        "widths. The profile (rising, falling, non-monotone, no evidence, no test) follows the significant trend "
        f"and pairs of widths under the adjusted cut-offs; fewer than {MIN_SEEDS} seeds, or a spread that is "
        "float32 rounding, is no test. Effects against the untrained null at each end: the gap (final mean − null "
        "mean) in the metric's units, the gap standardised by one yardstick per row (the seed-to-seed SD of the "
        "trained value, root mean square over widths), and d = gap / null SD, the effect vs the untrained null's "
        "SD, whose denominator shrinks with width. "
        f"Multiplicity and α are declared in `{CONFIG_PATH}` (α = {ALPHA}): the family is the trend and omnibus "
        f"tests of the layers that take the width ({', '.join(f'`{x}`' for x in STUDIED_LAYERS)}) over the "
        f"redundancy metrics {', '.join(f'`{m}`' for m in present)} in every sweep with ≥ {FAMILY_MIN_REPLICATES} "
        f"seeds per width: {c.family_rows} rows, {c.family_tests} defined tests, Benjamini–Hochberg q over them. "
        f"The headline claims are one metric per level ({headline}) of the {'/'.join(HEADLINE_LAYERS)} layer of "
        f"every sweep: {c.headline_rows} rows, {c.headline_tests} tests, Holm-adjusted. Every verdict uses adjusted "
        f"values, never a raw p; a p that stays within {MC_SE:g} Monte Carlo SEs of its cut-off after the most "
        "draws it may get is marked borderline; every test reports its n and how many seeds it dropped (a metric "
        "undefined for a seed, e.g. every unit dead).\n")


def source_section(figures_dir: Path) -> str:
    path = Path(figures_dir) / "fig1_source_table.md"
    if not path.exists():
        return ""
    body = path.read_text().strip()
    return f"## The source experiment, reproduced\n\n{body}\n\n![figure 1](figures/fig1_source_table.png)\n"


def calibration_section(t: Tables) -> str:
    """Size and power of the width tests by simulation (``calibration.csv``, :mod:`analysis.calibration`)."""
    cal = t.calibration
    if cal is None or cal.empty:
        return ""
    n = len(cal)
    n_sim = count(cal["n_sim"].max())
    lo, hi = _f(cal["band_lo"].iloc[0]), _f(cal["band_hi"].iloc[0])
    ok, omni_ok, old_ok = (int(cal[c].sum()) for c in ("size_ok", "omni_size_ok", "old_size_ok"))
    lines = ["## Calibration of the width tests", "",
             f"Each of {n} tests simulated with its own design (`analysis/calibration.py`, "
             f"`results/tables/calibration.csv`): its widths, seeds per width, per-width seed-to-seed SD and shared "
             f"seed effect, {n_sim} data sets with no width effect (size) and {n_sim} with the observed mean outcome "
             f"at each width (power). A valid level-{ALPHA} test rejects at a rate inside the 95% binomial band "
             f"{num(lo)}–{num(hi)}: the trend test's rate is inside it for {ok} of {n} tests, the omnibus test's for "
             f"{omni_ok}, the old permutation test's (width labels permuted across seeds) for {old_ok}.", "",
             "| sweep | layer | metric | rejection rate at 0.05 [95% CI] | omnibus | old permutation | power [95% CI] "
             "| omnibus power | power at Holm's strictest α |",
             "|---|---|---|---|---:|---:|---|---:|---:|"]
    for _, r in cal.iterrows():
        config = tuple(r[c] for c in CONFIG)
        lines.append(f"| {config_label(config)} | `{r['layer']}` | `{r['metric']}` | "
                     f"{ci(r['size'], r['size_lo'], r['size_hi'])} | {num(r['omni_size'])} | {num(r['old_size'])} | "
                     f"{ci(r['power'], r['power_lo'], r['power_hi'])} | {num(r['omni_power'])} | "
                     f"{num(r['power_strict'])} (α = {pval(r['strict_alpha'])}) |")
    return "\n".join(lines) + "\n"


def baselines_section(t: Tables) -> str:
    b = t.mnist1d_baselines
    if b is None or b.empty:
        return ""
    lines = ["## MNIST-1D: the pipeline against the published baselines", "",
             "| model | seeds | steps | test accuracy % (ours, 95% CI) | published % | ours − published |",
             "|---|---:|---:|---|---:|---:|"]
    for _, r in b.iterrows():
        lines.append(f"| {r['baseline']} | {count(r['n_seeds'])} | {count(r['steps'])} | "
                     f"{ci(r['test_accuracy_mean_pct'], r['test_accuracy_lo_pct'], r['test_accuracy_hi_pct'])} | "
                     f"{num(r['published_pct'])} | {num(r['diff_pct'])} |")
    lines += ["", "Published numbers: greydanus/mnist1d README (Greydanus & Kobak, ICML 2024).", ""]
    return "\n".join(lines)


def _params(v) -> str:
    v = _f(v)
    return f"{int(v):,}" if np.isfinite(v) else "n/a"


def _matched_lines(m: pd.DataFrame | None, title: str) -> list[str]:
    if m is None or m.empty:
        return []
    acc = m[m["metric"] == "test_accuracy"]
    lines = [f"**{title}** (test accuracy, bottleneck − basic at about the same parameters):", ""]
    for _, r in acc.iterrows():
        d = ci(r["diff"], r["diff_lo"], r["diff_hi"])
        word = ("higher" if _f(r["diff_lo"]) > 0 else "lower" if _f(r["diff_hi"]) < 0
                else "no different (CI spans 0)")
        lines.append(f"- basic w = {count(r['basic_width'])} ({_params(r['basic_params'])} params) vs bottleneck "
                     f"w = {count(r['bottleneck_width'])} ({_params(r['bottleneck_params'])}): {d}, the bottleneck "
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
    better = rows["diff_hi"].to_numpy(float) < 0
    worse = rows["diff_lo"].to_numpy(float) > 0
    n = len(rows)
    verdict = ledger_verdict(int(better.sum()), int(worse.sum()), n)
    cells = "; ".join(f"{r['source']} at keep {num(r['keep_ratio'])}: "
                      f"{'lower' if b else 'higher' if w else 'no different'}"
                      for (_, r), b, w in zip(rows.iterrows(), better, worse, strict=True))
    computed = (f"ALDS has a lower max relative error than the uniform allocation in {int(better.sum())} of {n} "
                f"(model, keep ratio) cells (95% CI of the difference below 0), higher in {int(worse.sum())}; "
                f"cells: {cells}")
    where = "; ".join(f"{r['source']} at keep {num(r['keep_ratio'])}" for (_, r), b in
                      zip(rows.iterrows(), better, strict=True) if b)
    return computed, verdict, (f"holds for: {where}" if verdict in ("holds conditionally", "mixed") else "")


def _support_word(metric: str, profile: str) -> str:
    if str(profile) == "no test":
        return "no test"
    d = direction(metric, profile)
    return "supports" if d > 0 else "opposes" if d < 0 else "neither"


def _family_claims(t: Tables) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for config in _configs(t.trend):
        head = _headline_rows(t.trend, config)
        if head.empty:
            continue
        tested = head[head["profile"].astype(str) != "no test"]
        dirs = [direction(m, p) for m, p in zip(tested["metric"], tested["profile"], strict=True)]
        support, oppose = sum(d > 0 for d in dirs), sum(d < 0 for d in dirs)
        verdict = ledger_verdict(support, oppose, len(tested))
        detail = "; ".join(
            f"`{r['metric']}` (`{r['layer']}`): {r['profile']}{' (pairs of widths only)' if rests_on_pairs(r) else ''}"
            f", Holm {pval(r['holm'])} (trend) / "
            f"{pval(r['omni_holm'])} (omnibus), {_support_word(r['metric'], r['profile'])}"
            for _, r in head.iterrows())
        names = {s: [f"`{r['metric']}`" for (_, r), d in zip(tested.iterrows(), dirs, strict=True) if d == s]
                 for s in (1, -1)}
        cond = ""
        if verdict == "holds conditionally":
            cond = "holds for " + ", ".join(names[1]) + "; the other headline tests find no monotone width effect"
        elif verdict == "mixed":
            cond = f"supported by {', '.join(names[1])}, opposed by {', '.join(names[-1])}"
        elif verdict == "does not hold as stated":
            cond = (f"the opposite holds for {', '.join(names[-1])}" if oppose
                    else "no headline test finds a monotone width effect")
        n_untested = len(head) - len(tested)
        untested = f", {n_untested} have no test" if n_untested else ""
        rows.append((f"narrow layers end less redundant than wide ones beyond their initialisation "
                     f"({config_label(config)})", "the study's hypothesis",
                     f"{support} of {len(tested)} tested headline rows support it, {oppose} oppose it{untested}; "
                     f"tests: {detail}", verdict, cond))
    return rows


def _source_claim(t: Tables) -> tuple[str, str, str, str, str] | None:
    rows = t.trend[(t.trend["experiment"] == "mlp_sweep") & (t.trend["metric"] == "min_pair_l1")
                   & (t.trend["layer"] == "bottleneck")]
    if rows.empty:
        return None
    r = rows.iloc[0]
    label, adj_t, adj_o = adjusted_p(r)
    final = str(r["outcome"]) == "final"
    end_slope, slope = _f(r["end_slope"]), _f(r["slope"])
    # OLS is linear in y over the same x: slope(init) = slope(end − change); a final-value outcome has no spread at
    # initialisation, so none of the trend is there before training.
    init_slope = 0.0 if final else end_slope - slope
    words = redundancy_words("min_pair_l1", r["profile"], r["outcome"])
    at_init = init_slope / end_slope if np.isfinite(end_slope) and end_slope else np.nan
    learned = direction("min_pair_l1", r["profile"]) > 0
    verdict = "holds" if learned and np.isfinite(at_init) and at_init < 0.5 else "does not hold as stated"
    computed = (f"final closest-pair distance per doubling of w "
                f"{ci(r['end_slope'], r['end_slope_lo'], r['end_slope_hi'])} (p = {pval(r['end_p'])}), already "
                f"{num(init_slope)} at initialisation; the tested {'final value' if final else 'change'}: slope "
                f"{ci(r['slope'], r['slope_lo'], r['slope_hi'])}, profile {r['profile']} ({label} "
                f"{pval(adj_t)} (trend), {pval(adj_o)} (omnibus)): {words}")
    share = f"{at_init:.0%}" if np.isfinite(at_init) else "n/a"
    note = (f"{share} of the final trend is there before training (the minimum over w(w−1)/2 pairs shrinks as w "
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
             f"Verdicts: {', '.join(VERDICTS)}. Over a set of tests: holds where all support the claim, holds "
             "conditionally where some support it and none oppose it, mixed where some support and some oppose it, "
             "does not hold as stated where none supports it; each verdict lists the tests behind it.", "",
             "| claim | source | what the code computes | verdict | condition / what the source says |",
             "|---|---|---|---|---|"]
    for claim, source, computed, verdict, cond in rows:
        cells = [x.replace("|", "\\|").replace("\n", " ") for x in (claim, source, computed, verdict, cond)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def limitations_section(t: Tables) -> str:
    c = t.counts
    thresholds = ", ".join(f"{x:g}" for x in PROTOCOL.thresholds)
    return (
        "## Limitations\n\n"
        "- CPU-scale protocols: every preset is sized for two CPU cores (short training, small evaluation sets, "
        "widths up to a few hundred units); the presets' comments give the full protocol for a GPU. Trends over "
        "width may change with longer training.\n"
        "- The slope is a linear summary of the outcome over log2 width; the omnibus test and the profile catch a "
        f"width effect of any shape ({c.non_monotone} headline rows are non-monotone), and the trend table lists "
        "both.\n"
        f"- {c.borderline} family tests are borderline: a p within {MC_SE:g} Monte Carlo SEs of its adjusted "
        f"cut-off after the most draws it may get (up to {c.max_draws:,} here); no p is below 1/(draws + 1).\n"
        f"- {c.dropped} family rows dropped seeds (a metric undefined for a seed, e.g. fewer than two live units); "
        "their n is reported.\n"
        "- The functional metrics fit each unit's replacement (its training mean, its ridge prediction from the "
        "other units) on the training examples and score every loss on the whole held-out set; the integer source "
        "task has no held-out data, so it fits and scores on its 100 inputs (its units are affine in one scalar, "
        "so the regression is exact there).\n"
        f"- The prunable and redundant shares depend on a threshold (grid {thresholds}; default "
        f"{DEFAULT_THRESHOLD:g}); the family's functional metrics need none (`abl_eff_frac`, "
        "`anchor_prunable_frac`) or use the default (`joint_prunable_frac`).\n"
        "- d, the effect vs the untrained null's SD, grows with width for a constant gap (the null SD of a mean "
        "over w units shrinks); the standardised gap uses one yardstick per row instead.\n"
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
            lines.append(f"| `{r['command']}` | {r['cpu']} | {r['capability']} | {_seconds(r['seconds'])} |")
        lines.append("")
    return "\n".join(lines)


def _seconds(v) -> str:
    v = _f(v)
    return str(round(v)) if np.isfinite(v) else "n/a"


def build_report(tables_dir: Path, figures_dir: Path, t: Tables | None = None) -> str:
    """The report's text; ``t``: the tables of ``tables_dir`` if already loaded."""
    t = load_tables(tables_dir) if t is None else t
    parts = [
        "# Do narrow layers learn less redundant units? A report generated from the data",
        "Generated by `python -m analysis.report` from `results/tables/` and `results/figures/`; do not edit by "
        f"hand. Every number below is read from those tables; the tests' family, headline set and α are declared in "
        f"`{CONFIG_PATH}`.",
        abstract(t),
        answer_section(t.trend),
        "## The question\n\n"
        "Is a bottleneck's redundancy a consequence of training, and does training make narrow layers less "
        "redundant than wide ones? Redundancy is measured on weights, on activations and functionally; every "
        "measurement is paired with the same seed's initialisation and a width-matched untrained null, because "
        "several of them depend on the width before any training.\n",
        methods_section(t),
        source_section(figures_dir),
        results_section(t),
        anchor_section(t.anchor_growth),
        movement_section(t.movement),
        calibration_section(t),
        baselines_section(t),
        blocks_section(t),
        ledger_section(t),
        limitations_section(t),
        reproduce_section(t),
        appendix_section(t),
    ]
    return "\n\n".join(p.strip() for p in parts if p.strip()) + "\n"


# ---------------------------------------------------------------------------------------------------------
# README blocks


def readme_blocks(tables_dir: Path, figures_dir: Path | None = None, t: Tables | None = None) -> dict[str, str]:
    """The README's generated blocks: ``headline`` (the abstract's counts), ``times`` (measured totals) and
    ``source`` (the reproduced source table, from ``figures_dir``, by default beside ``tables_dir``); ``t``: the
    tables of ``tables_dir`` if already loaded."""
    t = load_tables(tables_dir) if t is None else t
    figures_dir = Path(figures_dir) if figures_dir is not None else Path(tables_dir).parent / "figures"
    blocks = {"headline": (f"{_headline_summary(t.counts)}: see the claims ledger in "
                           "[`results/REPORT.md`](results/REPORT.md).")}
    tm = t.timings
    if tm is not None and not tm.empty:
        total = tm[tm["step"] == "total"]
        blocks["times"] = "\n".join(f"- `{r['command']}`: {_seconds(r['seconds'])} s on {r['cpu']} "
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
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (KeyError, ValueError, TypeError, IndexError, ArithmeticError, AttributeError) as err:
        # A malformed table the checks did not anticipate: still one line naming where, never a traceback.
        print(f"error: {Path(args.results) / 'tables'}: cannot build the report from these tables "
              f"({type(err).__name__}: {_one_line(err)})", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
