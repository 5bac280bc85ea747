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
# # MNIST-1D classifiers, autoencoders and 1-D residual blocks
#
# Tasks with real bottlenecks: MNIST-1D (Greydanus & Kobak, ICML 2024; 40-sample signals, 10 classes) classified by
# an MLP 40→100→w→100→10, by the reference 1-D CNN with its middle convolution w channels wide, and by one 1-D
# residual block (basic or bottleneck) of inner width w; and autoencoders D→100→w→100→D on MNIST-1D (D = 40) and on
# the 8×8 digits (D = 64), narrower and wider than their data. Produce the results with
# `python run.py -m experiment=mnist1d_baselines`, `experiment=mnist1d_mlp_sweep`, `experiment=mnist1d_cnn_sweep`,
# `experiment=autoencoder_sweep` and `experiment=mnist1d_resnet_sweep`; `python -m analysis.figures` writes the same
# figures and tables.

# %%
import os
from pathlib import Path

from IPython.display import Markdown, display

from analysis.load import DEFAULT_ROOT, load_runs

# Results root: the repository's results/ unless BOTTLENECK_RESULTS points elsewhere (the tests do). Figures are
# written to its figures/ unless BOTTLENECK_FIGURES points elsewhere (`make sync-notebooks` does: executing the
# notebooks then writes nothing but the notebooks).
RESULTS = Path(os.environ.get("BOTTLENECK_RESULTS", DEFAULT_ROOT))
FIGURES = Path(os.environ.get("BOTTLENECK_FIGURES", RESULTS / "figures"))
df = load_runs(RESULTS)
print(f"{len(df):,} rows from {df.run_id.nunique()} runs under {os.path.relpath(RESULTS)}")

# %%
from analysis.notebook import show_figure


def show(make):
    """Make one figure of analysis.figures into FIGURES and display it (or say why not)."""
    show_figure(make, df, FIGURES, None)


# %% [markdown]
# ## The pipeline against the published baselines
#
# The reference logistic regression, MLP and CNN trained with the reference settings (Adam 1e-2, batches of 100,
# 6,000 steps), against the accuracies greydanus/mnist1d publishes.

# %%
from analysis.figures_mnist1d import baselines_table
from analysis.plotting import NoData
from analysis.tables import to_markdown

try:
    display(Markdown(to_markdown(baselines_table(df))))
except NoData as why:
    print(f"baselines table skipped: {why}")

# %% [markdown]
# ## Figure 11: redundancy vs width, every MNIST-1D family and the autoencoders
#
# Weights, activations and function of the bottleneck: trained (final) mean ± 95% CI, the same seeds at
# initialisation, and the untrained null's band; the data's dimension D and the neighbouring width h are marked.

# %%
from analysis.figures import fig11_mnist1d_redundancy_vs_width

show(fig11_mnist1d_redundancy_vs_width)

# %% [markdown]
# ## Figure 12: did they learn?
#
# Test accuracy (classifiers) and held-out loss (autoencoders) against width, with the reference lines of the
# published baselines.

# %%
from analysis.figures import fig12_mnist1d_task_vs_width

show(fig12_mnist1d_task_vs_width)

# %% [markdown]
# ## Figure 13: 1-D residual blocks at matched budgets
#
# Basic (k3 C→w, k3 w→C) and bottleneck (k1 C→w, k3 w→w, k1 w→C) blocks against trainable parameters.

# %%
from analysis.figures import fig13_mnist1d_resnet_blocks

show(fig13_mnist1d_resnet_blocks)
