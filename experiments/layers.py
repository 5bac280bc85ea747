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
``mean(-1)``, elementwise functions), which mean the same with and without the replicate axis. Inputs of any
memory layout are accepted; the layouts below are only what makes the common case copy-free.

Memory layout of the stacked 1-D signals: a stacked ``Conv1d`` or ``BatchNorm1d`` returns its (R, N, C, L)
output as a transposed view of an (R, C, N, L) tensor: replicate-major, then channels, then the examples'
positions. In that layout every operation of a residual block runs on its native kernel with no copy:

- a convolution is one batched matmul per replicate, kernels (out, C·k) times the (C·k, N·L_out) windows of the
  input (or, for a layer that narrows, (k·out, C) times the input itself, the k taps' outputs then shifted and
  added: see :class:`_StackedConv1d`); both its input and its output are contiguous matrices in this layout;
- a batch norm sees the R·C channels of all replicates as the channels of one (1, R·C, N·L) batch, contiguous,
  and ``F.batch_norm``'s fused kernel normalises each replicate's channels with their own statistics;
- ReLU, the residual sum and pooling are elementwise or reduce along the last axis.

Why not ``torch.func.vmap``: on a CPU it turns each stacked convolution into one grouped convolution, which was
slower than a loop of plain ones (``benchmarks/conv_ensemble.py``); and why this layout rather than channels-last
(R, N, L, C), which the first version of this module used: there a batch norm over R·C channels needed a copy
into an (N, R·C, L) batch and back, and a 3-tap convolution three copies of its input; a training step of the
1-D ResNet ran 1.5-2x slower (``benchmarks/step_speed.py`` keeps the numbers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _stacked(weight: torch.Tensor, plain_dims: int) -> bool:
    return weight.dim() == plain_dims + 1


def stacked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ W_r^T + b_r`` for every replicate r: ``weight`` (R, out, in), ``bias`` (R, out) or None.

    ``x`` is (N, in) (shared by the replicates) or (R, N, ..., in); the result is (R, N, ..., out). Computed
    feature-major, as ``W_r @ x_r^T``: the (R, out, N) product is contiguous and returned as an (R, N, out) view.
    In that layout the weight gradient, grad (R, out, N) times x (R, N, in), comes out in the weight's own (R, out,
    in) layout, and the input gradient, W^T times grad, in the layout of the input's transposed view, which for
    the output of a previous stacked layer is its memory: native ``baddbmm``/``addmm`` forward and backward with
    no copy. (Computed example-major, as x W^T, the weight gradient comes out (R, in, out) and autograd copies it
    into the parameter's layout, one pass over every weight per step.) A shared input is one ``addmm`` with all
    R·out rows of the weights.
    """
    r, out_features, in_features = weight.shape
    if x.dim() == 2:
        flat = weight.reshape(r * out_features, in_features)
        y = torch.mm(flat, x.t()) if bias is None else torch.addmm(bias.reshape(-1, 1), flat, x.t())
        return y.view(r, out_features, x.shape[0]).transpose(1, 2)
    lead = x.shape[1:-1]
    columns = x.reshape(r, -1, in_features).transpose(1, 2)  # (R, in, M)
    y = torch.bmm(weight, columns) if bias is None else torch.baddbmm(bias.unsqueeze(-1), weight, columns)
    return y.view(r, out_features, *lead).movedim(1, -1)


def _taps(length: int, l_out: int, k: int, stride: int, padding: int) -> list[tuple[int, int, int, int]]:
    """For each tap j of a k-wide window: (j, first, last, start): output positions first … last-1 read the input
    positions start, start + stride, … (every other output position of that tap falls into the zero padding)."""
    taps = []
    for j in range(k):
        offset = j - padding  # the input position tap j reads for output position 0
        first = 0 if offset >= 0 else (-offset + stride - 1) // stride
        last = max(first, min(l_out, (length - 1 - offset) // stride + 1))
        taps.append((j, first, last, first * stride + offset))
    return taps


def _span(start: int, first: int, last: int, stride: int) -> slice:
    return slice(start, start + (last - first - 1) * stride + 1, stride)


def _windows(x: torch.Tensor, k: int, stride: int, padding: int, l_out: int) -> torch.Tensor:
    """The k-wide windows of signals ``x`` (..., C, N, L): a new (..., C, k, N, L_out) tensor, entry
    [c, j, n, l] = x[c, n, l·stride + j - padding] (zero in the padding), one strided copy per tap."""
    out = x.new_empty(*x.shape[:-2], k, x.shape[-2], l_out)
    for j, first, last, start in _taps(x.shape[-1], l_out, k, stride, padding):
        dst = out[..., j, :, :]
        if first > 0:
            dst[..., :first].zero_()
        if last < l_out:
            dst[..., last:].zero_()
        if last > first:
            dst[..., first:last].copy_(x[..., _span(start, first, last, stride)])
    return out


def _windows_adjoint(g: torch.Tensor, k: int, stride: int, padding: int, length: int) -> torch.Tensor:
    """The adjoint of :func:`_windows`: (..., C, k, N, L_out) -> (..., C, N, L), each window entry added back
    where it was read from. A tap that reads every input position once (stride 1, no padding crossed)
    initialises the result by a copy; the other taps are added."""
    *lead, _, n, l_out = g.shape
    taps = _taps(length, l_out, k, stride, padding)
    full = next((t for t in taps if stride == 1 and t[3] == 0 and t[2] - t[1] == length), None)
    out = g[..., full[0], :, full[1]:full[2]].clone() if full else g.new_zeros(*lead, n, length)
    for j, first, last, start in taps:
        if last > first and (j, first, last, start) != full:
            out[..., _span(start, first, last, stride)] += g[..., j, :, first:last]
    return out


def _tap_sum(z: torch.Tensor, k: int, stride: int, padding: int, l_out: int) -> torch.Tensor:
    """Each tap's output z (R, k, O, N, L), computed at every input position, shifted into place and summed:
    y (R, O, N, L_out), y[l] = sum_j z[j, l·stride + j - padding] (taps that fall into the padding add nothing)."""
    r, _, o, n, length = z.shape
    taps = _taps(length, l_out, k, stride, padding)
    full = next((t for t in taps if t[1] == 0 and t[2] == l_out), None)
    y = z[:, full[0], :, :, _span(full[3], 0, l_out, stride)].clone() if full else z.new_zeros(r, o, n, l_out)
    for j, first, last, start in taps:
        if last > first and (j, first, last, start) != full:
            y[..., first:last] += z[:, j, :, :, _span(start, first, last, stride)]
    return y


def _tap_spread(g: torch.Tensor, k: int, stride: int, padding: int, length: int) -> torch.Tensor:
    """The adjoint of :func:`_tap_sum`: g (R, O, N, L_out) -> (R, k, O, N, L), tap j holding g[l] at input position
    l·stride + j - padding and zero elsewhere."""
    r, o, n, l_out = g.shape
    out = g.new_empty(r, k, o, n, length)
    for j, first, last, start in _taps(length, l_out, k, stride, padding):
        dst = out[:, j]
        span = _span(start, first, last, stride)
        if last <= first or stride != 1 or span.start > 0 or span.stop < length:
            dst.zero_()
        if last > first:
            dst[..., span] = g[..., first:last]
    return out


class _StackedConv1d(torch.autograd.Function):
    """R 1-D convolutions (zero padding, no dilation, one group) on signals in the (R, C, N, L) layout.

    ``x`` (R, C, N, L) contiguous, or (C, N, L) shared by all replicates; ``weight`` (R, O, C, k); ``bias`` (R, O)
    or None. Returns (R, O, N, L_out), contiguous. Two ways to the same sums over the C·k taps:

    - *windows* (the default): the input's k-wide windows as a (C·k, N·L_out) matrix (:func:`_windows`), times
      each replicate's (O, C·k) kernel matrix, one ``bmm`` (one ``mm`` of all R·O kernel rows for a shared
      input). Backward: the weight gradient is the output gradient times the saved windows, the input gradient
      the kernels' transpose times the output gradient, added back into place (:func:`_windows_adjoint`).
    - *taps* (a stacked layer that narrows, O·stride < C, with k > 1): the (k·O, C) matrix of every tap's
      kernels times the input itself, then each tap's (O, N, L) output shifted into place and summed
      (:func:`_tap_sum`). This touches the narrow side k times instead of the wide input (k windows copied
      forward, k added back backward); it computes each tap at all L input positions, stride times the
      windows' products, which is why it is only used when the output side is the narrow one. Backward: the
      output gradient spread onto the k taps (:func:`_tap_spread`), then the same two matmuls.

    A 1x1 convolution with stride 1 multiplies the input itself. The bias is added in place to the product.
    Each output is a sum of the same C·k products (plus the bias) in another order than a plain convolution's,
    every gradient entry a sum of the same terms: the float32 bounds of ``tests/test_layers.py`` hold for any
    order (Higham 2002, §3.1 and §3.5).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                padding: int) -> torch.Tensor:
        r, o, c, k = weight.shape
        n, length = x.shape[-2], x.shape[-1]
        l_out = (length + 2 * padding - k) // stride + 1
        shared = x.dim() == 3
        pointwise = k == 1 and padding == 0 and stride == 1
        taps = not pointwise and not shared and o * stride < c
        if taps:
            kernels = weight.permute(0, 3, 1, 2).reshape(r, k * o, c)  # rows tap-major: (j, o)
            rows = x.view(r, c, n * length)
            y = _tap_sum(torch.bmm(kernels, rows).view(r, k, o, n, length), k, stride, padding, l_out)
        else:
            if pointwise:
                rows = x.reshape(*x.shape[:-2], n * l_out)
            else:
                rows = _windows(x, k, stride, padding, l_out).view(*x.shape[:-3], c * k, n * l_out)
            kernels = weight.view(r, o, c * k)  # columns (c, j), as the windows' rows
            y = (torch.matmul(kernels, rows) if shared else torch.bmm(kernels, rows)).view(r, o, n, l_out)
        if bias is not None:
            y += bias.view(r, o, 1, 1)
        ctx.save_for_backward(rows, kernels)
        ctx.layout = (tuple(weight.shape), stride, padding, length, bias is not None, shared, pointwise, taps)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        rows, kernels = ctx.saved_tensors
        (r, o, c, k), stride, padding, length, has_bias, shared, pointwise, taps = ctx.layout
        n = grad.shape[2]
        grad_x = grad_w = None
        grad_b = grad.sum((2, 3)) if has_bias and ctx.needs_input_grad[2] else None
        if taps:
            spread = _tap_spread(grad, k, stride, padding, length).view(r, k * o, n * length)
            if ctx.needs_input_grad[1]:
                grad_w = torch.bmm(spread, rows.transpose(1, 2)).view(r, k, o, c).permute(0, 2, 3, 1)
            if ctx.needs_input_grad[0]:
                grad_x = torch.bmm(kernels.transpose(1, 2), spread).view(r, c, n, length)
            return grad_x, grad_w, grad_b, None, None
        g = grad.reshape(r, o, -1)
        if ctx.needs_input_grad[1]:
            grad_w = torch.matmul(g, rows.transpose(-1, -2)).view(r, o, c, k)
        if ctx.needs_input_grad[0]:
            if shared:  # the input's gradient sums over the replicates: one mm over all R·O kernel rows
                grad_rows = torch.mm(kernels.reshape(r * o, c * k).t(), g.reshape(r * o, -1))
            else:
                grad_rows = torch.bmm(kernels.transpose(1, 2), g)
            if pointwise:
                grad_x = grad_rows.view(*grad_rows.shape[:-2], c, n, length)
            else:
                grad_x = _windows_adjoint(grad_rows.view(*grad_rows.shape[:-2], c, k, n, -1), k, stride, padding,
                                          length)
        return grad_x, grad_w, grad_b, None, None


