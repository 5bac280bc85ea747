"""Redundancy metrics of a layer's units, for a whole batch of weight matrices at once.

Every function takes ``W`` of shape (B, units, fan_in) (a conv weight reshaped to units × c·k·k) and
returns tensors of shape (B,): B is replicates for trained weights, samples for the random null.
There is no Python loop over pairs or over B: pairwise quantities come from ``torch.cdist`` and one
batched Gram matrix, spectra from one batched eigen-decomposition.
"""

from __future__ import annotations

import torch

PAIR_METRICS = ("min_pair_l1", "min_pair_i", "min_pair_j", "mean_nn_l1", "max_abs_cos", "mean_nn_abs_cos")
SPECTRAL_METRICS = ("eff_rank", "eff_rank_norm", "stable_rank", "rank90", "rank99")
WEIGHT_METRICS = PAIR_METRICS + SPECTRAL_METRICS


def min_pair_l1(W: torch.Tensor) -> dict[str, torch.Tensor]:
    """The source metric: min over pairs i<j of mean |W_i - W_j|, with the pair that attains it.

    The source scanned i ascending, then j ascending, and let a later pair win a tie: among the
    upper-triangle entries equal to the minimum, the one with the largest row-major index wins.
    ``mean_nn_l1`` is the pair-count-free companion: each unit's distance to its nearest other unit,
    averaged over units.
    """
    _, u, f = W.shape
    dist = torch.cdist(W, W, p=1).div_(f)
    upper = torch.ones(u, u, dtype=torch.bool, device=W.device).triu_(1)
    pairs = dist.masked_fill(~upper, float("inf")).flatten(1)
    value = pairs.amin(dim=1)
    flat_index = torch.arange(u * u, device=W.device)
    last = torch.where(pairs == value[:, None], flat_index, -1).amax(dim=1)
    dist.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    nn_dist = dist.amin(dim=-1)
    return {
        "min_pair_l1": value,
        "min_pair_i": (last // u).to(W.dtype),
        "min_pair_j": (last % u).to(W.dtype),
        "mean_nn_l1": nn_dist.mean(dim=-1),
    }


def abs_cos_matrix(W: torch.Tensor) -> torch.Tensor:
    """|cos| between every pair of units: scale- and sign-invariant similarity, (B, units, units)."""
    unit = W / W.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(W.dtype).tiny)
    return torch.bmm(unit, unit.transpose(1, 2)).abs_()


def cosine_metrics(W: torch.Tensor) -> dict[str, torch.Tensor]:
    cos = abs_cos_matrix(W)
    cos.diagonal(dim1=1, dim2=2).fill_(-1.0)
    nearest = cos.amax(dim=-1)
    return {"max_abs_cos": nearest.amax(dim=-1), "mean_nn_abs_cos": nearest.mean(dim=-1)}


def singular_values(W: torch.Tensor) -> torch.Tensor:
    """Singular values, descending, (B, min(units, fan_in)).

    Computed as square roots of the eigenvalues of the smaller Gram matrix in float64: several times
    faster than a batched SVD for the tall, thin layers here, and float64 keeps the squaring harmless.
    """
    W64 = W.double()
    gram = W64.transpose(1, 2) @ W64 if W.shape[1] >= W.shape[2] else W64 @ W64.transpose(1, 2)
    eig = torch.linalg.eigvalsh(gram).clamp_min(0.0).flip(-1)
    return eig.sqrt().to(W.dtype)


def spectral_metrics(s: torch.Tensor) -> dict[str, torch.Tensor]:
    """Spectral redundancy from singular values ``s`` (B, k), descending.

    ``eff_rank`` is Roy & Vetterli's (2007) entropy effective rank; ``eff_rank_norm`` divides it by
    k = min(units, fan_in) so layers of different sizes compare. ``rankXX`` keeps XX% of the energy.
    """
    k = s.shape[1]
    p = s / s.sum(dim=-1, keepdim=True)
    eff_rank = torch.exp(-torch.special.xlogy(p, p).sum(dim=-1))
    energy = s.square()
    total = energy.sum(dim=-1, keepdim=True)
    cumulative = energy.cumsum(dim=-1) / total
    return {
        "eff_rank": eff_rank,
        "eff_rank_norm": eff_rank / k,
        "stable_rank": total.squeeze(-1) / energy[:, 0],
        "rank90": (cumulative < 0.90).sum(dim=-1).to(s.dtype) + 1,
        "rank99": (cumulative < 0.99).sum(dim=-1).to(s.dtype) + 1,
    }


def weight_metrics(W: torch.Tensor) -> dict[str, torch.Tensor]:
    """All weight metrics of SPEC §5 for a batch of layers; pair metrics only where there are pairs."""
    if W.dim() > 3:
        W = W.flatten(2)
    out: dict[str, torch.Tensor] = {}
    if W.shape[1] >= 2:
        out.update(min_pair_l1(W))
        out.update(cosine_metrics(W))
    out.update(spectral_metrics(singular_values(W)))
    return out


MOVEMENT_METRICS = ("rel_move", "rel_move_spectral", "unit_angle_deg")


