"""Full-batch training of a replicated model, logging loss and weight metrics into tidy rows.

All replicates step together: the loss is the sum of the replicates' own mean losses, so each
replicate's gradient is exactly its own, and Adam (element-wise) keeps them independent.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from experiments.metrics import weight_metrics

log = logging.getLogger(__name__)


@dataclass
class RowBuffer:
    """Collects blocks of measurements and turns them into a tidy frame in one go at the end."""

    epochs: list[np.ndarray] = field(default_factory=list)
    seeds: list[np.ndarray] = field(default_factory=list)
    layers: list[np.ndarray] = field(default_factory=list)
    metrics: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)

    def add(self, epoch: int, layer: str, measured: dict[str, torch.Tensor], seeds: np.ndarray) -> None:
        """``measured``: metric name -> (len(seeds),) tensor."""
        if not measured:
            return
        names = list(measured)
        values = torch.stack([measured[n].detach().double().cpu() for n in names]).numpy()  # (M, K)
        m, k = values.shape
        self.epochs.append(np.full(m * k, epoch, dtype=np.int64))
        self.seeds.append(np.tile(seeds.astype(np.int64), m))
        self.layers.append(np.full(m * k, layer, dtype=object))
        self.metrics.append(np.repeat(np.array(names, dtype=object), k))
        self.values.append(values.reshape(-1))

    def frame(self) -> pd.DataFrame:
        def cat(parts: list[np.ndarray], dtype: str) -> np.ndarray:
            return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

        return pd.DataFrame({
            "seed": cat(self.seeds, "int64"),
            "epoch": cat(self.epochs, "int64"),
            "layer": cat(self.layers, "object").astype(str),
            "metric": cat(self.metrics, "object").astype(str),
            "value": cat(self.values, "float64"),
        })


@functools.cache
def tune_allocator() -> None:
    """Keep large tensors on glibc's heap instead of fresh ``mmap`` pages.

    A 1000-replicate step allocates activations of ~50 MB, above glibc's mmap threshold, so every
    step page-faults them in again; that alone made batched matmuls ~3x slower here. Raising the
    threshold (the job jemalloc/tcmalloc do for PyTorch on CPU) lets freed blocks be reused.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, (1 << 31) - 1)


def make_optimizer(params: list[torch.nn.Parameter], lr: float, replicates: int) -> torch.optim.Optimizer:
    """Adam with its defaults. A solo run uses the default implementation (bitwise the source's);
    ensembles use the fused kernel, one pass over each stacked tensor (same maths, float32 rounding)."""
    if replicates == 1:
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, fused=True)


def per_replicate_mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each replicate, (R,). With R = 1 it is ``F.mse_loss`` itself (bitwise source)."""
    if out.shape[0] == 1:
        return F.mse_loss(out[0], target).reshape(1)
    return F.mse_loss(out, target.expand_as(out), reduction="none").flatten(1).mean(dim=1)


@dataclass
class TrainResult:
    rows: pd.DataFrame
    initial: dict[str, torch.Tensor]
    final: dict[str, torch.Tensor]
    diverged: dict[int, int]  # seed -> epoch at which its loss stopped being finite
    metric_seconds: float
    train_seconds: float


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights and biases as ``<layer>.weight`` / ``<layer>.bias``, each (R, ...), on the CPU."""
    out = {}
    for name in model.weights:
        out[f"{name}.weight"] = model.weights[name].detach().cpu().clone()
        out[f"{name}.bias"] = model.biases[name].detach().cpu().clone()
    return out


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seeds: list[int], epochs: int, lr: float,
          log_every: int, progress: bool | None = None) -> TrainResult:
    """Train all replicates for ``epochs`` full-batch Adam steps.

    ``loss`` at epoch e is computed in epoch e's forward pass, before its update; at epoch 0 it is the
    loss of the initial weights. Weight metrics at epoch e describe the weights after e's update. A
    replicate whose loss turns non-finite is dropped from later rows; the run stops when none is left.
    """
    seeds_np = np.asarray(seeds, dtype=np.int64)
    rows = RowBuffer()
    tune_allocator()
    opt = make_optimizer(model.parameters_in_source_order(), lr, len(seeds))
    alive = torch.ones(len(seeds), dtype=torch.bool)
    diverged: dict[int, int] = {}
    metric_seconds = 0.0

    def log_weights(epoch: int) -> None:
        nonlocal metric_seconds
        t0 = time.perf_counter()
        idx = alive.nonzero().squeeze(1)
        with torch.no_grad():
            for name, w in model.weights.items():
                rows.add(epoch, name, weight_metrics(w.detach()[idx.to(w.device)]), seeds_np[idx.numpy()])
        metric_seconds += time.perf_counter() - t0

    initial = snapshot(model)
    with torch.no_grad():
        rows.add(0, "model", {"loss": per_replicate_mse(model(x), y)}, seeds_np)
    log_weights(0)

    t_start = time.perf_counter()
    bar = tqdm(range(1, epochs + 1), desc="epochs", unit="ep", leave=False, delay=3.0,
               disable=(not progress) if progress is not None else None)
    for epoch in bar:
        opt.zero_grad(set_to_none=True)
        losses = per_replicate_mse(model(x), y)
        losses.sum().backward()
        opt.step()
        finite = torch.isfinite(losses.detach()).cpu()
        rows.add(epoch, "model", {"loss": losses[alive.to(losses.device)]}, seeds_np[alive.numpy()])
        newly_dead = alive & ~finite
        if newly_dead.any():
            for r in newly_dead.nonzero().squeeze(1).tolist():
                diverged[int(seeds_np[r])] = epoch
            alive &= finite
            log.warning("loss became non-finite at epoch %d for seed(s) %s", epoch,
                        ", ".join(str(int(s)) for s in seeds_np[newly_dead.numpy()]))
            if not alive.any():
                break
        if epoch % log_every == 0 or epoch == epochs:
            log_weights(epoch)
    bar.close()
    train_seconds = time.perf_counter() - t_start
    return TrainResult(rows.frame(), initial, snapshot(model), diverged, metric_seconds, train_seconds)
