"""Issue 19's training schedule: checkpoints on the config, per-seed mini-batch orders, weight movement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments.config import ConfigError, metric_epochs, order_of, validate
from experiments.metrics import movement_metrics
from experiments.train import BatchOrder
from experiments.training_run import run
from tests.conftest import cli, make_cfg, parquet_files


@pytest.mark.parametrize(("overrides", "key"), [
    (("checkpoints=[0.5,0.25]",), "checkpoints"),
    (("checkpoints=[0.5,0.5]",), "checkpoints"),
    (("checkpoints=[0.5,1.5]",), "checkpoints"),
    (("checkpoints=[0,0.5]",), "checkpoints"),
    (("checkpoints=[]",), "checkpoints"),
    (("optim.order=per_seed",), "optim.order"),                          # the source trains full batch
    (("experiment=conv_sweep", "width=4", "optim.order=shared"), "optim.order"),  # full batch too
    (("optim.order=sideways",), "optim.order"),
])
def test_bad_schedules_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        validate(make_cfg(*overrides))


def test_a_bad_checkpoint_schedule_exits_2_and_writes_nothing(tmp_path):
    proc = cli("width=8", "checkpoints=[0.5,0.25]", results=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: checkpoints: ")
    assert parquet_files(tmp_path) == []


def test_checkpoints_are_fractions_of_the_budget_on_whole_epochs():
    cfg = make_cfg("epochs=100", "checkpoints=[0.01,0.03,0.1,0.3,0.5,1.0]")
    assert metric_epochs(cfg) == [0, 1, 3, 10, 30, 50, 100]
    # Fractions that round to the same epoch log it once; a tiny fraction still gets epoch 1.
    assert metric_epochs(make_cfg("epochs=10", "checkpoints=[0.01,0.03,0.5]")) == [0, 1, 5, 10]


def test_mini_batch_families_default_to_per_seed_orders_and_the_source_to_one():
    assert order_of(make_cfg("experiment=mnist1d_mlp_sweep", "width=4")) == "per_seed"
    assert order_of(make_cfg("experiment=mnist1d_mlp_sweep", "width=4", "optim.order=shared")) == "shared"
    assert order_of(make_cfg("width=8")) == "none"  # the source: full batch


def test_per_seed_orders_differ_between_seeds_and_repeat_for_a_seed():
    a = BatchOrder.make("per_seed", 10, [1, 2], split_seed=0).epoch(40)
    b = BatchOrder.make("per_seed", 10, [1, 3], split_seed=0).epoch(40)
    assert len(a) == 4 and a[0].shape == (2, 10)
    first = torch.cat(a, dim=1)
    assert sorted(first[0].tolist()) == list(range(40))             # every example once per epoch
    assert torch.equal(first[0], torch.cat(b, dim=1)[0])           # seed 1's order does not depend on the others
    assert not torch.equal(first[0], first[1])                     # seeds 1 and 2 differ
    shared = BatchOrder.make("shared", 10, [1, 2], split_seed=0).epoch(40)
    assert shared[0].dim() == 1                                     # one batch for every replicate


def test_movement_metrics_by_hand():
    w0 = torch.tensor([[[3.0, 0.0], [0.0, 4.0]]])                    # (1, units 2, fan-in 2)
    rotated = torch.tensor([[[0.0, 3.0], [0.0, 4.0]]])               # unit 0 turned by 90°, unit 1 unchanged
    m = movement_metrics(rotated, w0)
    assert m["rel_move"].item() == pytest.approx(math.sqrt(18) / 5)
    assert m["unit_angle_deg"].item() == pytest.approx(45.0)
    # ‖D‖_2 = 3√2 (D = [[-3, 3], [0, 0]]), ‖W0‖_2 = 4.
    assert m["rel_move_spectral"].item() == pytest.approx(3 * math.sqrt(2) / 4)
    still = movement_metrics(w0, w0)
    assert still["rel_move"].item() == 0 and still["unit_angle_deg"].item() == pytest.approx(0.0, abs=1e-6)


def test_a_run_logs_every_metric_at_every_checkpoint(tmp_path):
    from experiments.data import mnist1d_arrays

    mnist1d_arrays(str(tmp_path / "cache"))
    cfg = make_cfg("experiment=mnist1d_mlp_sweep", "width=4", f"data.cache_dir={tmp_path / 'cache'}", "epochs=4",
                   "replicates=2", "null_samples=2", "functional.null_samples=1", "data.n_train=64",
                   "data.n_eval=32", "optim.batch_size=32", "checkpoints=[0.25,0.5,1.0]")
    df = run(cfg, tmp_path / "out")
    trained = df[df.kind == "trained"]
    for metric in ("rel_move", "act_eff_rank_norm", "abl_eff_frac", "test_accuracy", "train_loss", "eval_loss"):
        assert sorted(trained.loc[trained.metric == metric, "epoch"].unique()) == [0, 1, 2, 4], metric
    steps = trained[trained.metric == "steps"].groupby("epoch").value.first()
    assert steps.to_dict() == {0: 0, 1: 2, 2: 4, 4: 8}               # 64 examples in batches of 32
    move = trained[(trained.metric == "rel_move") & (trained.layer == "bottleneck")]
    assert (move[move.epoch == 0].value == 0).all() and (move[move.epoch == 4].value > 0).all()
    checked = trained[trained.metric.isin(["rel_move", "rel_move_spectral", "unit_angle_deg", "steps", "train_loss"])]
    assert np.isfinite(checked.value).all()


def test_quick_shrinks_every_costly_knob_and_writes_apart():
    from pathlib import Path

    from experiments.experiment import quick

    full = make_cfg("experiment=conv_sweep", "width=4", "quick=true")
    small, root = quick(full, "/r")
    assert (small.epochs, small.replicates, small.null_samples, small.functional.null_samples) == (2, 2, 10, 1)
    assert small.log_every == 2 and small.checkpoints is None and small.data.n_train <= 1000
    assert root == Path("/r/scratch/quick") and full.epochs == 100  # the preset itself is untouched
    tiny = quick(make_cfg("width=8", "epochs=1", "quick=true"))[0]
    assert tiny.epochs == 1  # never raised


@pytest.mark.slow
def test_a_quick_preset_sweep_runs_and_prints_what_it_measured(tmp_path):
    proc = cli("-m", "experiment=mnist1d_mlp_sweep", "width=4,16", "quick=true",
               f"data.cache_dir={tmp_path / 'cache'}", results=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("what it measured") == 2 and "abl_eff_frac" in proc.stdout
    assert not (tmp_path / "runs").exists()
    assert len(list((tmp_path / "scratch" / "quick" / "runs").rglob("*.parquet"))) == 2