def movement_metrics(W: torch.Tensor, W0: torch.Tensor) -> dict[str, torch.Tensor]:
    """How far a batch of layers moved from their initial weights ``W0`` (both (B, units, fan_in), conv weights
    flattened), whether wider layers move less (lazy training, Chizat et al. 2019):

    - ``rel_move``: ‖W − W0‖_F / ‖W0‖_F;
    - ``rel_move_spectral``: ‖W − W0‖_2 / ‖W0‖_2 (largest singular values, float64);
    - ``unit_angle_deg``: the mean over units of the angle between each unit's initial and current weight vector,
      in degrees (0: every unit points where it started; 90: orthogonal to it).
    """
    W, W0 = W.flatten(2).double(), W0.flatten(2).double()
    D = W - W0
    rel = D.flatten(1).norm(dim=1) / W0.flatten(1).norm(dim=1)
    spectral = singular_values(D)[:, 0].double() / singular_values(W0)[:, 0].double()
    cos = (W * W0).sum(-1) / (W.norm(dim=-1) * W0.norm(dim=-1)).clamp_min(torch.finfo(W.dtype).tiny)
    angle = torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0))).mean(dim=-1)
    return {"rel_move": rel, "rel_move_spectral": spectral, "unit_angle_deg": angle}


# ---------------------------------------------------------------------------------------------------------
# Activation metrics: redundancy of what units compute, on a fixed evaluation batch.

ACTIVATION_METRICS = ("act_max_abs_corr", "act_mean_nn_abs_corr", "act_eff_rank_norm", "act_pc95_frac",
                      "act_dead_frac")
# A unit is dead when its standard deviation over the batch is below this fraction of its mean's magnitude:
# far below one float32 ulp (2^-23 relative) of variation, so only a unit whose float32 outputs are all
# equal qualifies (the float64 centring leaves ~2^-52 |mean| of noise on such a unit).
DEAD_RELATIVE_STD = 2.0**-40


def activation_metrics(A: torch.Tensor) -> dict[str, torch.Tensor]:
    """Redundancy of units from their activations ``A`` (B, samples, units), for a batch of B models at once.

    For a conv layer the channels are the units and positions x images the samples. Computed in float64:
    the activations are centred per unit, the covariance is one batched matrix product, the spectrum one
    batched eigen-decomposition.

    - ``act_max_abs_corr``: max over pairs of live units of |Pearson r|;
    - ``act_mean_nn_abs_corr``: mean over live units of |r| with the unit's most correlated other live unit;
    - ``act_eff_rank_norm``: entropy effective rank (Roy & Vetterli 2007) of the covariance's eigenvalues,
      divided by the number of units;
    - ``act_pc95_frac``: principal components needed for 95% of the variance, divided by the number of units;
    - ``act_dead_frac``: share of units whose activation is constant on the batch (see ``DEAD_RELATIVE_STD``).
      Dead units are left out of the correlations and never divided by; the correlation metrics are NaN
      when fewer than two units are alive, the spectral ones when none is.
    """
    A = A.double()
    _, samples, units = A.shape
    mean = A.mean(dim=1, keepdim=True)
    centred = A - mean
    cov = torch.bmm(centred.transpose(1, 2), centred) / max(samples - 1, 1)  # (B, units, units)
    std = cov.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()
    dead = std <= DEAD_RELATIVE_STD * mean.squeeze(1).abs()
    alive = ~dead
    n_alive = alive.sum(dim=-1)

    safe_std = torch.where(alive, std, torch.ones_like(std))
    corr = (cov / safe_std[:, :, None] / safe_std[:, None, :]).abs()
    pair_ok = alive[:, :, None] & alive[:, None, :]
    pair_ok &= ~torch.eye(units, dtype=torch.bool, device=A.device)
    corr = corr.masked_fill(~pair_ok, -1.0)
    nearest = corr.amax(dim=-1)  # -1 for a dead unit (or one with no live partner)
    nan = torch.full_like(std[:, 0], float("nan"))
    few = n_alive < 2
    max_corr = torch.where(few, nan, nearest.amax(dim=-1))
    mean_nn = torch.where(few, nan, (nearest * alive).sum(dim=-1) / n_alive.clamp_min(1))

    # A model whose activations overflowed (a diverging run) gets NaN, not a failed eigen-decomposition.
    finite = torch.isfinite(cov).flatten(1).all(dim=-1)
    eye = torch.eye(units, dtype=cov.dtype, device=cov.device)
    eig = torch.linalg.eigvalsh(torch.where(finite[:, None, None], cov, eye)).clamp_min(0.0).flip(-1)
    total = eig.sum(dim=-1, keepdim=True)
    none_alive = (total.squeeze(-1) <= 0) | ~finite
    p = eig / total.clamp_min(torch.finfo(eig.dtype).tiny)
    eff_rank = torch.exp(-torch.special.xlogy(p, p).sum(dim=-1))
    pc95 = (p.cumsum(dim=-1) < 0.95).sum(dim=-1).to(eig.dtype) + 1
    return {
        "act_max_abs_corr": max_corr,
        "act_mean_nn_abs_corr": mean_nn,
        "act_eff_rank_norm": torch.where(none_alive, nan, eff_rank / units),
        "act_pc95_frac": torch.where(none_alive, nan, pc95.clamp_max(units) / units),
        "act_dead_frac": dead.sum(dim=-1).to(eig.dtype) / units,
    }
