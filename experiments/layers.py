"""Layers that run one replicate, or R replicates stacked along a leading axis, with the same module code.

``Linear``, ``Conv1d`` and ``BatchNorm1d`` are the ``torch.nn`` layers with one addition: when their parameters
carry an extra leading replicate axis (``weight`` (R, out, in) instead of (out, in)), they compute all R
replicates at once with batched matmuls. That is what ``experiments.ensemble.Ensemble(mode="stack")`` does: it
calls the family's module once with its stacked tensors (``torch.func.functional_call``), so a family written
from these layers needs no second, batched implementation. With ordinary parameters each layer is exactly its
``torch.nn`` parent (the parent's ``forward``: bitwise the same results), so the same class serves as the
plain one-replicate module that solo runs, tests and compression use.

Shapes in the stacked case: an input shared by all replicates keeps its usual shape ((N, in), (N, C, L)); every
layer's output, and so every input after the first layer, has the replicate axis in front ((R, N, out),
(R, N, C, L)). A family's ``forward`` between layers must therefore only use the trailing axes (``flatten(-2)``,
``mean(-1)``, elementwise functions), which mean the same with and without the replicate axis.

Why not ``torch.func.vmap``: on a CPU it turns each stacked convolution into one grouped convolution, which was
slower than a loop of plain ones (``benchmarks/conv_ensemble.py``); a 1-D convolution written as its windows
(``unfold`` on channels-last activations) plus one batched matmul, and a linear layer as one ``bmm``, leave a
training step of R small models with a handful of large kernels instead of R times many small ones
(``benchmarks/mnist1d_replicates.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from experiments.models import batched_affine


def _stacked(weight: torch.Tensor, plain_dims: int) -> bool:
    return weight.dim() == plain_dims + 1


def stacked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ W_r^T + b_r`` for every replicate r: ``weight`` (R, out, in), ``bias`` (R, out) or None.

    ``x`` is (N, in) (shared by the replicates) or (R, N, ..., in); the result is (R, N, ..., out).
    """
    r, out_features, in_features = weight.shape
    shared = x.dim() == 2
    lead = x.shape[:-1]
    h = x if shared else x.reshape(r, -1, in_features)
    y = torch.matmul(h, weight.transpose(1, 2)) if bias is None else batched_affine(h, weight, bias)
    return y if shared else y.view(*lead, out_features)


