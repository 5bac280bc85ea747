"""Writes the thin notebooks in this folder from cell lists, so their source stays reviewable as code.

Run ``python notebooks/make_notebooks.py`` after editing a cell list; outputs are not stored.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import os
from pathlib import Path

from IPython.display import Image, Markdown, display

from analysis.load import DEFAULT_ROOT, load_runs

# Results root: the repository's results/ unless BOTTLENECK_RESULTS points elsewhere (the tests do).
RESULTS = Path(os.environ.get("BOTTLENECK_RESULTS", DEFAULT_ROOT))
FIGURES = RESULTS / "figures"
df = load_runs(RESULTS)
print(f"{len(df):,} rows from {df.run_id.nunique()} runs under {RESULTS}")"""

# The helper both figure notebooks define after choosing EXPERIMENTS and OUT.
SHOW = (
    "def show(make):\n"
    "    \"\"\"Make one figure of analysis.figures for EXPERIMENTS; display its PNG or say why not.\"\"\"\n"
    "    try:\n"
    "        paths = make(df, OUT, experiments=EXPERIMENTS)\n"
    "    except NoData as why:\n"
    "        print(f'{make.__name__} skipped: {why}')\n"
    "        return\n"
    "    for path in paths:\n"
    "        if path.suffix == '.png':\n"
    "            display(Image(filename=str(path)))"
)


