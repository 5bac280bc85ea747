"""Functional redundancy (``experiments.functional``): ablation, compensation, linear predictability, the threshold-free
measure, the anchor's joint-ablation protocol and the joint pruning curve.

The expected values are derived by hand on networks and inputs built so that every quantity has a closed form:
inputs of +-1 whose two columns are orthogonal and zero-mean on the fitting examples and on the scoring ones, a
layer with a duplicated unit, a unit that is the only path of one input to the output, and a dead unit. Then the
ridge chosen by generalised cross-validation is checked on duplicates and on independent units, the batched
computation against one replicate at a time (replicate = solo), the consumer shortcut (``Injection``) against the
generic substitution, and every family's rows and null.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments.ensemble import Ensemble, Replica
from experiments.experiment import run
from experiments.functional import (
    Protocol,
    crossing,
    fit_statistics,
    functional_metrics,
    largest_prefix,
    metric_names,
    predict_units,
    regression,
    ridge_gcv,
)
from experiments.layers import Linear
from experiments.models.mlp import build_mlp
from experiments.tasks import TASKS
from tests.conftest import make_cfg
from tests.numerics import U32, gamma

IDENTITY = TASKS["identity"]
OFFSET = 0.1  # the targets sit OFFSET above the network's output: the unablated loss is OFFSET^2


class Toy(Replica):
    """x (N, 2) -> ``layer``: 4 units u0 = x0, u1 = x0 (a duplicate), u2 = x1 (the only path of x1), u3 = 0
    (dead) -> ``head``: their sum, 2 x0 + x1. Linear throughout, so every ablated loss has a closed form. The head
    is the layer's consumer (it alone reads the layer), so the fixture runs both the substitution at the layer and
    the injection at the head."""

    weight_layers = ("layer", "head")
    activation_layers = functional_layers = ("layer",)
    consumers = {"layer": "head"}  # noqa: RUF012

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


def toy_inputs(n: int) -> torch.Tensor:
    """n (a multiple of 4) examples: x0 alternates +-1, x1 alternates in pairs; both columns have mean 0, variance 1
    and are orthogonal, exactly in float arithmetic."""
    x0 = torch.tensor([1.0, -1.0] * (n // 2))
    x1 = torch.tensor([1.0, 1.0, -1.0, -1.0] * (n // 4))
    return torch.stack([x0, x1], dim=1)


N_FIT, N_SCORE = 4000, 8
PROTOCOL = Protocol(prune_steps=4, orders=5)


@pytest.fixture(scope="module", params=[("stack", True), ("stack", False), ("loop", True)],
            ids=["stack-injected", "stack-substituted", "loop-injected"])
def toy(request):
    mode, injected = request.param
    model = Ensemble(Toy, [1, 2], mode).eval()
    if not injected:
        model.template.consumers = {}
    fit, score = toy_inputs(N_FIT), toy_inputs(N_SCORE)
    y = (model(score)[0] + OFFSET).detach()  # the same targets for both (identical) replicates
    return model, functional_metrics(model, fit, score, y, IDENTITY, ("layer",), PROTOCOL, [1, 2])["layer"]


def test_the_toy_network_is_what_the_derivation_assumes(toy):
    model, _ = toy
    for x in (toy_inputs(N_FIT), toy_inputs(N_SCORE)):
        assert torch.equal(model(x)[0, :, 0], 2 * x[:, 0] + x[:, 1])
        assert torch.equal(x.mean(0), torch.zeros(2))
        assert torch.equal((x[:, 0] * x[:, 1]).sum(), torch.tensor(0.0))


def test_every_metric_is_there(toy):
    _, m = toy
    assert set(m) == set(metric_names(PROTOCOL, classify=False))


# Float32 rounding of the losses: each is a mean of 8 squares of values <= 3.1, each within a few ulps; relative to
# OFFSET^2 = 0.01, at most 8 * gamma(8) * 3.1^2 / 0.01 on a relative increase.
TOL = 8 * gamma(8) * 3.1**2 / OFFSET**2


def test_mean_ablation_by_hand(toy):
    """Score set: the loss is OFFSET^2. Ablating u0 (training mean 0) leaves x0 + x1, so the error is x0 + OFFSET and
    the loss mean(x0^2) + OFFSET^2 = 1 + OFFSET^2: a relative increase of 1 / OFFSET^2 = 100. The same for u1 and u2
    (x1); the dead u3 is its own mean: 0. So one unit in four is prunable at every threshold below 100 (none of the
    three live ones); the effects (100, 100, 100, 0) make p = (1/3, 1/3, 1/3, 0), exp-entropy 3 of 4 units."""
    _, m = toy
    expected = {"abl_delta_loss_mean": 300 / 4, "abl_delta_loss_max": 100.0, "abl_top10_share": 1 / 3,
                "abl_eff_frac": 3 / 4, "fit_dead_frac": 1 / 4}
    for t in PROTOCOL.thresholds:
        expected[f"prunable_frac@{t:g}"] = 1 / 4
        expected[f"prunable_live_frac@{t:g}"] = 0.0
    for name, value in expected.items():
        assert torch.allclose(m[name], torch.full_like(m[name], value), atol=TOL * max(1.0, value)), (name, m[name])


def test_compensation_and_predictability_by_hand(toy):
    """u0 and u1 predict each other and make up for each other; u2 is the only path of x1: the others (x0) are
    orthogonal to it, so its prediction is its mean, 0, and compensation changes nothing: +100, as ablation.

    The ridge: standardised, the regression of u0 on (u1, u2) has C = I, so its coefficients are (1/(1+λ), 0): the
    compensated output is off by λ' x0, λ' = λ/(1+λ), a loss increase of λ'^2 / OFFSET^2, and u0's held-out
    R^2 is 1 − λ'^2 (u2's is 0: predicted by its mean). u0's GCV is λ'^2 / (1 − (2/(1+λ) + 1)/n)^2, which grows with
    λ (the numerator from 0, the denominator only by O(λ/n)): GCV takes the grid's smallest λ for each duplicate,
    so an exact duplicate is compensable (a loss increase of ~1e-10) with R^2 = 1 − 1e-12. u2's residual does not
    depend on λ and its degrees of freedom fall with it: the grid's largest (its coefficients are 0 at any λ)."""
    from experiments.functional import RIDGE_GRID

    _, m = toy
    lo, hi = RIDGE_GRID[0], RIDGE_GRID[-1]
    lp = lo / (1 + lo)
    duplicate = lp**2 / OFFSET**2                          # relative increase of u0's and u1's compensation
    for name, value in {"comp_delta_loss_mean": (2 * duplicate + 100) / 4, "comp_delta_loss_max": 100.0}.items():
        assert torch.allclose(m[name], torch.full_like(m[name], value), atol=TOL * 100), (name, m[name])
    for t in PROTOCOL.thresholds:
        assert torch.equal(m[f"redundant_frac@{t:g}"], torch.full((2,), 0.75, dtype=torch.float64))
        assert torch.equal(m[f"redundant_live_frac@{t:g}"], torch.full((2,), 2 / 3, dtype=torch.float64))
    assert torch.allclose(m["ridge_log10"], torch.full((2,), (2 * math.log10(lo) + math.log10(hi)) / 3,
                                                       dtype=torch.float64))
    assert torch.allclose(m["act_r2_others_max"], torch.full((2,), 1 - lp**2, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(m["act_r2_others_mean"], torch.full((2,), 2 * (1 - lp**2) / 3, dtype=torch.float64),
                          atol=1e-9)


def test_joint_pruning_curve_by_hand(toy):
    """Units by single-unit effect: u3 (0) first, then u0, u1, u2 (100 each; ties keep index order). Removing u3
    alone changes nothing; u3 with u0 raises the loss by 100x: one unit in four can go."""
    _, m = toy
    assert torch.equal(m["joint_prunable_frac"], torch.full((2,), 0.25, dtype=torch.float64))


def test_anchor_protocol_by_hand(toy):
    """Zeroing a set S of units: the output loses c0 x0 + c2 x1 (c0 = |S ∩ {u0, u1}|, c2 = [u2 in S]; u3 is 0
    anyway); x0, x1 orthogonal with unit variance and the output's variance is 5, so agreement = 1 − (c0² + c2²)/5.
    Recomputed here from each replicate's own random orders (``anchor_orders``), then the fraction where it falls
    below 0.8, interpolated between the fractions reached (int(f·4)/4)."""
    from experiments.functional import anchor_orders

    _, m = toy
    orders = anchor_orders([1, 2], "layer", 4, PROTOCOL.orders)
    fractions = [f for f in PROTOCOL.fractions if f > 0]
    counts = [int(f * 4) for f in fractions]
    agree = torch.zeros(2, PROTOCOL.orders, len(counts) + 1, dtype=torch.float64)
    agree[:, :, 0] = 1.0
    for r in range(2):
        for k in range(PROTOCOL.orders):
            for j, c in enumerate(counts):
                s = set(orders[r, k, :c].tolist())
                c0, c2 = len(s & {0, 1}), int(2 in s)
                agree[r, k, j + 1] = 1 - (c0**2 + c2**2) / 5
    for j, f in enumerate(fractions):
        assert torch.allclose(m[f"anchor_agreement@{f:g}"], agree[:, :, j + 1].mean(1), atol=1e-5), f
    x = torch.tensor([0, *counts], dtype=torch.float64) / 4
    frac = torch.zeros(2, dtype=torch.float64)
    for r in range(2):
        for k in range(PROTOCOL.orders):
            curve = agree[r, k]
            j = next((j for j in range(1, len(curve)) if curve[j] < 0.8 <= curve[j - 1]), None)
            frac[r] += 1.0 if j is None else \
                x[j - 1] + (0.8 - curve[j - 1]) / (curve[j] - curve[j - 1]) * (x[j] - x[j - 1])
    frac /= PROTOCOL.orders
    assert torch.allclose(m["anchor_prunable_frac"], frac, atol=1e-5)
    assert torch.allclose(m["anchor_prunable_units"], 4 * frac, atol=4e-5)


def test_crossing_and_largest_prefix_by_hand():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.9, 0.7, 0.1], [1.0, 0.95, 0.9, 0.85], [1.0, 0.7, 0.9, 0.1]], dtype=torch.float64)
    # 0.25 + (0.8 − 0.9)/(0.7 − 0.9) · 0.25; never below: everything; the first crossing, not a later one.
    assert torch.allclose(crossing(x, y, 0.8), torch.tensor([0.375, 1.0, 0.25 * (0.2 / 0.3)], dtype=torch.float64))
    ok = torch.tensor([[True, True, False, True], [False, True, True, True], [True, True, True, True]])
    assert torch.equal(largest_prefix(ok, torch.tensor([0.25, 0.5, 0.75, 1.0])),
                       torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64))


