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
# # The source experiment, reproduced
#
# An MLP 1→32→w→1 with no activations learns the identity on the integers 0..99 (seed 10000, 100 full-batch Adam
# steps, lr 1e-3). The source compared the closest pair of bottleneck units (mean absolute weight difference) at w =
# 8, 32, 128. Produce the results first with `python run.py -m width=8,32,128`.

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
from analysis.tables import source_table, to_markdown

table = source_table(df)
display(Markdown(to_markdown(table)))

# %%
from analysis.figures import fig1_source_table

paths = fig1_source_table(df, FIGURES)
display(Image(filename=str(FIGURES / 'fig1_source_table.png')))

# %% [markdown]
# All three widths match the printed values to 4 decimals. The ordering the source read as 'bottlenecks reduce
# redundancy' (closest pair farthest apart at w = 8) is one seed per width; `02_redundancy_vs_width.ipynb` asks
# whether it survives many seeds and a random null.
