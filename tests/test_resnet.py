"""The ResNet family: block shapes and parameter counts, replicates against solo runs, BatchNorm statistics per
replicate, what gets logged, and refusals.

Replicates run through ``experiments.ensemble.Ensemble`` like the conv family. BatchNorm's running statistics
are stacked buffers: each replicate normalises with, and updates, its own slice (loop mode: views into the
stack; vmap mode: batched buffers). Eval-mode accuracy therefore uses each replicate's own statistics.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from analysis.load import load_runs
from experiments.config import REPO_ROOT, ConfigError
from experiments.data import digits
from experiments.ensemble import Ensemble
from experiments.experiment import run
from experiments.models.resnet import DigitsResNet
from tests.conftest import cli, make_cfg, parquet_files
from tests.numerics import adam_weight_drift, gamma, rms

pytestmark = pytest.mark.numerics

SEEDS = [10000, 10001, 10002]
N_TRAIN, N_EVAL, BATCH, EPOCHS, LR, C, W = 96, 40, 32, 3, 1e-3, 16, 8
POSITIONS = 64
TINY = (f"width={W}", f"model.channels={C}", f"epochs={EPOCHS}", "null_samples=0", f"data.n_train={N_TRAIN}",
        f"data.n_eval={N_EVAL}", f"optim.batch_size={BATCH}", "log_every=1")


def expected_params(block: str, c: int, w: int, classes: int = 10) -> int:
    """Trainable parameters, from the layout alone: bias-free convs (k*k*in*out), 2 per BN channel, a Linear head."""
    stem = 9 * c + 2 * c
    if block == "basic":
        inner = 9 * c * w + 2 * w + 9 * w * c + 2 * c
    else:
        inner = c * w + 2 * w + 9 * w * w + 2 * w + w * c + 2 * c
    return stem + inner + c * classes + classes


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize(("c", "w"), [(64, 8), (64, 64), (16, 128), (32, 1)])
def test_resnet_parameters_equal_the_closed_form(block, c, w):
    model = DigitsResNet(w, c, block)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected_params(block, c, w)
    x = torch.rand(5, 1, 8, 8)
    assert model(x).shape == (5, 10)


def test_resnet_layouts():
    basic, bottleneck = DigitsResNet(8, 64, "basic"), DigitsResNet(8, 64, "bottleneck")
    assert basic.reduce.weight.shape == (8, 64, 3, 3) and basic.expand.weight.shape == (64, 8, 3, 3)
    assert bottleneck.reduce.weight.shape == (8, 64, 1, 1) and bottleneck.middle.weight.shape == (8, 8, 3, 3)
    assert bottleneck.expand.weight.shape == (64, 8, 1, 1)
    assert basic.stem.weight.shape == (64, 1, 3, 3) and basic.fc.weight.shape == (10, 64)
    assert all(m.bias is None for m in bottleneck.modules() if isinstance(m, nn.Conv2d))
    assert basic.weight_layers == ("stem", "reduce", "expand", "fc")
    assert bottleneck.weight_layers == ("stem", "reduce", "middle", "expand", "fc")
    assert basic.activation_layers == ("reduce",) and bottleneck.activation_layers == ("reduce", "middle")
    # The residual path: with the block's last BN scaled to zero, the block is the identity before the ReLU.
    with torch.no_grad():
        basic.expand_bn.weight.zero_()
        basic.eval()
        x = torch.rand(3, 1, 8, 8)
        h = torch.relu(basic.stem_bn(basic.stem(x)))
        assert torch.equal(basic(x), basic.fc(torch.relu(h + basic.expand_bn.bias.view(1, -1, 1, 1)).mean((2, 3))))


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_replicates_are_solo_models_in_both_modes(block):
    """Initial tensors, a train-mode pass (batch statistics, which also moves the running statistics) and then an
    eval-mode pass (running statistics) equal a solo module's bit for bit: the same draws and the same kernels
    on the same inputs."""
    ensemble = Ensemble(lambda: DigitsResNet(W, C, block), SEEDS)
    x = digits(N_TRAIN, N_EVAL, 0).x
    xc = x.contiguous(memory_format=torch.channels_last)
    solos = []
    for r, seed in enumerate(SEEDS):
        torch.manual_seed(seed)
        solo = DigitsResNet(W, C, block).to(memory_format=torch.channels_last)
        for name, t in solo.state_dict().items():
            assert torch.equal(ensemble.state_tensors()[name][r], t), name
        solos.append(solo)
    ensemble.train()
    out = ensemble(x)
    for r, solo in enumerate(solos):
        assert torch.equal(out[r], solo.train()(xc)), ("train", r)
    ensemble.eval()
    out = ensemble(x)
    for r, solo in enumerate(solos):
        assert torch.equal(out[r], solo.eval()(xc)), ("eval", r)


def test_batchnorm_statistics_are_per_replicate():
    """A train-mode pass moves each replicate's running statistics to its own values: equal to its solo module's
    after the same pass, different between replicates, and untouched by an eval-mode pass."""
    ensemble = Ensemble(lambda: DigitsResNet(W, C, "bottleneck"), SEEDS)
    x = digits(N_TRAIN, N_EVAL, 0).x
    ensemble.train()
    ensemble(x)
    stats = {k: v.clone() for k, v in ensemble.state_tensors().items() if "running" in k or "batches" in k}
    assert set(stats) >= {"stem_bn.running_mean", "reduce_bn.running_var", "middle_bn.running_mean"}
    for r, seed in enumerate(SEEDS):
        torch.manual_seed(seed)
        solo = DigitsResNet(W, C, "bottleneck").to(memory_format=torch.channels_last)
        solo(x.contiguous(memory_format=torch.channels_last))
        for name, t in solo.named_buffers():
            assert torch.equal(stats[name][r], t), (seed, name)
    assert not torch.equal(stats["reduce_bn.running_mean"][0], stats["reduce_bn.running_mean"][1])
    assert (stats["stem_bn.num_batches_tracked"] == 1).all()
    ensemble.eval()
    ensemble(x)
    for name, t in stats.items():
        assert torch.equal(ensemble.state_tensors()[name], t), name


def test_vmap_mode_keeps_per_replicate_statistics():
    """Under vmap the stacked buffers are batched: BatchNorm updates each replicate's slice in place. Same
    statistics as the loop up to float32 rounding of the batch means and variances (sums of N x positions
    terms: gamma(N * 64) relative, of the mean of |values| and of squares)."""
    x = digits(N_TRAIN, N_EVAL, 0).x
    loop = Ensemble(lambda: DigitsResNet(W, C, "basic"), SEEDS, "loop")
    vmapped = Ensemble(lambda: DigitsResNet(W, C, "basic"), SEEDS, "vmap")
    loop(x)
    vmapped(x)
    for name in ("stem_bn.running_mean", "reduce_bn.running_mean", "expand_bn.running_var"):
        a, b = loop.state_tensors()[name], vmapped.state_tensors()[name]
        assert not torch.equal(a[0], a[1])
        # The momentum-0.1 update of a statistic whose two computations differ by rounding in the convolutions
        # (grouped vs plain kernels, ~gamma(fan-in) relative) and in the batch sum (gamma(N * 64)).
        tol = 0.1 * 4 * (gamma(N_TRAIN * POSITIONS) + gamma(9 * C)) * (1 + a.abs().max().item())
        assert (a - b).abs().max().item() <= tol, name


# ---------------------------------------------------------------------------------------------------------
# Runs: replicates trained together against solo runs, rows, refusals


@pytest.fixture(scope="module", params=["basic", "bottleneck"])
def resnet_batched_and_solo(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"resnet_{request.param}")
    # The shared batch order the drift bound below holds for. With per-seed orders (the preset default) the basic
    # block's seed 10002 agrees with its solo run to ~1e-8 through epoch 1, then, within epoch 2, every layer (the
    # stem included) jumps to ~1e-5 and ends at 6.5e-5 RMS against a bound of 1.3e-5, under the avx2 and default
    # kernels (avx512: ~1e-8). A jump of every layer in one step is a discrete event, not rounding that grows: a ReLU
    # kink crossed by a pre-activation within rounding of 0, whose gradient change Adam divides by the small second
    # moment of entries whose gradient terms cancel (the bound's premise is sign-coherent gradients, |g| ~ Σ|terms|).
    # What per-seed orders add is covered exactly elsewhere: each replicate's order is its solo run's
    # (tests/test_schedule.py), and per-seed replicates ≡ solo within the bound for the MNIST-1D families.
    common = ("experiment=resnet", *TINY, f"model.block={request.param}", "optim.order=shared")
    batched = run(make_cfg(*common, f"replicates={len(SEEDS)}"), root)
    solo = pd.concat([run(make_cfg(*common, f"seed={s}"), root) for s in SEEDS])
    load = lambda rid: load_file(root / "weights" / "resnet" / f"{rid}.safetensors")  # noqa: E731
    wb = load(batched.run_id.iloc[0])
    ws = {s: load(solo[solo.seed == s].run_id.iloc[0]) for s in SEEDS}
    return request.param, batched, solo, wb, ws


def test_resnet_replicates_match_solo_runs(resnet_batched_and_solo):
    """Initial tensors bit for bit; final parameters within the float32 drift of tests/numerics.py for
    EPOCHS x (N_TRAIN / BATCH) Adam steps: a conv weight's gradient entry sums BATCH x 64 positions of products
    (plus the back-propagated sums over the next layer's 9 x C taps), and ReLU kinks are allowed for per
    sample. BatchNorm's normalisation divides by the batch std, which the per-tensor RMS comparison absorbs as
    long as the drift stays a small fraction of the weights (checked too)."""
    _, batched, solo, wb, ws = resnet_batched_and_solo
    steps = EPOCHS * -(-N_TRAIN // BATCH)
    bound = adam_weight_drift(steps, LR, BATCH * POSITIONS + 9 * C, samples=BATCH * POSITIONS)
    for r, seed in enumerate(SEEDS):
        for name, t in ws[seed].items():
            if name.startswith("initial/"):
                assert torch.equal(wb[name][r], t[0]), name
            elif name.startswith("final/") and t.is_floating_point() and "running" not in name:
                diff = rms(wb[name][r] - t[0])
                assert diff <= bound, (seed, name, diff, bound)
    # Accuracies are counts of argmax agreements: the same for replicate and solo unless a logit pair sits
    # within rounding of a tie; allow one image either way.
    keys = ["seed", "epoch", "layer", "metric"]
    merged = batched[[*keys, "value"]].merge(solo[[*keys, "value"]], on=keys, suffixes=("_b", "_s"))
    assert len(merged) == len(batched) == len(solo)
    acc = merged[merged.metric == "test_accuracy"]
    assert ((acc.value_b - acc.value_s).abs() <= 1 / N_EVAL + 1e-12).all()


def test_resnet_rows(resnet_batched_and_solo):
    block, batched, _, _, _ = resnet_batched_and_solo
    assert set(batched.block) == {block} and set(batched.channels) == {C} and set(batched.model) == {"resnet"}
    model_rows = batched[batched.layer == "model"]
    assert {"loss", "eval_loss", "train_accuracy", "test_accuracy", "params"} <= set(model_rows.metric)
    params = model_rows[model_rows.metric == "params"].value.unique()
    assert params.tolist() == [expected_params(block, C, W)]
    layers = {"stem", "reduce", "expand", "fc"} | ({"middle"} if block == "bottleneck" else set())
    assert set(batched[batched.metric == "eff_rank_norm"].layer) == layers
    assert set(batched[batched.metric == "act_eff_rank_norm"].layer) == layers & {"reduce", "middle"}
    acc = model_rows[model_rows.metric == "test_accuracy"].value
    assert acc.between(0, 1).all()


def test_resnet_learns_digits_quickly(tmp_path):
    """Not a benchmark of the preset, a check that training works: a few epochs on 400 images beat chance by far."""
    df = run(make_cfg("experiment=resnet", "width=16", "model.channels=16", "epochs=4", "null_samples=0",
                      "data.n_train=400", "data.n_eval=200", "optim.batch_size=32", "optim.lr=0.01"), tmp_path)
    acc = df[(df.metric == "test_accuracy")].set_index("epoch").value
    assert acc[4] >= 0.7 > acc[0] - 0.3


@pytest.mark.parametrize(("override", "key"), [("model.block=wide", "model.block"),
                                               ("model.channels=0", "model.channels"),
                                               ("optim.batch_size=-1", "optim.batch_size")])
def test_bad_resnet_configs_are_refused_naming_the_key(override, key, tmp_path):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        run(make_cfg("experiment=resnet", override, "epochs=1"), tmp_path)
    assert not parquet_files(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("override", "key"), [("model.block=wide", "model.block"),
                                               ("model.channels=0", "model.channels")])
def test_bad_resnet_input_on_the_command_line(override, key, tmp_path):
    proc = cli("experiment=resnet", override, "epochs=1", results=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}: "), proc.stderr
    assert not parquet_files(tmp_path)


@pytest.mark.slow
def test_tiny_resnet_sweep_through_run_py(tmp_path):
    cli("-m", "experiment=resnet", "model.block=basic,bottleneck", "width=4,8", "model.channels=8", "epochs=2",
        "replicates=2", "null_samples=3", "data.n_train=64", "data.n_eval=32", results=tmp_path, check=True)
    df = load_runs(tmp_path)
    assert len(parquet_files(tmp_path)) == 4
    assert set(zip(df.block, df.width, strict=True)) == {(b, w) for b in ("basic", "bottleneck") for w in (4, 8)}
    assert set(df[df.kind == "null"].seed) == {0, 1, 2}


# ---------------------------------------------------------------------------------------------------------
# Figure 10 and the blocks table


@pytest.fixture(scope="module")
def tiny_resnet_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("resnet_sweep")
    for block in ("basic", "bottleneck"):
        for width in (4, 8):
            run(make_cfg("experiment=resnet_sweep", f"model.block={block}", f"width={width}", "model.channels=8",
                         "replicates=3", "epochs=2", "log_every=1", "null_samples=4", "data.n_train=64",
                         "data.n_eval=32", "optim.batch_size=32"), root)
    return root, load_runs(root)


def test_figure_10_and_blocks_table(tiny_resnet_sweep, tmp_path):
    from analysis import figures as F
    from analysis.figures_resnet import MAX_BUDGET_RATIO, blocks_table, matched_budgets, write_blocks_table

    _, df = tiny_resnet_sweep
    written = F.fig10_resnet_blocks_vs_params(df, tmp_path)
    assert {p.suffix for p in written} == {".pdf", ".png"} and all(p.stat().st_size > 5000 for p in written)
    table = blocks_table(df)
    assert len(table) == 4 and table["params"].is_monotonic_increasing
    assert table["params"].tolist() == sorted(expected_params(b, 8, w) for b in ("basic", "bottleneck") for w in (4, 8))
    assert table.loc[table.block == "basic", "middle act_mean_nn_abs_corr"].eq("").all()
    assert table["test_accuracy"].str.match(r"^0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\]$").all()
    # Matched budgets: only pairs within the ratio, each difference inside its own CI.
    matched = matched_budgets(df)
    # bottleneck w=8 (930 parameters at C=8) against basic w=4 (778): the one pair within 1.35x.
    assert set(zip(matched.bottleneck_width, matched.basic_width, strict=True)) == {(8, 4)}
    for _, row in matched.iterrows():
        ratio = max(row.basic_params, row.bottleneck_params) / min(row.basic_params, row.bottleneck_params)
        assert ratio <= MAX_BUDGET_RATIO
        assert row.diff_lo <= row["diff"] <= row.diff_hi
        assert row.basic_params == expected_params("basic", 8, row.basic_width)
    written = write_blocks_table(df, tmp_path / "tables")
    assert [p.name for p in written] == ["resnet_blocks.csv", "resnet_blocks.md", "resnet_matched.csv"]
    # Without a ResNet sweep the figure is skipped with a reason, not faked.
    with pytest.raises(F.NoData, match="resnet_sweep"):
        F.fig10_resnet_blocks_vs_params(df[df.model != "resnet"], tmp_path)


def test_summary_separates_blocks(tiny_resnet_sweep):
    from analysis.stats import summary

    _, df = tiny_resnet_sweep
    table = summary(df[(df.layer == "model") & (df.metric == "params")])
    assert len(table) == 4 and set(table.block) == {"basic", "bottleneck"} and set(table.channels) == {8}


@pytest.mark.slow
def test_notebook_03_shows_the_resnet_section(tiny_resnet_sweep, monkeypatch):
    from tests.conftest import execute_notebook, notebook_outputs, notebook_text

    root, _ = tiny_resnet_sweep
    nb = execute_notebook(REPO_ROOT / "notebooks" / "03_conv_bottlenecks.ipynb", root, monkeypatch)
    assert not [o for o in notebook_outputs(nb) if o.output_type == "error"]
    text = notebook_text(nb)
    assert "fig10_resnet_blocks_vs_params skipped" not in text
    assert "| resnet_sweep | " in text and "middle act_mean_nn_abs_corr" in text
    assert (root / "figures" / "fig10_resnet_blocks_vs_params.png").exists()
