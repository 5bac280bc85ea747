"""Functional redundancy (``experiments.functional``): ablation, compensation and linear predictability.

The expected values are derived by hand on networks and inputs built so that every quantity has a closed form:
inputs of +-1 whose two columns are orthogonal and zero-mean in each half of the evaluation batch, a layer with
a duplicated unit, a unit that is the only path of one input to the output, and a dead unit. Then the batched
computation is checked against one replicate at a time (replicate = solo), the source MLP's shortcut against
the generic substitution, and every family's rows and null.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from experiments.ensemble import Ensemble, Replica
from experiments.experiment import run
from experiments.functional import (
    FUNCTIONAL_METRICS,
    RIDGE,
    functional_metrics,
    regression,
)
from experiments.layers import Linear
from experiments.models import build_mlp
from experiments.tasks import TASKS
from tests.conftest import make_cfg
from tests.numerics import U32, gamma

IDENTITY = TASKS["identity"]
OFFSET = 0.1  # the targets sit OFFSET above the network's output: the unablated loss is OFFSET^2


class Toy(Replica):
    """x (N, 2) -> ``layer``: 4 units u0 = x0, u1 = x0 (a duplicate), u2 = x1 (the only path of x1), u3 = 0
    (dead) -> ``head``: their sum, 2 x0 + x1. Linear throughout, so every ablated loss has a closed form."""

    weight_layers = ("layer", "head")
    activation_layers = functional_layers = ("layer",)

    def __init__(self) -> None:
        super().__init__()
        self.layer, self.head = Linear(2, 4), Linear(4, 1)
        with torch.no_grad():
            self.layer.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
            self.layer.bias.zero_()
            self.head.weight.fill_(1.0)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.record("layer", self.layer(x)))


def toy_inputs(halves: int = 2) -> torch.Tensor:
    """16 examples: x0 alternates +-1, x1 alternates in pairs; in each half of 8 both columns have mean 0,
    variance 1 and are orthogonal, exactly in float arithmetic."""
    x0 = torch.tensor([1.0, -1.0] * 4 * halves)
    x1 = torch.tensor([1.0, 1.0, -1.0, -1.0] * 2 * halves)
    return torch.stack([x0, x1], dim=1)


@pytest.fixture(scope="module", params=["stack", "loop"])
def toy(request):
    model = Ensemble(Toy, [1, 2], request.param).eval()
    x = toy_inputs()
    y = (model(x)[0] + OFFSET).detach()  # the same targets for both (identical) replicates
    return model, functional_metrics(model, x, y, IDENTITY, ("layer",))["layer"]


def test_the_toy_network_is_what_the_derivation_assumes(toy):
    model, _ = toy
    x = toy_inputs()
    assert torch.equal(model(x)[0, :, 0], 2 * x[:, 0] + x[:, 1])
    for half in (x[:8], x[8:]):
        assert torch.equal(half.mean(0), torch.zeros(2))
        assert torch.equal((half[:, 0] * half[:, 1]).sum(), torch.tensor(0.0))


def test_mean_ablation_by_hand(toy):
    """Score half: the loss is OFFSET^2. Ablating u0 (fit-half mean 0) leaves x0 + x1, so the error is x0 + OFFSET
    and the loss mean(x0^2) + OFFSET^2 = 1 + OFFSET^2 (mean(x0) = 0): a relative increase of 1 / OFFSET^2 = 100.
    The same for u1 and for u2 (x1); the dead u3 is its own mean: 0."""
    _, m = toy
    expected = {"abl_delta_loss_mean": 300 / 4, "abl_delta_loss_max": 100.0, "prunable_frac": 0.25,
                "abl_top10_share": 1 / 3}  # top 10% of 4 units: one unit, 100 of the 300 in total
    # Float32 rounding: the losses are means of 8 squares of values <= 3.1, each within a few ulps; relative to
    # OFFSET^2 = 0.01, that is at most 8 * gamma(8) * 3.1^2 / 0.01 on a relative increase.
    tol = 8 * gamma(8) * 3.1**2 / OFFSET**2
    for name, value in expected.items():
        assert torch.allclose(m[name], torch.full_like(m[name], value), atol=tol * max(1.0, value)), (name, m[name])


def test_compensation_by_hand(toy):
    """u0 and u1 predict each other exactly and make up for each other (redundant, not prunable); u2 is the only
    path of x1: the others (x0) are orthogonal to it on the fit half, so its prediction is its mean, 0, and
    compensation changes nothing: +100, as ablation; the dead u3: 0. So 1 of 4 units is not redundant.

    The ridge (lambda on the correlation scale) shrinks the duplicate's coefficient to 1 / (1 + lambda): the
    compensated output is off by lambda x0 at most, the loss by 2 OFFSET lambda + lambda^2, relative to OFFSET^2;
    float32 rounding as in the ablation test."""
    _, m = toy
    tol = (2 * OFFSET * RIDGE + RIDGE**2) / OFFSET**2 + 8 * gamma(8) * 3.1**2 / OFFSET**2
    expected = {"comp_delta_loss_mean": 100 / 4, "comp_delta_loss_max": 100.0, "redundant_frac": 0.75}
    for name, value in expected.items():
        assert torch.allclose(m[name], torch.full_like(m[name], value), atol=tol * max(1.0, value)), (name, m[name])


def test_linear_predictability_by_hand(toy):
    """R^2 on the score half: u0 and u1 are predicted up to the ridge's shrinkage (1 - 1/(1+lambda))^2 of their
    variance; u2's prediction is 0 (its fit-half mean, with coefficients exactly 0), its score-half mean is 0, so
    R^2 = 1 - sum x1^2 / sum x1^2 = 0; the dead u3 is left out. Mean of (1, 1, 0) = 2/3, max 1."""
    _, m = toy
    tol = 2 * RIDGE + 1e-12
    assert torch.allclose(m["act_r2_others_mean"], torch.full((2,), 2 / 3, dtype=torch.float64), atol=tol)
    assert torch.allclose(m["act_r2_others_max"], torch.ones(2, dtype=torch.float64), atol=tol)


def test_independent_units_are_not_predictable():
    """p = 7 independent standard normal predictors, n = 20,000 examples per half: the fitted coefficients are
    N(0, 1/n) each, so on the other half R^2 = (2 sum y yhat - sum yhat^2) / sum y^2 with sum yhat^2 ~ p and
    2 sum y yhat ~ N(0, 4p): R^2 ~ (N(0, 2 sqrt(p)) - p) / n. Six standard deviations: |R^2| <= (12 sqrt(p) + p) / n."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 40_000, 8, generator=g, dtype=torch.float64)
    _, r2 = regression(A[:, :20_000], A[:, 20_000:], torch.ones(3, 8, dtype=torch.bool))
    assert r2.abs().max() <= (12 * math.sqrt(7) + 7) / 20_000
    # A unit that is a linear function of two others is predicted to rounding (float64, a ridge of 1e-6).
    A[:, :, 0] = 0.5 * A[:, :, 1] - 2.0 * A[:, :, 2] + 3.0
    _, r2 = regression(A[:, :20_000], A[:, 20_000:], torch.ones(3, 8, dtype=torch.bool))
    assert (r2[:, 0] >= 1 - 4 * RIDGE).all()


