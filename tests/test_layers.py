"""``experiments.layers``: with plain parameters each layer is its ``torch.nn`` parent; with parameters stacked
along a leading replicate axis it computes every replicate at once, as a loop of solo modules would.

Plain parameters run the parent's ``forward``: the same kernels on the same inputs, so results are asserted
bit for bit. Stacked parameters run batched matmuls (a convolution as its windows, or its taps, times the kernels)
and ``F.batch_norm`` on all replicates' channels side by side, whose sums are ordered differently from a solo
module's; every comparison of the two is bounded by the float32 worst cases of ``tests/numerics.py`` (Higham
2002), for any summation order. ``experiments.step.make_step`` runs the plain training step's own operations, so
it is asserted bit for bit.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from experiments.ensemble import Ensemble, Replica
from experiments.layers import BatchNorm1d, Conv1d, Linear
from tests.numerics import gamma

pytestmark = pytest.mark.numerics

SEEDS = [3, 4, 5]
R, N = len(SEEDS), 24


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: the test machine is shared and these tensors are tiny (results hold for any count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def solo_modules(build) -> list[nn.Module]:
    """One module per seed, drawn as a solo run draws it: ``torch.manual_seed(seed)`` then ``build()``."""
    modules = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        modules.append(build())
    return modules


def stacked_state(modules: list[nn.Module]) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of the solo modules stacked along a new leading axis (what Ensemble holds)."""
    return {name: torch.stack([m.state_dict()[name] for m in modules]).clone() for name in modules[0].state_dict()}


def leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


# ---------------------------------------------------------------------------------------------------------
# Plain parameters: exactly the torch.nn layers


@pytest.mark.parametrize(("ours", "theirs", "shape"), [
    (lambda: Linear(7, 5), lambda: nn.Linear(7, 5), (N, 7)),
    (lambda: Linear(7, 5, bias=False), lambda: nn.Linear(7, 5, bias=False), (N, 3, 7)),
    (lambda: Conv1d(3, 6, 5, stride=2, padding=1), lambda: nn.Conv1d(3, 6, 5, stride=2, padding=1), (N, 3, 40)),
    (lambda: Conv1d(4, 2, 1, bias=False), lambda: nn.Conv1d(4, 2, 1, bias=False), (N, 4, 11)),
    (lambda: BatchNorm1d(6), lambda: nn.BatchNorm1d(6), (N, 6)),
    (lambda: BatchNorm1d(6), lambda: nn.BatchNorm1d(6), (N, 6, 9)),
])
def test_plain_layers_are_their_torch_nn_parents_bit_for_bit(ours, theirs, shape):
    """The same seed draws the same parameters; forward, input and parameter gradients, and (batch norm) the
    running statistics after a train pass and the eval-mode output are identical."""
    torch.manual_seed(0)
    a = ours()
    torch.manual_seed(0)
    b = theirs()
    assert isinstance(a, type(b))
    with torch.no_grad():  # non-trivial batch-norm parameters and statistics (the same change to both)
        for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            if ta.is_floating_point() and "running_var" not in name:
                ta.add_(torch.linspace(-0.5, 0.5, ta.numel()).view_as(ta))
                tb.add_(torch.linspace(-0.5, 0.5, tb.numel()).view_as(tb))
    for name, t in a.state_dict().items():
        assert torch.equal(t, b.state_dict()[name]), name
    torch.manual_seed(1)
    x = torch.randn(shape) * 2 + 0.5
    xa, xb = leaf(x), leaf(x)
    ya, yb = a(xa), b(xb)
    assert torch.equal(ya, yb)
    g = torch.randn_like(ya)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    assert torch.equal(xa.grad, xb.grad)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa.grad, pb.grad), name
    for name, t in a.state_dict().items():  # running statistics after one train pass
        assert torch.equal(t, b.state_dict()[name]), name
    a.eval()
    b.eval()
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("kwargs", [{"groups": 2}, {"dilation": 2}, {"padding": "same"},
                                    {"padding": 1, "padding_mode": "reflect"}])
