"""The conv family: data split, model, replicates against solo runs, validation, and what gets logged.

Replicates run through ``experiments.ensemble.Ensemble`` (a loop of native kernels over stacked tensors);
a solo run is the same code with one replicate. Initial weights are equal by construction (the same
generator draws); after training the replicates differ from solo runs only by float32 rounding (fused Adam
over the stacked tensors, the per-replicate loss reduction), bounded as in ``tests/numerics.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import load_digits
from torch import nn

from experiments.config import ConfigError
from experiments.data import DIGITS_IMAGES, digits
from experiments.ensemble import Ensemble
from experiments.experiment import run
from experiments.functional import FUNCTIONAL_METRICS
from experiments.metrics import activation_metrics, weight_metrics
from experiments.models.conv import ConvIdentity
from experiments.tasks import per_replicate_mse
from experiments.train import make_optimizer
from tests.conftest import make_cfg, parquet_files
from tests.numerics import adam_weight_drift, gamma, metric_tolerances, rms, sqrt_loss_tolerance

pytestmark = pytest.mark.numerics

SEEDS = [10000, 10001, 10002]
WIDTH, EPOCHS, LR, N_TRAIN, N_EVAL, HIDDEN = 8, 30, 1e-3, 48, 16, 32
POSITIONS = 64  # 8x8 images, padding 1: every layer's output has 64 positions per image
SAMPLES = N_TRAIN * POSITIONS
# A conv weight's gradient entry sums one product per image and position; each carries a back-propagated
# error that is itself a sum over the next layer's channels and 3x3 taps.
GRADIENT_TERMS = SAMPLES + 9 * max(HIDDEN, WIDTH)
LARGEST_FAN_IN = 9 * max(HIDDEN, WIDTH)
TINY = (f"width={WIDTH}", f"epochs={EPOCHS}", "null_samples=0", "log_every=10", f"data.n_train={N_TRAIN}",
        f"data.n_eval={N_EVAL}")


# ---------------------------------------------------------------------------------------------------------
# Data


def test_digits_split_is_fixed_stratified_and_disjoint():
    data = digits(600, 300, 0)
    assert data.x.shape == (600, 1, 8, 8) and data.eval_x.shape == (300, 1, 8, 8)
    assert data.x.dtype == torch.float32 and data.x.min() >= 0.0 and data.x.max() <= 1.0
    assert data.x.max() == 1.0  # 16/16: the scale uses the full range
    # Stratified: each of the 10 classes holds its share of both sets to within one image.
    for labels, n in ((data.labels, 600), (data.eval_labels, 300)):
        counts = torch.bincount(labels, minlength=10).numpy()
        whole = np.bincount(load_digits().target, minlength=10)
        assert np.all(np.abs(counts - whole / DIGITS_IMAGES * n) <= 1.5), counts
    # Disjoint: no evaluation image is a training image (compare the pixel rows).
    train_rows = {tuple(r) for r in data.x.flatten(1).tolist()}
    overlap = sum(tuple(r) in train_rows for r in data.eval_x.flatten(1).tolist())
    assert overlap <= 3  # the digits set itself holds a few duplicate images
    # Fixed by split_seed alone, and cached: the same object for the same sizes.
    assert digits(600, 300, 0) is data
    assert torch.equal(digits.__wrapped__(600, 300, 0).x, data.x)
    assert not torch.equal(digits(600, 300, 1).x, data.x)


def test_digits_refuses_impossible_sizes():
    with pytest.raises(ValueError, match="n_train"):
        digits(1500, 500, 0)


# ---------------------------------------------------------------------------------------------------------
# Model and ensemble


def test_conv_model_layers_and_shapes():
    model = ConvIdentity(WIDTH)
    assert [n for n, _ in model.named_children()][:3] == ["hidden", "bottleneck", "head"]
    assert model.bottleneck.weight.shape == (WIDTH, 32, 3, 3) and model.bottleneck.padding == (1, 1)
    x = torch.rand(5, 1, 8, 8)
    assert model(x).shape == x.shape
    # Parameters: (1*9+1)*32 + (32*9+1)*w + (w*9+1)*1, counted independently of nn.Module.
    assert sum(p.numel() for p in model.parameters()) == 10 * 32 + 289 * WIDTH + 9 * WIDTH + 1


def test_ensemble_replicates_are_solo_models_bit_for_bit():
    """Replicate r is the module a solo run builds after seeding with seeds[r]; its forward pass too."""
    ensemble = Ensemble(lambda: ConvIdentity(WIDTH, activation="relu"), SEEDS)
    x = digits(N_TRAIN, N_EVAL, 0).x
    out = ensemble(x)
    assert out.shape == (len(SEEDS), N_TRAIN, 1, 8, 8)
    for r, seed in enumerate(SEEDS):
        torch.manual_seed(seed)
        solo = ConvIdentity(WIDTH, activation="relu")
        for name, p in solo.named_parameters():
            assert torch.equal(ensemble.state_tensors()[name][r], p), name
        # The same convolutions on the same inputs (channels_last, as the ensemble runs them): equal.
        solo = solo.to(memory_format=torch.channels_last)
        assert torch.equal(out[r], solo(x.contiguous(memory_format=torch.channels_last)))
    # Activations: (R, images x positions, channels), the units being channels.
    acts = ensemble.activations(digits(N_TRAIN, N_EVAL, 0).eval_x)
    assert acts["hidden"].shape == (3, N_EVAL * POSITIONS, 32) and acts["bottleneck"].shape[-1] == WIDTH
    assert set(ensemble.weights) == {"hidden", "bottleneck", "head"}
    assert [s.fan_in for s in ensemble.specs] == [9, 32 * 9, WIDTH * 9]


def test_ensemble_vmap_mode_computes_the_same_function():
    """vmap runs the replicates as grouped convolutions: the same maths, different kernels. Each output is a
    chain of three 3x3 convolutions: per layer, backward stability puts the rounding at gamma(fan_in + 1) of
    the |weights| x |inputs| pass, so |vmap - loop| <= 2 * sum_l gamma(fan_in_l + 1) times the output of the
    network with every weight, bias and input replaced by its absolute value."""
    loop = Ensemble(lambda: ConvIdentity(WIDTH), SEEDS, "loop")
    vmapped = Ensemble(lambda: ConvIdentity(WIDTH), SEEDS, "vmap")
    x = digits(N_TRAIN, N_EVAL, 0).x
    with torch.no_grad():
        absolute = Ensemble(lambda: ConvIdentity(WIDTH), SEEDS, "loop")
        for t in absolute.parameters():
            t.abs_()
        bound = 2 * sum(gamma(f + 1) for f in (9, 32 * 9, WIDTH * 9)) * absolute(x.abs())
        assert ((vmapped(x) - loop(x)).abs() <= bound).all()


# ---------------------------------------------------------------------------------------------------------
# Replicates trained together against solo runs


def saved(root, experiment: str, rid: str) -> dict[str, torch.Tensor]:
    return load_file(root / "weights" / experiment / f"{rid}.safetensors")


@pytest.fixture(scope="module", params=["none", "relu"])
def conv_batched_and_solo(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"conv_{request.param}")
    common = ("experiment=conv", *TINY, f"model.activation={request.param}")
    batched = run(make_cfg(*common, f"replicates={len(SEEDS)}"), root)
    solo = pd.concat([run(make_cfg(*common, f"seed={s}"), root) for s in SEEDS])
    wb = saved(root, "conv", batched.run_id.iloc[0])
    ws = {s: saved(root, "conv", solo[solo.seed == s].run_id.iloc[0]) for s in SEEDS}
    return request.param, batched, solo, wb, ws


def drift(activation: str, epochs: int = EPOCHS) -> float:
    return adam_weight_drift(epochs, LR, GRADIENT_TERMS, samples=SAMPLES if activation == "relu" else None)


def test_conv_initial_weights_equal_and_final_weights_within_the_drift(conv_batched_and_solo):
    activation, _, _, wb, ws = conv_batched_and_solo
    bound = drift(activation)
    for r, seed in enumerate(SEEDS):
        for name, w in ws[seed].items():
            if name.startswith("initial/"):
                assert torch.equal(wb[name][r], w[0]), name
            if name.startswith("final/"):
                diff = rms(wb[name][r] - w[0])
                assert diff <= bound, (seed, name, diff, bound)
                assert diff <= 0.01 * rms(w), (seed, name)  # the bound is a small fraction of the weights
                assert not torch.equal(w, ws[seed][name.replace("final/", "initial/")])  # training moved them


def test_conv_metrics_and_losses_within_their_bounds(conv_batched_and_solo):
    _, batched, solo, wb, ws = conv_batched_and_solo
    keys = ["seed", "epoch", "layer", "metric"]
    merged = batched[[*keys, "value"]].merge(solo[[*keys, "value"]], on=keys, suffixes=("_b", "_s"))
    assert len(merged) == len(batched) == len(solo)
    for r, seed in enumerate(SEEDS):
        for epoch, stage in ((0, "initial"), (EPOCHS, "final")):
            for layer in ("hidden", "bottleneck", "head"):
                w = ws[seed][f"{stage}/{layer}.weight"]
                bounds = metric_tolerances(w, wb[f"{stage}/{layer}.weight"][r : r + 1] - w)
                rows = merged[(merged.seed == seed) & (merged.epoch == epoch) & (merged.layer == layer)]
                rows = rows.set_index("metric")
                for metric, bound in bounds.items():
                    diff = abs(rows.loc[metric, "value_b"] - rows.loc[metric, "value_s"])
                    assert diff <= bound.item(), (seed, epoch, layer, metric, diff, bound.item())
        # Activation metrics at epoch 0: the same weights, the same convolutions (loop mode); only the float64
        # statistics over 1 vs R models may round differently: sums of samples x units terms. (The functional
        # metrics' regressions amplify rounding by a condition number: tests/test_functional.py compares them.)
        at0 = merged[(merged.seed == seed) & (merged.epoch == 0) & merged.metric.str.startswith("act_")
                     & ~merged.metric.isin(FUNCTIONAL_METRICS)]
        assert len(at0) == 10
        tol = 4 * gamma(N_EVAL * POSITIONS * 32, u=2.0**-53)
        assert (at0.value_b - at0.value_s).abs().max() <= tol
    # Loss: epoch 1 is the initial weights' loss, from the same per-replicate convolutions; the mean over
    # R models vs one may round differently (a sum of SAMPLES squares per replicate).
    loss = merged[merged.metric == "loss"].set_index(["seed", "epoch"])
    first = loss.xs(1, level="epoch")
    assert ((first.value_b - first.value_s).abs() <= 2 * gamma(SAMPLES + 1) * first.value_s).all()


def test_conv_losses_follow_the_derived_bound(conv_batched_and_solo):
    """At every epoch, |sqrt(L_b) - sqrt(L_s)| within tests/numerics.sqrt_loss_tolerance, from a replay of the
    solo run that records |grad L| and |theta| (the same operations as ``train`` with one replicate)."""
    activation, batched, solo, _, _ = conv_batched_and_solo
    x = digits(N_TRAIN, N_EVAL, 0).x
    for seed in SEEDS:
        model = Ensemble(lambda a=activation: ConvIdentity(WIDTH, activation=a), [seed])
        params = model.parameters_in_source_order()
        n_params = sum(p.numel() for p in params)
        opt = make_optimizer(params, LR, 1)
        logged_b = batched[(batched.seed == seed) & (batched.metric == "loss")].set_index("epoch")["value"]
        logged_s = solo[(solo.seed == seed) & (solo.metric == "loss")].set_index("epoch")["value"]
        for epoch in range(1, EPOCHS + 1):
            opt.zero_grad(set_to_none=True)
            loss = per_replicate_mse(model(x), x)
            loss.sum().backward()
            assert loss.item() == logged_s[epoch]  # the replay is the solo run, bit for bit
            grad = torch.cat([p.grad.flatten() for p in params]).double().norm().item()
            theta = torch.cat([p.detach().flatten() for p in params]).double().norm().item()
            bound = sqrt_loss_tolerance(grad, loss.item(), theta, n_params, drift(activation, epoch - 1),
                                        LARGEST_FAN_IN, SAMPLES)
            diff = abs(logged_b[epoch] ** 0.5 - logged_s[epoch] ** 0.5)
            assert diff <= bound, (seed, epoch, diff, bound)
            opt.step()


def test_logged_metrics_describe_the_saved_final_weights(conv_batched_and_solo):
    """Recomputing the metrics from the saved final tensors repeats the logged computation on the same values:
    weight metrics from the stacked weights, activation metrics from an ensemble holding the final state."""
    activation, batched, _, wb, _ = conv_batched_and_solo
    final = batched[batched.epoch == EPOCHS].set_index(["layer", "metric", "seed"])["value"].sort_index()
    model = Ensemble(lambda: ConvIdentity(WIDTH, activation=activation), SEEDS)
    with torch.no_grad():
        for name, t in model.state_tensors().items():
            t.copy_(wb[f"final/{name}"])
    for layer in ("hidden", "bottleneck", "head"):
        for metric, values in weight_metrics(model.weights[layer].detach()).items():
            assert final.loc[(layer, metric)].loc[SEEDS].tolist() == values.double().tolist(), (layer, metric)
    for layer, acts in model.activations(digits(N_TRAIN, N_EVAL, 0).eval_x).items():
        for metric, values in activation_metrics(acts).items():
            np.testing.assert_array_equal(final.loc[(layer, metric)].loc[SEEDS].to_numpy(), values.numpy())
    assert final.loc[("model", "eval_loss")].notna().all()


# ---------------------------------------------------------------------------------------------------------
# Runs, rows and refusals


def test_conv_run_rows_and_nulls(tmp_path):
    df = run(make_cfg("experiment=conv", "width=4", "epochs=2", "replicates=2", "null_samples=6",
                      "data.n_train=16", "data.n_eval=8"), tmp_path)
    assert set(df.model) == {"conv"} and set(df.protocol) == {"clean"}
    (path,) = parquet_files(tmp_path)
    assert path.parent.name == "conv"
    null = df[df.kind == "null"]
    # Weight null per layer shape; activation null of 6 whole untrained models, for hidden and bottleneck.
    assert null[(null.layer == "bottleneck") & (null.metric == "min_pair_l1")].seed.nunique() == 6
    act_null = null[null.metric.str.startswith("act_")]
    assert set(act_null.layer) == {"hidden", "bottleneck"} and act_null.seed.nunique() == 6
    trained = df[df.kind == "trained"]
    assert set(trained[trained.layer == "model"].metric) == {"loss", "train_loss", "eval_loss", "params", "steps"}
    # params: (1*9+1)*32 + (32*9+1)*w + (w*9+1)*1 per replicate, logged with the metrics
    assert set(trained[trained.metric == "params"].value) == {10 * 32 + 289 * 4 + 9 * 4 + 1}
    assert sorted(trained[trained.metric == "act_eff_rank_norm"].epoch.unique()) == [0, 1, 2]


@pytest.mark.parametrize(("overrides", "key"), [
    (("experiment=conv", "data=integers"), "data"),
    (("model=conv",), "data"),
    (("experiment=conv", "data.n_train=1700"), "data.n_train"),
    (("experiment=conv", "model.protocol=source"), "model.protocol"),
    (("experiment=conv", "ensemble=threads"), "ensemble"),
    (("experiment=conv", "data.n_eval=1"), "data.n_eval"),
])
def test_bad_conv_configs_are_refused_naming_the_key(overrides, key, tmp_path):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        run(make_cfg(*overrides, "epochs=1"), tmp_path)
    assert not parquet_files(tmp_path)


def test_vmap_ensemble_trains_through_run(tmp_path):
    """``ensemble=vmap`` is a supported mode: a short run completes and learns (the loss falls)."""
    df = run(make_cfg("experiment=conv", "ensemble=vmap", "width=4", "epochs=5", "replicates=2",
                      "null_samples=0", "data.n_train=16", "data.n_eval=8"), tmp_path)
    loss = df[df.metric == "loss"].groupby("epoch").value.mean()
    assert loss[5] < loss[1]


def test_identity_conv_relu_units_can_die_and_are_counted():
    """A unit whose ReLU never fires is dead: reported in act_dead_frac, excluded from the correlations."""
    model = Ensemble(lambda: ConvIdentity(4, activation="relu"), [1])
    with torch.no_grad():
        model.state_tensors()["bottleneck.weight"][0, 0].zero_()
        model.state_tensors()["bottleneck.bias"][0, 0] = -1.0
    acts = model.activations(digits(N_TRAIN, N_EVAL, 0).eval_x)["bottleneck"]
    out = activation_metrics(acts)
    assert out["act_dead_frac"].item() == 0.25
    assert torch.isfinite(out["act_max_abs_corr"]).all()


def test_conv_layers_are_nn_conv2d():
    assert all(isinstance(getattr(ConvIdentity(4), n), nn.Conv2d) for n in ("hidden", "bottleneck", "head"))
