"""Functional redundancy of a layer's units: can a unit be removed, or made up for by the layer's other units?

The field's definitions (Casper, Boix, D'Amario, Guo, Schrimpf, Vinken, Kreiman, "Frivolous Units: Wider
Networks Are Not Really That Wide", AAAI 2021; code in xboix/frivolous_dnns), measured on held-out data for
every replicate at once:

- *prunable*: replacing the unit's activation by its mean (mean-ablation) barely changes the task loss.
  ``abl_delta_loss_mean`` / ``_max``: the relative increase (L_i - L) / L, mean and max over the layer's units;
  ``prunable_frac``: the share of units whose increase is below ``threshold``; ``abl_top10_share``: the share of
  the layer's total (positive) increase carried by its top 10% of units (at least one unit), how concentrated
  what the layer does is.
- *redundant*: replacing the unit by its least-squares affine prediction from the layer's other units, fitted
  on one half of the evaluation data and applied to the other, barely changes the task loss (the prediction
  could be folded into the next layer's weights). ``comp_delta_loss_mean`` / ``_max``, relative to the
  unablated loss on the same half, and ``redundant_frac`` (the same threshold).
- linear predictability: the held-out R^2 of each unit regressed (affine) on the layer's other units, fitted on
  the first half and scored on the second, so that a layer about as wide as the sample cannot inflate it:
  ``act_r2_others_mean`` / ``_max`` over live units (the mean counts an R^2 below 0, a fit worse than the
  half's own mean, as 0).

Every statistic a replacement uses (the unit's mean, the regression) is fitted on the first half of the
evaluation examples, and every loss is measured on the second half, relative to the unablated loss on that half:
ablation and compensation are compared on the same held-out examples, and neither sees the examples it is
scored on.

Units and samples are the activation metrics' (``experiments.metrics``): conv channels are units and every
position of every example a sample; ablating a channel ablates it at every position; the halves split the
examples, never the positions of one example. A dead unit (constant on the evaluation batch,
``metrics.DEAD_RELATIVE_STD``) is prunable and redundant by construction (its mean is its value): it counts in
the ablation shares and is left out of R^2, which is NaN when fewer than two units are alive, as the
activation metrics leave dead units out.

Every regression comes from one matrix inverse per replicate: with the fit half's standardised activations Z
and C = Z^T Z / n + lambda I, the ridge regression of unit i on all the others has coefficients -P_ij / P_ii,
P = C^-1 (the conditional mean of a Gaussian with covariance C). ``RIDGE`` = 1e-6 on the correlation scale only
keeps C invertible when units are collinear (an exact duplicate then still gets R^2 = 1 - O(1e-12)).

Ablating U units is U forward passes of the layers after the studied one on the evaluation batch: they run as
one batch of variants per chunk of units, every replicate at once, through the replicated model's
``forward_with`` (``experiments.ensemble.Substitution``), never a Python loop over units or replicates per
forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from experiments.metrics import DEAD_RELATIVE_STD

FUNCTIONAL_METRICS = ("abl_delta_loss_mean", "abl_delta_loss_max", "prunable_frac", "abl_top10_share",
                      "comp_delta_loss_mean", "comp_delta_loss_max", "redundant_frac",
                      "act_r2_others_mean", "act_r2_others_max")
# A unit is prunable (redundant) when ablating it (replacing it by its prediction) raises the held-out task loss
# by less than 1% of that loss. Why 1%: a change that size is below the seed-to-seed spread of the held-out loss
# itself (SD over seeds / mean, at the same width), so it could not tell two trained networks apart; how many
# (sweep, width) cells of the results that holds in is computed by analysis.report.threshold_check and stated in
# results/REPORT.md. Well above it (10%) a unit's removal is visible in accuracy. Config key: functional.threshold.
THRESHOLD = 0.01
RIDGE = 1e-6
TOP_SHARE = 0.1
# Elements of one chunk of variant activations (R x variants x samples x the widest per-sample activation).
CHUNK_ELEMENTS = 1 << 23


def fit_examples(n: int) -> int:
    """Examples in the fit half of an evaluation batch of ``n`` (the rest score); at least one in each."""
    return min(max(n // 2, 1), n - 1)


def unit_layout(h: torch.Tensor) -> torch.Tensor:
    """(R, N, C, *positions) or (R, N, U) -> (R, N * positions, units), the activation metrics' layout."""
    if h.dim() > 3:
        return h.movedim(2, -1).reshape(h.shape[0], -1, h.shape[2])
    return h


