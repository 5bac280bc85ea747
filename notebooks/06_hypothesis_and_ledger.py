# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The hypothesis tests and the claims ledger
#
# Does training change redundancy differently in narrow and wide layers? Per sweep, layer and metric, the outcome
# (each seed's change final − initial, or its final value where the metric is degenerate at initialisation) is
# tested for a width trend (cluster-robust OLS on log2 w with a wild cluster bootstrap, clustered by seed because
# the same seed is reused at every width) and for any width effect (an omnibus test valid under unequal variances);
# each row gets a profile (rising, falling, non-monotone, no evidence). The declared family, the headline tests and
# α are in `conf/analysis/hypothesis.yaml`; `analysis/hypothesis.py` computes the tables, `analysis/report.py` the
# ledger. This notebook recomputes them from the runs under the results root.

# %%
import os
from pathlib import Path

from IPython.display import Image, Markdown, display

from analysis.load import DEFAULT_ROOT, load_runs

# Results root: the repository's results/ unless BOTTLENECK_RESULTS points elsewhere (the tests do). Figures are
# written to its figures/ unless BOTTLENECK_FIGURES points elsewhere (`make sync-notebooks` does: executing the
# notebooks then writes nothing but the notebooks).
RESULTS = Path(os.environ.get("BOTTLENECK_RESULTS", DEFAULT_ROOT))
FIGURES = Path(os.environ.get("BOTTLENECK_FIGURES", RESULTS / "figures"))
df = load_runs(RESULTS)
print(f"{len(df):,} rows from {df.run_id.nunique()} runs under {os.path.relpath(RESULTS)}")

# %% [markdown]
# ## The trend table and the effects on one scale
#
# The headline rows: one per sweep and level (weights: nearest-unit |cos|; activations: effective rank / w;
# function: the effective share of units that matter), with the verdict, its adjusted p and whether it is
# borderline (within 3 Monte Carlo SEs of its cut-off).

# %%
from analysis.hypothesis import effects_table, trend_table
from analysis.tables import to_markdown

trend, effects = trend_table(df), effects_table(df)
head = trend[trend["headline"]] if not trend.empty else trend
columns = ["experiment", "block", "layer", "metric", "outcome", "slope", "trend_p", "omni_p", "profile", "verdict",
           "verdict_p", "borderline"]
display(Markdown(to_markdown(head[columns].set_index("experiment"), floatfmt=".3g") if not head.empty
                 else "No headline tests in these results (a sweep needs >= 3 widths and >= 5 seeds per width)."))

# %% [markdown]
# ## Figure 0: the answer at a glance
#
# Every sweep × the three levels: the headline outcome against width with its 95% CI, coloured by the verdict.

# %%
from analysis.figures_answer import fig0_answer
from analysis.plotting import NoData

try:
    for path in fig0_answer(df, FIGURES, table=trend, effects=effects):
        if path.suffix == ".png":
            display(Image(filename=str(path)))
except NoData as why:
    print(f"fig0_answer skipped: {why}")

# %% [markdown]
# ## Figures 15 and 16: the functional threshold grid, and how far the weights moved
#
# Figure 15: the prunable and redundant shares of live units against the threshold, one line per width (a verdict
# that one threshold shows and the others do not is the threshold's). Figure 16: ‖W_T − W_0‖ / ‖W_0‖ and the mean
# angle of each unit's weights to its initial ones, against width (did wider layers move less?).

# %%
from analysis.figures import fig15_functional_thresholds, fig16_movement_vs_width
from analysis.notebook import show_figure

for make in (fig15_functional_thresholds, fig16_movement_vs_width):
    show_figure(make, df, FIGURES, None)

# %% [markdown]
# ## The claims ledger
#
# From the committed tables under `results/tables` (the report's own section), when they are there.

# %%
from analysis import report

tables = RESULTS / "tables"
try:
    display(Markdown(report.ledger_section(report.load_tables(tables))))
except report.ReportError as why:
    print(f"no ledger: {why}")
