"""The source experiment (SPEC §2) reproduced bit for bit, and the loss/epoch semantics of SPEC §7."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from analysis.load import load_runs
from analysis.tables import SOURCE_PRINTED, source_table
from experiments.data import integers
from experiments.experiment import run
from experiments.models.mlp import build_mlp, mlp_init
from experiments.tasks import per_replicate_mse
from tests.conftest import make_cfg

pytestmark = pytest.mark.numerics  # rerun under every ATEN_CPU_CAPABILITY by `make test`


def reference_source_run(width: int, seed: int = 10000, epochs: int = 100) -> tuple[float, torch.Tensor]:
    """The source protocol written the plain way, with nn.Linear and nn.MSELoss."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    for _ in range(2):
        model = nn.Sequential(nn.Linear(1, 32), nn.Linear(32, 32), nn.Linear(32, 1))
    model[1] = nn.Linear(32, width)
    model[2] = nn.Linear(width, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.arange(100, dtype=torch.float32).reshape(100, 1)
    loss = torch.tensor(float("nan"))
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.MSELoss()(model(x), x)
        loss.backward()
        opt.step()
    return loss.item(), model[1].weight.detach()


def final(df: pd.DataFrame, layer: str, metric: str) -> pd.Series:
    rows = df[(df.kind == "trained") & (df.layer == layer) & (df.metric == metric)]
    rows = rows[rows.epoch == rows.epoch.max()]
    return rows.set_index("width")["value"].sort_index()


@pytest.mark.slow
def test_source_values_reproduced_through_cli(source_results):
    df = load_runs(source_results)
    table = source_table(df)
    assert list(table.index) == [8, 32, 128]
    np.testing.assert_array_equal(table["loss (ours)"].round(4), SOURCE_PRINTED["loss"])
    np.testing.assert_array_equal(table["min_pair_l1 (ours)"].round(4), SOURCE_PRINTED["min_pair_l1"])
    assert table["matches to 4 d.p."].all()


@pytest.mark.parametrize("width", [8, 32, 128])
def test_solo_run_is_bitwise_the_plain_nn_linear_run(width, tmp_path):
    """Not just 4 decimals: a solo run computes exactly what the plain source code computes."""
    ref_loss, ref_w = reference_source_run(width)
    df = run(make_cfg(f"width={width}", "null_samples=0"), tmp_path)
    assert final(df, "model", "loss").item() == ref_loss
    d = torch.cdist(ref_w[None], ref_w[None], p=1)[0] / 32
    i, j = torch.triu_indices(width, width, 1)
    assert final(df, "bottleneck", "min_pair_l1").item() == pytest.approx(d[i, j].min().item(), rel=0, abs=0)


@pytest.mark.parametrize("protocol", ["source", "clean"])
def test_initial_weights_replay_nn_linear_draws(protocol):
    torch.manual_seed(123)
    if protocol == "source":
        for _ in range(2):
            ref = nn.Sequential(nn.Linear(1, 32), nn.Linear(32, 32), nn.Linear(32, 1))
        ref[1], ref[2] = nn.Linear(32, 5), nn.Linear(5, 1)
    else:
        ref = nn.Sequential(nn.Linear(1, 32), nn.Linear(32, 5), nn.Linear(5, 1))
    ours = mlp_init(5, 123, protocol)
    for k, name in enumerate(["hidden", "bottleneck", "head"]):
        assert torch.equal(ours[name][0], ref[k].weight)
        assert torch.equal(ours[name][1], ref[k].bias)


def test_protocols_draw_different_weights():
    a, b = build_mlp(8, [1], "source"), build_mlp(8, [1], "clean")
    assert not torch.equal(a.weights["bottleneck"], b.weights["bottleneck"])


@pytest.mark.slow
def test_pair_indices_stable_across_reruns(source_results, tmp_path):
    first = load_runs(source_results)
    again = run(make_cfg("width=128", "null_samples=50"), tmp_path)
    for metric in ("min_pair_i", "min_pair_j", "min_pair_l1"):
        assert final(again, "bottleneck", metric).item() == final(first, "bottleneck", metric).loc[128]
    assert (final(first, "bottleneck", "min_pair_i").tolist(), final(first, "bottleneck", "min_pair_j").tolist()) \
        == ([1.0, 2.0, 9.0], [4.0, 24.0, 63.0])


def test_rerun_is_bit_identical(tmp_path):
    cfg = make_cfg("width=16", "epochs=20", "null_samples=20", "overwrite=true")
    a = run(cfg, tmp_path / "a")
    b = run(cfg, tmp_path / "b")
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_loss_semantics(tmp_path):
    """loss@0 = initial weights; loss@e is e's forward pass, before its update (so loss@1 == loss@0)."""
    df3 = run(make_cfg("width=4", "epochs=3", "null_samples=0"), tmp_path)
    df4 = run(make_cfg("width=4", "epochs=4", "null_samples=0"), tmp_path)
    loss3 = df3[df3.metric == "loss"].set_index("epoch")["value"]
    loss4 = df4[df4.metric == "loss"].set_index("epoch")["value"]
    assert list(loss3.index) == [0, 1, 2, 3]
    assert loss3[1] == loss3[0]
    pd.testing.assert_series_equal(loss3, loss4.loc[:3])
    # loss@4 is the loss of the weights after epoch 3's update, i.e. the 3-epoch run's final weights.
    rid = df3.run_id.iloc[0]
    saved = load_file(tmp_path / "weights" / "source" / f"{rid}.safetensors")
    model = build_mlp(4, [10000])
    with torch.no_grad():
        for name in ("hidden", "bottleneck", "head"):
            model.weights[name].copy_(saved[f"final/{name}.weight"])
            model.biases[name].copy_(saved[f"final/{name}.bias"])
        x = y = integers(100).x
        assert per_replicate_mse(model(x), y).item() == loss4[4]
    # Weight metrics at epoch 3 describe weights after epoch 3's update: the weights epoch 4 starts from.
    w3 = df3[(df3.metric == "stable_rank") & (df3.layer == "bottleneck")].set_index("epoch")["value"]
    assert list(w3.index) == [0, 1, 2, 3]
    assert w3[0] != w3[3]
