"""MNIST-1D and the vector / 1-D signal families: the data set, the models, replicates stacked with
``Ensemble(mode="stack")`` against solo modules and solo runs, what gets logged, bad input, and the presets.

MNIST-1D is generated once per test session into a temporary cache folder (``mnist1d_cache``, a few seconds)
and every config here points ``data.cache_dir`` at it, so nothing is generated twice or written into the
repository. Comparisons of float32 results of two code paths (the stacked batched matmuls against solo
modules, replicates trained together against solo runs) are marked ``numerics`` one by one and bounded as in
``tests/numerics.py``; the rest of the file (data, rows, the command line) is exact.
"""

from __future__ import annotations

import hashlib
import logging
import math
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from experiments import data as D
from experiments.config import ConfigError, run_id
from experiments.data import digits, generate_mnist1d, mnist1d, mnist1d_arrays, mnist1d_cache_path
from experiments.ensemble import Ensemble, as_units
from experiments.experiment import run
from experiments.families import FAMILIES
from experiments.functional import Protocol, metric_names
from experiments.models.autoencoder import Autoencoder
from experiments.models.baselines import Logistic, ReferenceMLP
from experiments.models.cnn1d import CNN1d
from experiments.models.mlp_classifier import MLPClassifier
from experiments.models.resnet1d import ResNet1d
from tests.conftest import cli, make_cfg, parquet_files
from tests.numerics import U32, adam_weight_drift, gamma, rms

SEEDS = [10000, 10001, 10002]

# SHA-256 of the contiguous arrays of greydanus/mnist1d's published mnist1d_data.pkl (x, x_test as float32;
# y, y_test as int64).
PUBLISHED_SHA256 = {
    "x": "d53506bddd12d3b72c7153b1ae7f34807724b1dd078a7273809bf9d0792319f6",
    "x_test": "30addc43827c82aafa5db8bc97cea63349ca687e87db2f201cc4f5415d9a4ebd",
    "y": "d97dc7aecec8ad6b5d8f143ba3e9c4bd7e25c420d7dfc2eb990591cfc0ed3e15",
    "y_test": "8de99be3ff9dab15ae0dc072c3d6ced7cf6b33d365888ce4a386fc944489452c",
}
SHAPES = {"x": (4000, 40), "x_test": (1000, 40), "y": (4000,), "y_test": (1000,)}
DTYPES = {"x": np.float32, "x_test": np.float32, "y": np.int64, "y_test": np.int64}


class Generated(NamedTuple):
    cache: Path      # data.cache_dir of every config in this file
    cwd: Path        # the (empty) working directory the generation ran in
    arrays: dict[str, np.ndarray]


