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
# # Conv bottlenecks: redundancy vs width, and ResNet blocks
#
# The same question with convolutions: Conv2d 1→32→w→1 (3×3 kernels, padding 1) learns to output its input, the 8×8
# digits bundled with scikit-learn scaled to [0, 1]. The bottleneck is the 32→w convolution; its units are its w
# output channels. Every width has many seeds, the same seeds' initial weights, and a random null: untrained layers of
# the same shape for the weight metrics, untrained whole models for the activation metrics (computed on the held-out
# evaluation batch, every position of every image a sample). Produce the results with
# `python run.py -m experiment=conv_sweep` and `python run.py -m experiment=conv_relu_sweep`;
# `python -m analysis.figures` writes the same figures.

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
from analysis.figures import sweep_experiments
from analysis.notebook import show_figure

EXPERIMENTS = sweep_experiments(df, model='conv')
OUT = FIGURES
if not EXPERIMENTS:
    # No multi-seed conv sweep: preview single-seed conv runs against their null (no CIs), if any,
    # in a separate folder so that the paper figures are never replaced by a preview.
    EXPERIMENTS, OUT = sweep_experiments(df, min_seeds=1, model='conv'), FIGURES / 'preview'
    display(Markdown('**No conv sweep in these results** (run `python run.py -m experiment=conv_sweep`'
                     ' and `experiment=conv_relu_sweep`). '
                     + (f'Showing single-seed conv experiments without CIs: {EXPERIMENTS}.'
                        if EXPERIMENTS else 'There are no conv runs to show.')))
print('experiments:', EXPERIMENTS)


def show(make):
    """Make one figure of analysis.figures for EXPERIMENTS into OUT and display it (or say why not)."""
    show_figure(make, df, OUT, EXPERIMENTS)


# %% [markdown]
# ## The task
#
# The first evaluation images of the conv presets' split (256 training, 128 evaluation images): each is both the input
# and the target.

# %%
from analysis.figures_conv import task_examples

display(Image(data=task_examples()))

# %% [markdown]
# ## Summary table
#
# Bottleneck layer at widths 8/32/128 (`conv_relu_sweep` stops at 64): weight metrics (closest pair, nearest-channel
# distance and |cos|, effective rank / min(w, fan-in)) and activation metrics (nearest-channel |corr|, effective rank
# and PCs for 95% of the variance / w, dead channels). `init`/`end`: mean over seeds at epoch 0 and after training
# with 95% bootstrap CIs; `change`: paired end − init with a Wilcoxon signed-rank p; `null_lo`/`null_hi`: the random
# null's 2.5–97.5% band; `end_null_pct`: median percentile of the trained seeds in the null. The second table is the
# loss (MSE) on the training images and on the evaluation batch, at init and after training (`end_lo`/`end_hi`: its
# 95% CI).

# %%
from analysis.stats import select, summary, summary_markdown
from analysis.tables import to_markdown

METRICS = ['min_pair_l1', 'mean_nn_l1', 'mean_nn_abs_cos', 'eff_rank_norm',
           'act_mean_nn_abs_corr', 'act_eff_rank_norm', 'act_pc95_frac', 'act_dead_frac']
if EXPERIMENTS:
    table = summary(df[df.experiment.isin(EXPERIMENTS)])
    view = select(table, layer='bottleneck', widths=[8, 32, 128], experiments=EXPERIMENTS,
                  metrics=METRICS)
    display(Markdown(summary_markdown(view, drop=['model', 'protocol', 'data', 'block', 'channels',
                                                 'layer', 'n_null'])))
    # The loss spans orders of magnitude: three significant digits, not four decimals.
    loss = select(table, layer='model', widths=[8, 32, 128], experiments=EXPERIMENTS,
                  metrics=['loss', 'eval_loss'])
    keys = ['experiment', 'activation', 'width', 'metric']
    loss = loss[[*keys, 'n_seeds', 'init_mean', 'end_mean', 'end_lo', 'end_hi']].set_index(keys)
    display(Markdown(to_markdown(loss, floatfmt='.3g')))
else:
    print('no conv experiments: no table')

# %% [markdown]
# ## Figure 8: conv bottleneck redundancy vs width
#
# For each experiment, weights (top row) and activations (bottom row) of the bottleneck: trained (final) mean ± 95%
# CI, the same seeds at init, and the random null's band. The closest pair shrinks with w even at random (more pairs
# to choose from); the nearest-channel distance does not count pairs. Dead channels are possible only with ReLU.

# %%
from analysis.figures import fig8_conv_redundancy_vs_width

show(fig8_conv_redundancy_vs_width)

# %% [markdown]
# ## Figure 8b: did the conv models learn?
#
# Training and evaluation MSE vs width, after training (solid, 95% CI band) and at initialisation (dotted): a
# redundancy difference means little for a model that has not fitted the data.

# %%
from analysis.figures import fig8b_conv_loss_vs_width

show(fig8b_conv_loss_vs_width)

# %% [markdown]
# ## ResNet blocks: basic vs bottleneck at matched parameter budgets (figure 10)
#
# A digits classifier with one residual block of inner width w (`model=resnet`): basic (3×3 C→w, 3×3 w→C) or
# bottleneck (1×1 C→w, 3×3 w→w, 1×1 w→C), BN after every conv, identity shortcut. Test accuracy (eval mode) and the
# redundancy of the block's narrow layers against trainable parameters, both blocks on one axis. Produce the results
# with `python run.py -m experiment=resnet_sweep`. The table lists every (block, width) by size.

# %%
from analysis.figures import fig10_resnet_blocks_vs_params
from analysis.figures_resnet import blocks_table
from analysis.tables import to_markdown

if show_figure(fig10_resnet_blocks_vs_params, df, FIGURES, None):
    display(Markdown(to_markdown(blocks_table(df).set_index('experiment'))))