NOTEBOOKS = {
    "01_source_reproduction.ipynb": [
        new_markdown_cell(
            "# The source experiment, reproduced\n\n"
            "An MLP 1→32→w→1 with no activations learns the identity on the integers 0..99 (seed 10000, "
            "100 full-batch Adam steps, lr 1e-3). The source compared the closest pair of bottleneck units "
            "(mean absolute weight difference) at w = 8, 32, 128. Produce the results first with "
            "`python run.py -m width=8,32,128`."),
        new_code_cell(SETUP),
        new_code_cell(
            "from analysis.tables import source_table, to_markdown\n\n"
            "table = source_table(df)\n"
            "display(Markdown(to_markdown(table)))"),
        new_code_cell(
            "from analysis.figures import fig1_source_table\n\n"
            "paths = fig1_source_table(df, FIGURES)\n"
            "display(Image(filename=str(FIGURES / 'fig1_source_table.png')))"),
        new_markdown_cell(
            "All three widths match the printed values to 4 decimals. The ordering the source read as "
            "'bottlenecks reduce redundancy' (closest pair farthest apart at w = 8) is one seed per width; "
            "`02_redundancy_vs_width.ipynb` asks whether it survives many seeds and a random null."),
    ],
    "02_redundancy_vs_width.ipynb": [
        new_markdown_cell(
            "# Redundancy vs width, with a random null\n\n"
            "The source compared one seed per width. The minimum over w(w−1)/2 pairs shrinks as w grows even "
            "for untrained random weights, so here every width has many seeds, the same seeds' initial "
            "weights, and a width-matched null (fresh untrained layers of the same shape). Produce the "
            "results with `python run.py -m experiment=mlp_sweep` (and `experiment=mlp_relu`); "
            "`python -m analysis.figures` writes the same figures and `results/tables/summary.{csv,md}`."),
        new_code_cell(SETUP),
        new_code_cell(
            "from analysis.figures import NoData, sweep_experiments\n\n"
            "EXPERIMENTS = sweep_experiments(df)\n"
            "OUT = FIGURES\n"
            "if not EXPERIMENTS:\n"
            "    # No multi-seed sweep yet: preview the single-seed experiments against their null (no CIs),\n"
            "    # in a separate folder so that the paper figures are never replaced by a preview.\n"
            "    EXPERIMENTS, OUT = sweep_experiments(df, min_seeds=1), FIGURES / 'preview'\n"
            "    display(Markdown('**No multi-seed sweep in these results** '\n"
            "                     '(run `python run.py -m experiment=mlp_sweep`). Showing single-seed '\n"
            "                     f'experiments against their random null, without CIs: {EXPERIMENTS}.'))\n"
            "print('experiments:', EXPERIMENTS)\n\n\n"
            + SHOW),
        new_markdown_cell(
            "## Summary table\n\n"
            "Bottleneck layer at the source widths 8/32/128 (the full table, every layer and width, is "
            "`results/tables/summary.md`). `init`/`end`: mean over seeds at epoch 0 and after training, with "
            "95% bootstrap CIs; `change`: paired end − init, with a Wilcoxon signed-rank p; `null_lo`/`null_hi`: "
            "the 2.5–97.5% band of untrained layers of the same shape; `end_null_pct`: median percentile of the "
            "trained seeds in that null (50 = indistinguishable from a random draw)."),
        new_code_cell(
            "from analysis.stats import select, summary, summary_markdown\n\n"
            "table = summary(df[df.experiment.isin(EXPERIMENTS)])\n"
            "view = select(table, layer='bottleneck', widths=[8, 32, 128], experiments=EXPERIMENTS,\n"
            "              metrics=['min_pair_l1', 'mean_nn_l1', 'mean_nn_abs_cos', 'eff_rank_norm', 'stable_rank'])\n"
            "display(Markdown(summary_markdown(view, drop=['model', 'protocol', 'data', 'block', 'channels', 'layer',\n"
            "                                             'n_null'])))"),
        new_markdown_cell(
            "## Figure 2: the source metric over many seeds\n\n"
            "Closest-pair distance of the bottleneck at init, after training, and for the random null; the "
            "bottom row is the paired training effect on its own scale."),
        new_code_cell("from analysis.figures import fig2_min_pair_vs_width\n\nshow(fig2_min_pair_vs_width)"),
        new_markdown_cell(
            "## Figure 3: metrics without a pair-count effect\n\n"
            "Nearest-unit distance and |cos| (averages over units), effective and stable rank divided by "
            "k = min(units, fan-in)."),
        new_code_cell("from analysis.figures import fig3_pair_free_vs_width\n\nshow(fig3_pair_free_vs_width)"),
        new_markdown_cell(
            "## Figure 3b: what the units compute (activation metrics)\n\n"
            "The same layout for the bottleneck's activations on the evaluation batch: |corr| between units, "
            "the effective rank and the principal components for 95% of the variance (in directions), and for "
            "ReLU the share of dead units. In the linear MLP every unit is an affine function of the scalar "
            "input, so every |corr| is 1 and the activations span one direction at any width, trained or not."),
        new_code_cell("from analysis.figures import fig3b_activation_vs_width\n\nshow(fig3b_activation_vs_width)"),
        new_markdown_cell("## Figure 4: final training loss vs width"),
        new_code_cell("from analysis.figures import fig4_loss_vs_width\n\nshow(fig4_loss_vs_width)"),
        new_markdown_cell("## Figure 5: trajectories during training (change from each seed's initial value)"),
        new_code_cell("from analysis.figures import fig5_trajectories\n\nshow(fig5_trajectories)"),
        new_markdown_cell("## Figure 6: |cos| between bottleneck units, initial and final, one seed"),
        new_code_cell("from analysis.figures import fig6_cos_heatmaps\n\nshow(fig6_cos_heatmaps)"),
        new_markdown_cell("## Figure 7: singular-value spectra of the bottleneck, initial vs final"),
        new_code_cell("from analysis.figures import fig7_spectra\n\nshow(fig7_spectra)"),
    ],
    "03_conv_bottlenecks.ipynb": [
        new_markdown_cell(
            "# Conv bottlenecks: redundancy vs width, and ResNet blocks\n\n"
            "The same question with convolutions: Conv2d 1→32→w→1 (3×3 kernels, padding 1) learns to output "
            "its input, the 8×8 digits bundled with scikit-learn scaled to [0, 1]. The bottleneck is the "
            "32→w convolution; its units are its w output channels. Every width has many seeds, the same "
            "seeds' initial weights, and a random null: untrained layers of the same shape for the weight "
            "metrics, untrained whole models for the activation metrics (computed on the held-out evaluation "
            "batch, every position of every image a sample). Produce the results with "
            "`python run.py -m experiment=conv_sweep` and `python run.py -m experiment=conv_relu_sweep`; "
            "`python -m analysis.figures` writes the same figures."),
        new_code_cell(SETUP),
        new_code_cell(
            "from analysis.figures import NoData, sweep_experiments\n\n"
            "EXPERIMENTS = sweep_experiments(df, model='conv')\n"
            "OUT = FIGURES\n"
            "if not EXPERIMENTS:\n"
            "    # No multi-seed conv sweep: preview single-seed conv runs against their null (no CIs), if any,\n"
            "    # in a separate folder so that the paper figures are never replaced by a preview.\n"
            "    EXPERIMENTS, OUT = sweep_experiments(df, min_seeds=1, model='conv'), FIGURES / 'preview'\n"
            "    display(Markdown('**No conv sweep in these results** (run `python run.py -m experiment=conv_sweep`'\n"
            "                     ' and `experiment=conv_relu_sweep`). '\n"
            "                     + (f'Showing single-seed conv experiments without CIs: {EXPERIMENTS}.'\n"
            "                        if EXPERIMENTS else 'There are no conv runs to show.')))\n"
            "print('experiments:', EXPERIMENTS)\n\n\n"
            + SHOW),
        new_markdown_cell(
            "## The task\n\n"
            "The first evaluation images of the conv presets' split (256 training, 128 evaluation images): "
            "each is both the input and the target."),
        new_code_cell(
            "from analysis.figures_conv import task_examples\n\n"
            "display(Image(data=task_examples()))"),
        new_markdown_cell(
            "## Summary table\n\n"
            "Bottleneck layer at widths 8/32/128 (`conv_relu_sweep` stops at 64): weight metrics (closest pair, "
            "nearest-channel distance and |cos|, effective rank / min(w, fan-in)) and activation metrics "
            "(nearest-channel |corr|, effective rank and PCs for 95% of the variance / w, dead channels). "
            "`init`/`end`: mean over seeds at epoch 0 and after training with 95% bootstrap CIs; `change`: "
            "paired end − init with a Wilcoxon signed-rank p; `null_lo`/`null_hi`: the random null's 2.5–97.5% "
            "band; `end_null_pct`: median percentile of the trained seeds in the null. The second table is the "
            "loss (MSE) on the training images and on the evaluation batch, at init and after training (`end_lo`/"
            "`end_hi`: its 95% CI)."),
        new_code_cell(
            "from analysis.stats import select, summary, summary_markdown\n"
            "from analysis.tables import to_markdown\n\n"
            "METRICS = ['min_pair_l1', 'mean_nn_l1', 'mean_nn_abs_cos', 'eff_rank_norm',\n"
            "           'act_mean_nn_abs_corr', 'act_eff_rank_norm', 'act_pc95_frac', 'act_dead_frac']\n"
            "if EXPERIMENTS:\n"
            "    table = summary(df[df.experiment.isin(EXPERIMENTS)])\n"
            "    view = select(table, layer='bottleneck', widths=[8, 32, 128], experiments=EXPERIMENTS,\n"
            "                  metrics=METRICS)\n"
            "    display(Markdown(summary_markdown(view, drop=['model', 'protocol', 'data', 'block', 'channels',\n"
            "                                                 'layer', 'n_null'])))\n"
            "    # The loss spans orders of magnitude: three significant digits, not four decimals.\n"
            "    loss = select(table, layer='model', widths=[8, 32, 128], experiments=EXPERIMENTS,\n"
            "                  metrics=['loss', 'eval_loss'])\n"
            "    keys = ['experiment', 'activation', 'width', 'metric']\n"
            "    loss = loss[[*keys, 'n_seeds', 'init_mean', 'end_mean', 'end_lo', 'end_hi']].set_index(keys)\n"
            "    display(Markdown(to_markdown(loss, floatfmt='.3g')))\n"
            "else:\n"
            "    print('no conv experiments: no table')"),
        new_markdown_cell(
            "## Figure 8: conv bottleneck redundancy vs width\n\n"
            "For each experiment, weights (top row) and activations (bottom row) of the bottleneck: trained "
            "(final) mean ± 95% CI, the same seeds at init, and the random null's band. The closest pair "
            "shrinks with w even at random (more pairs to choose from); the nearest-channel distance does not "
            "count pairs. Dead channels are possible only with ReLU."),
        new_code_cell(
            "from analysis.figures import fig8_conv_redundancy_vs_width\n\nshow(fig8_conv_redundancy_vs_width)"),
        new_markdown_cell(
            "## Figure 8b: did the conv models learn?\n\n"
            "Training and evaluation MSE vs width, after training (solid, 95% CI band) and at initialisation "
            "(dotted): a redundancy difference means little for a model that has not fitted the data."),
        new_code_cell("from analysis.figures import fig8b_conv_loss_vs_width\n\nshow(fig8b_conv_loss_vs_width)"),
        new_markdown_cell(
            "## ResNet blocks: basic vs bottleneck at matched parameter budgets (figure 10)\n\n"
            "A digits classifier with one residual block of inner width w (`model=resnet`): basic (3×3 C→w, "
            "3×3 w→C) or bottleneck (1×1 C→w, 3×3 w→w, 1×1 w→C), BN after every conv, identity shortcut. "
            "Test accuracy (eval mode) and the redundancy of the block's narrow layers against trainable "
            "parameters, both blocks on one axis. Produce the results with "
            "`python run.py -m experiment=resnet_sweep`. The table lists every (block, width) by size."),
        new_code_cell(
            "from analysis.figures import fig10_resnet_blocks_vs_params\n"
            "from analysis.figures_resnet import blocks_table\n"
            "from analysis.tables import to_markdown\n\n"
            "try:\n"
            "    for path in fig10_resnet_blocks_vs_params(df, FIGURES):\n"
            "        if path.suffix == '.png':\n"
            "            display(Image(filename=str(path)))\n"
            "    display(Markdown(to_markdown(blocks_table(df).set_index('experiment'))))\n"
            "except NoData as why:\n"
            "    print(f'fig10_resnet_blocks_vs_params skipped: {why}')"),
    ],
    "04_low_rank_compression.ipynb": [
        new_markdown_cell(
            "# Low-rank compression (ALDS) of the trained models\n\n"
            "A rank-j factorisation of a layer is a learned bottleneck; how far a trained layer can be factorised "
            "at a given error is its redundancy measured another way. `experiment=compression` compresses the "
            "first replicates of the conv identity runs and of both ResNet blocks, at a narrow and a wide width, "
            "with ALDS (Liebenwein et al., NeurIPS 2021: per layer k channel groups, each a truncated SVD, k and "
            "ranks chosen to minimise the largest relative error at a parameter budget) and three baselines, on "
            "the trained and the initial weights. Produce the results with "
            "`python run.py experiment=compression` (it trains its sources when they are missing); "
            "`python -m analysis.figures` writes the same figure and tables."),
        new_code_cell(SETUP),
        new_code_cell(
            "from analysis.figures import NoData, fig9_compression\n"
            "from analysis.figures_compression import allocation_table, summary_table\n"
            "from analysis.tables import to_markdown\n\n"
            "try:\n"
            "    for path in fig9_compression(df, FIGURES):\n"
            "        if path.suffix == '.png':\n"
            "            display(Image(filename=str(path)))\n"
            "except NoData as why:\n"
            "    print(f'fig9_compression skipped: {why}')"),
        new_markdown_cell(
            "## At keep ratios 0.25 and 0.5\n\n"
            "Largest relative error and the task metric per method, trained (`final`) and `initial` weights "
            "(the gap is what training changed about compressibility), and the per-layer allocations "
            "(k groups × rank j) of the trained weights."),
        new_code_cell(
            "try:\n"
            "    display(Markdown(to_markdown(summary_table(df).set_index('source'), '.4g')))\n"
            "    display(Markdown(to_markdown(allocation_table(df).set_index('source'), '.3f')))\n"
            "except NoData as why:\n"
            "    print(f'tables skipped: {why}')"),
    ],
}



def write_all() -> None:
    """Write every notebook; cell ids are numbered, so regenerating an unchanged notebook changes no byte."""
    for name, cells in NOTEBOOKS.items():
        for i, cell in enumerate(cells):
            cell["id"] = f"cell-{i:02d}"
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        })
        nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write_all()
