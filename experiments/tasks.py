"""What a family is trained to do: its targets, its per-replicate loss and what it reports on held-out data.

A task sees a replicated model only through ``model(x) -> (R, N, ...)`` and ``model.train()/eval()``, so every
family with the same task shares this code. Losses are per replicate, shape (R,): the training step sums
them, which gives each replicate exactly its own gradient.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from experiments.data import Data


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Run the block in eval mode (BatchNorm on its running statistics), then restore the model's mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def per_replicate_mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each replicate, (R,). With R = 1 it is ``F.mse_loss`` itself (bitwise the source).

    ``target`` (N, ...) is compared in the shape of one replicate's output (an autoencoder outputs an image's 64
    pixels as a flat vector), a view of the same values.
    """
    target = target.reshape(out.shape[1:])
    if out.shape[0] == 1:
        return F.mse_loss(out[0], target).reshape(1)
    return F.mse_loss(out, target.expand_as(out), reduction="none").flatten(1).mean(dim=1)


def per_replicate_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each replicate, (R,); ``logits`` (R, N, classes), ``labels`` (N,)."""
    r, n, classes = logits.shape
    return F.cross_entropy(logits.reshape(r * n, classes), labels.repeat(r), reduction="none").view(r, n).mean(dim=1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of correctly classified examples per replicate, (R,)."""
    return (logits.argmax(dim=-1) == labels).to(logits.dtype).mean(dim=1)


@dataclass(frozen=True)
class Identity:
    """Output the input (the source's task; the conv family's on images): MSE against the input itself.

    Reports ``eval_loss``, the MSE on the evaluation batch.
    """

    name: str = "identity"

    def targets(self, data: Data) -> tuple[torch.Tensor, torch.Tensor]:
        return data.x, data.eval_x

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return per_replicate_mse(out, target)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, data: Data, train_accuracy: bool = True) -> dict[str, torch.Tensor]:
        with eval_mode(model):
            return {"eval_loss": per_replicate_mse(model(data.eval_x), data.eval_x)}


@dataclass(frozen=True)
class Classify:
    """Predict the class label: cross-entropy on logits (R, N, classes).

    Reports, in eval mode (BatchNorm on its running statistics, as ResNets are evaluated): ``eval_loss``
    and ``test_accuracy`` on the evaluation batch, and ``train_accuracy`` on the training batch (unless
    ``train_accuracy=False``).
    """

    name: str = "classify"

    def targets(self, data: Data) -> tuple[torch.Tensor, torch.Tensor]:
        if data.labels is None or data.eval_labels is None:
            raise ValueError("classification needs a data set with labels")
        return data.labels, data.eval_labels

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return per_replicate_cross_entropy(out, target)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, data: Data, train_accuracy: bool = True) -> dict[str, torch.Tensor]:
        with eval_mode(model):
            test = model(data.eval_x)
            out = {"eval_loss": per_replicate_cross_entropy(test, data.eval_labels),
                   "test_accuracy": accuracy(test, data.eval_labels)}
            if train_accuracy:  # a second pass over the training batch
                out["train_accuracy"] = accuracy(model(data.x), data.labels)
            return out


TASKS = {"identity": Identity(), "classify": Classify()}
