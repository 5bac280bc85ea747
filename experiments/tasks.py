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


def per_replicate_mse(out: torch.Tensor, target: torch.Tensor, stacked: bool = False) -> torch.Tensor:
    """Mean squared error of each replicate, (R,). With R = 1 it is ``F.mse_loss`` itself (bitwise the source).

    ``target`` (N, ...) is shared by the replicates, or (R, N, ...) one batch per replicate (``stacked``); it is
    compared in the shape of the output (an autoencoder outputs an image's 64 pixels as a flat vector), a view of
    the same values.
    """
    if stacked:
        target = target.reshape(out.shape)
        if out.shape[0] == 1:
            return F.mse_loss(out[0], target[0]).reshape(1)
        return F.mse_loss(out, target, reduction="none").flatten(1).mean(dim=1)
    target = target.reshape(out.shape[1:])
    if out.shape[0] == 1:
        return F.mse_loss(out[0], target).reshape(1)
    return F.mse_loss(out, target.expand_as(out), reduction="none").flatten(1).mean(dim=1)


def per_replicate_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, stacked: bool = False) -> torch.Tensor:
    """Mean cross-entropy of each replicate, (R,); ``logits`` (R, N, classes), ``labels`` (N,) shared or (R, N) one
    batch per replicate (``stacked``)."""
    r, n, classes = logits.shape
    # Row by row, as a solo run computes it: every example's loss rounds exactly as in the solo (N, classes) call.
    # (The classes-major form, ``F.cross_entropy(logits.transpose(1, 2), ...)``, is faster for the MLP classifier,
    # benchmarks/step_speed.py, but rounds each example's log-softmax differently from the solo path, which broke
    # the derived replicates-vs-solo bound of tests/test_resnet.py under ATEN_CPU_CAPABILITY=default: not kept.)
    target = labels.reshape(r * n) if stacked else labels.repeat(r)
    return F.cross_entropy(logits.reshape(r * n, classes), target, reduction="none").view(r, n).mean(dim=1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of correctly classified examples per replicate, (R,)."""
    return (logits.argmax(dim=-1) == labels).to(logits.dtype).mean(dim=1)


@dataclass(frozen=True)
class Identity:
    """Output the input (the source's task; the conv family's on images): MSE against the input itself.

    Reports ``eval_loss``, the MSE on the evaluation batch, and ``train_loss``, on the whole training set.
    """

    name: str = "identity"

    def targets(self, data: Data) -> tuple[torch.Tensor, torch.Tensor]:
        return data.x, data.eval_x

    def loss(self, out: torch.Tensor, target: torch.Tensor, stacked: bool = False) -> torch.Tensor:
        return per_replicate_mse(out, target, stacked)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, data: Data, train_accuracy: bool = True) -> dict[str, torch.Tensor]:
        with eval_mode(model):
            out = {"eval_loss": per_replicate_mse(model(data.eval_x), data.eval_x)}
            if train_accuracy:  # the training loss of the whole training set, in eval mode
                out["train_loss"] = per_replicate_mse(model(data.x), data.x)
            return out

    @staticmethod
    def variant_scores(out: torch.Tensor, target: torch.Tensor, base: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scores of K variants of every replicate's outputs ``out`` (R, K, N, ...) against ``target`` (N, ...) and the
        unablated outputs ``base`` (R, N, ...), each (R, K): ``loss`` (MSE) and ``agreement``, the share of the
        unablated outputs' variance (over examples, per output feature) that the variant still reproduces,
        1 − Σ(out − base)² / Σ(base − mean base)² (an identity task has no classes to agree on)."""
        r, k = out.shape[:2]
        target = target.reshape(1, 1, *out.shape[2:])
        loss = (out - target).square().reshape(r, k, -1).mean(dim=-1)
        spread = (base - base.mean(dim=1, keepdim=True)).square().reshape(r, 1, -1).sum(dim=-1)
        moved = (out - base.unsqueeze(1)).square().reshape(r, k, -1).sum(dim=-1)
        return {"loss": loss, "agreement": 1 - moved / spread.clamp_min(torch.finfo(spread.dtype).tiny)}


@dataclass(frozen=True)
class Classify:
    """Predict the class label: cross-entropy on logits (R, N, classes).

    Reports, in eval mode (BatchNorm on its running statistics, as ResNets are evaluated): ``eval_loss``
    and ``test_accuracy`` on the evaluation batch, and ``train_accuracy`` and ``train_loss`` on the training batch
    (unless ``train_accuracy=False``).
    """

    name: str = "classify"

    def targets(self, data: Data) -> tuple[torch.Tensor, torch.Tensor]:
        if data.labels is None or data.eval_labels is None:
            raise ValueError("classification needs a data set with labels")
        return data.labels, data.eval_labels

    def loss(self, out: torch.Tensor, target: torch.Tensor, stacked: bool = False) -> torch.Tensor:
        return per_replicate_cross_entropy(out, target, stacked)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, data: Data, train_accuracy: bool = True) -> dict[str, torch.Tensor]:
        with eval_mode(model):
            test = model(data.eval_x)
            out = {"eval_loss": per_replicate_cross_entropy(test, data.eval_labels),
                   "test_accuracy": accuracy(test, data.eval_labels)}
            if train_accuracy:  # a second pass over the training batch
                train = model(data.x)
                out["train_accuracy"] = accuracy(train, data.labels)
                out["train_loss"] = per_replicate_cross_entropy(train, data.labels)
            return out

    @staticmethod
    def variant_scores(out: torch.Tensor, labels: torch.Tensor, base: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scores of K variants of every replicate's logits ``out`` (R, K, N, classes) against ``labels`` (N,) and the
        unablated logits ``base`` (R, N, classes), each (R, K): ``loss`` (cross-entropy), ``accuracy`` and
        ``agreement``, the share of examples whose predicted class is the unablated network's (the anchor's
        measure)."""
        r, k, n, classes = out.shape
        loss = F.cross_entropy(out.reshape(-1, classes), labels.repeat(r * k), reduction="none").view(r, k, n)
        predicted = out.argmax(dim=-1)
        return {"loss": loss.mean(dim=-1), "accuracy": (predicted == labels).to(out.dtype).mean(dim=-1),
                "agreement": (predicted == base.argmax(dim=-1).unsqueeze(1)).to(out.dtype).mean(dim=-1)}


TASKS = {"identity": Identity(), "classify": Classify()}
