"""What the notebooks share: showing one figure function's PNG inline, or why it has nothing to show."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from analysis.plotting import NoData


def show_figure(make: Callable[..., list[Path]], df: pd.DataFrame, out_dir: Path,
                experiments: Sequence[str] | None) -> list[Path]:
    """Make one figure of ``analysis.figures`` for ``experiments`` (where the figure takes a choice of sweeps) into
    ``out_dir`` and display its PNG; print why not when the results hold nothing it is made from. Returns the paths
    written."""
    from IPython.display import Image, display  # only where a notebook runs it

    takes = "experiments" in inspect.signature(make).parameters  # the per-family figures choose their sweeps
    try:
        paths = make(df, out_dir, experiments=experiments) if takes else make(df, out_dir)
    except NoData as why:
        print(f"{make.__name__} skipped: {why}")
        return []
    for path in paths:
        if path.suffix == ".png":
            display(Image(filename=str(path)))
    return paths
