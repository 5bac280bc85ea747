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
from omegaconf import DictConfig, OmegaConf

from experiments import compression_run, training_run
from experiments.training_run import resolve_device, seed_everything

__all__ = ["KINDS", "digest", "kind_of", "quick", "resolve_device", "run", "seed_everything"]

Run = Callable[[DictConfig, "str | Path | None"], pd.DataFrame]
KINDS: dict[str, Run] = {"training": training_run.run, "compression": compression_run.run}


def kind_of(cfg: DictConfig) -> str:
    """The experiment kind a config asks for: ``compression`` when it names sources to compress, else training."""
    return "compression" if cfg.compression.sources else "training"


# What ``quick=true`` keeps of a preset: a few epochs and seeds, small nulls, a functional null of one model. The
# data, widths, model and metrics stay the preset's own, so a quick run exercises every code path a full one does.
QUICK = {"epochs": 2, "replicates": 2, "null_samples": 10, "functional.null_samples": 1, "compression.replicates": 2,
         "compression.finetune_epochs": 1}


def quick(cfg: DictConfig, results_root: str | Path | None = None) -> tuple[DictConfig, Path]:
    """``cfg`` shrunk for a quick try (:data:`QUICK`, each knob only ever lowered; metrics at epoch 0 and the last;
    the MNIST-1D and digits training sets capped at 1,000 examples) and the folder its results go to:
    ``<results>/scratch/quick``, apart from the runs the committed figures are built from."""
    small = cfg.copy()
    for key, value in QUICK.items():
        current = OmegaConf.select(small, key)
        if current is not None:
            OmegaConf.update(small, key, min(int(current), value), merge=False)
    small.checkpoints = None
    small.log_every = max(int(small.epochs), 1)
    if small.data.name in ("mnist1d", "digits"):
        small.data.n_train = min(int(small.data.n_train), 1000)
    root = Path(results_root if results_root is not None else cfg.results_dir) / "scratch" / "quick"
    return small, root


def run(cfg: DictConfig, results_root: str | Path | None = None) -> pd.DataFrame:
    """Run the experiment ``cfg`` describes (see :data:`KINDS`) and return the rows it wrote or found on disk;
    with ``quick=true`` a shrunk copy of it (:func:`quick`) into a scratch folder."""
    if cfg.get("quick"):
        cfg, results_root = quick(cfg, results_root)
    return KINDS[kind_of(cfg)](cfg, results_root)


DIGEST_METRICS = ("eval_loss", "test_accuracy", "mean_nn_abs_cos", "act_eff_rank_norm", "abl_eff_frac",
                  "anchor_prunable_frac", "rel_move")


def digest(df: pd.DataFrame) -> str:
    """A short table of what a run measured, for the terminal: per width and layer, the final-epoch mean over
    seeds (and the change from epoch 0) of the headline metrics of each level and the task's loss/accuracy."""
    trained = df[(df["kind"] == "trained") & df["metric"].isin(DIGEST_METRICS)] if not df.empty else df
    if trained.empty:
        return ""
    last = trained["epoch"].max()
    keep = trained["layer"].isin(["model", "bottleneck", "reduce"])
    ends = trained[keep & trained["epoch"].isin([0, last])]
    means = ends.groupby(["width", "layer", "metric", "epoch"], observed=True)["value"].mean().unstack("epoch")
    lines = [f"{'width':>6} {'layer':<11} {'metric':<22} {'epoch 0':>10} {f'epoch {last}':>10}"]
    for (width, layer, metric), row in means.iterrows():
        lines.append(f"{width:>6} {layer:<11} {metric:<22} {row.get(0, float('nan')):>10.4g} "
                     f"{row.get(last, float('nan')):>10.4g}")
    return "\n".join(lines)