class _Windows(torch.autograd.Function):
    """The k-wide windows (stride ``stride``, zero padding ``padding``) of channels-last signals, as matmul rows.

    ``x`` (..., N, L, C) -> a new contiguous (..., N, L_out, k·C) tensor: row l holds positions
    l·stride - padding + j, j = 0 … k-1, each with its C channels side by side (tap-major). Forward: one pad and
    one gather (``unfold``, a view, then a copy in runs of k·C values when C is the input's innermost axis).
    Backward: each tap's C-wide slice of the gradient is added into a zero-padded buffer (k strided ``add_``s)
    and the unpadded view of it returned, instead of autograd's ``unfold_backward`` and a padding copy.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: int, stride: int, padding: int) -> torch.Tensor:
        ctx.shape, ctx.k, ctx.stride, ctx.padding = x.shape, k, stride, padding
        padded = F.pad(x, (0, 0, padding, padding)) if padding else x
        rows = padded.unfold(-2, k, stride).transpose(-1, -2).flatten(-2).contiguous()  # (..., N, L_out, k, C)
        if rows.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():  # still a view of the input
            rows = rows.clone()
        return rows

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        *lead, length, channels = ctx.shape
        k, stride, padding = ctx.k, ctx.stride, ctx.padding
        l_out = grad.shape[-2]
        taps = grad.unflatten(-1, (k, channels))
        padded = grad.new_zeros(*lead, length + 2 * padding, channels)
        end = stride * (l_out - 1) + 1
        for j in range(k):
            padded[..., j:j + end:stride, :] += taps[..., j, :]
        return padded[..., padding:padding + length, :], None, None, None


def stacked_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                   padding: int) -> torch.Tensor:
    """A 1-D convolution (zero padding, no dilation, one group) for every replicate at once.

    ``weight`` (R, out, C, k); ``x`` (N, C, L) shared or (R, N, C, L). The signals are handled channels-last,
    (..., N, L, C): the input's transposed view, which for the output of a previous stacked convolution (and
    anything element-wise on it) is its memory layout, so no copy. Its k-wide windows become (R, N·L_out, k·C)
    rows (:class:`_Windows`), multiplied by each replicate's (k·C, out) kernel matrix (the weight's taps
    reordered to match) in one batched matmul: the same sum over the C·k taps as the convolution, in another
    order. Returns (R, N, out, L_out), a transposed view of the (R, N, L_out, out) product.
    """
    r, out_channels, channels, k = weight.shape
    signals = x.transpose(-1, -2)  # (..., N, L, C)
    # (..., N, L_out, k·C); a 1x1 convolution's rows are (every stride-th position of) the input itself
    rows = signals[..., ::stride, :] if k == 1 and not padding else _Windows.apply(signals, k, stride, padding)
    n, l_out = rows.shape[-3], rows.shape[-2]
    rows = rows.reshape(n * l_out, k * channels) if x.dim() == 3 else rows.reshape(r, n * l_out, k * channels)
    kernels = weight.transpose(2, 3).reshape(r, out_channels, k * channels)
    y = torch.matmul(rows, kernels.transpose(1, 2)) if bias is None else batched_affine(rows, kernels, bias)
    return y.view(r, n, l_out, out_channels).transpose(-1, -2)


class Linear(nn.Linear):
    """``nn.Linear`` that also runs R stacked replicates (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _stacked(self.weight, 2):
            return super().forward(x)
        return stacked_linear(x, self.weight, self.bias)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` (zero padding, no dilation, one group) that also runs R stacked replicates."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.groups != 1 or self.dilation != (1,) or self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError("experiments.layers.Conv1d supports one group, no dilation and integer zero padding")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _stacked(self.weight, 3):
            return super().forward(x)
        return stacked_conv1d(x, self.weight, self.bias, self.stride[0], self.padding[0])


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` (affine, with running statistics) that also normalises R stacked replicates, each with
    its own batch statistics (training) or its own running statistics (eval), updated in place in the stack.

    Stacked, the R replicates' C channels are laid side by side as R·C channels of one batch, (N, R·C[, L]), and
    normalised by ``F.batch_norm`` itself, with the stacked weights, biases and running statistics seen as R·C
    vectors (views, so the in-place update of the running statistics lands in the stack): per channel exactly
    what each replicate's own BatchNorm computes, with PyTorch's fused kernel forward and backward.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _stacked(self.weight, 1):
            return super().forward(x)
        if self.momentum is None or not self.track_running_stats:
            raise ValueError("stacked BatchNorm1d needs a momentum and running statistics")
        if x.dim() not in (3, 4):
            raise ValueError(f"stacked BatchNorm1d takes (R, N, C) or (R, N, C, L) inputs, got {tuple(x.shape)}")
        r, c = self.weight.shape
        n, rest = x.shape[1], x.shape[3:]
        side_by_side = x.transpose(0, 1).reshape(n, r * c, *rest)
        if self.training:
            self.num_batches_tracked.add_(1)
        y = F.batch_norm(side_by_side, self.running_mean.view(-1), self.running_var.view(-1), self.weight.reshape(-1),
                         self.bias.reshape(-1), self.training, self.momentum, self.eps)
        return y.view(n, r, c, *rest).transpose(0, 1)


# Every layer with parameters that a family run with ``Ensemble(mode="stack")`` may contain.
STACKABLE = (Linear, Conv1d, BatchNorm1d)
