"""Training of a replicated model (full batch, or mini-batches), logging loss and metrics into tidy rows at
checkpoints.

All replicates step together: the loss is the sum of the replicates' own mean losses, so each
replicate's gradient is exactly its own, and Adam (element-wise) keeps them independent. With mini-batches each
replicate draws its own order from its seed (``per_seed``, the default) or all share one from ``data.split_seed``
(``shared``); either way replicate r sees exactly the batches a solo run with seed ``seed + r`` sees.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import math
import sys
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from experiments.data import Data
from experiments.functional import Protocol, functional_metrics
from experiments.metrics import activation_metrics, movement_metrics, weight_metrics
from experiments.step import make_step
from experiments.tasks import eval_mode

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


@dataclass
class TrainResult:
    rows: pd.DataFrame
    initial: dict[str, torch.Tensor]
    final: dict[str, torch.Tensor]
    diverged: dict[int, int]  # seed -> epoch at which its loss stopped being finite
    metric_seconds: float     # every metric pass, the functional metrics included
    train_seconds: float      # the training epochs, metric passes excluded
    functional_seconds: float = 0.0


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every stacked parameter and buffer (``<layer>.weight``, ``<layer>.bias``, …), each (R, ...), on the CPU."""
    return {name: t.detach().cpu().clone() for name, t in model.state_tensors().items()}


