"""One training step of a replicated model: zero the gradients, forward, the replicates' summed loss, backward,
optimizer step. What ``experiments.train.train`` runs for every (mini-)batch.

How ``train`` calls it (replacing its inner ``step`` one for one; the optimizer is still
``make_optimizer(model.parameters_in_source_order(), lr, len(seeds))``)::

    step = make_step(model, task, opt)
    ...
    losses = step(x, y, False)                        # full batch: x (N, ...) shared by the replicates
    losses = step(x[batch], y[batch], stacked)        # a mini-batch; stacked: batch (R, B), x[batch] (R, B, ...)

``step(xb, yb, stacked=False)`` returns the replicates' losses (R,), detached (replicate r's mean loss over its
batch, computed in this step's forward pass, before the update). It computes exactly what the plain step does::

    opt.zero_grad(set_to_none=True)
    out = model(xb, stacked=True) if stacked else model(xb)
    losses = task.loss(out, yb, stacked)
    losses.sum().backward()
    opt.step()

The one difference is how a stacked ``Ensemble`` (``mode="stack"``) runs its module: ``Ensemble.forward`` calls
the family's module through ``torch.func.functional_call``, which swaps every stacked parameter and buffer into
the module and back out again on every call (about 0.2 ms of Python per step for a four-layer MLP, ~10% of its
step). ``make_step`` binds the stacked tensors into a private copy of the module once, so each step calls the
module directly: the same module code on the same tensors (the optimizer's parameters and the BatchNorm buffers
themselves, so updates land where ``Ensemble`` keeps them), the same numbers bit for bit. The copy follows the
model's train/eval mode, and is rebound if the model's tensor objects are replaced (e.g. ``model.to(...)`` under
``torch.__future__.set_overwrite_module_params_on_conversion(True)``). Every other
model (the loop and vmap modes, the source MLP's ``ReplicatedMLP``, solo runs) is called as it is.

No ``torch.compile``: on the 2-core machine the compiled forward + loss made every family's step 2-4x slower,
before its compile time of 1-27 s per process is even counted (``benchmarks/step_speed.py`` keeps the numbers).
So solo runs and replicate runs take this same eager path.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class _BoundModule:
    """A stacked ``Ensemble``'s module with the stacked tensors bound as its own parameters and buffers."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.module: nn.Module = copy.deepcopy(model.template)  # the template lives on the meta device: no data
        self.tensors: dict[str, torch.Tensor] = {}
        self.bind()

    def bind(self) -> None:
        self.tensors = dict(self.model.state_tensors())
        for path, tensor in self.tensors.items():
            owner, _, name = path.rpartition(".")
            setattr(self.module.get_submodule(owner), name, tensor)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        current = self.model.state_tensors()
        if len(current) != len(self.tensors) or any(current.get(k) is not t for k, t in self.tensors.items()):
            self.bind()
        if self.module.training != self.model.training:
            self.module.train(self.model.training)
        return self.module(x)


class TrainStep:
    """``step(xb, yb, stacked=False) -> losses (R,)``: one optimizer step (see the module docstring)."""

    def __init__(self, model: nn.Module, task, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.task, self.optimizer = model, task, optimizer
        self.bound = _BoundModule(model) if getattr(model, "mode", None) == "stack" else None

    def forward(self, xb: torch.Tensor, stacked: bool = False) -> torch.Tensor:
        """The model's output (R, N, ...) on ``xb``: (N, ...) shared by the replicates, or (R, N, ...) one batch per
        replicate (``stacked``; a stacked module tells the two apart by their dimensions)."""
        if self.bound is not None:
            return self.bound(xb)
        return self.model(xb, stacked=True) if stacked else self.model(xb)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, stacked: bool = False) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        losses = self.task.loss(self.forward(xb, stacked), yb, stacked)
        losses.sum().backward()
        self.optimizer.step()
        return losses.detach()


def make_step(model: nn.Module, task, optimizer: torch.optim.Optimizer, compile: bool = False) -> TrainStep:
    """The training step of ``model`` (see the module docstring): ``step(xb, yb, stacked=False) -> losses (R,)``.

    ``task``: an ``experiments.tasks`` task (``task.loss(out, target, stacked) -> (R,)``); ``optimizer``: over
    ``model``'s parameters (``experiments.train.make_optimizer``). ``compile`` is accepted for the interface's sake
    and changes nothing: no compiled variant won on this machine (module docstring).
    """
    del compile
    return TrainStep(model, task, optimizer)
