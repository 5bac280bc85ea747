"""Typed configuration: the schema Hydra validates overrides against, and the checks types cannot express.

The dataclasses are registered in Hydra's ConfigStore as ``config_schema``; ``conf/config.yaml`` lists
that schema first in its defaults, so ``width=abc`` fails at composition. Value checks (a width of 0,
a negative learning rate, an unknown model) live in :func:`validate`, which every experiment calls
before it touches the disk, so bad input never leaves a partial results file behind.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from experiments.paths import CONF_DIR, REPO_ROOT  # re-exported: callers import them from here

OPTIMIZERS = ("adam",)
PROTOCOLS = ("source", "clean")
ACTIVATIONS = ("none", "relu", "tanh")
DEVICES = ("cpu", "cuda", "auto")
ENSEMBLE_MODES = ("auto", "loop", "vmap", "stack")
ORDERS = ("auto", "per_seed", "shared")

# Keys that say where or how a run is executed, not what it computes: they stay out of the run id.
RUN_ID_EXCLUDED = ("results_dir", "overwrite", "progress", "threads")
RUN_ID_EXCLUDED_DATA = ("cache_dir",)  # data.cache_dir: where generated data sets are cached


class ConfigError(ValueError):
    """A configuration value that composes but cannot be run; the message names the key."""


@dataclass
class ModelConfig:
    """Options of every family in one schema; each family reads the ones it has (``conf/model/<name>.yaml``)."""

    name: str = "mlp"
    hidden: int = 32           # mlp, conv: units/channels of the first layer
    activation: str = "none"   # mlp, conv: after `hidden` and `bottleneck`
    protocol: str = "source"   # mlp: the source's draw order or `clean`; other families: `clean`
    block: str = "basic"       # resnet, resnet1d: `basic` (3x3, 3x3) or `bottleneck` (1x1, 3x3, 1x1) residual block
    channels: int = 64         # resnet, resnet1d: C, the stem's and the block's outer channels; cnn1d: its channels
    input_dim: int | None = None  # autoencoder (and the MNIST-1D MLPs): D, features per example; null: the data's


@dataclass
class DataConfig:
    """Options of every data set in one schema; each data set reads the ones it has (``conf/data/<name>.yaml``)."""

    name: str = "integers"
    n: int = 100               # integers: 0..n-1
    n_train: int = 1000        # digits: training images
    n_eval: int = 500          # digits: held-out evaluation images
    split_seed: int = 0        # digits: the fixed split (independent of the run's seed); every data set: batch order
    cache_dir: str = str(REPO_ROOT / "results" / "cache")  # mnist1d: where the generated arrays are cached


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3
    batch_size: int = 0        # 0: full batch (one step per epoch); else mini-batches of this size
    order: str = "auto"        # mini-batch order: per_seed (each replicate its own, from its seed), shared (one order
                               # from data.split_seed for every replicate); auto: per_seed with mini-batches


@dataclass
class CompressionConfig:
    """``experiment=compression``: low-rank compression of trained runs (experiments/compression_run.py). A
    config with ``sources`` is a compression run; every other experiment leaves them empty."""

    sources: list[str] = field(default_factory=list)  # "<preset>[:<override>,<override>]", e.g. "conv_sweep:width=8"
    keep_ratios: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    methods: list[str] = field(default_factory=lambda: ["alds", "uniform", "svd_energy", "best_k"])
    replicates: int = 3                # the first replicates of each source run
    finetune_epochs: int = 2           # 0: no fine-tune
    finetune_ratios: list[float] = field(default_factory=lambda: [0.25, 0.5])  # keep ratios that get one


@dataclass
class FunctionalConfig:
    """The functional redundancy metrics (experiments/functional.py) of every family's ``functional_layers``: every
    statistic a replacement uses is fitted on training examples, every loss measured on the held-out set."""

    fit_examples: int | None = None    # training examples the means and regressions are fitted on; null: all
    score_examples: int | None = None  # held-out examples every loss is measured on; null: the whole held-out set
    thresholds: list[float] = field(default_factory=lambda: [0.001, 0.003, 0.01, 0.03, 0.1])  # prunable/redundant:
                                       # the loss rises by less than this share of itself (one share per threshold)
    threshold: float = 0.01            # the joint pruning curve's loss criterion
    acc_drop: float = 0.005            # classifiers: a unit is prunable when its ablation costs less test accuracy
    agreement: float = 0.8             # the anchor's protocol: prunable up to where agreement falls to this
    fractions: list[float] = field(default_factory=lambda: [i / 6 for i in range(7)])  # its fractions (theirs)
    orders: int = 10                   # its random orders of the units (K)
    prune_steps: int = 16              # prefix sizes of the joint pruning curve
    null_samples: int = 20             # untrained whole models for their null (each costs a model's worth of ablations)


@dataclass
class Config:
    name: str = "source"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    width: int = 32
    seed: int = 10000
    epochs: int = 100
    replicates: int = 1
    log_every: int | None = None
    checkpoints: list[float] | None = None  # metrics at these fractions of the epochs (and epoch 0); null: log_every
    null_samples: int = 1000
    null_seed: int = 0
    device: str = "cpu"
    ensemble: str = "auto"     # how non-MLP replicates run: auto (the family's own), loop, vmap or stack
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    functional: FunctionalConfig = field(default_factory=FunctionalConfig)
    results_dir: str = str(REPO_ROOT / "results")
    overwrite: bool = False
    progress: bool | None = None
    threads: int | None = None
    quick: bool = False        # a quick try of any preset: shrink every costly knob (experiments.experiment.quick)


def register_configs() -> None:
    ConfigStore.instance().store(name="config_schema", node=Config)


register_configs()


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _one_of(value: Any, key: str, allowed: tuple[str, ...]) -> None:
    _require(value in allowed, key, f"unknown value {value!r} (allowed: {', '.join(allowed)})")


def validate(cfg: DictConfig | Config) -> None:
    """Reject values that compose but make no sense, with a one-line message naming the key."""
    from experiments.data import DIGITS_IMAGES, INPUT_KINDS, MNIST1D_TEST, MNIST1D_TRAIN, features
    from experiments.families import FAMILIES, input_dim

    _require(cfg.width >= 1, "width", f"must be a positive integer, got {cfg.width}")
    _require(cfg.epochs >= 0, "epochs", f"must be >= 0, got {cfg.epochs}")
    _require(cfg.replicates >= 1, "replicates", f"must be >= 1, got {cfg.replicates}")
    _require(cfg.optim.lr > 0, "optim.lr", f"must be > 0, got {cfg.optim.lr}")
    _require(cfg.null_samples >= 0, "null_samples", f"must be >= 0, got {cfg.null_samples}")
    _require(cfg.log_every is None or cfg.log_every >= 1, "log_every", f"must be >= 1, got {cfg.log_every}")
    _require(cfg.model.hidden >= 1, "model.hidden", f"must be >= 1, got {cfg.model.hidden}")
    _require(cfg.threads is None or cfg.threads >= 1, "threads", f"must be >= 1, got {cfg.threads}")
    _one_of(cfg.model.name, "model", tuple(FAMILIES))
    fam = FAMILIES[cfg.model.name]
    _one_of(cfg.model.protocol, "model.protocol", PROTOCOLS)
    _require(cfg.model.protocol == "clean" or cfg.model.name == "mlp", "model.protocol",
             f"'{cfg.model.protocol}' is the mlp's source draw order; model '{cfg.model.name}' takes 'clean'")
    _one_of(cfg.model.activation, "model.activation", ACTIVATIONS)
    _require(cfg.model.activation in fam.activations, "model.activation",
             f"model '{cfg.model.name}' uses {' or '.join(fam.activations)}, got '{cfg.model.activation}'")
    if fam.blocks:
        _one_of(cfg.model.block, "model.block", fam.blocks)
    _require(cfg.model.channels >= 1, "model.channels", f"must be >= 1, got {cfg.model.channels}")
    _require(cfg.optim.batch_size >= 0, "optim.batch_size", f"must be >= 0 (0: full batch), got {cfg.optim.batch_size}")
    _one_of(cfg.data.name, "data", tuple(INPUT_KINDS))
    if cfg.data.name == "integers":
        _require(cfg.data.n >= 1, "data.n", f"must be >= 1, got {cfg.data.n}")
    if cfg.data.name == "digits":
        _require(cfg.data.n_train >= 1, "data.n_train", f"must be >= 1, got {cfg.data.n_train}")
        _require(cfg.data.n_eval >= 2, "data.n_eval", f"must be >= 2, got {cfg.data.n_eval}")
        _require(cfg.data.n_train + cfg.data.n_eval <= DIGITS_IMAGES, "data.n_train",
                 f"n_train + n_eval must be <= {DIGITS_IMAGES} digits images, got "
                 f"{cfg.data.n_train} + {cfg.data.n_eval}")
    if cfg.data.name == "mnist1d":
        _require(1 <= cfg.data.n_train <= MNIST1D_TRAIN, "data.n_train",
                 f"must be in 1..{MNIST1D_TRAIN} (MNIST-1D's training signals), got {cfg.data.n_train}")
        _require(2 <= cfg.data.n_eval <= MNIST1D_TEST, "data.n_eval",
                 f"must be in 2..{MNIST1D_TEST} (MNIST-1D's test signals), got {cfg.data.n_eval}")
    gets = INPUT_KINDS[cfg.data.name]
    _require(gets in fam.inputs, "data",
             f"model '{cfg.model.name}' takes {' or '.join(fam.inputs)} inputs, data '{cfg.data.name}' gives "
             f"{gets} inputs")
    if cfg.model.get("input_dim") is not None:
        _require(input_dim(cfg) == features(cfg.data), "model.input_dim",
                 f"{cfg.model.input_dim} does not match data '{cfg.data.name}' ({features(cfg.data)} features "
                 "per example; null takes the data's)")
    _validate_functional(cfg)
    _validate_schedule(cfg)
    _one_of(cfg.optim.name, "optim", OPTIMIZERS)
    _one_of(cfg.device, "device", DEVICES)
    _one_of(cfg.ensemble, "ensemble", ENSEMBLE_MODES)
    if fam.stacked is None:
        mode = fam.mode(cfg)
        _require(mode != "stack" or fam.ensemble == "stack", "ensemble",
                 f"'stack' needs a family built from experiments.layers; model '{cfg.model.name}' runs 'loop' or "
                 "'vmap'")


def _validate_functional(cfg: DictConfig | Config) -> None:
    from experiments.data import eval_size, train_size

    fc = cfg.functional
    n_train, n_eval = train_size(cfg.data), eval_size(cfg.data)
    if fc.fit_examples is not None:
        _require(1 <= fc.fit_examples <= n_train, "functional.fit_examples",
                 f"must be in 1..{n_train} (the training examples of data '{cfg.data.name}'), got {fc.fit_examples}")
    if fc.score_examples is not None:
        _require(2 <= fc.score_examples <= n_eval, "functional.score_examples",
                 f"must be in 2..{n_eval} (the held-out examples of data '{cfg.data.name}'), got {fc.score_examples}")
    _require(len(fc.thresholds) > 0, "functional.thresholds", "must not be empty (e.g. [0.001, 0.01, 0.1])")
    _require(all(t > 0 for t in fc.thresholds), "functional.thresholds",
             f"every threshold must be > 0, got {list(fc.thresholds)}")
    _require(fc.threshold > 0, "functional.threshold", f"must be > 0, got {fc.threshold}")
    _require(0 < fc.acc_drop < 1, "functional.acc_drop", f"must be in (0, 1) (a share of the test set), got "
             f"{fc.acc_drop}")
    _require(0 < fc.agreement < 1, "functional.agreement", f"must be in (0, 1), got {fc.agreement}")
    fr = list(fc.fractions)
    _require(len(fr) > 0 and all(0 <= f <= 1 for f in fr) and any(f > 0 for f in fr)
             and all(a < b for a, b in itertools.pairwise(fr)), "functional.fractions",
             f"must be increasing fractions in [0, 1] with at least one above 0, got {fr}")
    _require(fc.orders >= 1, "functional.orders", f"must be >= 1, got {fc.orders}")
    _require(fc.prune_steps >= 1, "functional.prune_steps", f"must be >= 1, got {fc.prune_steps}")
    _require(fc.null_samples >= 0, "functional.null_samples", f"must be >= 0, got {fc.null_samples}")


def _validate_schedule(cfg: DictConfig | Config) -> None:
    if cfg.checkpoints is not None:
        cp = list(cfg.checkpoints)
        _require(len(cp) > 0, "checkpoints", "must not be empty (null: every log_every epochs)")
        _require(all(a < b for a, b in itertools.pairwise(cp)), "checkpoints",
                 f"must be strictly increasing fractions of the epochs, got {cp}")
        _require(cp[0] > 0 and cp[-1] <= 1, "checkpoints",
                 f"must be fractions of the budget in (0, 1] (1 = the last epoch), got {cp}")
    _one_of(cfg.optim.order, "optim.order", ORDERS)
    if cfg.optim.order != "auto":
        _require(_minibatches(cfg), "optim.order",
                 f"'{cfg.optim.order}' orders mini-batches, but model '{cfg.model.name}' trains full batch here "
                 f"(optim.batch_size={cfg.optim.batch_size}); leave it 'auto'")
        _require(cfg.optim.order == "shared" or not _shared_input(cfg), "optim.order",
                 f"'per_seed' needs a family that takes one batch per replicate; model '{cfg.model.name}' takes one "
                 "input shared by its replicates")


def _minibatches(cfg: DictConfig | Config) -> bool:
    from experiments.data import train_size

    return 0 < cfg.optim.batch_size < train_size(cfg.data)


def _shared_input(cfg: DictConfig | Config) -> bool:
    """Families with their own replicated builder (the source MLP) take one input for all replicates."""
    from experiments.families import FAMILIES

    return FAMILIES[cfg.model.name].stacked is not None


def order_of(cfg: DictConfig | Config) -> str:
    """The mini-batch order a run uses: ``none`` (full batch), ``per_seed`` or ``shared``."""
    if not _minibatches(cfg):
        return "none"
    if cfg.optim.order == "auto":
        return "shared" if _shared_input(cfg) else "per_seed"
    return str(cfg.optim.order)


def metric_epochs(cfg: DictConfig | Config) -> list[int]:
    """The epochs at which every metric is logged: 0, the checkpoints (fractions of ``epochs``, rounded to whole
    epochs, at least 1) and the last epoch; without checkpoints every ``log_every`` epochs and the last."""
    epochs = int(cfg.epochs)
    if epochs == 0:
        return [0]
    if cfg.checkpoints is not None:
        picked = {max(1, min(epochs, round(float(f) * epochs))) for f in cfg.checkpoints}
    else:
        every = log_every(cfg)
        picked = set(range(every, epochs + 1, every))
    return sorted({0, epochs} | picked)


def log_every(cfg: DictConfig | Config) -> int:
    """Every epoch for a handful of replicates; every 10th for big ensembles, where metrics dominate."""
    if cfg.log_every is not None:
        return int(cfg.log_every)
    return 1 if cfg.replicates <= 10 else 10


def experiment_dict(cfg: DictConfig | Config) -> dict[str, Any]:
    """The resolved config minus execution-only keys: what determines the numbers a run produces."""
    data = OmegaConf.to_container(OmegaConf.structured(cfg) if not isinstance(cfg, DictConfig) else cfg,
                                  resolve=True)
    assert isinstance(data, dict)
    data.pop("hydra", None)
    for key in RUN_ID_EXCLUDED:
        data.pop(key, None)
    for key in RUN_ID_EXCLUDED_DATA:
        data.get("data", {}).pop(key, None)
    return data


def run_id(cfg: DictConfig | Config) -> str:
    """A short hash of the experiment config: the same config always maps to the same results file."""
    blob = json.dumps(experiment_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def group_options(group: str) -> list[str]:
    """The config files of one group in ``conf/``: the values a user may pick on the command line."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_group_overrides(argv: list[str]) -> str | None:
    """Return a one-line error for ``model=foo`` style overrides naming a config that does not exist.

    Hydra's own message for this is a multi-line dump of its search path; researchers mistype
    ``experiment=mlp_swep`` often enough that the short form is worth a few lines here.
    """
    groups = [p.name for p in CONF_DIR.iterdir() if p.is_dir()]
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~").removeprefix("override ").strip()
        if not sep or key not in groups:
            continue
        allowed = group_options(key)
        for choice in value.split(","):
            choice = choice.strip()
            if choice and choice != "null" and choice not in allowed:
                return f"{key}: unknown value {choice!r} (allowed: {', '.join(allowed)})"
    return None