def test_replicates_at_once_equal_one_at_a_time():
    """Two modes of the same network (the stacked pass and the loop of one replicate at a time) and one replicate
    alone: the same relative loss changes to float32 rounding of losses near 1 (CE of an untrained classifier):
    a few ulps of each of the two losses in a difference, relative to the loss."""
    from experiments.models_1d import MLPClassifier

    seeds = [5, 6, 7]
    x = torch.randn(64, 40, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    task = TASKS["classify"]
    together = functional_metrics(Ensemble(lambda: MLPClassifier(6, 20), seeds, "stack").eval(), x, y, task,
                                  ("bottleneck",))["bottleneck"]
    looped = functional_metrics(Ensemble(lambda: MLPClassifier(6, 20), seeds, "loop").eval(), x, y, task,
                                ("bottleneck",))["bottleneck"]
    alone = [functional_metrics(Ensemble(lambda: MLPClassifier(6, 20), [s], "stack").eval(), x, y, task,
                                ("bottleneck",))["bottleneck"] for s in seeds]
    # Each loss is a mean of 32 cross-entropies of logits from a 40-20-6-20-10 network: backward stability puts
    # each logit within gamma(41) + gamma(21) + gamma(7) + gamma(21) of |logit| ~ 1, and CE is 1-Lipschitz in its
    # logits; two losses in each relative difference: 4 * that sum / CE(~2.3) with a factor 4 of headroom for the
    # log-sum-exp's own rounding.
    tol = 16 * (gamma(41) + 2 * gamma(21) + gamma(7)) + 16 * U32
    for name in ("abl_delta_loss_mean", "abl_delta_loss_max", "comp_delta_loss_mean", "comp_delta_loss_max"):
        solo = torch.cat([a[name] for a in alone])
        assert (together[name] - solo).abs().max() <= tol, name
        assert (looped[name] - solo).abs().max() <= tol, name
    # R^2 comes from float64 statistics of the same float32 activations: equal to float64 rounding.
    solo_r2 = torch.cat([a["act_r2_others_mean"] for a in alone])
    assert torch.allclose(together["act_r2_others_mean"], solo_r2, rtol=0, atol=1e-9)


def test_source_mlp_shortcut_equals_the_generic_substitution():
    """``ReplicatedMLP.forward_with`` adds (value - activation) x head weight instead of rerunning the head on a
    copy of the layer: the same affine map, so equal to float32 rounding of a 1 x w dot product."""
    model = build_mlp(16, [3, 4], "clean", "relu")
    x = torch.arange(20, dtype=torch.float32).reshape(20, 1) / 10
    h = model.recorded(x)["bottleneck"]                                  # (R, N, U)
    units = torch.tensor([0, 5, 11])
    values = torch.randn(2, 3, 20, generator=torch.Generator().manual_seed(0))
    fast = model.forward_with(x, "bottleneck", values, units).view(2, 3, 20)
    W, b = model.weights["head"], model.biases["head"]                   # (R, 1, U), (R, 1)
    for k, u in enumerate(units.tolist()):
        hk = h.clone()
        hk[:, :, u] = values[:, k]
        slow = (hk @ W.transpose(1, 2)).squeeze(-1) + b
        scale = (hk.abs() @ W.abs().transpose(1, 2)).squeeze(-1) + b.abs() + (values[:, k] - h[:, :, u]).abs() * \
            W[:, 0, u:u + 1].abs()
        assert ((fast[:, k] - slow).abs() <= 2 * gamma(17) * scale).all()
    with pytest.raises(ValueError, match="layer before the head"):
        model.forward_with(x, "hidden", values, units)


FAMILY_RUNS = {
    "mlp": ("width=6", "replicates=2", "epochs=2"),
    "conv": ("experiment=conv", "width=4", "replicates=2", "epochs=2", "data.n_train=32", "data.n_eval=16"),
    "resnet_bottleneck": ("experiment=resnet", "model.block=bottleneck", "width=4", "model.channels=8",
                          "replicates=2", "epochs=1", "data.n_train=32", "data.n_eval=16", "optim.batch_size=16"),
    "mlp_classifier": ("experiment=mnist1d_mlp_sweep", "width=4", "replicates=2", "epochs=1", "data.n_train=200",
                       "data.n_eval=40"),
    "cnn1d": ("experiment=mnist1d_cnn_sweep", "width=4", "replicates=2", "epochs=1", "data.n_train=200",
              "data.n_eval=40"),
    "autoencoder": ("experiment=autoencoder_sweep", "data=digits", "width=3", "replicates=2", "epochs=1",
                    "data.n_train=64", "data.n_eval=32"),
    "resnet1d": ("experiment=mnist1d_resnet_sweep", "model.block=bottleneck", "width=4", "model.channels=8",
                 "replicates=2", "epochs=1", "data.n_train=200", "data.n_eval=40"),
}
LAYERS = {"mlp": {"bottleneck"}, "conv": {"bottleneck"}, "resnet_bottleneck": {"reduce", "middle"},
          "mlp_classifier": {"bottleneck"}, "cnn1d": {"bottleneck"}, "autoencoder": {"bottleneck"},
          "resnet1d": {"reduce", "middle"}}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILY_RUNS))
