"""The one place that chooses the experiment kind: ``run(cfg, results_root) -> rows``.

``run.py`` wraps it for Hydra; tests and notebooks call it directly with a composed config. Each kind is a pure
function of the same signature in its own module, and those modules never import this one:

- ``training`` (``experiments.training_run``): train ``cfg.replicates`` seeds of one configuration, measure the
  nulls, write one results file;
- ``compression`` (``experiments.compression_run``): compress the trained runs ``cfg.compression.sources`` names
  (``experiment=compression``), training any that are missing.

A new kind is a module with a ``run(cfg, results_root)`` and one entry in :data:`KINDS` and :func:`kind_of`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from experiments import compression_run, training_run
from experiments.training_run import resolve_device, seed_everything

__all__ = ["KINDS", "kind_of", "resolve_device", "run", "seed_everything"]

Run = Callable[[DictConfig, "str | Path | None"], pd.DataFrame]
KINDS: dict[str, Run] = {"training": training_run.run, "compression": compression_run.run}


def kind_of(cfg: DictConfig) -> str:
    """The experiment kind a config asks for: ``compression`` when it names sources to compress, else training."""
    return "compression" if cfg.compression.sources else "training"


def run(cfg: DictConfig, results_root: str | Path | None = None) -> pd.DataFrame:
    """Run the experiment ``cfg`` describes (see :data:`KINDS`) and return the rows it wrote or found on disk."""
    return KINDS[kind_of(cfg)](cfg, results_root)
