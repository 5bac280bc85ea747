"""One function per paper figure; ``python -m analysis.figures`` rebuilds them all.

Every figure function takes the tidy results frame and an output folder and returns the paths it
wrote (PDF and PNG). Figures whose data are absent are skipped with a message, not faked.

The figures live by topic: ``analysis.figures_mlp`` (figure 1, the source table; figures 2–7, 3b and 3c,
redundancy of the MLP family vs width), ``analysis.figures_conv`` (figures 8 and 8b, the conv family),
``analysis.figures_compression`` (figure 9, low-rank compression, and its tables),
``analysis.figures_resnet`` (figure 10, ResNet blocks, and the blocks table), ``analysis.figures_mnist1d``
(figures 11–13, the MNIST-1D families and autoencoders, the baselines and 1-D blocks tables),
``analysis.figures_trend`` (figure 14, the width trend of training's effect, from ``analysis.hypothesis``), and
what they share
(``STYLE``, ``save``, ``NoData``, ``sweep_experiments``, the width-sweep panels) in ``analysis.plotting``.
This module registers them in :data:`FIGURES` and re-exports their names, so
``from analysis.figures import fig2_min_pair_vs_width, NoData, sweep_experiments`` keeps working.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from analysis.arch_costs import write_tables as write_arch_tables
from analysis.calibration import calibration_table, write_calibration_table
from analysis.complete import missing
from analysis.figures_answer import fig0_answer, fig0b_functional_vs_relative_width
from analysis.figures_compression import fig9_compression, write_compression_tables
from analysis.figures_conv import fig8_conv_redundancy_vs_width, fig8b_conv_loss_vs_width
from analysis.figures_functional import fig15_functional_thresholds, write_anchor_growth_table
from analysis.figures_mlp import (
    fig1_source_table,
    fig2_min_pair_vs_width,
    fig3_pair_free_vs_width,
    fig3b_activation_vs_width,
    fig3c_functional_vs_width,
    fig4_loss_vs_width,
    fig5_trajectories,
    fig6_cos_heatmaps,
    fig7_spectra,
)
from analysis.figures_mnist1d import (
    fig11_mnist1d_redundancy_vs_width,
    fig12_mnist1d_task_vs_width,
    fig13_mnist1d_resnet_blocks,
    write_mnist1d_tables,
)
from analysis.figures_resnet import fig10_resnet_blocks_vs_params, write_blocks_table
from analysis.figures_training import fig16_movement_vs_width, write_movement_table
from analysis.figures_trend import fig14_width_trend
from analysis.hypothesis import effects_table, trend_table, write_effects_table, write_trend_table
from analysis.load import DEFAULT_ROOT, ResultsError, compact, load_runs, results_root
from analysis.plotting import COLUMN_WIDTH, STYLE, NoData, save, sweep_experiments
from analysis.stats import write_summary

__all__ = [
    "ANSWER_FIGURES",
    "COLUMN_WIDTH",
    "COMPRESSION_FIGURES",
    "CONV_FIGURES",
    "FIGURES",
    "FUNCTIONAL_FIGURES",
    "MLP_FIGURES",
    "MNIST1D_FIGURES",
    "RESNET_FIGURES",
    "STYLE",
    "NoData",
    "build_all",
    "fig1_source_table",
    "fig2_min_pair_vs_width",
    "fig3_pair_free_vs_width",
    "fig3b_activation_vs_width",
    "fig3c_functional_vs_width",
    "fig4_loss_vs_width",
    "fig5_trajectories",
    "fig6_cos_heatmaps",
    "fig7_spectra",
    "fig8_conv_redundancy_vs_width",
    "fig8b_conv_loss_vs_width",
    "fig9_compression",
    "fig10_resnet_blocks_vs_params",
    "fig11_mnist1d_redundancy_vs_width",
    "fig12_mnist1d_task_vs_width",
    "fig13_mnist1d_resnet_blocks",
    "fig14_width_trend",
    "main",
    "save",
    "sweep_experiments",
]

log = logging.getLogger(__name__)

Figure = Callable[[pd.DataFrame, Path], list[Path]]
# Built from the MLP experiments (figure 1: the single-seed source runs; the rest: model == "mlp" sweeps).
MLP_FIGURES: dict[str, Figure] = {
    "fig1_source_table": fig1_source_table,
    "fig2_min_pair_vs_width": fig2_min_pair_vs_width,
    "fig3_pair_free_vs_width": fig3_pair_free_vs_width,
    "fig3b_activation_vs_width": fig3b_activation_vs_width,
    "fig3c_functional_vs_width": fig3c_functional_vs_width,
    "fig4_loss_vs_width": fig4_loss_vs_width,
    "fig5_trajectories": fig5_trajectories,
    "fig6_cos_heatmaps": fig6_cos_heatmaps,
    "fig7_spectra": fig7_spectra,
}
# Built from the conv sweeps (model == "conv").
CONV_FIGURES: dict[str, Figure] = {
    "fig8_conv_redundancy_vs_width": fig8_conv_redundancy_vs_width,
    "fig8b_conv_loss_vs_width": fig8b_conv_loss_vs_width,
}
# Built from the compression runs (kind == "compressed").
COMPRESSION_FIGURES: dict[str, Figure] = {"fig9_compression": fig9_compression}
# Built from the ResNet sweeps (model == "resnet").
RESNET_FIGURES: dict[str, Figure] = {"fig10_resnet_blocks_vs_params": fig10_resnet_blocks_vs_params}
# Built from the MNIST-1D families and the autoencoders (models mlp_classifier, cnn1d, autoencoder, resnet1d; the
# reference lines of figure 12 from mnist1d_baselines).
MNIST1D_FIGURES: dict[str, Figure] = {
    "fig11_mnist1d_redundancy_vs_width": fig11_mnist1d_redundancy_vs_width,
    "fig12_mnist1d_task_vs_width": fig12_mnist1d_task_vs_width,
    "fig13_mnist1d_resnet_blocks": fig13_mnist1d_resnet_blocks,
}
# Built from every sweep with the functional threshold grid (experiments/functional.py).
FUNCTIONAL_FIGURES: dict[str, Figure] = {"fig15_functional_thresholds": fig15_functional_thresholds,
                                          "fig16_movement_vs_width": fig16_movement_vs_width}
# Built from the trend table of every sweep (analysis.hypothesis): the test of the width x training hypothesis;
# figure 0 (the answer at a glance) from the trend and the effects tables.
TREND_FIGURES: dict[str, Figure] = {"fig0_answer": fig0_answer, "fig14_width_trend": fig14_width_trend}
ANSWER_FIGURES: dict[str, Figure] = {"fig0b_functional_vs_relative_width": fig0b_functional_vs_relative_width}
FIGURES: dict[str, Figure] = {**MLP_FIGURES, **CONV_FIGURES, **COMPRESSION_FIGURES, **RESNET_FIGURES,
                              **MNIST1D_FIGURES, **FUNCTIONAL_FIGURES, **ANSWER_FIGURES, **TREND_FIGURES}


def build_all(root: Path = DEFAULT_ROOT, out_dir: Path | None = None, on_error: str = "raise",
              tables_dir: Path | None = None, df: pd.DataFrame | None = None) -> list[Path]:
    """Rebuild every figure and the summary table the results under ``root`` support; returns the files written.

    The summary of every metric (``analysis.stats.write_summary``) and the family tables (ResNet blocks,
    compression, MNIST-1D baselines and 1-D blocks, architecture costs) go to ``tables_dir``, by default
    ``<results root>/tables`` next to ``<results root>/figures``; nothing is written when there are no runs.
    """
    df = compact(load_runs(root, on_error=on_error)) if df is None else df
    out_dir = out_dir or Path(root) / "figures"
    tables_dir = tables_dir or results_root(root) / "tables"
    trend = trend_table(df)  # once: the trend table and figure 14 share it
    written: list[Path] = write_summary(df, tables_dir) + write_trend_table(df, tables_dir, table=trend)
    written += write_blocks_table(df, tables_dir)
    written += write_compression_tables(df, tables_dir)
    written += write_mnist1d_tables(df, tables_dir)  # mnist1d_baselines, mnist1d_resnet_{blocks,matched}
    written += write_arch_tables(tables_dir)  # counted on modules, independent of any run
    effects = effects_table(df)  # once: the table and figure 0 share it
    written += write_effects_table(df, tables_dir, table=effects)  # trained − null gaps per width, on one scale
    written += write_anchor_growth_table(df, tables_dir)  # the anchor's growth per doubling, beside theirs
    written += write_movement_table(df, tables_dir)  # did wider layers move less from their initialisation?
    if not trend.empty:  # the size and power of the headline tests, simulated with the sweeps' own spreads
        log.info("calibration: simulating the headline tests' size and power")
        written += write_calibration_table(calibration_table(trend), tables_dir)
    if written:
        log.info("summary table: %s", ", ".join(str(p) for p in written))
    for name, make in FIGURES.items():
        try:
            if name == "fig0_answer":
                paths = fig0_answer(df, out_dir, table=trend, effects=effects)
            elif name in TREND_FIGURES:
                paths = make(df, out_dir, table=trend)
            else:
                paths = make(df, out_dir)
        except NoData as why:
            log.warning("%s skipped: %s", name, why)
            continue
        written += paths
        log.info("%s: %s", name, ", ".join(p.name for p in paths))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild all figures and tables from results/runs/.")
    parser.add_argument("--results", type=Path, default=DEFAULT_ROOT, help="results root (holds runs/)")
    parser.add_argument("--out", type=Path, default=None, help="figure folder (default: <results>/figures)")
    parser.add_argument("--tables", type=Path, default=None, help="table folder (default: <results>/tables)")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable results files with a warning")
    parser.add_argument("--partial", action="store_true",
                        help="write the default (committed) folders even when a reproduced preset is incomplete")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    try:
        df = compact(load_runs(args.results, on_error="skip" if args.skip_bad else "raise"))
    except ResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.out is None and args.tables is None and not args.partial:
        gaps = missing(df)
        if gaps:  # never let a partial set of runs replace the committed figures and tables
            scratch = results_root(args.results) / "scratch"
            args.out, args.tables = scratch / "figures", scratch / "tables"
            print(f"incomplete results ({len(gaps)} gaps, e.g. {gaps[0]}): writing to {scratch}/, not the committed "
                  "figures and tables (--partial to write there anyway)")
    written = build_all(args.results, args.out, "skip" if args.skip_bad else "raise", args.tables, df=df)
    table = (args.out or args.results / "figures") / "fig1_source_table.md"
    if table.exists():
        print(table.read_text())
    tables = args.tables or results_root(args.results) / "tables"
    print(f"{len(written)} files written under {args.out or args.results / 'figures'} and {tables}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
