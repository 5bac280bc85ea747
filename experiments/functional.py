"""Functional redundancy of a layer's units: can a unit be removed, or made up for by the layer's other units?

The field's definitions (Casper, Boix, D'Amario, Guo, Schrimpf, Vinken, Kreiman, "Frivolous Units: Wider
Networks Are Not Really That Wide", AAAI 2021; code in xboix/frivolous_dnns), for every replicate at once.

**Data.** Every statistic a replacement uses (each unit's mean, the regressions) is fitted on *training* examples
(``fit_x``: all of them, or the first ``functional.fit_examples``), and every loss is measured on the *whole
held-out set* (``score_x``: MNIST-1D's 1,000 test signals, the digits evaluation split). The integer task (the
source's identity on 0..99) has no held-out data: its 100 training inputs are its whole input domain, so its
statistics are fitted and scored on them (its units are affine in one scalar, so the regression is exact anyway).
Conv channels are units and every position of every example a sample; ablating a channel ablates it at every
position.

**Single-unit measures** (relative increase of the held-out task loss, (L_i − L) / L):

- *prunable*: unit i replaced by its training mean (mean-ablation): ``abl_delta_loss_mean`` / ``_max``; the share
  of units whose increase is below each threshold of ``functional.thresholds``, ``prunable_frac@<t>`` (all units)
  and ``prunable_live_frac@<t>`` (live units only; a dead unit, constant on the training examples, is its own mean
  and so always "prunable": ``fit_dead_frac`` reports how many there are);
- *redundant*: unit i replaced by its ridge prediction from the layer's other units: ``comp_delta_loss_*``,
  ``redundant_frac@<t>``, ``redundant_live_frac@<t>``. Mean-ablation is this with zero coefficients, so a
  well-fitted compensation is never worse than it beyond noise;
- threshold-free: ``abl_eff_frac``, the effective number of units that matter ÷ w: the exponential of the entropy
  of p_i = max(Δ_i, 0) / Σ max(Δ_j, 0), the distribution of single-unit ablation effects (w when every unit
  matters equally, 1 when one unit carries everything); defined at initialisation too. ``abl_top10_share``: the
  share of the total carried by the top 10% of units;
- classifiers, an absolute criterion that does not scale with the loss: ``acc_prunable_frac`` /
  ``acc_redundant_frac``, the share of units whose ablation (compensation) costs less than ``functional.acc_drop``
  of test accuracy (a fraction of the test set: 0.005 = 5 of MNIST-1D's 1,000 test signals).

**Linear predictability**: the held-out R² of each live unit from the others, ``act_r2_others_mean`` (an R² below
0 counts as 0) and ``_max``. The ridge is chosen per replicate, layer and unit by generalised cross-validation
(``ridge_log10``: the mean over units of log10 of the chosen λ on the correlation scale), from one eigendecomposition
of the training correlation matrix that serves every unit and every λ of ``RIDGE_GRID`` (:func:`ridge_gcv`).

**The anchor's protocol** (their ``get_robustness.py`` and ``plot_ablation_thresholds.ipynb``): ``functional.orders``
random orders of the layer's units (K; they use 3 per network); for each fraction f of ``functional.fractions``
(theirs and the default: 0, 1/6, …, 1) the first int(f·w) units of an order are *zeroed* together (their activation
knockout is an unscaled dropout mask: zeroing, not mean-ablation), and the test predictions are compared with the
unablated network's: ``anchor_agreement@<f>`` (mean over orders) is the share of test examples whose predicted class
is unchanged; for the identity tasks (autoencoders, the conv and source identity nets), which have no classes, it is
the share of the unablated outputs' variance that the ablated outputs still reproduce, 1 − Σ(ŷ − y)² / Σ(y − ȳ)² (y
the unablated outputs), 1 when nothing changes. Per order, the fraction where agreement first falls below
``functional.agreement`` (0.8), linearly interpolated between the ablated fractions actually reached (int(f·w)/w; they
interpolate on the nominal f, which differs only where f·w is not whole), is that order's prunable fraction (1 when it
never falls below); ``anchor_prunable_frac`` is the mean over orders (they take the maximum over their 3) and
``anchor_prunable_units`` = that × w, the count whose growth per doubling of width they report.

**Joint pruning curve**: units mean-ablated together in the order of their single-unit effect, smallest first, at
``functional.prune_steps`` prefix sizes; ``joint_prunable_frac`` is the largest share whose removal keeps the loss
increase below ``functional.threshold`` (every smaller prefix too), and for classifiers ``joint_acc_prunable_frac``
the same with the accuracy criterion: what a practitioner means by prunable.

**Batched.** Every ablation is a variant of the studied layer's output, and the variants of all units, orders,
fractions and prefixes run as a few large forward passes of every replicate at once (``forward_with`` /
``forward_masked`` of the replicated model; ``experiments.ensemble.Substitution`` and, where the family names the
layer's consumer, ``Injection``, which adds each single-unit change at the next linear layer as a one-channel
term), never a Python loop over units, subsets or replicates per pass.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch

from experiments.metrics import DEAD_RELATIVE_STD

# Summary metrics whatever the configured grids; the grid metrics (``prunable_frac@0.01``, ``anchor_agreement@0.5``,
# …) are named by :func:`metric_names`.
BASE_METRICS = ("abl_delta_loss_mean", "abl_delta_loss_max", "abl_top10_share", "abl_eff_frac",
                "comp_delta_loss_mean", "comp_delta_loss_max", "act_r2_others_mean", "act_r2_others_max",
                "ridge_log10", "fit_dead_frac", "joint_prunable_frac", "anchor_prunable_frac",
                "anchor_prunable_units")
CLASSIFIER_METRICS = ("acc_prunable_frac", "acc_redundant_frac", "joint_acc_prunable_frac")
# The grid of relative loss increases below which a unit counts as prunable / redundant. Why these: the old single
# cut (1%) sits below the seed-to-seed spread of the held-out loss in most (sweep, width) cells, and a fixed relative
# cut favours wide layers, whose units each carry a smaller share of a constant total; a grid over two decades shows
# where a verdict depends on the cut (figure: share vs threshold per width).
THRESHOLDS = (0.001, 0.003, 0.01, 0.03, 0.1)
THRESHOLD = 0.01        # the joint pruning curve's loss criterion (functional.threshold)
ACC_DROP = 0.005        # classifiers' absolute criterion: half a point of test accuracy (functional.acc_drop)
AGREEMENT = 0.8         # the anchor's criterion (functional.agreement)
FRACTIONS = tuple(i / 6 for i in range(7))  # the anchor's own grid, linspace(0, 1, 7) (functional.fractions)
ORDERS = 10             # random orders per layer (functional.orders)
PRUNE_STEPS = 16        # prefix sizes of the joint pruning curve (functional.prune_steps)
# λ on the correlation scale (every unit standardised on the training examples): from a ridge that only keeps an
# exact duplicate invertible (1e-6) to one that shrinks every coefficient to nearly 0 (100).
RIDGE_GRID = tuple(10.0 ** (e / 2) for e in range(-12, 5))
TOP_SHARE = 0.1
# Elements of one chunk of variant activations (replicates at once x variants x samples x the widest per-sample
# activation): 256 MB of float32, a few times that at the peak of a pass.
CHUNK_ELEMENTS = 1 << 26


def grid_name(metric: str, value: float) -> str:
    """``prunable_frac@0.01``: a metric at one point of a configured grid."""
    return f"{metric}@{value:g}"


@dataclass(frozen=True)
class Protocol:
    """The configurable parts of the functional metrics (``cfg.functional``; defaults: the module constants)."""

    thresholds: tuple[float, ...] = THRESHOLDS
    threshold: float = THRESHOLD
    acc_drop: float = ACC_DROP
    agreement: float = AGREEMENT
    fractions: tuple[float, ...] = FRACTIONS
    orders: int = ORDERS
    prune_steps: int = PRUNE_STEPS

    @classmethod
    def from_config(cls, fc) -> Protocol:
        return cls(tuple(float(t) for t in fc.thresholds), float(fc.threshold), float(fc.acc_drop),
                   float(fc.agreement), tuple(float(f) for f in fc.fractions), int(fc.orders), int(fc.prune_steps))


def metric_names(protocol: Protocol = Protocol(), classify: bool = True) -> tuple[str, ...]:
    """Every functional metric a layer gets under ``protocol`` (the classifier-only ones when ``classify``)."""
    grid = [grid_name(f"{kind}_{live}frac", t) for t in protocol.thresholds
            for kind in ("prunable", "redundant") for live in ("", "live_")]
    anchor = [grid_name("anchor_agreement", f) for f in protocol.fractions if f > 0]
    return (*BASE_METRICS, *grid, *anchor, *(CLASSIFIER_METRICS if classify else ()))


FUNCTIONAL_METRICS = metric_names()


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


# ---------------------------------------------------------------------------------------------------------
# The regression of each unit on the others: ridge, λ by generalised cross-validation


@dataclass
class FitStatistics:
    """Per replicate and unit, from the training examples (float64): mean, SD, which units can be regressed
    (live and not constant), and the correlation matrix of those (identity rows and columns for the others)."""

    mean: torch.Tensor     # (R, U)
    std: torch.Tensor      # (R, U), 1 where not usable
    usable: torch.Tensor   # (R, U) bool
    corr: torch.Tensor     # (R, U, U)
    n: int                 # samples (examples x positions)


def fit_statistics(A: torch.Tensor) -> FitStatistics:
    """Means, SDs and the correlation matrix of ``A`` (R, S, U) in float64, two passes over chunks of samples (so a
    conv layer's S = examples x positions need not be converted to float64 at once)."""
    r, s, u = A.shape
    step = max(1, (1 << 22) // max(r * u, 1))
    total = torch.zeros(r, u, dtype=torch.float64, device=A.device)
    for start in range(0, s, step):
        total += A[:, start:start + step].double().sum(dim=1)
    mean = total / s
    gram = torch.zeros(r, u, u, dtype=torch.float64, device=A.device)
    for start in range(0, s, step):
        c = A[:, start:start + step].double() - mean[:, None, :]
        gram += c.transpose(1, 2) @ c
    var = gram.diagonal(dim1=1, dim2=2) / s
    std = var.clamp_min(0).sqrt()
    usable = std > DEAD_RELATIVE_STD * mean.abs()
    scale = torch.where(usable, std, torch.ones_like(std))
    eye = torch.eye(u, dtype=torch.float64, device=A.device)
    pair = usable[:, :, None] & usable[:, None, :]
    corr = torch.where(pair, gram / s / scale[:, :, None] / scale[:, None, :], eye)
    return FitStatistics(mean, scale, usable, corr, s)


def ridge_gcv(stats: FitStatistics, grid: tuple[float, ...] = RIDGE_GRID) -> tuple[torch.Tensor, torch.Tensor]:
    """Each usable unit's ridge regression on the layer's other usable units (standardised), its λ chosen by
    generalised cross-validation; returns the coefficients B (R, U, U) (row i: unit i's coefficients, zero diagonal
    and zero for unusable units) and the chosen λ per unit (R, U) (NaN for a unit that cannot be regressed).

    With C the training correlation matrix and P(λ) = (C + λI)⁻¹, the ridge coefficients of unit i on the others are
    −P_ij / P_ii (the block inverse; the λ on unit i's own diagonal does not enter). From one eigendecomposition
    C = V diag(e) Vᵀ per replicate, for every unit and every λ at once (O(U²) per λ):

    - residual sum of squares / n = (P C P)_ii / P_ii²  = Σ_k V_ik² e_k/(e_k+λ)² / (Σ_k V_ik²/(e_k+λ))²;
    - effective degrees of freedom of the fit without unit i: (U − 1) − λ tr((C_{−i} + λI)⁻¹), with
      tr((C_{−i} + λI)⁻¹) = tr P − (P²)_ii / P_ii (the same block inverse), less 1/(1+λ) per unusable unit (an
      identity row that is in the matrix but predicts nothing);
    - GCV_i(λ) = (RSS_i / n) / (1 − (df_i + 1) / n)², one more degree of freedom for the centring.

    Each unit takes the λ of the grid that minimises its own GCV: one λ for the whole layer would let many
    unpredictable units (which want a large λ) over-shrink the few predictable ones (a unit that is a linear function
    of two others among 255 independent ones got R² 0.17 with a shared λ). The coefficients of all units at their
    own λ are then one more product, (V diag(1/(e + λ_i)))_i· Vᵀ. A replicate whose statistics are not finite (a
    diverged run) gets zero coefficients and λ NaN.
    """
    corr, usable, n = stats.corr, stats.usable, stats.n
    u = corr.shape[1]
    finite = torch.isfinite(corr).flatten(1).all(dim=1)
    eye = torch.eye(u, dtype=corr.dtype, device=corr.device)
    corr = torch.where(finite[:, None, None], corr, eye)
    e, V = torch.linalg.eigh(corr)
    e = e.clamp_min(0.0)
    V2 = V.square()                                                        # (R, U, K)
    lam = torch.tensor(grid, dtype=corr.dtype, device=corr.device)         # (L,)
    d = 1.0 / (e[:, :, None] + lam)                                       # (R, K, L)
    p_ii = V2 @ d                                                          # (R, U, L)
    p2_ii = V2 @ d.square()
    pcp_ii = V2 @ (e[:, :, None] * d.square())
    unusable = (~usable).sum(dim=1).to(corr.dtype)                         # (R,)
    tr_minus = d.sum(dim=1)[:, None, :] - p2_ii / p_ii                     # (R, U, L)
    df = (u - 1) - lam * tr_minus - unusable[:, None, None] / (1 + lam)
    rss = pcp_ii / p_ii.square()
    denom = (1 - (df + 1) / n).clamp_min(1e-12)
    chosen = lam[(rss / denom.square()).argmin(dim=2)]                    # (R, U)
    rows = (V / (e[:, None, :] + chosen[:, :, None])) @ V.transpose(1, 2)  # row i: P(λ_i)'s row i
    B = -rows / rows.diagonal(dim1=1, dim2=2)[:, :, None]
    pair = usable[:, :, None] & usable[:, None, :] & ~eye.bool()
    B = torch.where(pair & finite[:, None, None], B, torch.zeros_like(B))
    return B, torch.where(usable & finite[:, None], chosen, torch.full_like(chosen, math.nan))


def predict_units(A: torch.Tensor, stats: FitStatistics, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each unit's prediction from the others on ``A`` (R, S, U) (a unit that cannot be regressed is predicted by its
    training mean) and its held-out R² (R, U) against ``A``'s own mean (NaN for a unit that cannot be regressed or
    is constant on ``A``). Float64."""
    A = A.double()
    z = torch.where(stats.usable[:, None, :], (A - stats.mean[:, None, :]) / stats.std[:, None, :],
                    torch.zeros_like(A))
    predicted = stats.mean[:, None, :] + stats.std[:, None, :] * (z @ B.transpose(1, 2))
    resid = (A - predicted).square().sum(dim=1)
    centred = A - A.mean(dim=1, keepdim=True)
    total = centred.square().sum(dim=1)
    varies = centred.abs().amax(dim=1) > DEAD_RELATIVE_STD * A.abs().amax(dim=1)
    r2 = 1.0 - resid / total.clamp_min(torch.finfo(total.dtype).tiny)
    finite = torch.isfinite(predicted).flatten(1).all(dim=1)
    return predicted, torch.where(stats.usable & varies & finite[:, None], r2, torch.full_like(r2, math.nan))


def regression(A_fit: torch.Tensor, A_score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit on ``A_fit`` (R, S1, U), predict ``A_score`` (R, S2, U): (predictions, held-out R²), float64."""
    stats = fit_statistics(A_fit)
    B, _ = ridge_gcv(stats)
    return predict_units(A_score, stats, B)


# ---------------------------------------------------------------------------------------------------------
# Variants: forward passes with units replaced, in chunks


class Scorer:
    """Runs batches of variants of one layer through the model and scores each against the unablated network."""

    def __init__(self, model, x: torch.Tensor, y: torch.Tensor, task, layer: str, per_sample: int) -> None:
        self.model, self.x, self.y, self.task, self.layer = model, x, y, task, layer
        self.base_out = model(x)                                      # (R, N, ...)
        self.base = task.variant_scores(self.base_out.unsqueeze(1), y, self.base_out)
        r, n = self.base_out.shape[:2]
        at_once = r if getattr(model, "replicates_together", True) else 1
        self.chunk = max(1, CHUNK_ELEMENTS // max(at_once * n * per_sample, 1))

    def _scores(self, out: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        r, n = self.base_out.shape[:2]
        return self.task.variant_scores(out.reshape(r, k, n, *out.shape[2:]), self.y, self.base_out)

    @staticmethod
    def _cat(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {key: torch.cat([p[key] for p in parts], dim=1) for key in parts[0]}

    def units(self, values_of, u: int) -> dict[str, torch.Tensor]:
        """Each unit replaced in turn by ``values_of(units)`` ((R, K, N, *positions)): scores (R, U)."""
        parts = []
        for units in torch.arange(u).split(self.chunk):
            out = self.model.forward_with(self.x, self.layer, values_of(units), units)
            parts.append(self._scores(out, len(units)))
        return self._cat(parts)

    def masked(self, masks: torch.Tensor, fill: torch.Tensor) -> dict[str, torch.Tensor]:
        """Variant k with the units of ``masks[:, k]`` (R, K, U) set to ``fill`` (R, U): scores (R, K)."""
        parts, cache = [], {}
        for idx in torch.arange(masks.shape[1]).split(self.chunk):
            out = self.model.forward_masked(self.x, self.layer, masks[:, idx], fill, cache=cache)
            parts.append(self._scores(out, len(idx)))
        return self._cat(parts)


def _relative(loss: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """(L_i − L) / L per replicate and variant; NaN where the unablated loss is 0 (nothing to be relative to)."""
    base = base.double()
    return torch.where(base > 0, (loss.double() - base) / base.clamp_min(torch.finfo(base.dtype).tiny),
                       torch.full_like(loss, math.nan, dtype=torch.float64))


def anchor_orders(seeds: list[int], layer: str, units: int, orders: int) -> torch.Tensor:
    """``orders`` random orders of a layer's units per replicate, (R, K, U), each drawn from a generator keyed by the
    replicate's seed and the layer, so that replicate r and a solo run with its seed draw the same orders, at every
    checkpoint."""
    out = torch.empty(len(seeds), orders, units, dtype=torch.long)
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{layer}:anchor".encode()))
        for k in range(orders):
            out[i, k] = torch.randperm(units, generator=g)
    return out


def prefix_masks(order: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """(R, K, U) orders -> (R, K, len(counts), U) masks of the first ``counts[j]`` units of each order."""
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(order.shape[-1]).expand_as(order).contiguous())
    return rank.unsqueeze(-2) < torch.tensor(counts).view(len(counts), 1)


def crossing(x: torch.Tensor, y: torch.Tensor, level: float) -> torch.Tensor:
    """Per curve (last axis), the x where ``y`` first falls from >= ``level`` to below it, linearly interpolated
    between the two points (their ``get_threshold``); x[-1] (everything) where it never falls below."""
    below = y < level
    above_before = torch.cat([torch.ones_like(below[..., :1]), ~below[..., :-1]], dim=-1)
    first = below & above_before
    has = first.any(dim=-1)
    j = first.to(torch.int64).argmax(dim=-1).clamp_min(1)
    x1, x2 = x.expand_as(y).gather(-1, (j - 1)[..., None])[..., 0], x.expand_as(y).gather(-1, j[..., None])[..., 0]
    y1, y2 = y.gather(-1, (j - 1)[..., None])[..., 0], y.gather(-1, j[..., None])[..., 0]
    t = torch.where(y2 != y1, (level - y1) / (y2 - y1), torch.zeros_like(y1))
    return torch.where(has, x1 + t * (x2 - x1), x.expand_as(y)[..., -1])


def largest_prefix(ok: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """(R, J) criterion per prefix, (J,) ascending shares -> the largest share whose prefix and every smaller one
    meet the criterion (0 when the first fails)."""
    kept = torch.cumprod(ok.to(torch.int64), dim=1).bool()
    return torch.where(kept, shares.to(torch.float64), torch.zeros((), dtype=torch.float64)).amax(dim=1)


# ---------------------------------------------------------------------------------------------------------
# The metrics


def _entropy_frac(delta: torch.Tensor) -> torch.Tensor:
    positive = torch.nan_to_num(delta, nan=0.0).clamp_min(0.0)
    total = positive.sum(dim=1, keepdim=True)
    p = positive / total.clamp_min(torch.finfo(positive.dtype).tiny)
    eff = torch.exp(-torch.special.xlogy(p, p).sum(dim=1)) / delta.shape[1]
    return torch.where(total.squeeze(1) > 0, eff, torch.full_like(eff, math.nan))


@torch.no_grad()
def layer_metrics(layer: str, fit_native: torch.Tensor, scorer: Scorer, h: torch.Tensor, protocol: Protocol,
                  seeds: list[int]) -> dict[str, torch.Tensor]:
    """Every functional metric of one layer (module docstring): ``fit_native`` its output on the training examples,
    ``h`` on the held-out ones (R, N, C, *positions); ``seeds`` the replicates' seeds (their anchor orders)."""
    r, n, u = h.shape[0], h.shape[1], h.shape[2]
    pos = h.shape[3:]
    nan = torch.full((r,), math.nan, dtype=torch.float64)
    stats = fit_statistics(unit_layout(fit_native))
    B, lam = ridge_gcv(stats)
    predicted, r2 = predict_units(unit_layout(h), stats, B)
    pred_native = native_layout(predicted.to(h.dtype), h)
    fill = stats.mean.to(h.dtype)                                          # (R, U): the training means

    def by_mean(units: torch.Tensor) -> torch.Tensor:
        vals = fill[:, units]
        return vals.view(*vals.shape, 1, *([1] * len(pos))).expand(*vals.shape, n, *pos)

    def by_prediction(units: torch.Tensor) -> torch.Tensor:
        return pred_native[:, :, units].movedim(2, 1)

    base = scorer.base
    abl = scorer.units(by_mean, u)
    comp = scorer.units(by_prediction, u)
    delta = _relative(abl["loss"], base["loss"])
    cdelta = _relative(comp["loss"], base["loss"])
    live = stats.usable
    n_live = live.sum(dim=1).clamp_min(1)
    positive = delta.clamp_min(0.0)
    total = positive.sum(dim=1)
    top = positive.topk(max(1, math.ceil(TOP_SHARE * u)), dim=1).values.sum(dim=1)
    scored = torch.isfinite(r2)
    defined = (live.sum(dim=1) >= 2) & scored.any(dim=1)
    out = {
        "abl_delta_loss_mean": delta.mean(dim=1), "abl_delta_loss_max": delta.amax(dim=1),
        "abl_top10_share": torch.where(total > 0, top / total.clamp_min(torch.finfo(total.dtype).tiny), nan),
        "abl_eff_frac": _entropy_frac(delta),
        "comp_delta_loss_mean": cdelta.mean(dim=1), "comp_delta_loss_max": cdelta.amax(dim=1),
        # R² below 0 (a fit worse on the held-out set than its own mean) counts as 0: no predictability.
        "act_r2_others_mean": torch.where(defined, torch.nan_to_num(r2).clamp_min(0.0).sum(dim=1)
                                          / scored.sum(dim=1).clamp_min(1), nan),
        "act_r2_others_max": torch.where(defined, r2.masked_fill(~scored, -math.inf).amax(dim=1), nan),
        "ridge_log10": torch.nanmean(torch.log10(lam), dim=1),
        "fit_dead_frac": (~live).double().mean(dim=1),
    }
    for t in protocol.thresholds:
        for kind, d in (("prunable", delta), ("redundant", cdelta)):
            below = d < t
            out[grid_name(f"{kind}_frac", t)] = below.double().mean(dim=1)
            out[grid_name(f"{kind}_live_frac", t)] = torch.where(
                live.any(dim=1), (below & live).double().sum(dim=1) / n_live, nan)
    classify = "accuracy" in base
    if classify:
        out["acc_prunable_frac"] = (base["accuracy"] - abl["accuracy"] < protocol.acc_drop).double().mean(dim=1)
        out["acc_redundant_frac"] = (base["accuracy"] - comp["accuracy"] < protocol.acc_drop).double().mean(dim=1)

    # The joint pruning curve: mean-ablate the units with the smallest single-unit effects together.
    j = max(1, protocol.prune_steps)
    counts = sorted({math.ceil(i * u / j) for i in range(1, j + 1)})
    order = torch.nan_to_num(delta, nan=math.inf).argsort(dim=1, stable=True)          # (R, U)
    masks = prefix_masks(order[:, None, :], counts)[:, 0]                               # (R, J, U)
    pruned = scorer.masked(masks, fill)
    shares = torch.tensor(counts, dtype=torch.float64) / u
    out["joint_prunable_frac"] = largest_prefix(_relative(pruned["loss"], base["loss"]) < protocol.threshold, shares)
    if classify:
        out["joint_acc_prunable_frac"] = largest_prefix(base["accuracy"] - pruned["accuracy"] < protocol.acc_drop,
                                                        shares)

    # The anchor's protocol: random orders, the first int(f·w) units zeroed together.
    fractions = [f for f in protocol.fractions if f > 0]
    counts = [int(f * u) for f in fractions]
    orders = anchor_orders(seeds, layer, u, protocol.orders)                         # (R, K, U)
    # Only the distinct subsets run: 0 units is the unablated network (agreement 1), all u units are the same subset
    # in every order (run once), and at small w several fractions reach the same int(f·w).
    partial = sorted({c for c in counts if 0 < c < u})
    variants = [prefix_masks(orders, partial).flatten(1, 2)] if partial else []      # (R, K·P, U)
    if u in counts:
        variants.append(torch.ones_like(orders[:, :1], dtype=torch.bool))              # (R, 1, U)
    ran = scorer.masked(torch.cat(variants, dim=1), torch.zeros_like(fill))["agreement"] if variants else None
    columns = []
    for c in counts:
        if c == 0:
            columns.append(torch.ones(r, protocol.orders, dtype=torch.float64))
        elif c == u:
            columns.append(ran[:, -1:].double().expand(r, protocol.orders))
        else:
            k = partial.index(c)
            columns.append(ran[:, : protocol.orders * len(partial)].view(r, protocol.orders, len(partial))[..., k]
                           .double())
    agree = torch.stack(columns, dim=-1)                                                # (R, K, F)
    for f, a in zip(fractions, agree.mean(dim=1).unbind(1), strict=True):
        out[grid_name("anchor_agreement", f)] = a.double()
    reached = torch.tensor([0, *counts], dtype=torch.float64) / u
    curves = torch.cat([torch.ones_like(agree[..., :1]), agree], dim=-1).double()      # f = 0: agreement 1
    frac = crossing(reached, curves, protocol.agreement).mean(dim=1)
    out["anchor_prunable_frac"] = frac
    out["anchor_prunable_units"] = frac * u
    return out


@torch.no_grad()
def functional_metrics(model, fit_x: torch.Tensor, score_x: torch.Tensor, score_y: torch.Tensor, task,
                       layers: tuple[str, ...], protocol: Protocol | None = None,
                       seeds: list[int] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """The functional metrics (module docstring) of each layer in ``layers``: {layer: {metric: (R,)}}.

    ``model`` is a replicated model (``Ensemble``, ``ReplicatedMLP``), evaluated as it is (call it in eval mode);
    ``fit_x`` the training examples the replacements are fitted on; ``score_x``, ``score_y`` the held-out inputs and
    targets every loss is measured on; ``seeds`` the replicates' seeds (their anchor orders; default 0, 1, …).
    """
    if not layers:
        return {}
    protocol = protocol or Protocol()
    fit_native = model.recorded(fit_x)
    native = model.recorded(score_x)
    r = next(iter(native.values())).shape[0]
    seeds = list(seeds) if seeds is not None else list(range(r))
    out: dict[str, dict[str, torch.Tensor]] = {}
    for layer in layers:
        # Elements per variant example of one forward pass, for the chunk size: the model's own figure, or three
        # times the widest activation a variant carries (the recorded layers after the studied one, or the studied
        # layer's own copy when the variants are substituted there rather than injected at its consumer; a residual
        # shortcut; the output).
        later = list(native)[list(native).index(layer) + (1 if getattr(model, "consumer", lambda _: None)(layer)
                                                           else 0):]
        per_sample = getattr(model, "variant_footprint", None) or 3 * max(
            [native[name][0, 0].numel() for name in later] + [score_x[0].numel(), 1])
        scorer = Scorer(model, score_x, score_y, task, layer, per_sample)
        out[layer] = layer_metrics(layer, fit_native[layer], scorer, native[layer], protocol, seeds)
    return out