def native_layout(a: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`unit_layout`: (R, N * positions, units) back to ``like``'s (R, N, C, *positions)."""
    if like.dim() > 3:
        r, n, c, *pos = like.shape
        return a.reshape(r, n, *pos, c).movedim(-1, 2)
    return a


def _spd_inverse(c: torch.Tensor) -> torch.Tensor:
    """Inverse of a batch of symmetric positive definite matrices by Cholesky (the batched LU inverse of the
    pinned MKL fails on large batches of these near-singular matrices). A matrix that rounding left not quite
    positive definite gets 1e-3 more on its diagonal, once."""
    factor, info = torch.linalg.cholesky_ex(c)
    if bool((info > 0).any()):
        eye = torch.eye(c.shape[-1], dtype=c.dtype, device=c.device)
        factor, _ = torch.linalg.cholesky_ex(torch.where((info > 0)[:, None, None], c + 1e-3 * eye, c))
    return torch.cholesky_inverse(factor)


def regression(A_fit: torch.Tensor, A_score: torch.Tensor, live: torch.Tensor,
               ridge: float = RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """Each unit's affine least-squares prediction from the layer's other live units, fitted on ``A_fit``
    (R, S1, U) and applied to ``A_score`` (R, S2, U); ``live`` (R, U) marks the units that may predict.

    Returns the predictions (R, S2, U) (a unit that cannot be fitted, dead or constant on the fit half, is
    predicted by its fit-half mean) and each unit's held-out R^2 (R, U) (NaN for such a unit, or one constant on
    the score half). Float64 throughout.
    """
    A_fit, A_score = A_fit.double(), A_score.double()
    u = A_fit.shape[2]
    mean = A_fit.mean(dim=1, keepdim=True)
    std = A_fit.std(dim=1, correction=0, keepdim=True)
    usable = live & (std.squeeze(1) > DEAD_RELATIVE_STD * mean.squeeze(1).abs())
    scale = torch.where(usable[:, None, :], std, torch.ones_like(std))
    z_fit = torch.where(usable[:, None, :], (A_fit - mean) / scale, torch.zeros_like(A_fit))
    z_score = torch.where(usable[:, None, :], (A_score - mean) / scale, torch.zeros_like(A_score))
    eye = torch.eye(u, dtype=A_fit.dtype, device=A_fit.device)
    pair = usable[:, :, None] & usable[:, None, :]
    # Units that cannot be fitted are decoupled (identity rows and columns): they predict nothing.
    corr = torch.where(pair, z_fit.transpose(1, 2) @ z_fit / A_fit.shape[1], eye) + ridge * eye
    # A model whose activations overflowed (a diverging run) gets NaN predictions, not a failed inverse.
    finite = torch.isfinite(corr).flatten(1).all(dim=1)
    corr = torch.where(finite[:, None, None], corr, eye)
    precision = _spd_inverse(corr)
    coef = -precision / precision.diagonal(dim1=1, dim2=2)[:, :, None]  # row i: unit i's coefficients
    coef = torch.where(pair & ~eye.bool(), coef, torch.zeros_like(coef))
    predicted = mean + scale * (z_score @ coef.transpose(1, 2))
    resid = (A_score - predicted).square().sum(dim=1)
    centred = A_score - A_score.mean(dim=1, keepdim=True)
    total = centred.square().sum(dim=1)
    varies = centred.abs().amax(dim=1) > DEAD_RELATIVE_STD * A_score.abs().amax(dim=1)
    r2 = 1.0 - resid / total.clamp_min(torch.finfo(total.dtype).tiny)
    predicted = torch.where(finite[:, None, None], predicted, torch.full_like(predicted, math.nan))
    return predicted, torch.where(usable & varies & finite[:, None], r2, torch.full_like(r2, math.nan))


def _losses_with_units_replaced(model, x: torch.Tensor, y: torch.Tensor, task, layer: str, h: torch.Tensor,
                                replacement: Callable[[torch.Tensor], torch.Tensor], per_sample: int) -> torch.Tensor:
    """Task loss (R, U) of every replicate with each unit of ``layer`` replaced in turn by ``replacement(units)``
    ((R, K, N, *pos)); ``h`` is the layer's output on ``x`` (R, N, C, *pos). Units go in chunks of
    ``CHUNK_ELEMENTS`` / (R · N · per_sample)."""
    r, n, u = h.shape[0], h.shape[1], h.shape[2]
    at_once = r if getattr(model, "replicates_together", True) else 1  # a loop holds one replicate's variants
    size = max(1, min(u, CHUNK_ELEMENTS // max(at_once * n * per_sample, 1)))
    out = []
    for units in torch.arange(u).split(size):
        k = len(units)
        y_out = model.forward_with(x, layer, replacement(units), units)
        out.append(task.loss(y_out.reshape(r * k, n, *y_out.shape[2:]), y).view(r, k))
    return torch.cat(out, dim=1)


def _relative(loss: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """(L_i - L) / L per replicate and unit; NaN where the unablated loss is 0 (nothing to be relative to)."""
    base = base.double()[:, None]
    return torch.where(base > 0, (loss.double() - base) / base.clamp_min(torch.finfo(base.dtype).tiny),
                       torch.full_like(loss, math.nan, dtype=torch.float64))


def _summaries(delta: torch.Tensor, comp: torch.Tensor, r2: torch.Tensor, live: torch.Tensor,
               threshold: float) -> dict[str, torch.Tensor]:
    u = delta.shape[1]
    nan = torch.full_like(delta[:, 0], math.nan)
    positive = delta.clamp_min(0.0)
    total = positive.sum(dim=1)
    top = positive.topk(max(1, math.ceil(TOP_SHARE * u)), dim=1).values.sum(dim=1)
    scored = torch.isfinite(r2)
    defined = (live.sum(dim=1) >= 2) & scored.any(dim=1)
    return {
        "abl_delta_loss_mean": delta.mean(dim=1),
        "abl_delta_loss_max": delta.amax(dim=1),
        "prunable_frac": (delta < threshold).double().mean(dim=1),
        "abl_top10_share": torch.where(total > 0, top / total.clamp_min(torch.finfo(total.dtype).tiny), nan),
        "comp_delta_loss_mean": comp.mean(dim=1),
        "comp_delta_loss_max": comp.amax(dim=1),
        "redundant_frac": (comp < threshold).double().mean(dim=1),
        # R^2 below 0 (a fit worse on the held-out half than the half's mean) counts as 0: no predictability.
        "act_r2_others_mean": torch.where(defined, torch.nan_to_num(r2).clamp_min(0.0).sum(dim=1)
                                          / scored.sum(dim=1).clamp_min(1), nan),
        "act_r2_others_max": torch.where(defined, r2.masked_fill(~scored, -math.inf).amax(dim=1), nan),
    }


@torch.no_grad()
def functional_metrics(model, x: torch.Tensor, y: torch.Tensor, task, layers: tuple[str, ...],
                       threshold: float = THRESHOLD) -> dict[str, dict[str, torch.Tensor]]:
    """The functional redundancy metrics (module docstring) of each layer in ``layers``: {layer: {metric: (R,)}}.

    ``model`` is a replicated model (``Ensemble``, ``ReplicatedMLP``), evaluated as it is (call it in eval mode);
    ``x``, ``y`` the held-out evaluation inputs and targets, split into the fit half (its first examples) and the
    score half.
    """
    if not layers:
        return {}
    n = x.shape[0]
    n_fit = fit_examples(n)
    x_score, y_score = x[n_fit:], y[n_fit:]
    base = task.loss(model(x_score), y_score)
    native = model.recorded(x)
    # Elements per variant example of one forward pass, for the chunk size: the model's own figure, or four times
    # the widest recorded activation (the layers after a studied one, a residual shortcut, their gradients' absence).
    per_sample = getattr(model, "variant_footprint", None) or max(
        max(h[0, 0].numel() for h in native.values()), x[0].numel(), 1) * 4
    out: dict[str, dict[str, torch.Tensor]] = {}
    for layer in layers:
        h = native[layer]                             # (R, N, C, *pos)
        pos = h.shape[3:]
        A = unit_layout(h)                            # (R, N * positions, U)
        split = n_fit * (A.shape[1] // n)
        A64 = A.double()
        live = A64.std(dim=1, correction=0) > DEAD_RELATIVE_STD * A64.mean(dim=1).abs()
        fit_mean = A64[:, :split].mean(dim=1).to(h.dtype)
        n_score = n - n_fit

        def by_mean(units: torch.Tensor, m=fit_mean, pos=pos, n_score=n_score) -> torch.Tensor:
            vals = m[:, units]
            return vals.view(*vals.shape, 1, *([1] * len(pos))).expand(*vals.shape, n_score, *pos)

        predicted, r2 = regression(A[:, :split], A[:, split:], live)
        pred_native = native_layout(predicted.to(h.dtype), h[:, n_fit:])

        def by_prediction(units: torch.Tensor, p=pred_native) -> torch.Tensor:
            return p[:, :, units].movedim(2, 1)

        h_score = h[:, n_fit:]
        delta = _relative(_losses_with_units_replaced(model, x_score, y_score, task, layer, h_score, by_mean,
                                                      per_sample), base)
        comp = _relative(_losses_with_units_replaced(model, x_score, y_score, task, layer, h_score, by_prediction,
                                                     per_sample), base)
        out[layer] = _summaries(delta, comp, r2, live, threshold)
    return out