def check_jobs(argv: list[str]) -> str | None:
    """Validate every job a command line launches before any runs: when *every* job is invalid (a bad value given
    once, e.g. to a preset that sweeps its own widths), a one-line error (the first job's), else None.

    A preset sweeps its own widths (``hydra.sweeper.params``), so a bad value the user passed once would otherwise
    fail in every job and print its error once per job; a sweep with some valid jobs still runs them, and each
    invalid job fails on its own (exit 1 for the sweep). The jobs are the product of the preset's swept values and
    the command line's comma lists (Hydra's basic sweeper), each composed with Hydra's compose API and checked by
    :func:`validate`. Whatever does not compose (a value of the wrong type, an unknown key) is left to Hydra, which
    reports it itself."""
    import itertools as it

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args = [a for a in argv if not a.startswith("-") and "=" in a and not a.lstrip("+~").startswith("hydra")]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            swept = [a for a in args if "," in a.partition("=")[2] and not a.partition("=")[2].startswith("[")]
            cfg = compose(config_name="config", overrides=[a for a in args if a not in swept],
                          return_hydra_config=True)
            params = dict(cfg.hydra.sweeper.params or {})  # the preset's own sweep ...
            fixed = []
            for a in args:  # ... which the command line overrides, key by key
                key, _, values = a.partition("=")
                if a in swept or key.lstrip("+~") in params:
                    params[key.lstrip("+~")] = values
                else:
                    fixed.append(a)
            axes = [[f"{k}={v.strip()}" for v in str(values).split(",")] for k, values in params.items()]
            first = None
            for combo in it.product(*axes):
                try:
                    validate(compose(config_name="config", overrides=fixed + list(combo)))
                except ConfigError as err:
                    first = first or str(err)
                else:
                    return None  # some job is valid: the sweep runs, and each bad job fails on its own
            return first
    except (HydraException, OmegaConfBaseException, ValueError):
        return None  # Hydra reports what does not compose, with its own message


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity mask, not the machine's core count.

    Under SLURM (task/affinity or cgroup cpusets), ``taskset`` or a container the mask is what the job
    was granted; ``os.cpu_count()`` would report every core of a shared node and oversubscribe it.
    """
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _joblib_workers(n_jobs: int | None, cores: int) -> int:
    """The number of worker processes ``joblib.Parallel(n_jobs)`` starts, with joblib's own rules."""
    try:  # joblib's count also honours cgroup CPU quotas; joblib is there whenever its launcher is
        from joblib import cpu_count

        cores = min(cores, cpu_count())
    except ImportError:
        pass
    if n_jobs is None or n_jobs == 0:
        return 1
    if n_jobs < 0:
        return max(cores + 1 + n_jobs, 1)
    return n_jobs


def default_threads(launcher: DictConfig | None) -> int:
    """Torch threads for one job: the cores granted to it, shared out when jobs run side by side.

    ``launcher`` is the multirun's ``hydra.launcher`` node (None for a single run, which has the
    machine to itself). Under joblib, ``n_jobs`` jobs run at once on one machine: each takes an equal
    share, or every worker would start torch's full thread pool and they would fight over the cores.
    Under submitit a job gets ``cpus_per_task`` when it is set (the local executor does not enforce it,
    so set it there to share the machine), otherwise every core its affinity mask allows.
    """
    cores = available_cores()
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if "joblib" in target:
        return max(cores // min(_joblib_workers(launcher.get("n_jobs", -1), cores), cores), 1)
    if "submitit" in target and launcher.get("cpus_per_task"):
        return max(min(int(launcher.cpus_per_task), cores), 1)
    return cores
