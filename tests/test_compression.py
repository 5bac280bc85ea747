"""Low-rank compression (experiments/compression.py): the local decomposition, its errors, the allocators."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from torch import nn

from experiments.compression import (
    METHODS,
    allocate,
    analyse,
    decompose,
    exact_error,
    kept,
    max_exact_error,
    original,
    proxy_error,
)
from tests.numerics import gamma

torch.manual_seed(0)

LAYERS = {
    "linear": lambda: nn.Linear(24, 10),
    "conv_plain": lambda: nn.Conv2d(8, 12, 3, padding=1),
    "conv_strided_dilated": lambda: nn.Conv2d(12, 6, (3, 5), stride=(2, 1), padding=(2, 1), dilation=(2, 1)),
}


def example_input(name: str) -> torch.Tensor:
    return torch.randn(5, 24) if name == "linear" else torch.randn(3, LAYERS[name]().in_channels, 11, 13)


def absolute(module: nn.Module) -> nn.Module:
    """The same module with every weight and bias replaced by its absolute value."""
    with torch.no_grad():
        for p in module.parameters():
            p.abs_()
    return module


@pytest.mark.numerics
@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("k", [1, 2])
def test_full_rank_reproduces_the_layer(name, k):
    """At full rank the factors reassemble W up to float64 rounding, then float32 rounding of the factors and of
    two products replaces one. Per output: the original sums fan_in products (gamma(fan_in) of |W||x|), the
    decomposed one fan_in/k products into each of k*j intermediate values, then k*j products (gamma(fan_in + k
    r) of |A||B||x|), and each factor carries one float32 rounding (u each); twice all that bounds the gap."""
    torch.manual_seed(1)
    layer = LAYERS[name]()
    info = analyse("l", layer.weight, max_k=k)
    r = info.max_rank(k)
    x = example_input(name)
    fan_in = info.c * info.taps
    with torch.no_grad():
        gap = (_forced(layer, info, k, r)(x) - layer(x)).abs()
        scale = absolute(_forced(layer, info, k, r))(x.abs()) + absolute(_clone(layer))(x.abs())
    bound = 2 * (gamma(fan_in + k * r) + 2 * 2.0**-24) * scale
    assert (gap <= bound).all(), (gap - bound).max()


def _clone(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module)


def _forced(layer: nn.Module, info, k: int, j: int) -> nn.Module:
    """The decomposition even where it would not shrink the layer (full rank), for the reconstruction test."""
    original_intact = info.intact
    info.intact = lambda k_, j_: False  # type: ignore[method-assign]
    try:
        return decompose(_clone(layer), info, k, j)
    finally:
        info.intact = original_intact  # type: ignore[method-assign]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_parameter_count_errors_and_proxy(name):
    torch.manual_seed(2)
    layer = LAYERS[name]()
    info = analyse("l", layer.weight, max_k=4)
    f, c, taps = info.f, info.c, info.taps
    s = torch.linalg.svdvals(layer.weight.detach().double().reshape(f, -1))
    for k in info.ks:
        for j in range(1, info.max_rank(k) + 1):
            if info.intact(k, j):
                continue
            dec = decompose(layer, info, k, j)
            weights = sum(p.numel() for n, p in dec.named_parameters() if not n.endswith("bias"))
            assert weights == j * (k * f + c * taps) == info.params(k, j)
            exact, proxy = exact_error(info, k, j), proxy_error(info, k, j)
            if k == 1:
                # Both are sigma_{j+1}/sigma_1 of float64 SVDs of the same matrix: equal to float64 rounding.
                assert exact == pytest.approx((s[j] / s[0]).item(), rel=1e-9, abs=1e-12)
                assert proxy == pytest.approx(exact, rel=1e-9, abs=1e-12)
            else:
                assert proxy <= exact * (1 + 1e-9) + 1e-12  # a lower bound
                assert exact <= proxy * k**0.5 * (1 + 1e-9) + 1e-12  # the paper's sqrt(k) upper bound


def test_a_layer_that_would_not_shrink_stays_intact():
    layer = nn.Conv2d(1, 32, 3, padding=1)  # 9 inputs: rank 9, j*(32 + 9) >= 288 from j = 8 on
    info = analyse("l", layer.weight)
    assert info.ks == [1]
    assert decompose(layer, info, 1, 8) is layer and info.params(1, 8) == 288
    assert isinstance(decompose(layer, info, 1, 7), nn.Sequential) and info.params(1, 7) == 7 * 41


def make_network():
    """A test network's layers: narrow and wide, square and tall, conv and linear, random but low-ish rank."""
    g = torch.Generator().manual_seed(3)
    shapes = [(64, 32, 3, 3), (32, 64, 3, 3), (128, 64, 1, 1), (16, 128, 3, 3), (10, 256)]
    layers = []
    for i, shape in enumerate(shapes):
        w = torch.randn(*shape, generator=g)
        # decaying spectrum, different per layer, so that allocations matter
        m = w.reshape(shape[0], -1)
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
        s = s * torch.exp(-torch.arange(len(s)) / (3 + 4 * i))
        layers.append(analyse(f"l{i}", ((u * s) @ vh).reshape(shape)))
    return layers


