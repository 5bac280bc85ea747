"""Data sets. Each returns ``(inputs, targets)`` as float32 tensors for one full batch."""

from __future__ import annotations

import torch


def integers(n: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """The source's identity task: the integers 0..n-1 as a column, each its own target."""
    x = torch.arange(n, dtype=torch.float32).reshape(n, 1)
    return x, x.clone()


DATASETS = {"integers": integers}


def load(name: str, **kwargs: int) -> tuple[torch.Tensor, torch.Tensor]:
    return DATASETS[name](**kwargs)
