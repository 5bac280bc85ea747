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
# # Low-rank compression (ALDS) of the trained models
#
# A rank-j factorisation of a layer is a learned bottleneck; how far a trained layer can be factorised at a given
# error is its redundancy measured another way. `experiment=compression` compresses the first replicates of the conv
# identity runs and of both ResNet blocks, at a narrow and a wide width, with ALDS (Liebenwein et al., NeurIPS 2021:
# per layer k channel groups, each a truncated SVD, k and ranks chosen to minimise the largest relative error at a
# parameter budget) and three baselines, on the trained and the initial weights. Produce the results with
# `python run.py experiment=compression` (it trains its sources when they are missing); `python -m analysis.figures`
# writes the same figure and tables.

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

# %%
from analysis.figures import NoData, fig9_compression
from analysis.figures_compression import allocation_table, summary_table
from analysis.tables import to_markdown

try:
    for path in fig9_compression(df, FIGURES):
        if path.suffix == '.png':
            display(Image(filename=str(path)))
except NoData as why:
    print(f'fig9_compression skipped: {why}')

# %% [markdown]
# ## At keep ratios 0.25 and 0.5
#
# Largest relative error and the task metric per method, trained (`final`) and `initial` weights (the gap is what
# training changed about compressibility), and the per-layer allocations (k groups × rank j) of the trained weights.

# %%
try:
    display(Markdown(to_markdown(summary_table(df).set_index('source'), '.4g')))
    display(Markdown(to_markdown(allocation_table(df).set_index('source'), '.3f')))
except NoData as why:
    print(f'tables skipped: {why}')