def test_every_family_logs_the_functional_metrics_and_their_null(name, tmp_path, mnist1d_cache_dir):
    cfg = make_cfg(*FAMILY_RUNS[name], "null_samples=3", "functional.null_samples=2", "functional.samples=16",
                   "log_every=1", f"data.cache_dir={mnist1d_cache_dir}")
    df = run(cfg, tmp_path)
    rows = df[df.metric.isin(FUNCTIONAL_METRICS)]
    trained, null = rows[rows.kind == "trained"], rows[rows.kind == "null"]
    assert set(trained.layer) == set(null.layer) == LAYERS[name]
    epochs = sorted(df.loc[(df.kind == "trained") & (df.metric == "eval_loss"), "epoch"].unique())
    for layer in LAYERS[name]:
        at = trained[trained.layer == layer]
        # Every metric at every metric epoch for every replicate; the null for its first 2 models.
        assert set(at.metric) == set(FUNCTIONAL_METRICS)
        assert sorted(at.epoch.unique()) == epochs and (at.groupby(["epoch", "metric"]).seed.nunique() == 2).all()
        assert set(null[null.layer == layer].seed) == {0, 1}
    shares = rows[rows.metric.isin(["prunable_frac", "redundant_frac"])].value
    assert ((shares >= 0) & (shares <= 1)).all()
    r2 = rows[rows.metric == "act_r2_others_max"].value.dropna()
    assert (r2 <= 1 + 1e-9).all()


