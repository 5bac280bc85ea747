"""The report's sections on the answer at a glance, the anchor's functional protocol and weight movement.

Split from :mod:`analysis.report` by topic; each function takes the tables it reads (``None`` where the optional table
is absent: the section is then left out) and returns Markdown, every number formatted from a table cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures_answer import FAMILY_ORDER, LEVELS, PAIRS_MARK, category, sweep_label
from analysis.hypothesis import CONFIG, METRIC_LEVEL, rests_on_pairs

DIRECTION_WORDS = {"narrower": "narrower gain more", "wider": "wider gain more", "non-monotone": "non-monotone",
                   "none": "no evidence", "untested": "no test"}

PAIRS_NOTE = (f"{PAIRS_MARK}: the verdict rests on pairs of widths that differ significantly, all in one direction; "
              "the slope over all widths is not significant and may even have the other sign (a dip or a plateau at "
              "some widths: figure 0 shows the profile).")


def _num(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(float(v)) else f"{float(v):.3g}"


def _ci(v: float, lo: float, hi: float) -> str:
    return f"{_num(v)} [{_num(lo)}, {_num(hi)}]"


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(FAMILY_ORDER)}
    return frame.assign(_o=frame["model"].map(order).fillna(len(order))).sort_values(
        ["_o", "experiment", "block", "data"], kind="stable").drop(columns="_o")


def answer_section(trend: pd.DataFrame) -> str:
    """Figure 0 and one table: per sweep and level, the verdict, the slope per doubling of width with its CI, and
    the adjusted p the verdict uses."""
    head = trend[trend["headline"]].copy()
    if head.empty:
        return ""
    head["level"] = head["metric"].map(METRIC_LEVEL)
    head = _ordered(head)
    lines = ["## The answer at a glance", "",
             "![figure 0: every sweep × the three levels of redundancy](figures/fig0_answer.png)", "",
             "Per sweep and level, the headline test: the direction of the width effect on what training does "
             "to redundancy, the slope of the outcome per doubling of w (95% CI) and the adjusted p (Holm; the "
             "smaller of the trend and the omnibus test's) behind the verdict. " + PAIRS_NOTE, "",
             "| sweep | layer | " + " | ".join(LEVELS) + " |", "|---|---|" + "---|" * len(LEVELS)]
    for _, sweep in head[CONFIG].drop_duplicates().iterrows():
        rows = head[(head[CONFIG].astype(str) == sweep.astype(str).to_numpy()).all(axis=1)]
        cells = []
        for level in LEVELS:
            r = rows[rows["level"] == level]
            if r.empty:
                cells.append("not measured")
                continue
            r = r.iloc[0]
            mark = PAIRS_MARK if rests_on_pairs(r) else ""
            cells.append(f"{DIRECTION_WORDS[category(r['verdict'])]}{mark}: "
                         f"{_ci(r['slope'], r['slope_lo'], r['slope_hi'])}, p = {_num(r['verdict_p'])}")
        lines.append(f"| {sweep_label(sweep)} | {rows['layer'].iloc[0]} | " + " | ".join(cells) + " |")
    lines += ["", "Whether the families line up: the effective share of units that matter against the width relative "
              "to the layer before it.", "",
              "![figure 0b](figures/fig0b_functional_vs_relative_width.png)", ""]
    return "\n".join(lines)


def anchor_section(growth: pd.DataFrame | None) -> str:
    """Our growth of the anchor's prunable-unit count per doubling of width beside the published values."""
    if growth is None or growth.empty:
        return ""
    ours = _ordered(growth[growth["source"] == "this repository"])
    theirs = growth[growth["source"] != "this repository"]
    if ours.empty:
        return ""
    lines = ["## The anchor's protocol: prunable units per doubling of width", "",
             "Casper, Boix et al. (AAAI 2021) zero a random fraction of a layer's units at once and call prunable the "
             "fraction at which the test predictions' agreement with the unablated network falls to 0.8; their "
             "headline is how that count grows when the layer doubles (2: a constant share). Ours, final epoch, "
             "mean over seeds with a 95% bootstrap CI (`results/tables/anchor_growth.md`):", "",
             "| sweep | layer | widths | seeds | growth per doubling | prunable share, narrowest → widest |",
             "|---|---|---|---:|---|---|"]
    for _, r in ours.iterrows():
        lines.append(f"| {sweep_label(r)} | {r['layer']} | {r['widths']} | {int(r['n_seeds'])} | "
                     f"{_ci(r['growth'], r['growth_lo'], r['growth_hi'])} | {_num(r['share_narrow'])} → "
                     f"{_num(r['share_wide'])} |")
    published = ", ".join(f"{label} {', '.join(_num(v) for v in g['growth'])}"
                          for label, g in theirs.groupby("experiment", sort=False))
    above = int((ours["growth_lo"] > 2).sum())
    below = int((ours["growth_hi"] < 2).sum())
    lines += ["", f"Published (their notebook, one value per initialisation or setting): {published}. Of our "
              f"{len(ours)} studied layers, {above} gain prunable units faster than the width (CI above 2) and {below} "
              "slower (CI below 2); "
              f"the published values range from {_num(theirs['growth'].min())} to {_num(theirs['growth'].max())}.",
              "", "The prunable and redundant shares over the threshold grid, one line per width: "
              "![figure 15](figures/fig15_functional_thresholds.png)", ""]
    return "\n".join(lines)


def movement_section(movement: pd.DataFrame | None) -> str:
    """Per sweep: did the wider layers move less from their initialisation (lazy training)?"""
    if movement is None or movement.empty:
        return ""
    rows = _ordered(movement)
    less = int(rows["wider_moved_less"].astype(str).str.lower().eq("true").sum())
    lines = ["## How far the weights moved", "",
             "A width trend in what training does to redundancy could mean only that wider layers moved less (lazy "
             "training). ‖W_T − W_0‖_F / ‖W_0‖_F of the studied layer at the final epoch (mean over seeds, 95% CI; "
             "`results/tables/movement.md`):", "",
             "| sweep | layer | narrowest w | moved | widest w | moved | wider moved less |",
             "|---|---|---:|---|---:|---|---|"]
    for _, r in rows.iterrows():
        moved_less = str(r["wider_moved_less"]).lower() == "true"
        lines.append(f"| {sweep_label(r)} | {r['layer']} | {int(r['narrow'])} | "
                     f"{_ci(r['move_narrow'], r['move_narrow_lo'], r['move_narrow_hi'])} | {int(r['wide'])} | "
                     f"{_ci(r['move_wide'], r['move_wide_lo'], r['move_wide_hi'])} | {'yes' if moved_less else 'no'} |")
    lines += ["", f"In {less} of {len(rows)} sweeps the widest layer moved less than the narrowest (CIs apart). There "
              "the verdicts of the weight and activation metrics may partly reflect movement; this repository does "
              "not yet give them at matched movement (the presets train for fixed budgets, so movement is not a "
              "knob), so read those rows with that in mind.", "",
              "![figure 16](figures/fig16_movement_vs_width.png)", ""]
    return "\n".join(lines)
