"""Float32 error bounds for tests that compare one quantity computed along two different code paths.

Two computations of the same maths with different kernels (a batched matmul against a single one, an AVX-512
reduction against an AVX2 or scalar one) agree only up to rounding, and which way each rounding goes depends
on the CPU. So every tolerance of such a comparison is derived here, from standard worst-case bounds that hold
for *any* order of summation, never fitted to the differences one machine happens to show (a tolerance fitted
on an AVX-512 machine failed on an AVX2 one). The bounds (Higham, *Accuracy and Stability of Numerical
Algorithms*, 2nd ed., 2002):

- float32 unit roundoff ``u = 2**-24``;
- a sum of k terms, in any order: ``|computed - exact| <= gamma(k) * sum|terms|``, ``gamma(k) = k u / (1 - k u)``
  (Higham §3.1), so two orderings differ by at most twice that;
- a matrix-vector product is backward stable: the computed ``y = (W + dW) x`` with ``|dW| <= gamma(k) |W|``,
  k the fan-in (Higham §3.5): a forward pass with rounding is an exact pass with slightly perturbed weights.

A bound with a margin of 10-1000x over what a machine shows is the point, not a flaw: a real bug (replicates
mixed up, a gradient scaled wrongly, a seed off by one) moves these quantities by 1e-3 to 1, far beyond any
bound here. Bitwise equality is asserted elsewhere only where it holds by construction: the same operations
on the same inputs in the same process (a rerun, a solo run against the plain source code).
"""

from __future__ import annotations

import math

import torch

from experiments.metrics import min_pair_l1, singular_values, spectral_metrics

U32 = 2.0**-24
ADAM_BETAS = (0.9, 0.999)


def gamma(k: int | float, u: float = U32) -> float:
    """Higham's gamma_k: the relative error bound of a k-term float sum (or dot product) in any order."""
    ku = k * u
    if ku >= 1:
        raise ValueError(f"gamma({k}) is undefined in this precision")
    return ku / (1 - ku)


def adam_step_bound(lr: float, betas: tuple[float, float] = ADAM_BETAS) -> float:
    """Largest |update| of one parameter in one Adam step: lr (1-beta1)/sqrt(1-beta2) when that exceeds lr,
    else lr (Kingma & Ba 2015, §2.1). With the defaults, 3.16 lr."""
    b1, b2 = betas
    return lr * max(1.0, (1 - b1) / math.sqrt(1 - b2))


def adam_weight_drift(epochs: int, lr: float, terms: int, samples: int | None = None,
                      betas: tuple[float, float] = ADAM_BETAS) -> float:
    """How far one weight of two float32 runs of the same full-batch Adam training can drift apart.

    ``terms``: products summed into one gradient entry (samples for a linear layer; samples x positions for
    a conv weight). Step t: each run's gradient entry is within gamma(terms) * S_t of the exact one, S_t the sum
    of the entry's |terms|, so the two gradients differ by at most 2 gamma S_t. Adam divides the first moment
    by sqrt(v_t), the root of a running mean of squared gradients over the t steps so far; the gradients of a
    fit are largest and sign-coherent at the start (|g_1| = S_1 >= S_t), so sqrt(v_t) >= S_t / sqrt(t) and
    the normalised update differs by at most 2 * 2 gamma sqrt(t) (the first moment and the root of the second
    each contribute one 2 gamma sqrt(t)) times lr. Summed over the steps, with no amplification by the
    dynamics (a hundred steps of size lr ~ 1e-3 on a smooth loss):

        D = 4 gamma(terms) lr sum_{t<=T} sqrt(t).

    ``samples``: pass it for a ReLU model. A sample whose pre-activation at a unit lies within the drift of 0
    can be active in one run and not in the other for a step: that changes one row's gradient by that
    sample's share, at most 1/samples of it, and the update by at most 2 adam_step_bound(lr) / samples. One
    such crossing per weight is allowed for, on top of D.
    """
    drift = 4 * gamma(terms) * lr * sum(math.sqrt(t) for t in range(1, epochs + 1))
    if samples is not None:
        drift += 2 * adam_step_bound(lr, betas) / samples
    return drift