@pytest.fixture(scope="session")
def mnist1d_cache(tmp_path_factory) -> Generated:
    """MNIST-1D generated once per session into a fresh cache folder, from an empty working directory."""
    cache, cwd = tmp_path_factory.mktemp("mnist1d_cache"), tmp_path_factory.mktemp("mnist1d_cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        arrays = mnist1d_arrays(str(cache))
    return Generated(cache, cwd, arrays)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread for these tiny models: the test machine is shared, and threads would only contend.
    (Every bound below holds for any summation order, so for any thread count.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Data


def test_mnist1d_equals_the_published_data_set(mnist1d_cache):
    """The arrays generated here, and the same arrays read back from the cache file, are the published ones."""
    from_file = mnist1d_arrays.__wrapped__(str(mnist1d_cache.cache))  # bypass the in-process cache: read the file
    for arrays in (mnist1d_cache.arrays, from_file):
        assert set(arrays) == set(PUBLISHED_SHA256)
        for name, digest in PUBLISHED_SHA256.items():
            assert arrays[name].shape == SHAPES[name] and arrays[name].dtype == DTYPES[name], name
            assert sha256(arrays[name]) == digest, name


def test_mnist1d_loader_shapes_dtypes_and_classes(mnist1d_cache):
    cache = str(mnist1d_cache.cache)
    full = mnist1d(4000, 1000, cache)
    assert full.x.shape == (4000, 40) and full.eval_x.shape == (1000, 40)
    assert full.x.dtype == full.eval_x.dtype == torch.float32
    assert full.labels.shape == (4000,) and full.eval_labels.shape == (1000,)
    assert full.labels.dtype == full.eval_labels.dtype == torch.int64
    for labels, n in ((full.labels, 4000), (full.eval_labels, 1000)):
        counts = torch.bincount(labels, minlength=10)
        assert len(counts) == 10 and (counts > 0).all() and counts.sum() == n
    # The generator draws num_samples // 10 = 500 signals of each digit before it shuffles and splits them.
    both = torch.bincount(torch.cat([full.labels, full.eval_labels]), minlength=10)
    assert both.tolist() == [500] * 10
    # The generator standardises the whole set (train and test together, in float64) to mean 0 and standard
    # deviation 1. The float32 cast moves each value by at most u |x|: the mean by at most u mean|x|, the
    # standard deviation by at most the RMS of the moves, u rms(x) = u; the float64 sums add gamma(n) in 2^-53.
    whole = torch.cat([full.x, full.eval_x]).double()
    slack = gamma(whole.numel(), u=2.0**-53)
    assert abs(whole.mean().item()) <= (U32 + slack) * whole.abs().mean().item()
    assert abs(whole.std(correction=0).item() - 1) <= U32 + slack
    # A smaller split is the prefix of both sets (the published order is already shuffled), cached per size.
    small = mnist1d(200, 50, cache)
    assert torch.equal(small.x, full.x[:200]) and torch.equal(small.eval_x, full.eval_x[:50])
    assert torch.equal(small.labels, full.labels[:200]) and torch.equal(small.eval_labels, full.eval_labels[:50])
    assert mnist1d(200, 50, cache) is small
    # What a config's data group loads.
    cfg = make_cfg("experiment=mnist1d_mlp_sweep", f"data.cache_dir={cache}", "data.n_train=200", "data.n_eval=50")
    assert D.load(cfg.data) is small
    assert D.features(cfg.data) == 40 and D.INPUT_KINDS["mnist1d"] == "signal"


@pytest.mark.parametrize(("n_train", "n_eval"), [(0, 10), (4001, 10), (10, 0), (10, 1001)])
def test_mnist1d_loader_refuses_impossible_sizes(n_train, n_eval, mnist1d_cache):
    with pytest.raises(ValueError, match="n_train"):
        mnist1d(n_train, n_eval, str(mnist1d_cache.cache))


def test_mnist1d_cache_is_one_file_in_the_cache_dir(mnist1d_cache):
    """Generation wrote exactly the versioned cache file (atomically: no temporary left beside it) into the
    configured folder, and nothing into the working directory (the mnist1d package's own ``get_dataset``
    would have written ``mnist1d_data.pkl`` there)."""
    version = importlib_metadata.version("mnist1d")
    expected = mnist1d_cache.cache / f"mnist1d-{version}-default-args.npz"
    assert mnist1d_cache_path(mnist1d_cache.cache) == expected
    assert sorted(p.name for p in mnist1d_cache.cache.iterdir()) == [expected.name]
    assert list(mnist1d_cache.cwd.iterdir()) == []
    with np.load(expected) as stored:
        assert sorted(stored.files) == sorted(PUBLISHED_SHA256)


def test_the_cache_dir_is_not_part_of_the_run_id(mnist1d_cache):
    base = ("experiment=mnist1d_mlp_sweep", "width=4")
    a = run_id(make_cfg(*base, "data.cache_dir=/somewhere"))
    assert a == run_id(make_cfg(*base, "data.cache_dir=/elsewhere"))
    assert a != run_id(make_cfg(*base, "data.cache_dir=/somewhere", "data.n_train=100"))


def write_garbage(path: Path, arrays) -> None:
    path.write_bytes(b"not an npz file")


def write_truncated(path: Path, arrays) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def write_wrong_shapes(path: Path, arrays) -> None:
    with open(path, "wb") as f:
        np.savez(f, **{k: v[:10] for k, v in arrays.items()})


def write_missing_key(path: Path, arrays) -> None:
    with open(path, "wb") as f:
        np.savez(f, **{k: v for k, v in arrays.items() if k != "y_test"})


@pytest.mark.parametrize("corrupt", [write_garbage, write_truncated, write_wrong_shapes, write_missing_key])
def test_a_corrupt_cache_file_is_regenerated(corrupt, mnist1d_cache, tmp_path, monkeypatch, caplog):
    """An unreadable or incomplete cache file is replaced by a fresh generation (here a stand-in returning the
    session's arrays, so that the test costs no second generation); the replacement is then read, not
    regenerated again."""
    calls = []

    def fake_generate():
        calls.append(1)
        return {k: v.copy() for k, v in mnist1d_cache.arrays.items()}

    monkeypatch.setattr(D, "generate_mnist1d", fake_generate)
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    path = mnist1d_cache_path(cache)
    corrupt(path, mnist1d_cache.arrays)
    with caplog.at_level(logging.WARNING, logger="experiments.data"):
        arrays = mnist1d_arrays.__wrapped__(str(cache))
    assert len(calls) == 1 and "regenerating" in caplog.text
    assert all(sha256(arrays[k]) == digest for k, digest in PUBLISHED_SHA256.items())
    assert sorted(p.name for p in cache.iterdir()) == [path.name]  # replaced in place, no temporary left
    again = mnist1d_arrays.__wrapped__(str(cache))
    assert len(calls) == 1  # the regenerated file is valid: read, not generated
    assert all(sha256(again[k]) == digest for k, digest in PUBLISHED_SHA256.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # nothing in the working directory


@pytest.mark.slow
def test_generation_is_deterministic_and_writes_nothing(mnist1d_cache, tmp_path, monkeypatch):
    """A second generation in this process (about 6 s) gives the same arrays as the session's first, and writes
    nothing anywhere (it runs in an empty working directory)."""
    monkeypatch.chdir(tmp_path)
    again = generate_mnist1d()
    assert set(again) == set(mnist1d_cache.arrays)
    for name, a in again.items():
        assert a.dtype == DTYPES[name] and np.array_equal(a, mnist1d_cache.arrays[name]), name
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------
# Models: parameter counts, layouts, shapes


def mlp_classifier_params(w: int, h: int = 100, d: int = 40, classes: int = 10) -> int:
    """Linear d -> h -> w -> h -> classes, each with a bias: (fan_in + 1) x fan_out per layer."""
    return (d + 1) * h + (h + 1) * w + (w + 1) * h + (h + 1) * classes


def autoencoder_params(w: int, h: int = 100, d: int = 40) -> int:
    return (d + 1) * h + (h + 1) * w + (w + 1) * h + (h + 1) * d


def cnn1d_params(w: int, c: int = 25, classes: int = 10) -> int:
    """Conv1d 1 -> c (k5), c -> w (k3), w -> c (k3), each (in k + 1) x out; Linear on c x 5 positions."""
    return (5 + 1) * c + (3 * c + 1) * w + (3 * w + 1) * c + (5 * c + 1) * classes


def resnet1d_params(block: str, c: int, w: int, pooled: int = 2, classes: int = 10) -> int:
    """Bias-free convs (k x in x out), 2 per BN channel, a Linear head on c x pooled features."""
    stem = 5 * c + 2 * c
    if block == "basic":
        inner = 3 * c * w + 2 * w + 3 * w * c + 2 * c
    else:
        inner = c * w + 2 * w + 3 * w * w + 2 * w + w * c + 2 * c
    return stem + inner + (c * pooled + 1) * classes


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(("build", "expected"), [
    (lambda: CNN1d(25, 25), 5210),          # greydanus/mnist1d's ConvBase
    (lambda: ReferenceMLP(), 15210),        # MLPBase: 40 -> 100, residual 100 -> 100, 100 -> 10
    (lambda: Logistic(), 410),              # LinearBase
    (lambda: CNN1d(25, 25), cnn1d_params(25, 25)),
    (lambda: CNN1d(2, 25), cnn1d_params(2, 25)),
    (lambda: CNN1d(64, 8), cnn1d_params(64, 8)),
    (lambda: MLPClassifier(2), mlp_classifier_params(2)),
    (lambda: MLPClassifier(256), mlp_classifier_params(256)),
    (lambda: MLPClassifier(8, 30), mlp_classifier_params(8, 30)),
    (lambda: Autoencoder(1), autoencoder_params(1)),
    (lambda: Autoencoder(128), autoencoder_params(128)),
    (lambda: Autoencoder(8, 100, 64, flatten=3), autoencoder_params(8, 100, 64)),
    (lambda: ResNet1d(4, 64, "basic"), resnet1d_params("basic", 64, 4)),
    (lambda: ResNet1d(32, 64, "basic"), resnet1d_params("basic", 64, 32)),
    (lambda: ResNet1d(4, 64, "bottleneck"), resnet1d_params("bottleneck", 64, 4)),
    (lambda: ResNet1d(32, 16, "bottleneck"), resnet1d_params("bottleneck", 16, 32)),
])
def test_parameters_equal_the_closed_form(build, expected):
    assert n_params(build()) == expected


def recorded(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The outputs ``model.forward`` passes through ``record`` on ``x``."""
    model._recording = {}
    try:
        with torch.no_grad():
            model(x)
        return model._recording
    finally:
        model._recording = None


def test_cnn1d_is_the_reference_cnn_with_a_middle_of_width_w():
    for w in (25, 4):
        m = CNN1d(w, 25)
        layout = [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding)
                  for c in (m.hidden, m.bottleneck, m.expand)]
        assert layout == [(1, 25, (5,), (2,), (1,)), (25, w, (3,), (2,), (1,)), (w, 25, (3,), (2,), (1,))]
        assert (m.head.in_features, m.head.out_features) == (125, 10)
        x = torch.randn(7, 40)
        assert m(x).shape == (7, 10)
        rec = recorded(m, x)
        # 40 -> 19 -> 10 -> 5 positions (kernel 5 then 3, stride 2, padding 1)
        assert {k: tuple(v.shape) for k, v in rec.items()} == {"hidden": (7, 25, 19), "bottleneck": (7, w, 10),
                                                               "expand": (7, 25, 5)}
        assert (rec["bottleneck"] >= 0).all()  # recorded after the ReLU
    assert m.weight_layers == ("hidden", "bottleneck", "expand", "head")
    assert m.activation_layers == ("hidden", "bottleneck", "expand")


def test_mlp_layouts_and_shapes():
    x = torch.randn(7, 40)
    clf = MLPClassifier(8)
    assert [(lin.in_features, lin.out_features) for lin in (clf.hidden, clf.bottleneck, clf.expand, clf.head)] == \
        [(40, 100), (100, 8), (8, 100), (100, 10)]
    assert clf(x).shape == (7, 10)
    ae = Autoencoder(8)
    assert ae(x).shape == (7, 40) and (ae.head.in_features, ae.head.out_features) == (100, 40)
    images = torch.rand(7, 1, 8, 8)
    ae64 = Autoencoder(8, 100, 64, flatten=3)
    assert ae64(images).shape == (7, 64)
    # Flattening is row-major over the image: the same as feeding the flattened pixels to a flat autoencoder.
    flat = Autoencoder(8, 100, 64)
    flat.load_state_dict(ae64.state_dict())
    assert torch.equal(flat(images.flatten(1)), ae64(images))
    ref = ReferenceMLP()
    with torch.no_grad():  # MLPBase's residual middle layer: h + relu(middle(h))
        h = torch.relu(ref.hidden(x))
        assert torch.equal(ref(x), ref.head(h + torch.relu(ref.middle(h))))
    assert Logistic()(x).shape == (7, 10)
    for m in (clf, ae):
        assert m.weight_layers == ("hidden", "bottleneck", "expand", "head")
        assert m.activation_layers == ("hidden", "bottleneck", "expand")
    assert ref.weight_layers == ("hidden", "middle", "head") and ref.activation_layers == ("hidden", "middle")
    assert Logistic().weight_layers == ("head",) and Logistic().activation_layers == ()


def test_resnet1d_layouts_and_identity_shortcut():
    basic, bottleneck = ResNet1d(8, 64, "basic"), ResNet1d(8, 64, "bottleneck")
    assert basic.stem.weight.shape == (64, 1, 5) and basic.stem.stride == (4,) and basic.stem.padding == (2,)
    assert basic.reduce.weight.shape == (8, 64, 3) and basic.expand.weight.shape == (64, 8, 3)
    assert bottleneck.reduce.weight.shape == (8, 64, 1) and bottleneck.middle.weight.shape == (8, 8, 3)
    assert bottleneck.expand.weight.shape == (64, 8, 1) and basic.fc.weight.shape == (10, 128)
    assert all(m.bias is None for m in (*basic.children(), *bottleneck.children())
               if isinstance(m, torch.nn.Conv1d))
    assert basic.weight_layers == ("stem", "reduce", "expand", "fc") and basic.activation_layers == ("reduce",)
    assert bottleneck.weight_layers == ("stem", "reduce", "middle", "expand", "fc")
    assert bottleneck.activation_layers == ("reduce", "middle")
    x = torch.randn(7, 40)
    for m in (basic, bottleneck):
        assert m(x).shape == (7, 10)
        rec = recorded(m, x)
        assert all(v.shape == (7, 8, 10) for v in rec.values())  # the stride-4 stem leaves 10 of 40 positions
    # The residual path: with the block's last BN scaled to zero the block adds only that BN's bias, and the
    # head sees the stem's features (plus the bias), average-pooled in 2 windows of 5 positions.
    with torch.no_grad():
        basic.expand_bn.weight.zero_()
        basic.expand_bn.bias.uniform_(-1, 1)
        basic.eval()
        h = torch.relu(basic.stem_bn(basic.stem(x.unsqueeze(1))))
        h = torch.relu(h + basic.expand_bn.bias.view(1, -1, 1))
        assert torch.equal(basic(x), basic.fc(h.unflatten(-1, (2, 5)).mean(-1).flatten(1)))
    with pytest.raises(ValueError, match="block"):
        ResNet1d(8, 16, "wide")
    with pytest.raises(ValueError, match="pooled"):
        ResNet1d(8, 16, "basic", pooled=3)


# ---------------------------------------------------------------------------------------------------------
# Replicates stacked in one module (Ensemble mode "stack") against solo modules

C, W, H = 12, 6, 20
# Each family at a small size: a builder, its input, and per rounding step on the way to the output the number
# of float32 operations one output value accumulates (a layer: its fan-in, + 1 for a bias; see
# test_stacked_forward_is_the_solo_forward_within_the_rounding_bound).
BN, ADD, POOL = 7, 1, 5


def with_random_norms(build):
    """``build``, then every BatchNorm's affine parameters and running statistics drawn at random (from the seeded
    global generator, so each replicate's differ): an eval-mode pass then shows whether each replicate
    normalises with its own statistics, which the initial ones (all 0 and 1) could not."""
    def built():
        model = build()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm1d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
        return model
    return built


MODELS = {
    "mlp_classifier": (lambda: MLPClassifier(W, H), "signal", [40 + 1, H + 1, W + 1, H + 1]),
    "autoencoder": (lambda: Autoencoder(W, H), "signal", [40 + 1, H + 1, W + 1, H + 1]),
    "autoencoder_digits": (lambda: Autoencoder(W, H, 64, flatten=3), "image", [64 + 1, H + 1, W + 1, H + 1]),
    "cnn1d": (lambda: CNN1d(W, C), "signal", [5 + 1, 3 * C + 1, 3 * W + 1, 5 * C + 1]),
    "logistic": (lambda: Logistic(), "signal", [40 + 1]),
    "mlp_reference": (lambda: ReferenceMLP(H), "signal", [40 + 1, H + 1, ADD, H + 1]),
    "resnet1d_basic": (with_random_norms(lambda: ResNet1d(W, C, "basic")), "signal",
                       [5, BN, 3 * C, BN, 3 * W, BN, ADD, POOL, 4 * C + 1]),
    "resnet1d_bottleneck": (with_random_norms(lambda: ResNet1d(W, C, "bottleneck")), "signal",
                            [5, BN, C, BN, 3 * W, BN, W, BN, ADD, POOL, 4 * C + 1]),
}
N_X = 48
UNITS = {  # Ensemble.activations: (R, samples, units), samples = examples x positions for a convolution
    "mlp_classifier": {"hidden": (N_X, H), "bottleneck": (N_X, W), "expand": (N_X, H)},
    "autoencoder": {"hidden": (N_X, H), "bottleneck": (N_X, W), "expand": (N_X, H)},
    "autoencoder_digits": {"hidden": (N_X, H), "bottleneck": (N_X, W), "expand": (N_X, H)},
    "cnn1d": {"hidden": (N_X * 19, C), "bottleneck": (N_X * 10, W), "expand": (N_X * 5, C)},
    "logistic": {},
    "mlp_reference": {"hidden": (N_X, H), "middle": (N_X, H)},
    "resnet1d_basic": {"reduce": (N_X * 10, W)},  # the stride-4 stem leaves 10 positions
    "resnet1d_bottleneck": {"reduce": (N_X * 10, W), "middle": (N_X * 10, W)},
}


def model_input(kind: str, cache: Path) -> torch.Tensor:
    return mnist1d(N_X, 10, str(cache)).x if kind == "signal" else digits(N_X, 10, 0).x


def abs_twin(build, seed: int) -> torch.nn.Module:
    """The solo module of ``seed`` with every parameter replaced by its absolute value and every BatchNorm's
    running mean by minus its absolute value, in eval mode: on |x| it computes, layer by layer, |W| |h| + |b| and
    (|h| + |running mean|) |w| / sqrt(running var + eps) + |b| (every ReLU then sees non-negative values), the
    magnitudes the rounding bounds are relative to."""
    torch.manual_seed(seed)
    model = build()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(-b.abs())
    return model.eval()


@pytest.mark.parametrize("name", list(MODELS))
def test_stack_replicates_are_solo_modules_bit_for_bit(name):
    """Replicate r's parameters and buffers are the solo module's after torch.manual_seed(seeds[r]): the same
    draws, so bitwise equal; and the stacked model reports the layers the family studies."""
    build, _, _ = MODELS[name]
    ensemble = Ensemble(build, SEEDS, "stack")
    stacked = ensemble.state_tensors()
    for r, seed in enumerate(SEEDS):
        torch.manual_seed(seed)
        solo = build()
        assert set(stacked) == set(solo.state_dict())
        for key, t in solo.state_dict().items():
            assert torch.equal(stacked[key][r], t), (seed, key)
    assert not torch.equal(stacked[f"{solo.weight_layers[0]}.weight"][0], stacked[f"{solo.weight_layers[0]}.weight"][1])
    assert list(ensemble.weights) == list(solo.weight_layers)
    assert [(s.fan_out, s.fan_in) for s in ensemble.specs] == \
        [(solo.get_submodule(n).weight.shape[0], math.prod(solo.get_submodule(n).weight.shape[1:]))
         for n in solo.weight_layers]
    assert ensemble.activation_layers == solo.activation_layers


@pytest.mark.numerics
@pytest.mark.parametrize("name", list(MODELS))
def test_stacked_forward_is_the_solo_forward_within_the_rounding_bound(name, mnist1d_cache):
    """One call of the module on the stacked tensors against each solo module (eval mode: a ResNet's BatchNorm on
    its running statistics; train-mode BatchNorm is checked layer by layer in tests/test_layers.py).

    Every layer is backward stable: its computed output is the exact output of slightly perturbed weights,
    |dW| <= gamma(k) |W| for a sum of k terms (Higham §3.5; the bias add is one more term), and an
    elementwise BatchNorm rounds at most 7 times per value (tests/test_layers.py). An error e entering a layer
    leaves it at most |W| e (ReLU is 1-Lipschitz, pooling averages), so by induction each path's output is within
    (prod_l (1 + gamma(k_l)) - 1) of the magnitude network ``abs_twin`` on |x|, with k_l the terms of each rounding
    step in ``MODELS`` (the residual sum and the 5-position average pooling are steps too); two paths differ by
    twice that. The recorded activations are earlier outputs of the same chain, so the same bound holds for
    them; comparing them also checks that samples and units are laid out as the solo path lays them out.
    """
    build, kind, steps = MODELS[name]
    x = model_input(kind, mnist1d_cache.cache)
    factor = 2 * (math.prod(1 + gamma(k) for k in steps) - 1)
    ensemble = Ensemble(build, SEEDS, "stack").eval()
    with torch.no_grad():
        out = ensemble(x)
    acts = ensemble.activations(x)
    assert {k: tuple(v.shape) for k, v in acts.items()} == {k: (len(SEEDS), *s) for k, s in UNITS[name].items()}
    assert out.shape[:2] == (len(SEEDS), N_X)
    for r, seed in enumerate(SEEDS):
        torch.manual_seed(seed)
        solo = build().eval()
        twin = abs_twin(build, seed)
        with torch.no_grad():
            expected, magnitude = solo(x), twin(x.abs())
        assert out[r].shape == expected.shape
        assert ((out[r] - expected).abs().double() <= factor * magnitude.double()).all(), (seed, name)
        solo_acts, twin_acts = recorded(solo, x), recorded(twin, x.abs())
        for layer, a in acts.items():
            diff = (a[r] - as_units(solo_acts[layer])).abs().double()
            assert (diff <= factor * as_units(twin_acts[layer]).double()).all(), (seed, name, layer)
    # A replicate mix-up would be caught: the replicates' outputs differ by far more than the bound.
    assert (out[0] - out[1]).abs().max() > 100 * factor * magnitude.max()


@pytest.mark.parametrize("name", ["mlp_classifier", "cnn1d", "autoencoder", "resnet1d", "logistic", "mlp_reference"])
def test_new_families_run_stacked_by_default(name, mnist1d_cache):
    cfg = make_cfg(f"model={name}", "data=mnist1d", f"data.cache_dir={mnist1d_cache.cache}", "width=4")
    assert FAMILIES[name].ensemble == "stack"
    assert FAMILIES[name].build(cfg, SEEDS).mode == "stack"
    assert FAMILIES[name].build(make_cfg(f"model={name}", "data=mnist1d", "width=4", "ensemble=loop"), SEEDS).mode \
        == "loop"


# ---------------------------------------------------------------------------------------------------------
# Replicates trained together against solo runs, through experiments.experiment.run

EPOCHS, LR, N_TRAIN, N_EVAL, BATCH, TRAIN_WIDTH = 3, 1e-3, 96, 40, 32, 8
STEPS = EPOCHS * -(-N_TRAIN // BATCH)  # Adam steps: epochs x mini-batches per epoch
HIDDEN, CHANNELS = 100, 25  # the presets' own mlp_classifier hidden width and cnn1d channels
# Terms summed into one weight-gradient entry (tests/numerics.adam_weight_drift): one product per example of the
# mini-batch (and per output position, for a convolution: 19 after cnn1d's first layer, the most of any layer),
# each carrying a back-propagated error that is itself a sum over the next layer's fan-out (a width's units, or
# its channels x 3 taps).
GRADIENT_TERMS = {"mlp_classifier": BATCH + HIDDEN, "cnn1d": BATCH * 19 + 3 * max(CHANNELS, TRAIN_WIDTH),
                  "autoencoder": BATCH + HIDDEN}
PRESET = {"mlp_classifier": "mnist1d_mlp_sweep", "cnn1d": "mnist1d_cnn_sweep", "autoencoder": "autoencoder_sweep"}


def saved(root: Path, experiment: str, rid: str) -> dict[str, torch.Tensor]:
    return load_file(root / "weights" / experiment / f"{rid}.safetensors")


@pytest.fixture(scope="module", params=["mlp_classifier", "cnn1d", "autoencoder"])
def together_and_solo(request, mnist1d_cache, tmp_path_factory):
    name = request.param
    root = tmp_path_factory.mktemp(f"together_{name}")
    common = (f"experiment={PRESET[name]}", f"data.cache_dir={mnist1d_cache.cache}", f"width={TRAIN_WIDTH}",
              f"epochs={EPOCHS}", "null_samples=0", "log_every=1", f"data.n_train={N_TRAIN}", f"data.n_eval={N_EVAL}",
              f"optim.batch_size={BATCH}", f"optim.lr={LR}", "data=mnist1d")
    together = run(make_cfg(*common, f"replicates={len(SEEDS)}"), root)
    solo = pd.concat([run(make_cfg(*common, f"seed={s}", "replicates=1"), root) for s in SEEDS])
    wb = saved(root, PRESET[name], together.run_id.iloc[0])
    ws = {s: saved(root, PRESET[name], solo[solo.seed == s].run_id.iloc[0]) for s in SEEDS}
    return name, together, solo, wb, ws


@pytest.mark.numerics
def test_replicates_trained_together_match_solo_runs(together_and_solo):
    """Initial tensors bit for bit (the same draws). Final tensors within ``adam_weight_drift`` for STEPS Adam
    steps of GRADIENT_TERMS-term gradient entries, with one ReLU crossing per weight allowed for: an example
    whose pre-activation sits within rounding of 0 changes one step's gradient by at most its share of the
    mini-batch mean, 1/BATCH (a share of a conv weight's gradient is smaller still, 1/(BATCH x positions)).
    Every replicate sees the batches its solo run sees (the order is fixed by data.split_seed)."""
    name, together, solo, wb, ws = together_and_solo
    bound = adam_weight_drift(STEPS, LR, GRADIENT_TERMS[name], samples=BATCH)
    finals = 0
    for r, seed in enumerate(SEEDS):
        assert torch.equal(wb["seeds"], torch.tensor(SEEDS)) and ws[seed]["seeds"].tolist() == [seed]
        for key, t in ws[seed].items():
            if key.startswith("initial/"):
                assert torch.equal(wb[key][r], t[0]), (seed, key)
            elif key.startswith("final/"):
                finals += 1
                diff = rms(wb[key][r] - t[0])
                assert diff <= bound, (seed, key, diff, bound)
                # The bound is small against what training did: a replicate trained on other batches, with
                # another seed's weights or a wrongly scaled gradient would be far outside it.
                moved = rms(t[0] - ws[seed][key.replace("final/", "initial/")][0])
                assert bound < 0.1 * moved, (seed, key, bound, moved)
    assert finals == len(SEEDS) * 8  # 4 layers, weight and bias
    keys = ["seed", "epoch", "layer", "metric"]
    merged = together[[*keys, "value"]].merge(solo[[*keys, "value"]], on=keys, suffixes=("_t", "_s"))
    assert len(merged) == len(together) == len(solo)
    # Accuracies count argmax agreements: equal unless a logit pair sits within rounding of a tie; allow one
    # evaluation signal either way.
    acc = merged[merged.metric == "test_accuracy"]
    assert ((acc.value_t - acc.value_s).abs() <= 1 / N_EVAL + 1e-12).all()
    assert (name == "autoencoder") == acc.empty


# ---------------------------------------------------------------------------------------------------------
# What gets logged

CLASSIFIER_MODEL_ROWS = {"loss", "train_loss", "eval_loss", "test_accuracy", "train_accuracy", "params", "steps"}
IDENTITY_MODEL_ROWS = {"loss", "train_loss", "eval_loss", "params", "steps"}
# family case -> (overrides, weight layers, activation layers, model rows, params, columns)
ROW_CASES = {
    "mlp_classifier": (("experiment=mnist1d_mlp_sweep", "width=4"), ("hidden", "bottleneck", "expand", "head"),
                       ("hidden", "bottleneck", "expand"), CLASSIFIER_MODEL_ROWS, mlp_classifier_params(4),
                       {"model": "mlp_classifier", "data": "mnist1d", "width": 4, "channels": 100, "block": "none"}),
    "cnn1d": (("experiment=mnist1d_cnn_sweep", "width=4", "model.channels=6"),
              ("hidden", "bottleneck", "expand", "head"), ("hidden", "bottleneck", "expand"), CLASSIFIER_MODEL_ROWS,
              cnn1d_params(4, 6), {"model": "cnn1d", "data": "mnist1d", "width": 4, "channels": 6, "block": "none"}),
    "autoencoder": (("experiment=autoencoder_sweep", "width=4", "data=mnist1d"),
                    ("hidden", "bottleneck", "expand", "head"), ("hidden", "bottleneck", "expand"),
                    IDENTITY_MODEL_ROWS, autoencoder_params(4),
                    {"model": "autoencoder", "data": "mnist1d", "width": 4, "channels": 100, "block": "none"}),
    "autoencoder_digits": (("experiment=autoencoder_sweep", "width=4", "data=digits"),
                           ("hidden", "bottleneck", "expand", "head"), ("hidden", "bottleneck", "expand"),
                           IDENTITY_MODEL_ROWS, autoencoder_params(4, 100, 64),
                           {"model": "autoencoder", "data": "digits", "width": 4, "channels": 100, "block": "none"}),
    "resnet1d_basic": (("experiment=mnist1d_resnet_sweep", "width=4", "model.channels=8", "model.block=basic"),
                       ("stem", "reduce", "expand", "fc"), ("reduce",), CLASSIFIER_MODEL_ROWS,
                       resnet1d_params("basic", 8, 4),
                       {"model": "resnet1d", "data": "mnist1d", "width": 4, "channels": 8, "block": "basic"}),
    "resnet1d_bottleneck": (("experiment=mnist1d_resnet_sweep", "width=4", "model.channels=8",
                             "model.block=bottleneck"), ("stem", "reduce", "middle", "expand", "fc"),
                            ("reduce", "middle"), CLASSIFIER_MODEL_ROWS, resnet1d_params("bottleneck", 8, 4),
                            {"model": "resnet1d", "data": "mnist1d", "width": 4, "channels": 8,
                             "block": "bottleneck"}),
    "logistic": (("experiment=mnist1d_baselines", "model=logistic"), ("head",), (), CLASSIFIER_MODEL_ROWS, 410,
                 {"model": "logistic", "data": "mnist1d", "width": 10, "channels": 0, "block": "none"}),
    "mlp_reference": (("experiment=mnist1d_baselines", "model=mlp_reference"), ("hidden", "middle", "head"),
                      ("hidden", "middle"), CLASSIFIER_MODEL_ROWS, 15210,
                      {"model": "mlp_reference", "data": "mnist1d", "width": 100, "channels": 100, "block": "none"}),
}
NULL = 3


@pytest.mark.parametrize("case", list(ROW_CASES))
def test_a_tiny_run_logs_every_layer_the_model_and_the_nulls(case, mnist1d_cache, tmp_path):
    overrides, weight_layers, act_layers, model_rows, params, columns = ROW_CASES[case]
    cfg = make_cfg(*overrides, f"data.cache_dir={mnist1d_cache.cache}", "epochs=2", "replicates=2",
                   f"null_samples={NULL}", "log_every=1", "data.n_train=64", "data.n_eval=32", "optim.batch_size=32")
    df = run(cfg, tmp_path)
    (path,) = parquet_files(tmp_path)
    assert path.parent.name == cfg.name
    on_disk = pd.read_parquet(path)
    assert len(on_disk) == len(df) and on_disk["data"].unique().tolist() == [columns["data"]]
    for column, value in columns.items():
        assert df[column].unique().tolist() == [value], column
    trained, null = df[df.kind == "trained"], df[df.kind == "null"]
    assert set(trained.seed) == {10000, 10001} and set(df.kind) == {"trained", "null"}
    # Weight metrics for every studied layer at every logged epoch (pair metrics too: every layer has >= 2 units).
    for metric in ("min_pair_l1", "max_abs_cos", "eff_rank", "stable_rank"):
        rows = trained[trained.metric == metric]
        assert set(rows.layer) == set(weight_layers), metric
        assert len(rows) == len(weight_layers) * 3 * 2, metric  # epochs 0, 1, 2 x 2 replicates
    names = metric_names(Protocol.from_config(cfg.functional), classify="test_accuracy" in model_rows)
    functional = trained.metric.isin(names)
    act = trained[trained.metric.str.startswith("act_") & ~functional]
    assert set(act.layer) == set(act_layers)
    assert len(act) == len(act_layers) * 5 * 3 * 2  # 5 activation metrics, 3 epochs, 2 replicates
    # Functional metrics for the family's functional layers (a subset of the recorded ones), every epoch.
    fun = trained[functional]
    fun_layers = set(fun.layer)
    assert fun_layers <= set(act_layers) and bool(fun_layers) == bool(act_layers)
    assert len(fun) == len(fun_layers) * len(names) * 3 * 2
    model = trained[trained.layer == "model"]
    assert set(model.metric) == model_rows
    assert model[model.metric == "params"].value.unique().tolist() == [params]
    assert sorted(model[model.metric == "eval_loss"].epoch.unique()) == [0, 1, 2]
    assert np.isfinite(model.value).all()
    if "test_accuracy" in model_rows:
        assert model[model.metric.str.endswith("accuracy")].value.between(0, 1).all()
    # Nulls: fresh draws of every studied layer's shape, and whole untrained models for the activations.
    assert set(null.epoch) == {0}
    assert set(null[null.metric == "eff_rank"].layer) == set(weight_layers)
    assert set(null[null.metric == "eff_rank"].seed) == set(range(NULL))
    null_functional = null.metric.isin(names)
    act_null = null[null.metric.str.startswith("act_") & ~null_functional]
    assert set(act_null.layer) == set(act_layers)
    assert len(act_null) == len(act_layers) * 5 * NULL
    n_functional_null = min(NULL, cfg.functional.null_samples)
    assert len(null[null_functional]) == len(fun_layers) * len(names) * n_functional_null
    assert not (null.layer == "model").any()


# ---------------------------------------------------------------------------------------------------------
# Bad input

BAD = [
    (("data=mnist1d", "model=conv"), "data"),
    (("data=mnist1d", "model=resnet"), "data"),
    (("model=cnn1d", "data=digits"), "data"),
    (("model=mlp", "data=mnist1d"), "data"),
    (("model=autoencoder", "data=digits", "model.input_dim=40"), "model.input_dim"),
    (("ensemble=stack", "experiment=conv"), "ensemble"),
    (("ensemble=stack", "experiment=resnet"), "ensemble"),
    (("model=mlp_classifier", "data=mnist1d", "data.n_train=5000"), "data.n_train"),
    (("model=mlp_classifier", "data=mnist1d", "data.n_eval=1001"), "data.n_eval"),
    (("model=resnet1d", "data=mnist1d", "model.block=wide"), "model.block"),
    (("model=cnn1d", "data=mnist1d", "model.activation=tanh"), "model.activation"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD)
def test_bad_configs_are_refused_naming_the_key(overrides, key, tmp_path):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        run(make_cfg(*overrides, "epochs=1"), tmp_path)
    assert list(tmp_path.iterdir()) == []


BAD_ON_THE_COMMAND_LINE = [
    (("data=mnist1d", "model=conv"), "data"),
    (("data=mnist1d", "model=resnet"), "data"),
    (("model=cnn1d", "data=digits"), "data"),
    (("model=autoencoder", "data=digits", "model.input_dim=40"), "model.input_dim"),
    (("ensemble=stack", "experiment=conv"), "ensemble"),
    (("model=mlp_classifier", "data=mnist1d", "data.n_train=5000"), "data.n_train"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "key"), BAD_ON_THE_COMMAND_LINE)
def test_bad_input_on_the_command_line(overrides, key, tmp_path):
    """Exit status 2, one line naming the key, and nothing written: no results, no weights, and no MNIST-1D
    generated into the default cache folder under the results root."""
    proc = cli(*overrides, "epochs=1", results=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}: "), proc.stderr
    assert not parquet_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["hydra"])  # Hydra's own log folder at most


# ---------------------------------------------------------------------------------------------------------
# The presets, as real tiny sweeps through run.py

# One torch thread per job (threads is not part of the run id): the jobs are tiny and the machine is shared.
TINY_SWEEP = ("epochs=1", "replicates=2", "null_samples=2", "data.n_train=200", "data.n_eval=50", "threads=1")
# preset -> (overrides, the jobs' (model, data, block, width)); a command-line width list replaces the preset's.
PRESETS = {
    "mnist1d_baselines": ((), {("logistic", "mnist1d", "none", 10), ("mlp_reference", "mnist1d", "none", 100),
                               ("cnn1d", "mnist1d", "none", 25)}),
    "mnist1d_mlp_sweep": (("width=2,4",), {("mlp_classifier", "mnist1d", "none", w) for w in (2, 4)}),
    "mnist1d_cnn_sweep": (("width=4",), {("cnn1d", "mnist1d", "none", 4)}),
    "autoencoder_sweep": (("width=4",), {("autoencoder", d, "none", 4) for d in ("mnist1d", "digits")}),
    "mnist1d_resnet_sweep": (("width=4",), {("resnet1d", "mnist1d", b, 4) for b in ("basic", "bottleneck")}),
}


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_runs_as_a_tiny_sweep(preset, mnist1d_cache, tmp_path):
    """Each preset is a multirun by itself (no -m): one parquet file per job, with the jobs' model, data, block
    and width; a command-line width list replaces the preset's."""
    overrides, jobs = PRESETS[preset]
    cli(f"experiment={preset}", *overrides, *TINY_SWEEP, f"data.cache_dir={mnist1d_cache.cache}",
        results=tmp_path, check=True)
    files = parquet_files(tmp_path)
    assert len(files) == len(jobs) and {p.parent.name for p in files} == {preset}
    assert {pq.read_schema(p).metadata[b"status"] for p in files} == {b"completed"}
    df = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
    assert set(df[["model", "data", "block", "width"]].itertuples(index=False, name=None)) == jobs
    assert set(df[df.kind == "trained"].seed) == {10000, 10001} and set(df[df.kind == "null"].seed) == {0, 1}
    assert set(df.epoch) == {0, 1}
    assert not (tmp_path / "cache").exists()  # the shared cache was used: nothing generated under the results