def test_gcv_ridge_predicts_duplicates_and_not_independent_units():
    """A layer of w = 256 independent standard normal units, 4,000 training and 1,000 held-out samples: the best
    prediction of a unit is its mean, whose held-out R^2 is −(held-out mean − training mean)^2 / var ≈ −1/1000 −
    1/4000; an unregularised least-squares fit on the 255 others would lose ≈ p/(n − p) = 0.068 on top (what the old
    64-example fit suffered); GCV must choose a ridge that keeps the mean R^2 above −0.068 − 6 SE (SE of a mean of
    256 units' R^2, each ±√(2/1000)) and near 0 from above (a clamped mean of at most 6 SE). Then a unit that is an
    exact linear function of two others is predicted to 1 − O(λ^2), its own λ chosen small (one λ for the layer, which
    the 255 others pull large, left it at R^2 0.17)."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(2, 5000, 256, generator=g)
    _, r2 = regression(A[:, :4000], A[:, 4000:])
    se = math.sqrt(2 / 1000) / math.sqrt(256)
    assert r2.mean() >= -(256 / (4000 - 256)) - 6 * se
    assert r2.clamp_min(0).mean() <= 6 * se
    assert r2.mean() >= -0.01  # GCV shrinks far more than plain least squares here (it picks a large λ)
    A[:, :, 0] = 0.5 * A[:, :, 1] - 2.0 * A[:, :, 2] + 3.0
    stats = fit_statistics(A[:, :4000])
    B, lam = ridge_gcv(stats)
    _, r2 = predict_units(A[:, 4000:], stats, B)
    assert (r2[:, 0] >= 1 - 1e-6).all(), (r2[:, 0], lam[:, 0])


def test_gcv_ridge_equals_explicit_ridge_regressions():
    """The closed forms (coefficients −P_ij/P_ii, GCV from one eigendecomposition) against explicit ridge solves of
    each unit on the others: GCV_i(λ) = (RSS/n) / (1 − (tr H + 1)/n)^2 computed from its definition on the grid, its
    argmin against the chosen λ_i, and the coefficients at that λ, on correlated data."""
    from experiments.functional import RIDGE_GRID

    g = torch.Generator().manual_seed(1)
    base = torch.randn(1, 300, 3, generator=g, dtype=torch.float64)
    A = torch.cat([base, base @ torch.randn(3, 4, generator=g, dtype=torch.float64)
                   + 0.3 * torch.randn(1, 300, 4, generator=g, dtype=torch.float64)], dim=2)  # 7 units, rank 3 + noise
    stats = fit_statistics(A)
    B, lam = ridge_gcv(stats)
    z = (A[0] - stats.mean[0]) / stats.std[0]
    n, u = z.shape
    eye = torch.eye(u - 1, dtype=torch.float64)
    for i in range(u):
        others = [j for j in range(u) if j != i]
        X = z[:, others]
        gcv, betas = [], []
        for lam_i in RIDGE_GRID:
            beta = torch.linalg.solve(X.T @ X / n + lam_i * eye, X.T @ z[:, i] / n)
            hat = X @ torch.linalg.solve(X.T @ X + n * lam_i * eye, X.T)
            rss = (z[:, i] - X @ beta).square().sum() / n
            gcv.append(float(rss / (1 - (torch.trace(hat) + 1) / n) ** 2))
            betas.append(beta)
        best = int(np.argmin(gcv))
        assert RIDGE_GRID[best] == float(lam[0, i]), i
        assert torch.allclose(B[0, i, others], betas[best], atol=1e-9), i


def test_replicates_at_once_equal_one_at_a_time():
    """Two modes of the same network (the stacked pass and the loop of one replicate at a time) and one replicate
    alone: the same relative loss changes to float32 rounding of losses near 1 (CE of an untrained classifier):
    a few ulps of each of the two losses in a difference, relative to the loss."""
    from experiments.models.mlp_classifier import MLPClassifier

    seeds = [5, 6, 7]
    x = torch.randn(96, 40, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(2))
    task = TASKS["classify"]

    def measure(s, mode):
        model = Ensemble(lambda: MLPClassifier(6, 20), s, mode).eval()
        return functional_metrics(model, x[:64], x[64:], y, task, ("bottleneck",), Protocol(orders=4), s)["bottleneck"]

    together, looped = measure(seeds, "stack"), measure(seeds, "loop")
    alone = [measure([s], "stack") for s in seeds]
    # Each loss is a mean of 32 cross-entropies of logits from a 40-20-6-20-10 network: backward stability puts
    # each logit within gamma(41) + gamma(21) + gamma(7) + gamma(21) of |logit| ~ 1, and CE is 1-Lipschitz in its
    # logits; two losses in each relative difference: 4 * that sum / CE(~2.3) with a factor 4 of headroom for the
    # log-sum-exp's own rounding.
    tol = 16 * (gamma(41) + 2 * gamma(21) + gamma(7)) + 16 * U32
    for name in ("abl_delta_loss_mean", "abl_delta_loss_max", "comp_delta_loss_mean", "comp_delta_loss_max"):
        solo = torch.cat([a[name] for a in alone])
        assert (together[name] - solo).abs().max() <= tol, name
        assert (looped[name] - solo).abs().max() <= tol, name
    # R^2 and the chosen ridge come from float64 statistics of the same float32 activations: equal to float64
    # rounding; the anchor orders are the replicates' own, so their agreements match too (argmax ties aside).
    for name in ("act_r2_others_mean", "ridge_log10"):
        solo = torch.cat([a[name] for a in alone])
        assert torch.allclose(together[name], solo, rtol=0, atol=1e-9), name


@pytest.mark.parametrize("family", ["mlp_classifier", "cnn1d", "autoencoder", "resnet1d", "conv", "resnet"])
def test_injection_at_the_consumer_equals_substitution_at_the_layer(family):
    """Every family that names its functional layers' consumers: the one-channel terms added at the consumer
    (``Injection``) against the layer's output substituted and the consumer rerun, for single units and for
    masked sets. The same affine maps in another order: differences are float32 rounding of the consumer's sums
    (gamma(fan-in) relative), far below the smallest relative loss change reported (1e-6 here)."""
    from experiments.models.autoencoder import Autoencoder
    from experiments.models.cnn1d import CNN1d
    from experiments.models.conv import ConvIdentity
    from experiments.models.mlp_classifier import MLPClassifier
    from experiments.models.resnet import DigitsResNet
    from experiments.models.resnet1d import ResNet1d

    g = torch.Generator().manual_seed(3)
    signal, image = torch.randn(160, 40, generator=g), torch.rand(80, 1, 8, 8, generator=g)
    labels = torch.randint(0, 10, (80,), generator=g)
    build, mode, x, task = {
        "mlp_classifier": (lambda: MLPClassifier(12, 20), "stack", signal, "classify"),
        "cnn1d": (lambda: CNN1d(6, 8), "stack", signal, "classify"),
        "autoencoder": (lambda: Autoencoder(5, 20), "stack", signal, "identity"),
        "resnet1d": (lambda: ResNet1d(4, 8, "bottleneck"), "stack", signal, "classify"),
        "conv": (lambda: ConvIdentity(4, 8, "relu"), "loop", image, "identity"),
        "resnet": (lambda: DigitsResNet(4, 8, "bottleneck"), "loop", image, "classify"),
    }[family]
    model = Ensemble(build, [1, 2], mode).eval()
    layers = model.functional_layers
    assert all(model.consumer(layer) is not None for layer in layers), "the family names its consumers"
    fit, score = x[:x.shape[0] // 2], x[x.shape[0] // 2:]
    y = labels[:score.shape[0]] if task == "classify" else score
    fast = functional_metrics(model, fit, score, y, TASKS[task], layers, Protocol(orders=3), [1, 2])
    consumers = model.template.consumers
    model.template.consumers = {}
    try:
        slow = functional_metrics(model, fit, score, y, TASKS[task], layers, Protocol(orders=3), [1, 2])
    finally:
        model.template.consumers = consumers
    for layer in layers:
        for name in ("abl_delta_loss_mean", "abl_delta_loss_max", "comp_delta_loss_mean", "joint_prunable_frac",
                     "anchor_agreement@0.5"):
            assert torch.allclose(fast[layer][name], slow[layer][name], rtol=1e-4, atol=1e-6), (layer, name)


def test_source_mlp_shortcut_equals_the_generic_substitution():
    """``ReplicatedMLP.forward_with`` adds (value - activation) x head weight instead of rerunning the head on a
    copy of the layer, and ``forward_masked`` the sum of those over a set: the same affine map, so equal to float32
    rounding of a 1 x w dot product."""
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
    masks = torch.rand(2, 4, 16, generator=torch.Generator().manual_seed(1)) < 0.5
    fill = torch.randn(2, 16, generator=torch.Generator().manual_seed(2))
    fast = model.forward_masked(x, "bottleneck", masks, fill).view(2, 4, 20)
    for k in range(4):
        hk = torch.where(masks[:, k, None, :], fill[:, None, :], h)
        slow = (hk @ W.transpose(1, 2)).squeeze(-1) + b
        scale = (hk.abs() @ W.abs().transpose(1, 2)).squeeze(-1) + b.abs() + ((fill[:, None, :] - h).abs()
                                                                               * W.abs()).sum(-1)
        assert ((fast[:, k] - slow).abs() <= 4 * gamma(33) * scale).all()
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
    cfg = make_cfg(*FAMILY_RUNS[name], "null_samples=3", "functional.null_samples=2", "functional.orders=2",
                   "log_every=1", f"data.cache_dir={mnist1d_cache_dir}")
    df = run(cfg, tmp_path)
    names = set(metric_names(Protocol.from_config(cfg.functional), classify=name in CLASSIFIERS))
    rows = df[df.metric.isin(names)]
    trained, null = rows[rows.kind == "trained"], rows[rows.kind == "null"]
    assert set(trained.layer) == set(null.layer) == LAYERS[name]
    epochs = sorted(df.loc[(df.kind == "trained") & (df.metric == "eval_loss"), "epoch"].unique())
    for layer in LAYERS[name]:
        at = trained[trained.layer == layer]
        # Every metric at every metric epoch for every replicate; the null for its first 2 models.
        assert set(at.metric) == names
        assert sorted(at.epoch.unique()) == epochs and (at.groupby(["epoch", "metric"]).seed.nunique() == 2).all()
        assert set(null[null.layer == layer].seed) == {0, 1}
    shares = rows[rows.metric.str.contains("_frac")].value.dropna()
    assert ((shares >= 0) & (shares <= 1)).all()
    r2 = rows[rows.metric == "act_r2_others_max"].value.dropna()
    assert (r2 <= 1 + 1e-9).all()


CLASSIFIERS = {"resnet_bottleneck", "mlp_classifier", "cnn1d", "resnet1d"}


@pytest.fixture(scope="module")
def mnist1d_cache_dir(tmp_path_factory):
    from experiments.data import mnist1d_arrays

    cache = tmp_path_factory.mktemp("functional_mnist1d")
    mnist1d_arrays(str(cache))
    return cache


@pytest.mark.parametrize(("override", "key"), [
    ("functional.fit_examples=101", "functional.fit_examples"),            # the integers have 100 training inputs
    ("functional.score_examples=1", "functional.score_examples"),
    ("functional.thresholds=[]", "functional.thresholds"),
    ("functional.thresholds=[0.01,-1]", "functional.thresholds"),
    ("functional.threshold=0", "functional.threshold"),
    ("functional.acc_drop=1.5", "functional.acc_drop"),
    ("functional.agreement=1", "functional.agreement"),
    ("functional.agreement=0", "functional.agreement"),
    ("functional.fractions=[0.5,0.25]", "functional.fractions"),
    ("functional.fractions=[0]", "functional.fractions"),
    ("functional.orders=0", "functional.orders"),
    ("functional.null_samples=-1", "functional.null_samples"),
])
def test_bad_functional_settings_are_refused(override, key):
    from experiments.config import ConfigError, validate

    with pytest.raises(ConfigError, match=f"^{key}: "):
        validate(make_cfg(override))


def test_a_fit_subset_larger_than_the_training_set_writes_nothing(tmp_path):
    """Bad input stops before anything is written: one line naming the key, exit 2 (run.py), no results."""
    from tests.conftest import cli, parquet_files

    proc = cli("width=8", "functional.fit_examples=5000", results=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: functional.fit_examples: must be in 1..100")
    assert parquet_files(tmp_path) == []


def test_thresholded_shares_are_degenerate_at_initialisation_the_threshold_free_measure_is_not():
    """The untrained null is a floor: at initialisation the output barely depends on any one unit. On a wide untrained
    MNIST-1D-sized MLP every unit's ablation moves the loss by far less than 1% (a 100-wide layer of
    default-initialised units each carries ~1/100 of a near-constant logit), so the share prunable at 1% is 1 for
    every seed (no spread: nothing to pair a change with), while the effective number of units that matter is
    defined and varies between seeds."""
    from experiments.models.mlp_classifier import MLPClassifier

    x = torch.randn(1256, 40, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 10, (256,), generator=torch.Generator().manual_seed(4))
    model = Ensemble(lambda: MLPClassifier(64), [1, 2, 3], "stack").eval()
    m = functional_metrics(model, x[:1000], x[1000:], y, TASKS["classify"], ("bottleneck",), Protocol(orders=2),
                           [1, 2, 3])["bottleneck"]
    assert (m["prunable_frac@0.01"] == 1).all() and (m["abl_delta_loss_max"] < 0.01).all()
    eff = m["abl_eff_frac"]
    assert torch.isfinite(eff).all() and ((eff > 0) & (eff <= 1)).all() and eff.std() > 0
