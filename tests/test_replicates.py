"""Replicates trained as one batched model agree with solo runs; nulls and logging cadence.

Replicate r of a batched run and a solo run with seed ``seed + r`` start from bit-identical weights (the same
generator draws: equal by construction). They are then computed by different kernels (batched matmuls and
fused Adam against ``F.linear`` and the default Adam), so after training they agree only to float32 rounding;
every tolerance below comes from ``tests/numerics.py`` and holds for any CPU and summation order.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from experiments.config import log_every
from experiments.data import integers
from experiments.experiment import run
from experiments.metrics import weight_metrics
from experiments.models.mlp import build_mlp
from experiments.tasks import per_replicate_mse
from experiments.train import make_optimizer
from tests.conftest import make_cfg
from tests.numerics import adam_weight_drift, metric_tolerances, rms, sqrt_loss_tolerance

pytestmark = pytest.mark.numerics  # rerun under every ATEN_CPU_CAPABILITY by `make test`

SEEDS = [10000, 10001, 10002, 10003, 10004]
WIDTH, EPOCHS, LR, SAMPLES, HIDDEN = 16, 100, 1e-3, 100, 32
# A gradient entry of a weight sums one product per sample, and each of those carries a back-propagated
# error that is itself a sum over the next layer's units (at most max(HIDDEN, WIDTH)).
GRADIENT_TERMS = SAMPLES + max(HIDDEN, WIDTH)
LARGEST_FAN_IN = max(HIDDEN, WIDTH)


def drift(activation: str, epochs: int = EPOCHS) -> float:
    """The weight drift bound; ReLU's kinks add one crossing's worth (tests/numerics.adam_weight_drift)."""
    return adam_weight_drift(epochs, LR, GRADIENT_TERMS, samples=SAMPLES if activation == "relu" else None)


@pytest.mark.parametrize("protocol", ["source", "clean"])
def test_initial_weights_bitwise_equal_to_solo(protocol):
    batched = build_mlp(16, SEEDS, protocol)
    for r, seed in enumerate(SEEDS):
        solo = build_mlp(16, [seed], protocol)
        for name in batched.weights:
            assert torch.equal(batched.weights[name][r], solo.weights[name][0])
            assert torch.equal(batched.biases[name][r], solo.biases[name][0])


def saved(root, rid: str) -> dict[str, torch.Tensor]:
    return load_file(root / "weights" / "source" / f"{rid}.safetensors")


@pytest.fixture(scope="module", params=["none", "relu"])
def batched_and_solo(request, tmp_path_factory):
    """A 5-replicate run and the five solo runs of the same seeds (100 epochs, width 16), with their weights."""
    root = tmp_path_factory.mktemp(f"rep_{request.param}")
    common = (f"width={WIDTH}", "null_samples=0", "log_every=1", f"model.activation={request.param}")
    batched = run(make_cfg(*common, "replicates=5"), root)
    solo = pd.concat([run(make_cfg(*common, f"seed={s}"), root) for s in SEEDS])
    weights_b = saved(root, batched.run_id.iloc[0])
    weights_s = {s: saved(root, solo[solo.seed == s].run_id.iloc[0]) for s in SEEDS}
    return request.param, batched, solo, weights_b, weights_s


def _aligned(batched: pd.DataFrame, solo: pd.DataFrame) -> pd.DataFrame:
    keys = ["seed", "epoch", "layer", "metric"]
    merged = batched[[*keys, "value"]].merge(solo[[*keys, "value"]], on=keys, suffixes=("_batched", "_solo"))
    assert len(merged) == len(batched) == len(solo)
    return merged


def _metric_rows(merged: pd.DataFrame, epoch: int, seed: int, layer: str) -> pd.DataFrame:
    rows = merged[(merged.epoch == epoch) & (merged.seed == seed) & (merged.layer == layer)]
    return rows.set_index("metric")


def _check_metrics(merged, epoch, stage, weights_b, weights_s):
    """Every continuous metric of every layer within its bound (tests/numerics.metric_tolerances)."""
    for r, seed in enumerate(SEEDS):
        for layer in ("hidden", "bottleneck", "head"):
            w_solo = weights_s[seed][f"{stage}/{layer}.weight"]
            w_batched = weights_b[f"{stage}/{layer}.weight"][r : r + 1]
            bounds = metric_tolerances(w_solo, w_batched - w_solo)
            rows = _metric_rows(merged, epoch, seed, layer)
            for metric, bound in bounds.items():
                diff = abs(rows.loc[metric, "value_batched"] - rows.loc[metric, "value_solo"])
                assert diff <= bound.item(), (seed, layer, metric, diff, bound.item())


def test_epoch_zero_agrees_to_rounding(batched_and_solo):
    """Same weights at epoch 0 (bitwise); the metrics differ only by the kernels' own rounding (the loss of
    the initial weights is epoch 1's, checked with the others below)."""
    _, batched, solo, weights_b, weights_s = batched_and_solo
    for r, seed in enumerate(SEEDS):
        for name, w in weights_s[seed].items():
            if name.startswith("initial/"):
                assert torch.equal(weights_b[name][r], w[0]), name
    _check_metrics(_aligned(batched, solo), 0, "initial", weights_b, weights_s)


