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
# # Redundancy vs width, with a random null
#
# The source compared one seed per width. The minimum over w(w−1)/2 pairs shrinks as w grows even for untrained random
# weights, so here every width has many seeds, the same seeds' initial weights, and a width-matched null (fresh
# untrained layers of the same shape). Produce the results with `python run.py -m experiment=mlp_sweep` (and
# `experiment=mlp_relu`); `python -m analysis.figures` writes the same figures and `results/tables/summary.{csv,md}`.

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
from analysis.figures import sweep_experiments
from analysis.notebook import show_figure

EXPERIMENTS = sweep_experiments(df)
OUT = FIGURES
if not EXPERIMENTS:
    # No multi-seed sweep yet: preview the single-seed experiments against their null (no CIs),
    # in a separate folder so that the paper figures are never replaced by a preview.
    EXPERIMENTS, OUT = sweep_experiments(df, min_seeds=1), FIGURES / 'preview'
    display(Markdown('**No multi-seed sweep in these results** '
                     '(run `python run.py -m experiment=mlp_sweep`). Showing single-seed '
                     f'experiments against their random null, without CIs: {EXPERIMENTS}.'))
print('experiments:', EXPERIMENTS)


def show(make):
    """Make one figure of analysis.figures for EXPERIMENTS into OUT and display it (or say why not)."""
    show_figure(make, df, OUT, EXPERIMENTS)


# %% [markdown]
# ## Summary table
#
# Bottleneck layer at the source widths 8/32/128 (the full table, every layer and width, is
# `results/tables/summary.md`). `init`/`end`: mean over seeds at epoch 0 and after training, with 95% bootstrap CIs;
# `change`: paired end − init, with a Wilcoxon signed-rank p; `null_lo`/`null_hi`: the 2.5–97.5% band of untrained
# layers of the same shape; `end_null_pct`: median percentile of the trained seeds in that null (50 =
# indistinguishable from a random draw).

# %%
from analysis.stats import select, summary, summary_markdown

table = summary(df[df.experiment.isin(EXPERIMENTS)])
view = select(table, layer='bottleneck', widths=[8, 32, 128], experiments=EXPERIMENTS,
              metrics=['min_pair_l1', 'mean_nn_l1', 'mean_nn_abs_cos', 'eff_rank_norm', 'stable_rank'])
display(Markdown(summary_markdown(view, drop=['model', 'protocol', 'data', 'block', 'channels', 'layer',
                                             'n_null'])))

# %% [markdown]
# ## Figure 2: the source metric over many seeds
#
# Closest-pair distance of the bottleneck at init, after training, and for the random null; the bottom row is the
# paired training effect on its own scale.

# %%
from analysis.figures import fig2_min_pair_vs_width

show(fig2_min_pair_vs_width)

# %% [markdown]
# ## Figure 3: metrics without a pair-count effect
#
# Nearest-unit distance and |cos| (averages over units), effective and stable rank divided by k = min(units, fan-in).

# %%
from analysis.figures import fig3_pair_free_vs_width

show(fig3_pair_free_vs_width)

# %% [markdown]
# ## Figure 3b: what the units compute (activation metrics)
#
# The same layout for the bottleneck's activations on the evaluation batch: |corr| between units, the effective rank
# and the principal components for 95% of the variance (in directions), and for ReLU the share of dead units. In the
# linear MLP every unit is an affine function of the scalar input, so every |corr| is 1 and the activations span one
# direction at any width, trained or not.

# %%
from analysis.figures import fig3b_activation_vs_width

show(fig3b_activation_vs_width)

# %% [markdown]
# ## Figure 3c: can a unit be removed, or predicted from the others? (functional redundancy)
#
# The share of prunable units (mean ablation raises the held-out loss by less than the threshold), of redundant
# units (replaced by their least-squares prediction from the other units), the held-out R² of a unit from the
# others, and how much of the ablation loss the top 10% of units carry (Casper, Boix et al. 2021).

# %%
from analysis.figures import fig3c_functional_vs_width

show(fig3c_functional_vs_width)

# %% [markdown]
# ## Figure 4: final training loss vs width

# %%
from analysis.figures import fig4_loss_vs_width

show(fig4_loss_vs_width)

# %% [markdown]
# ## Figure 5: trajectories during training (change from each seed's initial value)

# %%
from analysis.figures import fig5_trajectories

show(fig5_trajectories)

# %% [markdown]
# ## Figure 6: |cos| between bottleneck units, initial and final, one seed

# %%
from analysis.figures import fig6_cos_heatmaps

show(fig6_cos_heatmaps)

# %% [markdown]
# ## Figure 7: singular-value spectra of the bottleneck, initial vs final

# %%
from analysis.figures import fig7_spectra

show(fig7_spectra)