def rms(t: torch.Tensor) -> float:
    return t.double().square().mean().sqrt().item()


def sqrt_loss_tolerance(grad_norm: float, loss: float, param_abs_norm: float, n_params: int, drift: float,
                        fan_in: int, samples: int) -> float:
    """Allowed |sqrt(L_a) - sqrt(L_b)| between two runs whose parameters differ by at most ``drift`` each.

    First order, sqrt(L) changes by |grad sqrt(L)| |d theta| = |grad L| / (2 sqrt(L)) |d theta|. The parameter
    difference is the drift plus, by backward stability, each run's forward rounding seen as a perturbation
    of up to gamma(fan_in + 1) |theta| (the +1 is the bias addition), i.e. 2 gamma |theta| between the runs:
    |d theta| <= sqrt(n_params) drift + 2 gamma(fan_in + 1) |theta|. The loss's own reduction (a mean of
    ``samples`` squares, and the subtraction of the target) adds gamma(samples + 1) L per run, i.e. at most
    gamma(samples + 1) sqrt(L) on sqrt(L) between the two runs.
    """
    root = math.sqrt(loss)
    dtheta = math.sqrt(n_params) * drift + 2 * gamma(fan_in + 1) * param_abs_norm
    sensitivity = grad_norm / (2 * root) if root > 0 else math.inf
    return sensitivity * dtheta + gamma(samples + 1) * root


def metric_tolerances(W: torch.Tensor, dW: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Allowed |m(W) - m(W + dW)| for every continuous weight metric, both computed by different kernels.

    ``W`` (B, units, fan_in); ``dW`` the difference to the other run's weights (None: the same weights, only
    the metric's own rounding counts). Each bound is the metric's Lipschitz constant times the perturbation,
    plus twice its own float32 rounding:
    - L1 metrics (mean |W_i - W_j| over fan_in): 2 a, a = the largest mean |dW| of a row; rounding of a sum of
      fan_in terms: gamma(fan_in + 2) times the value.
    - |cos| metrics: a unit vector moves by at most 2 |dw| / |w|, so a cosine by 4 rho, rho = the largest
      |dW_i| / |W_i|; rounding: a dot product of unit vectors (gamma(fan_in), Cauchy-Schwarz) and the two
      normalisations (gamma(fan_in + 2) each).
    - spectral metrics: every singular value moves by at most |dW|_2 <= |dW|_F (Weyl), and each run rounds it
      once to float32 (u s_k; the float64 Gram eigen-decomposition behind it is 2^-29 times more exact); the
      metric moves by sum_k |d m / d s_k| times that (first order, by autograd), plus its own float32 rounding,
      a sum over k values: gamma(2k + 4) times the value.
    Integer-valued metrics (``rank90``, ``rank99``) and pair indices are left out: they can flip when a value
    sits exactly at a threshold or two pairs tie, which no continuous bound describes.
    """
    W = W.flatten(2).double()
    dW = torch.zeros_like(W) if dW is None else dW.flatten(2).double()
    _, units, fan_in = W.shape
    out: dict[str, torch.Tensor] = {}
    if units >= 2:
        a = dW.abs().mean(dim=-1).amax(dim=-1)
        rho = (dW.norm(dim=-1) / W.norm(dim=-1)).amax(dim=-1)
        pairs = min_pair_l1(W)
        for name in ("min_pair_l1", "mean_nn_l1"):
            out[name] = 2 * a + 2 * gamma(fan_in + 2) * (pairs[name] + 2 * a)
        for name in ("max_abs_cos", "mean_nn_abs_cos"):
            out[name] = 4 * rho + 2 * (gamma(fan_in) + 2 * gamma(fan_in + 2))
    s = singular_values(W).detach().requires_grad_(True)
    k = s.shape[1]
    moved = dW.flatten(1).norm(dim=-1)[:, None] + 2 * U32 * s.detach()
    for name, value in spectral_metrics(s).items():
        if name in ("rank90", "rank99"):
            continue
        (grad,) = torch.autograd.grad(value.sum(), s, retain_graph=True)
        out[name] = (grad.abs() * moved).sum(dim=-1) + 2 * gamma(2 * k + 4) * value.detach().abs()
    return out