@pytest.mark.parametrize("keep", [0.1, 0.25, 0.5, 0.75])
def test_allocators_meet_the_budget_and_alds_beats_uniform(keep):
    layers = make_network()
    total = original(layers)
    budget = math.floor(Fraction(str(keep)) * total)  # an integer weight count: compared exactly
    errors = {}
    for method in METHODS:
        alloc = allocate(method, layers, keep)
        assert kept(layers, alloc) <= budget
        errors[method] = max_exact_error(layers, alloc)
        if method == "alds":
            assert kept(layers, alloc) >= (keep - 0.01) * total  # within 1% of the budget
    assert errors["alds"] <= errors["uniform"] + 1e-12
    assert errors["alds"] <= errors["svd_energy"] + 1e-12


def test_allocate_refuses_bad_input():
    layers = make_network()
    with pytest.raises(ValueError, match="keep_ratio"):
        allocate("alds", layers, 1.5)
    with pytest.raises(ValueError, match="unknown method"):
        allocate("magic", layers, 0.5)


# ---------------------------------------------------------------------------------------------------------
# The experiment, its figure, tables and notebook

TINY_SOURCES = ("['conv:width=4,epochs=3,data.n_train=32,data.n_eval=16,null_samples=0,replicates=2',"
                "'resnet:model.block=bottleneck,width=4,model.channels=8,epochs=2,data.n_train=40,data.n_eval=20,"
                "optim.batch_size=20,null_samples=0,replicates=2']")


@pytest.fixture(scope="module")
def tiny_compression(tmp_path_factory):
    from experiments.experiment import run
    from tests.conftest import make_cfg

    root = tmp_path_factory.mktemp("compression")
    cfg = make_cfg("experiment=compression", f"compression.sources={TINY_SOURCES}", "compression.replicates=2",
                   "compression.keep_ratios=[0.25,0.5]", "compression.finetune_epochs=1")
    return root, run(cfg, root)


def test_compression_run_rows(tiny_compression):
    from experiments.results import SCHEMA

    root, df = tiny_compression
    assert list(df.columns) == list(SCHEMA) and set(df.kind) == {"compressed"}
    assert set(df.stage) == {"initial", "final"} and set(df.method) == {"none", *METHODS}
    assert set(df.keep_ratio) == {1.0, 0.25, 0.5} and set(df.seed) == {10000, 10001}
    # The sources were trained first, into the same results root.
    assert (root / "runs" / "conv").is_dir() and (root / "runs" / "resnet").is_dir()
    res = df[(df.model == "resnet") & (df.method == "alds")]
    per_layer = set(res[res.layer != "model"].metric)
    assert per_layer == {"k", "j", "intact", "rel_error", "rel_error_proxy", "params_kept", "params_original"}
    assert {"rel_error_at_25pct_rank", "rel_error_at_50pct_rank"} <= set(df[df.method == "none"].metric)
    model = set(res[res.layer == "model"].metric)
    assert {"max_rel_error", "keep_ratio_achieved", "eval_loss", "test_accuracy"} <= model
    assert "test_accuracy_finetuned" in model  # final weights at 0.25 and 0.5
    assert "test_accuracy_finetuned" not in set(res[res.stage == "initial"].metric)
    # Always within budget, compared exactly on the integer weight counts; the achieved ratio is their quotient.
    key = ["model", "seed", "stage", "method", "keep_ratio"]
    counts = df[df.metric.isin(["params_kept", "params_original"])].pivot_table(
        index=key, columns="metric", values="value", aggfunc="sum")
    for (*_, keep), row in counts.iterrows():
        assert row.params_kept <= math.floor(Fraction(str(keep)) * int(row.params_original))
    achieved = df[df.metric == "keep_ratio_achieved"].set_index(key)["value"]
    assert (achieved == (counts.params_kept / counts.params_original).loc[achieved.index]).all()
    # A keep ratio has rows exactly when some allocation meets it: the minimum (rank 1 everywhere) is at most it.
    # (The minimum m / N and the keep ratio differ by 1/N or more unless equal, far beyond float rounding.)
    minimum = df[df.metric == "keep_ratio_min"].set_index(["model", "seed", "stage"])["value"]
    assert (minimum > 0.25).any() and (minimum <= 0.25).any()  # the tiny models exercise both branches below
    done = set(achieved.index)
    for (model, seed, stage), least in minimum.items():
        for keep in (0.25, 0.5):
            for method in METHODS:
                assert ((model, seed, stage, method, keep) in done) == (least <= keep)
    # The conv head (1 x 9w, rank 1) can never shrink: it is not among the compressible layers.
    assert "head" not in set(df[df.model == "conv"].layer)


