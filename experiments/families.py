"""Model families: each is a config file (``conf/model/<name>.yaml``) plus an entry here.

An entry says what the family's replicates are trained to do (its task), what kind of input it takes, and
how to build R replicates from a config. Training, metrics, nulls and results are shared code that only
uses the replicated model's interface (``experiments.ensemble``), so adding a family touches neither the
training loop nor the analysis. To add one: write a :class:`~experiments.ensemble.Replica` subclass (a
plain module with PyTorch's default initialisation), a builder, an entry in :data:`FAMILIES`, and
``conf/model/<name>.yaml`` (new options go in ``ModelConfig`` in ``experiments/config.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from experiments.data import INPUT_KINDS, features
from experiments.ensemble import Ensemble
from experiments.models.autoencoder import Autoencoder
from experiments.models.baselines import Logistic, ReferenceMLP
from experiments.models.cnn1d import CNN1d
from experiments.models.common import BLOCKS_1D, CLASSES
from experiments.models.conv import ConvIdentity
from experiments.models.mlp import build_mlp
from experiments.models.mlp_classifier import MLPClassifier
from experiments.models.resnet import BLOCKS, DigitsResNet
from experiments.models.resnet1d import ResNet1d
from experiments.tasks import TASKS


def _plain_columns(cfg) -> dict[str, object]:
    """Families without residual blocks: ``block`` is "none", ``channels`` the first layer's units/channels."""
    return {"block": "none", "channels": int(cfg.model.hidden)}


@dataclass(frozen=True)
class Family:
    """One model family: what its replicates are trained to do and on what, and how to build them.

    - ``task`` names an ``experiments.tasks`` entry; ``inputs`` the input kinds it takes (``vector``, ``image``,
      ``signal``: ``experiments.data.INPUT_KINDS``);
    - ``replica(cfg)`` builds one replicate as a plain module (a :class:`Replica`); R replicates are then an
      :class:`Ensemble` of it in mode ``ensemble`` (``loop``, ``vmap`` or ``stack``; the config's ``ensemble=auto``
      picks it), unless the family brings its own replicated builder ``stacked`` (the source MLP);
    - ``columns(cfg)`` gives the results rows' ``block`` and ``channels`` (and ``width`` where the family has no
      bottleneck of that width: the baselines record their studied layer's units);
    - ``activations``: the values ``model.activation`` may take (the first is the family's own).
    """

    name: str
    task: str
    inputs: tuple[str, ...]
    replica: Callable[[object], nn.Module] | None = None
    stacked: Callable[[object, Sequence[int]], nn.Module] | None = None
    columns: Callable[[object], dict[str, object]] = _plain_columns
    ensemble: str = "loop"
    activations: tuple[str, ...] = ("none", "relu", "tanh")
    blocks: tuple[str, ...] = ()

    def mode(self, cfg) -> str:
        return self.ensemble if cfg.ensemble == "auto" else str(cfg.ensemble)

    def build(self, cfg, seeds: Sequence[int]) -> nn.Module:
        """R replicates with seeds ``seeds``, as one replicated model."""
        if self.stacked is not None:
            return self.stacked(cfg, seeds)
        return Ensemble(lambda: self.replica(cfg), seeds, self.mode(cfg))


def _mlp(cfg, seeds: Sequence[int]) -> nn.Module:
    return build_mlp(cfg.width, list(seeds), cfg.model.protocol, cfg.model.activation, cfg.model.hidden)


def _resnet_columns(cfg) -> dict[str, object]:
    return {"block": str(cfg.model.block), "channels": int(cfg.model.channels)}


def _channels_columns(cfg) -> dict[str, object]:
    return {"block": "none", "channels": int(cfg.model.channels)}


def input_dim(cfg) -> int:
    """D of a vector-input family: ``model.input_dim`` when set, else the data's features per example."""
    return int(cfg.model.input_dim) if cfg.model.get("input_dim") is not None else features(cfg.data)


def _autoencoder(cfg) -> nn.Module:
    return Autoencoder(int(cfg.width), int(cfg.model.hidden), input_dim(cfg),
                       flatten=3 if INPUT_KINDS[cfg.data.name] == "image" else 1)


FAMILIES: dict[str, Family] = {
    "mlp": Family("mlp", "identity", ("vector",), stacked=_mlp),
    "conv": Family("conv", "identity", ("image",),
                   replica=lambda cfg: ConvIdentity(int(cfg.width), int(cfg.model.hidden), str(cfg.model.activation))),
    "resnet": Family("resnet", "classify", ("image",),
                     replica=lambda cfg: DigitsResNet(int(cfg.width), int(cfg.model.channels), str(cfg.model.block)),
                     columns=_resnet_columns, activations=("relu",), blocks=BLOCKS),
    # MNIST-1D and vector families (experiments/models/), replicated with stacked batched layers.
    "mlp_classifier": Family("mlp_classifier", "classify", ("signal",), ensemble="stack", activations=("relu",),
                             replica=lambda cfg: MLPClassifier(int(cfg.width), int(cfg.model.hidden), input_dim(cfg))),
    "cnn1d": Family("cnn1d", "classify", ("signal",), ensemble="stack", activations=("relu",),
                    replica=lambda cfg: CNN1d(int(cfg.width), int(cfg.model.channels)), columns=_channels_columns),
    "autoencoder": Family("autoencoder", "identity", ("signal", "image"), ensemble="stack", activations=("relu",),
                          replica=_autoencoder),
    "resnet1d": Family("resnet1d", "classify", ("signal",), ensemble="stack", activations=("relu",),
                       replica=lambda cfg: ResNet1d(int(cfg.width), int(cfg.model.channels), str(cfg.model.block)),
                       columns=_resnet_columns, blocks=BLOCKS_1D),
    "logistic": Family("logistic", "classify", ("signal",), ensemble="stack", activations=("none",),
                       replica=lambda cfg: Logistic(input_dim(cfg)),
                       columns=lambda cfg: {"block": "none", "channels": 0, "width": CLASSES}),
    "mlp_reference": Family("mlp_reference", "classify", ("signal",), ensemble="stack", activations=("relu",),
                            replica=lambda cfg: ReferenceMLP(int(cfg.model.hidden), input_dim(cfg)),
                            columns=lambda cfg: {"block": "none", "channels": int(cfg.model.hidden),
                                                 "width": int(cfg.model.hidden)}),
}
# What each data set feeds a model (experiments.data.load).
DATA_INPUTS = INPUT_KINDS


def family(name: str) -> Family:
    return FAMILIES[name]


def task_of(name: str):
    return TASKS[FAMILIES[name].task]


def run_columns(cfg) -> dict[str, object]:
    """The descriptive columns every results row of a run carries (SPEC §7): model options, data, width, block,
    channels."""
    fam = family(cfg.model.name)
    cols = {"model": str(cfg.model.name), "protocol": str(cfg.model.protocol), "activation": str(cfg.model.activation),
            "data": str(cfg.data.name), "width": int(cfg.width)}
    cols.update(fam.columns(cfg))
    return cols
