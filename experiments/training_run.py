"""A training run as one pure function: ``run(cfg, results_root) -> rows`` (experiment kind ``training``).

``experiments.experiment.run`` chooses the experiment kind and calls this for every config that trains models;
``experiments.compression_run`` calls it for the runs it compresses.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from experiments import config as C
from experiments import data, results
from experiments.families import family, run_columns, task_of
from experiments.nulls import activation_null_rows, null_rows
from experiments.train import train

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise C.ConfigError("device: 'cuda' requested but no CUDA device is available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch as the source did before building its model."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: DictConfig, results_root: str | Path | None = None) -> pd.DataFrame:
    """Train ``cfg.replicates`` seeds of one configuration, compute the null, write one results file.

    Returns the rows written (or the rows already on disk when a complete file exists and
    ``overwrite`` is false). Raises :class:`ConfigError` before touching the disk on bad input.
    """
    C.validate(cfg)
    device = resolve_device(cfg.device)
    root = Path(results_root if results_root is not None else cfg.results_dir)
    rid = C.run_id(cfg)
    path = results.results_path(root, cfg.name, rid)
    if results.is_complete(path) and not cfg.overwrite:
        log.info("skip: %s exists (overwrite=true redoes it)", path)
        return pd.read_parquet(path)
    weights = results.weights_path(root, cfg.name, rid)
    for target in (path, weights):
        results.remove_stale_temporaries(target)

    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))
    t0 = time.perf_counter()
    seeds = [cfg.seed + r for r in range(cfg.replicates)]
    fam, task = family(cfg.model.name), task_of(cfg.model.name)
    batches = data.load(cfg.data).to(device)  # loaded once per job, shared by the replicates and the null
    seed_everything(cfg.seed)
    model = fam.build(cfg, seeds).to(device)
    log.info("run %s: %s width=%d seeds=%d..%d epochs=%d", rid, cfg.model.name, cfg.width, seeds[0], seeds[-1],
             cfg.epochs)
    out = train(model, batches, task, seeds, cfg.epochs, cfg.optim.lr, C.metric_epochs(cfg), cfg.progress,
                batch_size=cfg.optim.batch_size, batch_seed=cfg.data.split_seed, functional=cfg.functional,
                order=C.order_of(cfg))
    trained = out.rows.assign(kind="trained")
    t_null = time.perf_counter()
    null = null_rows(model.specs, cfg.null_samples, cfg.null_seed)
    act_null, null_functional_seconds = activation_null_rows(
        lambda s: fam.build(cfg, s), batches, cfg.null_samples, cfg.null_seed, functional=cfg.functional, task=task)
    null = pd.concat([null.frame(), act_null.frame()], ignore_index=True).assign(kind="null")
    null_seconds = time.perf_counter() - t_null
    log.info("null: %d draws per layer shape and of whole models: %.1f s (functional %.1f s)", cfg.null_samples,
             null_seconds, null_functional_seconds)

    frame = pd.concat([trained, null], ignore_index=True).assign(
        experiment=cfg.name, run_id=rid, **run_columns(cfg), **results.NOT_COMPRESSED)
    frame = frame[list(results.SCHEMA)]
    status = "diverged" if out.diverged else "completed"
    if out.diverged:
        log.warning("run %s diverged: seed -> epoch %s; rows up to divergence kept", rid, out.diverged)
    wall = time.perf_counter() - t0
    meta = results.metadata(
        OmegaConf.to_yaml(cfg, resolve=True), wall, status, diverged=out.diverged,
        train_seconds=f"{out.train_seconds:.3f}", metric_seconds=f"{out.metric_seconds:.3f}",
        functional_seconds=f"{out.functional_seconds:.3f}", null_seconds=f"{null_seconds:.3f}",
        null_functional_seconds=f"{null_functional_seconds:.3f}")
    tensors = {f"{stage}/{name}": w for stage, ws in (("initial", out.initial), ("final", out.final))
               for name, w in ws.items()}
    tensors["seeds"] = torch.tensor(seeds, dtype=torch.int64)
    results.write_weights(weights, tensors, {"run_id": rid})
    results.write_results(frame, path, meta)
    log.info("wrote %s (%d rows, %.1fs, status %s)", path, len(frame), wall, status)
    return frame