def test_figure_9_tables_and_notebook(tiny_compression, tmp_path, monkeypatch):
    from analysis import figures as F
    from analysis.figures_compression import allocation_table, layer_table, summary_table, write_compression_tables
    from analysis.load import load_runs

    root, _ = tiny_compression
    df = load_runs(root)
    written = F.fig9_compression(df, tmp_path)
    assert {p.suffix for p in written} == {".pdf", ".png"} and all(p.stat().st_size > 5000 for p in written)
    alloc = allocation_table(df)
    assert set(alloc.keep_ratio) == {0.25, 0.5} and set(alloc.method) == set(METHODS)
    assert alloc["k×j"].str.match(r"^(intact|\d+×\d+(\.\d)?)$").all()
    summ = summary_table(df)
    assert {"alds max error", "uniform max error"} <= set(summ.columns)
    paths = write_compression_tables(df, tmp_path / "tables")
    assert [p.name for p in paths] == ["compression_allocations.csv", "compression_allocations.md",
                                       "compression_summary.csv", "compression_summary.md",
                                       "compression_layers.csv", "compression_layers.md",
                                       "compression_alds_vs_uniform.csv", "compression_alds_vs_uniform.md"]
    per_layer = layer_table(df)
    assert set(per_layer["rank kept"]) == {"25%", "50%"} and (per_layer.n == 2).all()
    assert ((per_layer.change_lo <= per_layer.change) & (per_layer.change <= per_layer.change_hi)).all()
    with pytest.raises(F.NoData, match="experiment=compression"):
        F.fig9_compression(df[df.kind != "compressed"], tmp_path)


@pytest.mark.slow
def test_notebook_04_executes(tiny_compression, monkeypatch):
    from experiments.config import REPO_ROOT
    from tests.conftest import execute_notebook, notebook_outputs, notebook_text

    root, _ = tiny_compression
    nb = execute_notebook(REPO_ROOT / "notebooks" / "04_low_rank_compression.ipynb", root, monkeypatch)
    assert not [o for o in notebook_outputs(nb) if o.output_type == "error"]
    text = notebook_text(nb)
    assert "skipped" not in text and "alds max error" in text
    assert (root / "figures" / "fig9_compression.png").exists()


@pytest.mark.parametrize(("override", "key"), [
    ("compression.keep_ratios=[1.5]", "compression.keep_ratios"),
    ("compression.methods=[magic]", "compression.methods"),
    ("compression.replicates=0", "compression.replicates"),
    ("compression.sources=['nope:width=4']", "compression.sources"),
    ("compression.sources=['source:width=4']", "compression.sources"),  # the MLP has no plain-module form
])
def test_bad_compression_configs_are_refused(override, key, tmp_path):
    from experiments.config import ConfigError
    from experiments.experiment import run
    from tests.conftest import make_cfg, parquet_files

    with pytest.raises(ConfigError, match=rf"^{key}: "):
        run(make_cfg("experiment=compression", override), tmp_path)
    assert not parquet_files(tmp_path)