@pytest.fixture(scope="module")
def mnist1d_cache_dir(tmp_path_factory):
    from experiments.data import mnist1d_arrays

    cache = tmp_path_factory.mktemp("functional_mnist1d")
    mnist1d_arrays(str(cache))
    return cache


def test_bad_functional_settings_are_refused():
    from experiments.config import ConfigError, validate

    for override, key in (("functional.samples=3", "functional.samples"),
                          ("functional.threshold=0", "functional.threshold"),
                          ("functional.null_samples=-1", "functional.null_samples")):
        with pytest.raises(ConfigError, match=key):
            validate(make_cfg(override))


def test_untrained_classifier_is_fully_prunable_at_the_threshold():
    """The untrained null is a floor: at initialisation the output barely depends on any one unit. For the
    source's threshold on a wide untrained MNIST-1D-sized MLP, every unit's ablation moves the loss by far less
    than 1% (a 100-wide layer of default-initialised units each carries ~1/100 of a near-constant logit)."""
    from experiments.models_1d import MLPClassifier

    x = torch.randn(256, 40, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 10, (256,), generator=torch.Generator().manual_seed(4))
    m = functional_metrics(Ensemble(lambda: MLPClassifier(64), [1, 2], "stack").eval(), x, y, TASKS["classify"],
                           ("bottleneck",))["bottleneck"]
    assert (m["prunable_frac"] == 1).all() and (m["abl_delta_loss_max"] < 0.01).all()
    assert np.isfinite(pd.Series(m["abl_top10_share"].numpy())).all()