def test_conv1d_refuses_what_the_stacked_path_cannot_compute(kwargs):
    with pytest.raises(ValueError, match="one group"):
        Conv1d(4, 4, 3, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Stacked parameters: every replicate at once, against a loop of solo modules


def within(diff: torch.Tensor, bound: torch.Tensor, what: str) -> None:
    assert diff.shape == bound.shape, what
    excess = (diff.double() - bound).max().item()
    assert excess <= 0, f"{what}: exceeds the bound by {excess:.3g} (largest diff {diff.abs().max().item():.3g})"


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shared", [True, False])
def test_stacked_linear_forward_and_backward_within_the_rounding_bound(bias, shared):
    """Forward: the product is backward stable, y = (W + dW) x with |dW| <= gamma(fan_in) |W| and one more
    rounding for the bias (Higham §3.5), so two orderings differ by at most 2 gamma(fan_in + 1) (|W| |x| + |b|).
    Backward, with a fixed upstream gradient g (exact in both paths: d sum(y g) / dy = g): each weight-gradient
    entry sums N products g x (2 gamma(N) |g|^T |x|), each bias-gradient entry N values of g, each input-gradient
    entry the fan-out's products g W; with an input shared by the replicates, R x fan-out of them."""
    fan_in, fan_out = 37, 9
    solos = solo_modules(lambda: Linear(fan_in, fan_out, bias=bias))
    state = {k: leaf(v) for k, v in stacked_state(solos).items()}
    torch.manual_seed(7)
    x = torch.randn((N, fan_in) if shared else (R, N, fan_in))
    g = torch.randn(R, N, fan_out)
    xs = leaf(x)
    y = functional_call(solos[0], state, (xs,))
    assert y.shape == (R, N, fan_out)
    (y * g).sum().backward()
    xl = leaf(x)
    ys = torch.stack([m(xl if shared else xl[r]) for r, m in enumerate(solos)])
    (ys * g).sum().backward()

    W = torch.stack([m.weight.detach() for m in solos]).double().abs()
    b = torch.stack([m.bias.detach() for m in solos]).double().abs() if bias else torch.zeros(R, fan_out).double()
    ax, ag = x.double().abs(), g.double().abs()
    ax_r = ax.expand(R, N, fan_in) if shared else ax
    k = fan_in + 1 if bias else fan_in
    within((y - ys).abs(), 2 * gamma(k) * (ax_r @ W.transpose(1, 2) + b[:, None]), "forward")
    for r, m in enumerate(solos):
        within((state["weight"].grad[r] - m.weight.grad).abs(), 2 * gamma(N) * ag[r].T @ ax_r[r], "weight grad")
        if bias:
            within((state["bias"].grad[r] - m.bias.grad).abs(), 2 * gamma(N) * ag[r].sum(0), "bias grad")
    if shared:
        within((xs.grad - xl.grad).abs(), 2 * gamma(R * fan_out) * (ag @ W).sum(0), "input grad")
    else:
        within((xs.grad - xl.grad).abs(), 2 * gamma(fan_out) * (ag @ W), "input grad")
    # A replicate mix-up would be far outside the bound: the replicates do differ.
    assert (y[0] - y[1]).abs().max() > 100 * (2 * gamma(k) * (ax_r @ W.transpose(1, 2) + b[:, None])).max()


@pytest.mark.parametrize(("channels", "out", "k", "stride", "padding", "bias"), [
    (1, 25, 5, 2, 1, True),    # CNN1d's first layer: 40 -> 19 positions
    (6, 4, 3, 2, 1, True),     # CNN1d's bottleneck
    (6, 5, 3, 1, 1, False),    # ResNet1d's basic block
    (5, 6, 1, 1, 0, False),    # ResNet1d's bottleneck 1x1s
    (1, 4, 1, 1, 0, True),     # fan-in 1: the outer-product branch of batched_affine
    (3, 4, 5, 2, 2, False),    # ResNet1d's stem
    (8, 3, 3, 2, 1, True),     # narrowing with stride 2: the taps path (out x stride < channels)
    (7, 2, 5, 1, 2, False),    # ResNet1d's reduce at w = 2, with kernel 5: the taps path
    (4, 3, 1, 2, 0, True),     # a strided 1x1 convolution: windows of width 1
    (6, 2, 3, 1, 2, True),     # padding wider than the kernel's reach: outputs that see only padding (taps path)
    (2, 5, 2, 3, 1, False),    # stride larger than the kernel: input positions no window reads (windows path)
])
@pytest.mark.parametrize("shared", [True, False])
def test_stacked_conv1d_forward_and_backward_within_the_rounding_bound(channels, out, k, stride, padding, bias,
                                                                        shared):
    """A convolution output is a dot product over fan_in = C k taps (plus the bias): forward within
    2 gamma(C k + 1) of the |W| * |x| convolution (+ |b|). Backward with a fixed upstream gradient g: a weight-
    gradient entry sums N x L_out products of g and the (padded) input, a bias-gradient entry N x L_out values of
    g, an input-gradient entry at most out x k products of g and W (each input position is in at most k windows,
    and adding up the windows' contributions is part of that sum), R times as many with an input shared by the
    replicates. The |.| versions are computed in float64 with torch's own convolution gradients.

    The bounds hold for both ways ``experiments.layers`` computes a stacked convolution, because each sums exactly
    these terms, only grouped differently (and a bound for a sum of n terms holds for any order, Higham §3.1):
    the windows path sums each output's C k products in one dot product, and adds an input position's window
    contributions after each was summed over the output channels; the taps path (a narrowing layer) sums each
    tap's C products, then the k taps, and its gradient sums run over every input position, where the positions
    that feed no output contribute exact zeros (adding an exact zero rounds nothing)."""
    length = 40
    solos = solo_modules(lambda: Conv1d(channels, out, k, stride=stride, padding=padding, bias=bias))
    state = {kk: leaf(v) for kk, v in stacked_state(solos).items()}
    torch.manual_seed(8)
    x = torch.randn((N, channels, length) if shared else (R, N, channels, length)) + 0.3
    l_out = (length + 2 * padding - k) // stride + 1
    g = torch.randn(R, N, out, l_out)
    xs = leaf(x)
    y = functional_call(solos[0], state, (xs,))
    assert y.shape == (R, N, out, l_out)
    (y * g).sum().backward()
    xl = leaf(x)
    ys = torch.stack([m(xl if shared else xl[r]) for r, m in enumerate(solos)])
    (ys * g).sum().backward()

    ax, ag = x.double().abs(), g.double().abs()
    fan_in = channels * k
    terms = fan_in + 1 if bias else fan_in
    input_terms = out * k * (R if shared else 1)
    input_bound = torch.zeros_like(ax)
    for r, m in enumerate(solos):
        W = m.weight.detach().double().abs()
        b = m.bias.detach().double().abs() if bias else None
        xr = ax if shared else ax[r]
        fwd = F.conv1d(xr, W, b, stride=stride, padding=padding)
        within((y[r] - ys[r]).abs(), 2 * gamma(terms) * fwd, f"forward {r}")
        dw = torch.nn.grad.conv1d_weight(xr, W.shape, ag[r], stride=stride, padding=padding)
        within((state["weight"].grad[r] - m.weight.grad).abs(), 2 * gamma(N * l_out) * dw, f"weight grad {r}")
        if bias:
            within((state["bias"].grad[r] - m.bias.grad).abs(), 2 * gamma(N * l_out) * ag[r].sum((0, 2)),
                   f"bias grad {r}")
        dx = torch.nn.grad.conv1d_input(xr.shape, W, ag[r], stride=stride, padding=padding)
        if shared:
            input_bound += dx
        else:
            input_bound[r] = dx
    within((xs.grad - xl.grad).abs(), 2 * gamma(input_terms) * input_bound, "input grad")
    assert not torch.equal(y[0], y[1])


def batchnorm_bounds(x: torch.Tensor, bn: nn.BatchNorm1d, rm: torch.Tensor,
                     rv: torch.Tensor) -> dict[str, torch.Tensor]:
    """Allowed |stacked - solo| for one replicate's train-mode batch norm (input ``x`` (N, C) or (N, C, L), the
    module's affine parameters, its running statistics ``rm``, ``rv`` before the pass), in float64.

    Per channel, over n = N (x L) values. Each path's batch mean is within dm = gamma(n) mean|x| of the exact one
    (a sum of n terms, Higham §3.1). Its biased variance is within dv = 2 gamma(n + 3) mean(x^2) + 2 dm^2 of the
    exact one whatever the algorithm: the two-pass sum of (x - mean)^2 (n positive terms, each rounded three
    times) is within gamma(n + 3) (var + dm^2) + dm^2, and the one-pass mean(x^2) - mean^2 within about
    2 gamma(n + 2) mean(x^2); var <= mean(x^2). Then s = 1/sqrt(var + eps) moves by at most
    ds = (s(var - dv) - s(var)) (s is decreasing and convex). The elementwise normalisation
    (x - m) s w + b, or the native kernel's x a + (b - m a), a = w s, rounds at most 7 times per value
    (var + eps, the root and its reciprocal, the products and sums): gamma(7) ((|x| + |m|) s |w| + |b|).
    Each path deviates from the exact result by those amounts; two paths by twice as much. Running statistics:
    (1 - momentum) r + momentum * batch statistic (the variance's unbiased, times n / (n - 1)), a few roundings
    (gamma(5)) on top of momentum times the statistic's own deviation.
    """
    dims = (0,) if x.dim() == 2 else (0, 2)
    view = (1, -1) if x.dim() == 2 else (1, -1, 1)
    x = x.double()
    n = x.numel() // x.shape[1]
    mean, var = x.mean(dims), x.var(dims, unbiased=False)
    dm = gamma(n) * x.abs().mean(dims)
    dv = 2 * gamma(n + 3) * x.square().mean(dims) + 2 * dm.square()
    s = (var + bn.eps).rsqrt()
    ds = (var - dv + bn.eps).clamp_min(bn.eps).rsqrt() - s
    w, b = bn.weight.detach().double().abs().view(view), bn.bias.detach().double().abs().view(view)
    sv, dsv, mv, dmv = s.view(view), ds.view(view), mean.view(view), dm.view(view)
    out = 2 * (w * (sv * dmv + ((x - mv).abs() + dmv) * dsv)
               + gamma(7) * ((x.abs() + mv.abs() + dmv) * (sv + dsv) * w + b))
    mo, unbiased = bn.momentum, n / (n - 1)
    running_mean = 2 * (mo * dm + gamma(5) * ((1 - mo) * rm.double().abs() + mo * (mean.abs() + dm)))
    running_var = 2 * (mo * unbiased * dv + gamma(5) * ((1 - mo) * rv.double().abs() + mo * unbiased * (var + dv)))
    return {"out": out, "running_mean": running_mean, "running_var": running_var}


def eval_bound(x: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """Eval mode is elementwise: (x - rm) s w + b, s = 1/sqrt(rv + eps), at most 7 roundings per value in either
    path (see ``batchnorm_bounds``): 2 gamma(7) ((|x| + |rm|) s |w| + |b|)."""
    view = (1, -1) if x.dim() == 2 else (1, -1, 1)
    s = (bn.running_var.double() + bn.eps).rsqrt().view(view)
    w, b = bn.weight.detach().double().abs().view(view), bn.bias.detach().double().abs().view(view)
    return 2 * gamma(7) * ((x.double().abs() + bn.running_mean.double().abs().view(view)) * s * w + b)


@pytest.mark.parametrize("length", [None, 13])
def test_stacked_batchnorm_normalises_and_tracks_each_replicate_on_its_own(length):
    """Train mode: each replicate's output and running mean and variance (after the pass) are within the bounds
    of ``batchnorm_bounds`` of its solo module's, and its batch count is the solo one; the replicates' statistics
    differ (each saw its own inputs). Eval mode: outputs within ``eval_bound`` of the solo ones, and the running
    statistics are not touched (bit for bit)."""
    c = 6

    def build():
        bn = BatchNorm1d(c)
        with torch.no_grad():  # non-trivial affine parameters and statistics, different per replicate
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
            bn.running_mean.uniform_(-1.0, 1.0)
            bn.running_var.uniform_(0.5, 2.0)
        return bn

    solos = solo_modules(build)
    state = stacked_state(solos)
    before = {k: v.clone() for k, v in state.items()}
    torch.manual_seed(9)
    shape = (R, N, c) if length is None else (R, N, c, length)
    x = torch.randn(shape) * 3 + torch.arange(R).view(R, *[1] * (len(shape) - 1)) + 0.5

    template = solos[0]
    template.train()
    y = functional_call(template, state, (x,))
    assert y.shape == x.shape
    for r, m in enumerate(solos):
        rm, rv = m.running_mean.clone(), m.running_var.clone()
        m.train()
        ys = m(x[r])
        bounds = batchnorm_bounds(x[r], m, rm, rv)
        within((y[r] - ys).abs(), bounds["out"], f"train output {r}")
        within((state["running_mean"][r] - m.running_mean).abs(), bounds["running_mean"], f"running_mean {r}")
        within((state["running_var"][r] - m.running_var).abs(), bounds["running_var"], f"running_var {r}")
        assert state["num_batches_tracked"][r] == m.num_batches_tracked == 1
        # The pass moved the statistics, by far more than the bound: a replicate mix-up could not hide.
        assert (state["running_mean"][r] - before["running_mean"][r]).abs().max() > 100 * bounds["running_mean"].max()
    assert not torch.equal(state["running_mean"][0], state["running_mean"][1])

    template.eval()
    kept = {k: v.clone() for k, v in state.items()}
    y = functional_call(template, state, (x,))
    for r, m in enumerate(solos):
        m.eval()
        within((y[r] - m(x[r])).abs(), eval_bound(x[r], m), f"eval output {r}")
    for name, t in kept.items():
        assert torch.equal(state[name], t), name


def test_stacked_batchnorm_refuses_a_cumulative_average():
    bn = BatchNorm1d(3, momentum=None)
    state = {k: torch.stack([v, v]) for k, v in bn.state_dict().items()}
    with pytest.raises(ValueError, match="momentum"):
        functional_call(bn, state, (torch.randn(2, 4, 3),))


# ---------------------------------------------------------------------------------------------------------
# Ensemble(mode="stack") accepts only these layers


class PlainHead(Replica):
    weight_layers = ("hidden", "head")

    def __init__(self) -> None:
        super().__init__()
        self.hidden = Linear(4, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.hidden(x))


class PlainNorm(Replica):
    weight_layers = ("hidden",)

    def __init__(self) -> None:
        super().__init__()
        self.hidden = Conv1d(1, 3, 3)
        self.norm = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.norm(self.hidden(x))


@pytest.mark.parametrize(("cls", "named"), [(PlainHead, r"head \(Linear\)"), (PlainNorm, r"norm \(BatchNorm1d\)")])
def test_stack_mode_refuses_torch_nn_layers_by_name(cls, named):
    """A plain nn layer would silently see stacked (R, ...) weights it cannot use: refused, naming the layer."""
    with pytest.raises(ValueError, match=rf"needs layers from experiments.layers; {cls.__name__} has {named}"):
        Ensemble(cls, SEEDS, "stack")
    # The other modes run such a module as it is.
    model = Ensemble(PlainHead, SEEDS, "loop")
    assert model(torch.randn(5, 4)).shape == (R, 5, 2)


def test_stack_mode_builds_replicates_from_layers():
    class Both(Replica):
        weight_layers = ("hidden", "head")

        def __init__(self) -> None:
            super().__init__()
            self.hidden, self.norm, self.head = Conv1d(1, 3, 3), BatchNorm1d(3), Linear(3 * 8, 2)

        def forward(self, x):
            return self.head(F.relu(self.norm(self.hidden(x))).flatten(-2))

    model = Ensemble(Both, SEEDS, "stack")
    assert model(torch.randn(5, 1, 10)).shape == (R, 5, 2)
    assert model.state_tensors()["norm.running_mean"].shape == (R, 3)
    assert model.weights["hidden"].shape == (R, 3, 1, 3)


# ---------------------------------------------------------------------------------------------------------
# The stacked layout and the training step


def test_stacked_signals_stay_replicate_channel_major_through_a_block():
    """Stacked Conv1d and BatchNorm1d return (R, N, C, L) as views of contiguous (R, C, N, L) tensors, elementwise
    functions keep that, and a stacked Linear returns (R, N, out) as a view of (R, out, N): the layout in which
    the next layer needs no copy (experiments.layers). The values are checked against solo modules above."""
    class Block(Replica):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm, self.head = Conv1d(1, 4, 5, stride=2, padding=2, bias=False), BatchNorm1d(4), \
                Linear(4 * 5, 3)

        def forward(self, x):
            h = F.relu(self.norm(self.conv(x.unsqueeze(-2))))
            self.seen = h
            return self.head(h.flatten(-2))

    model = Ensemble(Block, SEEDS, "stack")
    out = model(torch.randn(R, N, 10))
    h = model.template.seen
    assert h.shape == (R, N, 4, 5) and h.transpose(1, 2).is_contiguous()
    assert out.shape == (R, N, 3) and out.transpose(1, 2).is_contiguous()


class _Classify:
    """Per-replicate mean cross-entropy with (R, B) labels for stacked batches (experiments.tasks' contract)."""

    @staticmethod
    def loss(out: torch.Tensor, target: torch.Tensor, stacked: bool = False) -> torch.Tensor:
        r, n, classes = out.shape
        labels = target.reshape(-1) if stacked else target.repeat(r)
        return F.cross_entropy(out.reshape(-1, classes), labels, reduction="none").view(r, n).mean(dim=1)


class SmallNet(Replica):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm, self.head = Conv1d(1, 4, 3, padding=1, bias=False), BatchNorm1d(4), Linear(4 * 6, 3)

    def forward(self, x):
        return self.head(F.relu(self.norm(self.conv(x.unsqueeze(-2)))).flatten(-2))


@pytest.mark.parametrize("mode", ["stack", "loop"])
def test_make_step_is_the_plain_step_bit_for_bit(mode):
    """experiments.step.make_step against the step experiments.train takes (zero_grad, forward, summed loss,
    backward, Adam): the same losses, parameters and BatchNorm statistics after a few steps, bit for bit (the same
    operations on the same tensors), per-replicate and shared batches; and it follows eval mode and a model whose
    tensors were replaced (``.to``)."""
    from experiments.step import make_step
    from experiments.train import make_optimizer

    torch.manual_seed(11)
    xs, ys = torch.randn(4, R, N, 6), torch.randint(0, 3, (4, R, N))
    models = [Ensemble(SmallNet, SEEDS, mode) for _ in range(2)]
    opts = [make_optimizer(m.parameters_in_source_order(), 1e-2, R) for m in models]

    def plain(xb, yb, stacked):
        opts[0].zero_grad(set_to_none=True)
        losses = _Classify.loss(models[0](xb, stacked=True) if stacked else models[0](xb), yb, stacked)
        losses.sum().backward()
        opts[0].step()
        return losses.detach()

    step = make_step(models[1], _Classify(), opts[1])
    for i in range(4):
        stacked = i != 2
        xb, yb = (xs[i], ys[i]) if stacked else (xs[i, 0], ys[i, 0])
        assert torch.equal(plain(xb, yb, stacked), step(xb, yb, stacked))
    for (name, a), b in zip(models[0].state_tensors().items(), models[1].state_tensors().values(), strict=True):
        assert torch.equal(a, b), name
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:  # .to() then replaces the parameter objects: the bound module must run on the new ones
        models[1].to(torch.float64)
        assert step.forward(xs[0].double(), True).dtype == torch.float64
        models[1].to(torch.float32)
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(False)
    step = make_step(models[1], _Classify(), make_optimizer(models[1].parameters_in_source_order(), 0.0, R))
    kept = {k: v.clone() for k, v in models[1].state_tensors().items()}
    models[1].eval()  # the step follows the model's mode: BatchNorm on its running statistics, none updated
    with torch.no_grad():
        expected = _Classify.loss(models[1](xs[0], stacked=True), ys[0], True)
    assert torch.equal(step(xs[0], ys[0], True), expected)  # lr 0: the weights stay too
    for name, t in models[1].state_tensors().items():
        assert torch.equal(t, kept[name]), name


def test_stacked_average_pool_is_the_mean_within_the_rounding_bound():
    """experiments.models.common.average_pool: one replicate's (N, C, L) is ``mean(-1)`` over each run, bit for bit;
    stacked, each run's sum of L/groups terms (in some order) and one division, so within 2 gamma(L/groups + 1)
    of mean's |values| (Higham §3.1: a sum of n terms, then one rounding for the division), forward; the gradient
    of a mean is the upstream gradient divided by the run's length, one rounding (the ones' products are exact)."""
    from experiments.models.common import average_pool

    torch.manual_seed(12)
    h = torch.randn(R, N, 6, 10).transpose(1, 2).contiguous().transpose(1, 2).requires_grad_(True)  # (R, C, N, L)
    solo = average_pool(h[0].detach(), 2)
    assert torch.equal(solo, h[0].detach().unflatten(-1, (2, 5)).mean(-1))
    stacked = average_pool(h, 2)
    expected = h.detach().unflatten(-1, (2, 5)).mean(-1)
    magnitude = h.detach().double().abs().unflatten(-1, (2, 5)).mean(-1)
    within((stacked - expected).abs(), 2 * gamma(6) * magnitude, "pooled")
    g = torch.randn_like(stacked)
    (grad,) = torch.autograd.grad((stacked * g).sum(), h)
    reference = (g / 5).unsqueeze(-1).expand(*g.shape, 5).flatten(-2)
    within((grad - reference).abs(), 2 * gamma(1) * reference.double().abs(), "gradient")
