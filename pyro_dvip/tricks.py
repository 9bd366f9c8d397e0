"""How, not what, the networks compute: a faster backward pass for the per-factor generators'
transposed convolutions, a grouped layer applied one group at a time, and BatchNorm that
normalises without updating its running statistics. None of these changes a value."""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class TransposedConv(torch.autograd.Function):
    """F.conv_transpose2d (no output padding or dilation, one group) with its backward pass
    written as the convolutions it is the adjoint of: the input's gradient is conv2d(g, w)
    and the weight's is conv2d's weight gradient with g as input and x as output gradient.
    The same gradients as autograd's; on the CPU, oneDNN runs these 2-5x faster than the
    transposed convolution's own backward kernels (docs/performance.md). Forward mode (the
    object score's Jacobian) and vmap work as for F.conv_transpose2d: it is bilinear in x, w."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias, stride, padding):
        return F.conv_transpose2d(x, weight, bias, stride, padding)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, ctx.stride, ctx.padding = inputs
        ctx.bias_dtype = bias.dtype if bias is not None else None
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        # Under autocast the forward ran in grad's dtype: so do its adjoints, and each
        # gradient returns in its input's dtype, as autograd's own would.
        x_low, weight_low = x.to(grad.dtype), weight.to(grad.dtype)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight_low, None, ctx.stride, ctx.padding).to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.ops.aten.convolution_backward(
                x_low, grad, weight_low, None, ctx.stride, ctx.padding, (1, 1), False, (0, 0),
                1, (False, True, False),
            )[1].to(weight.dtype)  # fmt: skip
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3)).to(ctx.bias_dtype)
        return grad_x, grad_weight, grad_bias, None, None

    @staticmethod
    def jvp(ctx, x_dot, weight_dot, bias_dot, *_):
        x, weight = ctx.saved_tensors
        out_dot = None
        for a, b in ((x_dot, weight), (x, weight_dot)):
            if a is not None and b is not None:
                term = F.conv_transpose2d(a, b, None, ctx.stride, ctx.padding)
                out_dot = term if out_dot is None else out_dot + term
        if bias_dot is not None:
            out_dot = (
                bias_dot.view(1, -1, 1, 1)
                if out_dot is None
                else out_dot + bias_dot.view(1, -1, 1, 1)
            )
        return out_dot


def average_factor(norm: nn.BatchNorm2d) -> float:
    """The running-statistics update weight nn.BatchNorm2d uses (after counting the batch)."""
    if norm.momentum is not None:
        return norm.momentum
    return 1.0 / float(norm.num_batches_tracked) if norm.num_batches_tracked > 0 else 0.0


def block_of(layer: nn.Module, h: torch.Tensor, k: int, groups: int) -> torch.Tensor:
    """Group ``k`` of a layer built with ``groups`` groups, applied to that group's input h:
    exactly the grouped layer's output channels for group k."""
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        c_out = layer.out_channels // groups
        bias = layer.bias[k * c_out : (k + 1) * c_out]
        if isinstance(layer, nn.ConvTranspose2d):  # weight (C_in, C_out / groups, kH, kW)
            c_in = layer.in_channels // groups
            weight = layer.weight[k * c_in : (k + 1) * c_in]
            return TransposedConv.apply(h, weight, bias, layer.stride, layer.padding)
        weight = layer.weight[k * c_out : (k + 1) * c_out]  # (C_out, C_in / groups, kH, kW)
        return F.conv2d(h, weight, bias, layer.stride, layer.padding)
    if isinstance(layer, nn.BatchNorm2d):
        c = layer.num_features // groups
        rows = slice(k * c, (k + 1) * c)
        use_stats = not layer.training or layer.track_running_stats
        return F.batch_norm(
            h,
            layer.running_mean[rows] if use_stats else None,  # views: updated in place
            layer.running_var[rows] if use_stats else None,
            layer.weight[rows],
            layer.bias[rows],
            layer.training or not layer.track_running_stats,
            average_factor(layer),
            layer.eps,
        )
    return layer(h)


@contextmanager
def batchnorm_statistics_frozen(module: nn.Module):
    """Within, BatchNorm layers of ``module`` in training mode still normalise by the batch
    but leave their running statistics as they were (momentum 0): the explaining-away guide
    renders with the model's decoder, and only the model's own pass may update them."""
    norms = [
        m for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]  # fmt: skip
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    try:
        for m in norms:
            m.momentum = 0.0
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