def stacked_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                   padding: int) -> torch.Tensor:
    """A 1-D convolution (zero padding, no dilation, one group) for every replicate at once.

    ``weight`` (R, out, C, k); ``x`` (N, C, L) shared or (R, N, C, L). Computed in the (R, C, N, L) layout
    (:class:`_StackedConv1d`): the input's transposed view, which for the output of a previous stacked layer
    (and anything elementwise on it) is its memory layout, so no copy. Returns (R, N, out, L_out), a transposed
    view of the contiguous (R, out, N, L_out) result.
    """
    signals = (x.transpose(0, 1) if x.dim() == 3 else x.transpose(1, 2)).contiguous()
    return _StackedConv1d.apply(signals, weight, bias, stride, padding).transpose(1, 2)


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

    Stacked, the (R, N, C[, L]) input is seen in the (R, C, N[, L]) layout (no copy for a stacked layer's output,
    see the module docstring) as one (1, R·C, N·L) batch: the R replicates' C channels side by side, each with
    its N·L values. ``F.batch_norm`` itself normalises it, with the stacked weights, biases and running statistics
    seen as R·C vectors (views, so the in-place update of the running statistics lands in the stack): per channel
    exactly what each replicate's own BatchNorm computes, with PyTorch's fused kernel forward and backward.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _stacked(self.weight, 1):
            return super().forward(x)
        if self.momentum is None or not self.track_running_stats:
            raise ValueError("stacked BatchNorm1d needs a momentum and running statistics")
        if x.dim() not in (3, 4):
            raise ValueError(f"stacked BatchNorm1d takes (R, N, C) or (R, N, C, L) inputs, got {tuple(x.shape)}")
        r, c = self.weight.shape
        channels_first = x.transpose(1, 2)  # (R, C, N[, L])
        if self.training:
            self.num_batches_tracked.add_(1)
        y = F.batch_norm(channels_first.reshape(1, r * c, -1), self.running_mean.view(-1), self.running_var.view(-1),
                         self.weight.reshape(-1), self.bias.reshape(-1), self.training, self.momentum, self.eps)
        return y.view(channels_first.shape).transpose(1, 2)


# Every layer with parameters that a family run with ``Ensemble(mode="stack")`` may contain.
STACKABLE = (Linear, Conv1d, BatchNorm1d)
