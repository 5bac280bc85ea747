"""``experiment=compression``: low-rank compression (experiments/compression.py) of trained runs, as one pure function.

For every source (a preset and overrides, e.g. ``resnet_sweep:model.block=basic,width=8``) the run composes the
source's config, trains it if its results are absent (``experiments.training_run.run`` skips a complete run), and
loads its saved initial and final weights. For the first ``compression.replicates`` replicates and both stages
(``initial``, ``final`` weights) it compresses one replicate as a plain module with every method at every keep
ratio and logs, to the results contract (``kind = compressed``, with ``method``, ``keep_ratio`` and ``stage``):

- per compressible layer: ``k``, ``j``, ``intact`` (1 when left whole), ``rel_error`` (exact), ``rel_error_proxy``,
  ``params_kept`` and ``params_original``;
- per model (``layer = model``): ``max_rel_error``, ``keep_ratio_achieved`` (kept / original weights of the
  compressible layers, as the allocator counts them: never above ``keep_ratio``), and the task's evaluation
  (``eval_loss``; ``test_accuracy`` and ``train_accuracy`` for classifiers) of the compressed model, and, at the
  keep ratios in ``compression.finetune_ratios`` for final weights, the same after ``finetune_epochs`` epochs of
  the source's optimiser (metrics suffixed ``_finetuned``). Rows with ``method = none`` are the uncompressed model,
  and per layer ``rel_error_at_25pct_rank``/``_50pct_rank``: the error of the layer's best approximation at a
  quarter and half of its rank (k = 1), which compares layers of different widths on their own, and per model
  ``keep_ratio_min``, the smallest keep ratio any allocation reaches (rank 1 in every layer). A keep ratio below
  it has no allocation within budget: it is logged and has no rows for that replicate and stage.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file
from torch import nn

from experiments import compression as Z
from experiments import config as C
from experiments import data, results
from experiments.families import FAMILIES, family, run_columns, task_of
from experiments.train import make_optimizer, minibatches
from experiments.training_run import run as run_training

log = logging.getLogger(__name__)
NAME = "compression"
RANK_PERCENTS = (25, 50)


def parse_source(spec: str) -> tuple[str, list[str]]:
    """``"resnet_sweep:model.block=basic,width=8"`` -> ("resnet_sweep", ["model.block=basic", "width=8"])."""
    preset, _, rest = spec.partition(":")
    overrides = [o.strip() for o in rest.split(",") if o.strip()]
    return preset.strip(), overrides


def source_config(spec: str, results_dir: str) -> DictConfig:
    """The composed config of one source run (the preset's own replicates, so its saved weights are reused)."""
    preset, overrides = parse_source(spec)
    if preset not in C.group_options("experiment"):
        raise C.ConfigError(f"compression.sources: unknown experiment {preset!r} in {spec!r} "
                            f"(allowed: {', '.join(C.group_options('experiment'))})")
    args = [f"experiment={preset}", *overrides, f"results_dir={results_dir}"]
    try:
        if GlobalHydra.instance().is_initialized():  # inside run.py's Hydra app
            cfg = compose(config_name="config", overrides=args)
        else:
            with initialize_config_dir(config_dir=str(C.CONF_DIR), version_base="1.3"):
                cfg = compose(config_name="config", overrides=args)
    except Exception as err:  # Hydra's errors name the override; keep them on one line with the source
        raise C.ConfigError(f"compression.sources: cannot compose {spec!r}: {str(err).splitlines()[0]}") from err
    C.validate(cfg)
    if FAMILIES[cfg.model.name].replica is None:
        raise C.ConfigError(f"compression.sources: model '{cfg.model.name}' of {spec!r} has no plain-module form "
                            "to compress (families with one: "
                            f"{', '.join(n for n, f in FAMILIES.items() if f.replica is not None)})")
    return cfg


def validate(cfg: DictConfig) -> list[DictConfig]:
    """Check the compression settings and compose every source; returns the sources' configs."""
    z = cfg.compression
    C._require(len(z.keep_ratios) > 0 and all(0 < r < 1 for r in z.keep_ratios), "compression.keep_ratios",
               f"must be in (0, 1), got {list(z.keep_ratios)}")
    for m in z.methods:
        C._one_of(m, "compression.methods", Z.METHODS)
    C._require(z.replicates >= 1, "compression.replicates", f"must be >= 1, got {z.replicates}")
    C._require(z.finetune_epochs >= 0, "compression.finetune_epochs", f"must be >= 0, got {z.finetune_epochs}")
    return [source_config(spec, cfg.results_dir) for spec in z.sources]


class Solo(nn.Module):
    """One plain module seen as a one-replicate model (outputs (1, N, ...)), for the tasks' shared code."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).unsqueeze(0)


def evaluate(module: nn.Module, task, batches: data.Data) -> dict[str, float]:
    """``task.evaluate`` of one module on the held-out batch (``eval_loss``, ``test_accuracy`` for classifiers),
    without the training-set accuracy that training logs, to halve the cost."""
    return {k: float(v[0]) for k, v in task.evaluate(Solo(module), batches, train_accuracy=False).items()}


def finetune(module: nn.Module, task, batches: data.Data, src: DictConfig, epochs: int) -> nn.Module:
    """``epochs`` epochs of the source's optimiser settings (Adam, its lr, batch size and batch order, as
    ``experiments.train.train`` draws them)."""
    model = Solo(module).train()
    x, y = batches.x, task.targets(batches)[0]
    opt = make_optimizer(list(model.parameters()), float(src.optim.lr), 1)
    order = torch.Generator().manual_seed(int(src.data.split_seed))
    for _ in range(epochs):
        for idx in minibatches(x.shape[0], int(src.optim.batch_size), order) or [slice(None)]:
            opt.zero_grad(set_to_none=True)
            task.loss(model(x[idx]), y[idx]).sum().backward()
            opt.step()
    return module.eval()


def _load_replica(src: DictConfig, tensors: dict[str, torch.Tensor], stage: str, r: int) -> nn.Module:
    module = family(src.model.name).replica(src)
    state = {name: tensors[f"{stage}/{name}"][r] for name in module.state_dict()}
    module.load_state_dict(state)
    return module.eval()


def _channels_last(batches: data.Data) -> data.Data:
    """Image batches in channels_last layout, the one PyTorch's CPU convolutions run fastest in."""
    if batches.x.dim() != 4:
        return batches
    return dataclasses.replace(batches, x=batches.x.contiguous(memory_format=torch.channels_last),
                               eval_x=batches.eval_x.contiguous(memory_format=torch.channels_last))


