"""One function per paper figure (SPEC §8); ``python -m analysis.figures`` rebuilds them all.

Every figure function takes the tidy results frame and an output folder and returns the paths it
wrote (PDF and PNG). Figures whose data are absent are skipped with a message, not faked.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from analysis.load import DEFAULT_ROOT, ResultsError, load_runs
from analysis.tables import SOURCE_PRINTED, source_table, to_markdown

log = logging.getLogger(__name__)

# Paper-column styling: embedded TrueType fonts (pdf.fonttype 42), readable small sizes.
STYLE = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "figure.dpi": 150,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
}
COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper


class NoData(LookupError):
    """The results hold nothing this figure is made from."""


def save(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.pdf", out_dir / f"{name}.png"]
    for path in paths:
        # No creation date in the PDF: rebuilding the same figure gives the same bytes.
        fig.savefig(path, metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


def fig1_source_table(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The source's table reproduced: final loss and closest-pair distance at widths 8/32/128."""
    table = source_table(df)
    if table["loss (ours)"].isna().all():
        raise NoData("no runs of experiment 'source' with seed 10000")
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "fig1_source_table.md"
    md.write_text(
        "Source table reproduced (seed 10000, 100 epochs, Adam 1e-3; SPEC §2)\n\n" + to_markdown(table))
    with mpl.rc_context(STYLE), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, 2, figsize=(COLUMN_WIDTH * 2, 2.2))
        labels = [str(w) for w in SOURCE_PRINTED.index]
        widths = list(range(len(labels)))
        panels = [("loss", "final training loss (MSE)"), ("min_pair_l1", r"closest pair: mean $|W_i - W_j|$")]
        for ax, (key, label) in zip(axes, panels, strict=True):
            ours = table[f"{key} (ours)"].to_numpy()
            ax.bar(widths, ours, color=sns.color_palette()[0], width=0.6, label="this repository")
            ax.scatter(widths, table[f"{key} (source)"], marker="x", color="black", s=40, zorder=3,
                       label="source (printed)")
            for x, v in zip(widths, ours, strict=True):
                if pd.notna(v):
                    ax.annotate(f"{v:.4f}", (x, v), textcoords="offset points", xytext=(0, 7), ha="center",
                                fontsize=6)
            ax.set_xticks(widths, labels)
            ax.set_xlabel("bottleneck width (units)")
            ax.set_ylabel(label)
            ax.margins(y=0.15)
        axes[0].legend(loc="lower right", frameon=True)
        fig.suptitle("Source experiment reproduced (seed 10000)", fontsize=8)
        fig.tight_layout()
        return [md, *save(fig, out_dir, "fig1_source_table")]


FIGURES: dict[str, Callable[[pd.DataFrame, Path], list[Path]]] = {
    "fig1_source_table": fig1_source_table,
}


def build_all(root: Path = DEFAULT_ROOT, out_dir: Path | None = None, on_error: str = "raise") -> list[Path]:
    """Rebuild every figure the results under ``root`` support; returns the files written."""
    df = load_runs(root, on_error=on_error)
    out_dir = out_dir or Path(root) / "figures"
    written: list[Path] = []
    for name, make in FIGURES.items():
        try:
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
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable results files with a warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    try:
        written = build_all(args.results, args.out, "skip" if args.skip_bad else "raise")
    except ResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    table = (args.out or args.results / "figures") / "fig1_source_table.md"
    if table.exists():
        print(table.read_text())
    print(f"{len(written)} files written under {args.out or args.results / 'figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
