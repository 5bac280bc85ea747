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