def compress_replicate(src: DictConfig, module: nn.Module, batches: data.Data, zcfg, stage: str) -> list[dict]:
    """Every method x keep ratio on one replicate's module; returns row dicts (layer, metric, value, method,
    keep_ratio)."""
    task = task_of(src.model.name)
    layers = [Z.analyse(name, module.get_submodule(name).weight) for name in module.weight_layers]
    layers = [layer for layer in layers if layer.compressible()]
    rows = [{"layer": "model", "metric": m, "value": v, "method": "none", "keep_ratio": 1.0}
            for m, v in evaluate(module, task, batches).items()]
    # Each layer on its own: the relative error of its best rank-j approximation (k = 1, where the proxy is
    # exact: sigma_{j+1} / sigma_1) at a quarter and half of its rank, a width-comparable compressibility.
    for layer in layers:
        r = layer.max_rank(1)
        for pct in RANK_PERCENTS:
            j = max(1, round(pct / 100 * r))
            rows.append({"layer": layer.name, "metric": f"rel_error_at_{pct}pct_rank",
                         "value": float(layer.proxy[1][j]), "method": "none", "keep_ratio": 1.0})
    total = Z.original(layers)
    rows.append({"layer": "model", "metric": "keep_ratio_min", "value": Z.min_keep_ratio(layers), "method": "none",
                 "keep_ratio": 1.0})
    ratios = []  # the keep ratios some allocation meets
    for keep in map(float, zcfg.keep_ratios):
        try:
            Z.check_budget(layers, Z.budget_of(layers, keep), keep)
            ratios.append(keep)
        except Z.BudgetError as err:
            log.warning("%s (%s weights): keep ratio skipped: %s", src.model.name, stage, err)
    for method in zcfg.methods:
        for keep in ratios:
            alloc = Z.allocate(method, layers, keep)
            out = []
            for layer in layers:
                k, j = alloc[layer.name]
                out += [(layer.name, "k", k), (layer.name, "j", j), (layer.name, "intact", float(layer.intact(k, j))),
                        (layer.name, "rel_error", Z.exact_error(layer, k, j)),
                        (layer.name, "rel_error_proxy", Z.proxy_error(layer, k, j)),
                        (layer.name, "params_kept", layer.params(k, j)),
                        (layer.name, "params_original", layer.original)]
            out += [("model", "max_rel_error", Z.max_exact_error(layers, alloc)),
                    ("model", "keep_ratio_achieved", Z.kept(layers, alloc) / total)]
            compressed = Z.compress(copy.deepcopy(module), layers, alloc).to(memory_format=torch.channels_last)
            out += [("model", m, v) for m, v in evaluate(compressed, task, batches).items()]
            tune = any(abs(keep - f) < 1e-9 for f in zcfg.finetune_ratios)
            if stage == "final" and zcfg.finetune_epochs > 0 and tune:
                tuned = finetune(compressed, task, batches, src, int(zcfg.finetune_epochs))
                out += [("model", f"{m}_finetuned", v) for m, v in evaluate(tuned, task, batches).items()]
            rows += [{"layer": lay, "metric": m, "value": float(v), "method": method, "keep_ratio": float(keep)}
                     for lay, m, v in out]
    return rows