@contextlib.contextmanager
def buffers_kept(model: torch.nn.Module):
    """Undo any change to the model's buffers (BatchNorm's running statistics) made inside the block: measuring
    the initial weights' training loss must not move the statistics the first training step starts from."""
    saved = [b.clone() for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, old in zip(model.buffers(), saved, strict=True):
                b.copy_(old)


def minibatches(n: int, batch_size: int, order: torch.Generator) -> list[torch.Tensor] | None:
    """One epoch's example indices: a permutation drawn from ``order`` split into batches of ``batch_size`` (the
    last may be smaller); None for full-batch training (``batch_size`` 0 or >= n), which draws nothing."""
    if not 0 < batch_size < n:
        return None
    return list(torch.randperm(n, generator=order).split(batch_size))


def order_generator(seed: int, split_seed: int) -> torch.Generator:
    """The generator of one replicate's own mini-batch order: keyed by its seed (and ``data.split_seed``), never the
    stream its weights were drawn from, so that replicate r and a solo run with its seed see the same batches."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:order:{split_seed}".encode()))


@dataclass
class BatchOrder:
    """Which examples each step of an epoch takes: ``none`` (full batch), ``shared`` (one permutation per epoch from
    ``data.split_seed``, the same batches for every replicate) or ``per_seed`` (each replicate permutes with its own
    generator, :func:`order_generator`; a batch is then (R, B) indices, one row per replicate)."""

    kind: str
    batch_size: int
    generators: list[torch.Generator]

    @classmethod
    def make(cls, kind: str, batch_size: int, seeds: list[int], split_seed: int) -> BatchOrder:
        if kind == "per_seed":
            return cls(kind, batch_size, [order_generator(s, split_seed) for s in seeds])
        return cls(kind, batch_size, [torch.Generator().manual_seed(split_seed)])

    def epoch(self, n: int) -> list[torch.Tensor] | None:
        if self.kind == "none" or not 0 < self.batch_size < n:
            return None
        if self.kind == "shared":
            return minibatches(n, self.batch_size, self.generators[0])
        perms = torch.stack([torch.randperm(n, generator=g) for g in self.generators])
        return list(perms.split(self.batch_size, dim=1))

    def steps_per_epoch(self, n: int) -> int:
        return 1 if self.kind == "none" or not 0 < self.batch_size < n else math.ceil(n / self.batch_size)


def trainable_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters of one replicate (every stacked parameter has the replicates on its first axis)."""
    return sum(p[0].numel() for p in model.parameters_in_source_order() if p.requires_grad)


@dataclass
class FunctionalData:
    """What the functional metrics run on: training examples to fit on, held-out examples and targets to score on."""

    fit_x: torch.Tensor
    score_x: torch.Tensor
    score_y: torch.Tensor

    @classmethod
    def make(cls, data: Data, task, fc) -> FunctionalData:
        fit = data.x if fc.fit_examples is None else data.x[:int(fc.fit_examples)]
        k = None if fc.score_examples is None else int(fc.score_examples)
        return cls(fit, data.eval_x[:k], task.targets(data)[1][:k])


def train(model: torch.nn.Module, data: Data, task, seeds: list[int], epochs: int, lr: float,
          metric_epochs: list[int] | int, progress: bool | None = None, batch_size: int = 0, batch_seed: int = 0,
          functional=None, order: str = "shared") -> TrainResult:
    """Train all replicates for ``epochs`` passes of Adam over ``data.x`` towards ``task``'s targets.

    ``batch_size`` 0 (or >= the data) is full-batch training, one step per epoch, and ``loss`` at epoch e is
    computed in epoch e's forward pass, before its update. Otherwise each epoch takes mini-batches of a permutation
    (``order``: ``per_seed``, one per replicate from its seed; ``shared``, one for all from ``batch_seed``; see
    :class:`BatchOrder`; the last batch may be smaller) and ``loss`` at epoch e is the mean over the epoch's examples
    of the training loss in its steps. At epoch 0 ``loss`` is the loss of the initial weights on all of ``data.x``.
    At every epoch of ``metric_epochs`` (an int: every that many epochs, and the last) the rows get every weight
    metric of every studied layer and how far it moved from its initial weights (``metrics.movement_metrics``), the
    activation metrics of ``model.activation_layers`` on the evaluation batch (in eval mode, as the model is
    evaluated: BatchNorm on its running statistics), what ``task.evaluate`` reports (``eval_loss``, ``train_loss``,
    accuracies), ``params`` (trainable parameters per replicate) and ``steps`` (optimizer steps so far), all
    describing the weights after that epoch's update. ``functional`` (``cfg.functional``; None: none) adds the
    functional metrics of ``model.functional_layers`` (``experiments.functional``: fitted on the training examples,
    scored on the held-out ones), in eval mode. A replicate whose loss turns non-finite is dropped from later rows;
    the run stops when none is left.
    """
    seeds_np = np.asarray(seeds, dtype=np.int64)
    rows = RowBuffer()
    tune_allocator()
    x, y = data.x, task.targets(data)[0]
    opt = make_optimizer(model.parameters_in_source_order(), lr, len(seeds))
    alive = torch.ones(len(seeds), dtype=torch.bool)
    diverged: dict[int, int] = {}
    n_params = trainable_parameters(model)
    n = x.shape[0]
    batches_of = BatchOrder.make(order, batch_size, seeds, batch_seed)
    per_step = batches_of.steps_per_epoch(n)
    if isinstance(metric_epochs, int):
        metric_epochs = sorted({0, epochs, *range(metric_epochs, epochs + 1, metric_epochs)})
    at_epochs = set(metric_epochs)

    step = make_step(model, task, opt)  # zero_grad, forward, summed per-replicate loss, backward, Adam step
    metric_seconds = functional_seconds = 0.0
    layers = tuple(getattr(model, "functional_layers", ())) if functional is not None else ()
    if layers:
        fdata = FunctionalData.make(data, task, functional)
        protocol = Protocol.from_config(functional)

    def log_metrics(epoch: int) -> None:
        nonlocal metric_seconds, functional_seconds
        t0 = time.perf_counter()
        idx = alive.nonzero().squeeze(1)
        seeds_alive = seeds_np[idx.numpy()]
        with torch.no_grad():
            for name, w in model.weights.items():
                w_alive = w.detach()[idx.to(w.device)]
                measured = weight_metrics(w_alive)
                measured.update(movement_metrics(w_alive, initial[f"{name}.weight"][idx].to(w.device)))
                rows.add(epoch, name, measured, seeds_alive)
            with eval_mode(model):
                activations = model.activations(data.eval_x)
            for name, acts in activations.items():
                rows.add(epoch, name, activation_metrics(acts[idx.to(acts.device)]), seeds_alive)
            reported = task.evaluate(model, data)
            reported["params"] = torch.full((len(seeds),), float(n_params))
            reported["steps"] = torch.full((len(seeds),), float(epoch * per_step))
            rows.add(epoch, "model", {k: v[idx.to(v.device)] for k, v in reported.items()}, seeds_alive)
            if layers:
                t1 = time.perf_counter()
                with eval_mode(model):
                    measured = functional_metrics(model, fdata.fit_x, fdata.score_x, fdata.score_y, task, layers,
                                                  protocol, list(seeds))
                for name, values in measured.items():
                    rows.add(epoch, name, {k: v[idx.to(v.device)] for k, v in values.items()}, seeds_alive)
                functional_seconds += time.perf_counter() - t1
        metric_seconds += time.perf_counter() - t0
        # Progress of the metric passes (the functional ones can take longer than the epochs between them).
        log.info("metrics at epoch %d of %d: %.1f s (functional %.1f s so far)", epoch, epochs,
                 time.perf_counter() - t0, functional_seconds)

    initial = snapshot(model)
    with torch.no_grad(), buffers_kept(model):
        rows.add(0, "model", {"loss": task.loss(model(x), y)}, seeds_np)
    log_metrics(0)
    metrics_before = metric_seconds

    t_start = time.perf_counter()
    bar = tqdm(range(1, epochs + 1), desc="epochs", unit="ep", leave=False, delay=3.0,
               disable=(not progress) if progress is not None else None)
    for epoch in bar:
        batches = batches_of.epoch(n)
        if batches is None:
            losses = step(x, y, False)
        else:
            losses = torch.zeros(len(seeds), dtype=x.dtype, device=x.device)
            stacked = batches_of.kind == "per_seed"
            for batch in batches:
                batch = batch.to(x.device)
                losses += step(x[batch], y[batch], stacked) * (batch.shape[-1] / n)
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
        if epoch in at_epochs:
            bar.set_postfix_str("metrics")
            log_metrics(epoch)
    bar.close()
    train_seconds = time.perf_counter() - t_start - (metric_seconds - metrics_before)  # optimizer steps only
    return TrainResult(rows.frame(), initial, snapshot(model), diverged, metric_seconds, train_seconds,
                       functional_seconds)