def solo_replay(activation: str, seed: int) -> pd.DataFrame:
    """The solo training loop step by step (the same operations as ``train`` with one replicate), recording what
    the loss bound needs at each epoch: the loss, |grad L| and |theta| of the weights that loss is computed at."""
    model = build_mlp(WIDTH, [seed], "source", activation)
    params = model.parameters_in_source_order()
    opt = make_optimizer(params, LR, 1)
    data = integers(SAMPLES)
    x, y = data.x, data.x
    records = []
    for epoch in range(1, EPOCHS + 1):
        opt.zero_grad(set_to_none=True)
        loss = per_replicate_mse(model(x), y)
        loss.sum().backward()
        records.append({"epoch": epoch, "loss": loss.item(),
                        "grad_norm": torch.cat([p.grad.flatten() for p in params]).double().norm().item(),
                        "param_norm": torch.cat([p.detach().flatten() for p in params]).double().norm().item()})
        opt.step()
    return pd.DataFrame(records).set_index("epoch")


def test_losses_agree_within_the_derived_bound(batched_and_solo):
    """|sqrt(L_batched) - sqrt(L_solo)| at every epoch within tests/numerics.sqrt_loss_tolerance, the weights
    having had ``epoch - 1`` updates (the loss at epoch e is computed before e's update)."""
    activation, batched, solo, _, weights_s = batched_and_solo
    merged = _aligned(batched, solo)
    n_params = sum(w.numel() for k, w in weights_s[SEEDS[0]].items() if k.startswith("final/"))
    for seed in SEEDS:
        replay = solo_replay(activation, seed)
        rows = merged[(merged.metric == "loss") & (merged.seed == seed) & (merged.epoch >= 1)].set_index("epoch")
        # The replay runs the solo run's operations on its inputs: its losses are the logged ones, bit for bit.
        assert (replay["loss"] == rows["value_solo"]).all()
        for epoch, rec in replay.iterrows():
            bound = sqrt_loss_tolerance(rec.grad_norm, rec.loss, rec.param_norm, n_params,
                                        drift(activation, epoch - 1), LARGEST_FAN_IN, SAMPLES)
            diff = abs(rows.loc[epoch, "value_batched"] ** 0.5 - rows.loc[epoch, "value_solo"] ** 0.5)
            assert diff <= bound, (seed, epoch, diff, bound)


def test_final_weights_agree_within_the_derived_drift(batched_and_solo):
    """Per tensor, the RMS difference of the final weights is within the drift bound: a norm over the tensor,
    so that one weight next to a ReLU kink cannot decide the verdict."""
    activation, _, _, weights_b, weights_s = batched_and_solo
    bound = drift(activation)
    for r, seed in enumerate(SEEDS):
        for name, w in weights_s[seed].items():
            if name.startswith("final/"):
                diff = rms(weights_b[name][r] - w[0])
                assert diff <= bound, (seed, name, diff, bound)
                assert diff <= 1e-3 * rms(w), (seed, name)  # the bound itself is a small fraction of the weights


def test_final_metrics_agree_within_their_bounds(batched_and_solo):
    _, batched, solo, weights_b, weights_s = batched_and_solo
    _check_metrics(_aligned(batched, solo), EPOCHS, "final", weights_b, weights_s)


def test_logged_metrics_are_those_of_the_saved_weights(batched_and_solo):
    """The rows describe the saved tensors: recomputing the metrics from the saved final weights repeats the
    logged computation (the same function on the same stacked values), so the values are equal bit for bit."""
    _, batched, _, weights_b, _ = batched_and_solo
    final = batched[(batched.epoch == EPOCHS) & (batched.layer != "model")]
    for layer, rows in final.groupby("layer"):
        recomputed = weight_metrics(weights_b[f"final/{layer}.weight"])
        for metric, values in recomputed.items():
            logged = rows[rows.metric == metric].set_index("seed")["value"].loc[SEEDS]
            assert logged.tolist() == values.double().tolist(), (layer, metric)


def test_each_row_carries_its_seed(batched_and_solo):
    batched = batched_and_solo[1]
    assert sorted(batched.seed.unique()) == SEEDS
    assert batched.groupby("seed").size().nunique() == 1


def test_null_rows(tmp_path):
    df = run(make_cfg("width=8", "epochs=2", "replicates=3", "null_samples=40"), tmp_path)
    null = df[df.kind == "null"]
    assert set(null.epoch) == {0}
    assert set(null.layer) == {"hidden", "bottleneck", "head"}
    assert null[null.layer == "bottleneck"].seed.nunique() == 40
    # The null is a distribution of untrained draws: its values vary, and they differ from the replicates'.
    mp = null[(null.layer == "bottleneck") & (null.metric == "min_pair_l1")].value
    assert mp.std() > 0
    again = run(make_cfg("width=8", "epochs=2", "replicates=3", "null_samples=40", "overwrite=true"), tmp_path)
    pd.testing.assert_frame_equal(df, again)


def test_default_log_cadence(tmp_path):
    assert log_every(make_cfg("replicates=10")) == 1
    assert log_every(make_cfg("replicates=11")) == 10
    assert log_every(make_cfg("replicates=11", "log_every=3")) == 3
    df = run(make_cfg("width=4", "epochs=25", "replicates=11", "null_samples=0"), tmp_path)
    metric_epochs = sorted(df[df.metric == "eff_rank"].epoch.unique())
    assert metric_epochs == [0, 10, 20, 25]
    assert sorted(df[df.metric == "loss"].epoch.unique()) == list(range(26))