def run(cfg: DictConfig, results_root: str | Path | None = None) -> pd.DataFrame:
    """Compress the sources' trained replicates; write one results file (``results/runs/compression/<id>``)."""
    root = Path(results_root if results_root is not None else cfg.results_dir)
    sources = validate(OmegaConf.merge(cfg, {"results_dir": str(root)}))
    rid = C.run_id(cfg)
    path = results.results_path(root, cfg.name, rid)
    if results.is_complete(path) and not cfg.overwrite:
        log.info("skip: %s exists (overwrite=true redoes it)", path)
        return pd.read_parquet(path)
    results.remove_stale_temporaries(path)
    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))
    t0 = time.perf_counter()
    frames = []
    missing = [spec for spec, src in zip(cfg.compression.sources, sources, strict=True)
               if not results.is_complete(results.results_path(root, src.name, C.run_id(src)))]
    if missing:  # say so before the minutes of training they cost (each a full preset job: ~1-2 min on 2 cores)
        log.info("training %d missing source run(s) first, with their presets' settings: %s", len(missing),
                 ", ".join(missing))
    for spec, src in zip(cfg.compression.sources, sources, strict=True):
        trained = run_training(src, root)  # skips when the source's results are complete
        src_rid = str(trained["run_id"].iloc[0])
        tensors = load_file(results.weights_path(root, src.name, src_rid))
        batches = _channels_last(data.load(src.data))
        seeds = tensors["seeds"].tolist()
        n = min(int(cfg.compression.replicates), len(seeds))
        t_src = time.perf_counter()
        for r in range(n):
            for stage, epoch in (("initial", 0), ("final", int(trained.loc[trained.kind == "trained", "epoch"].max()))):
                module = _load_replica(src, tensors, stage, r).to(memory_format=torch.channels_last)
                rows = pd.DataFrame(compress_replicate(src, module, batches, cfg.compression, stage))
                frames.append(rows.assign(seed=int(seeds[r]), epoch=epoch, stage=stage, experiment=cfg.name,
                                          run_id=rid, kind="compressed", **run_columns(src)))
        log.info("compressed %s: %d replicate(s) x 2 stages in %.1fs", spec, n, time.perf_counter() - t_src)
    frame = pd.concat(frames, ignore_index=True)[list(results.SCHEMA)]
    wall = time.perf_counter() - t0
    meta = results.metadata(OmegaConf.to_yaml(cfg, resolve=True), wall, "completed")
    results.write_results(frame, path, meta)
    log.info("wrote %s (%d rows, %.1fs)", path, len(frame), wall)
    return frame
