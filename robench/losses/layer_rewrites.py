"""The layers of a model rewritten for the double backward of the gradient penalties.

While :func:`robench.losses.input_gradients.forward_with_vjp` runs a model (``rewrite=True``, the
default), ``F.conv2d``, ``F.relu`` and ``F.max_pool2d`` go through the autograd Functions below,
whose backward passes are linear in the incoming gradient with constant masks, indices and BN
statistics, so that the double backward does only what the penalty's gradient needs: a
convolution's input gradient back-propagates as a forward convolution plus the standard
weight-gradient kernel (autograd's own double backward takes that weight gradient from a
convolution over the transposed batch, 3× slower), a ReLU multiplies by its saved mask and
max-pooling scatters to its saved indices (autograd's carry a zero gradient for the mask or
pooled input across all K·B rows, and vmap copies max-pooling's input and indices K times), and a
training-mode BN of a convolution's output is folded into that convolution's weights for the
backward. The values and gradients are those of autograd's formulas up to float rounding
(``tests/test_layer_rewrites.py`` compares both in float64); ``rewrite=False`` uses autograd's.

Measured on 2026-12-01 with NCHW weights (``benchmarks/bench_train_step.py --table defenses
--compare-plain``, batch 128, 1×28×28, 2 quiet CPU threads): one training step of the exact Jacobian
penalty takes 6.8× a CE step with the rewrites and 10.9× without on small-cnn (resnet18 width 0.25:
8.8× and 12.8×); Cross-Lipschitz 8.3× and 9.9× (9.6× and 13.3×). For the one-row penalties
(input-gradient, K = 1 Jacobian) the difference is within the benchmark's run-to-run noise
(input-gradient 2.07× vs 1.92× in one run, 2.06× vs 2.14× in the next). With channels-last weights
(:mod:`robench.models.memory_format`) the rows keep the activations' layout (:mod:`robench.losses.layouts`)
and a ReLU that feeds a max-pool runs after it (:class:`RewrittenLayers`): on 2026-12-02 that took the exact
Jacobian step from 588 to 432 ms on small-cnn and from 2409 to 1998 ms on resnet18 width 0.25 (one
after the other, 3 repeats), and the benchmark's interleaved table has the exact Jacobian at 7.44× and
Cross-Lipschitz at 6.86× a ce step on small-cnn, 10.8× and 10.4× on resnet18. There the convolutions are
most of both steps and each of the D = 10 rows costs about what a ce step does (an input gradient in the
rows, a convolution and a weight gradient in the double backward): ~10× is this algorithm's floor on a
network made of convolutions; the K-projection estimator is the cheaper one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd import Function
from torch.overrides import TorchFunctionMode

from robench.losses.layouts import (channels_last, flat_spatial, gather_spatial, masked,
                                     scatter_spatial)

CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_conv_backward = torch.ops.aten.convolution_backward


def _pair(v) -> list[int]:
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def _weight_grad(g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, geometry) -> torch.Tensor:
    """∂⟨g, conv(x, W)⟩/∂W (the standard weight-gradient kernel)."""
    stride, padding, dilation, groups = geometry
    return _conv_backward(g, x, weight, None, stride, padding, dilation, False, [0, 0], groups, [False, True, False])[1]


def _input_grad(g: torch.Tensor, weight: torch.Tensor, shape, geometry) -> torch.Tensor:
    """∂⟨g, conv(x, W)⟩/∂x for x of ``shape``. When C_in·k² ≤ C_out (a first layer on grey images) it is col2im
    of Wᵀg, on CPU 3× faster than oneDNN's kernel with its few output channels."""
    stride, padding, dilation, groups = geometry
    c_out, k = weight.shape[0], weight[0].numel()
    nhwc = channels_last(g)
    if groups == 1 and k <= c_out and g.device.type == "cpu" and (shape[1] == 1 or not nhwc):
        # (for C_in > 1 fold would return NCHW rows among channels-last ones: oneDNN's kernel keeps the layout)
        if nhwc:  # (N, h·w, C_out) @ (C_out, k): one matrix product on g's NHWC rows, forward and back
            cols = torch.matmul(flat_spatial(g, True), weight.reshape(c_out, k)).transpose(1, 2)
        else:
            cols = torch.matmul(weight.reshape(c_out, k).t(), g.flatten(2))
        return F.fold(cols, tuple(shape[2:]), tuple(weight.shape[2:]), dilation, padding, stride)
    # the input's values are not read, but its layout picks the kernel's: a mismatch with g would copy g
    if nhwc:
        empty = torch.empty(tuple(shape), dtype=g.dtype, device=g.device, memory_format=torch.channels_last)
    else:
        empty = g.new_empty(()).expand(tuple(shape))
    return _conv_backward(g, empty, weight, None, stride, padding, dilation, False, [0, 0], groups, [True, False, False])[0]


def _batched_first(info, in_dims, *tensors):
    """The vmapped tensors with the vmapped dimension first (unbatched ones expanded to it, without copies)."""
    return [t.movedim(d, 0) if d is not None else t.expand(info.batch_size, *t.shape) for t, d in zip(tensors, in_dims)]


class _ConvInputGrad(Function):
    """A convolution's input gradient, linear in (g, W); backward: a convolution and the weight gradient. Under
    vmap the K cotangents join the batch: one call on K·B images."""

    @staticmethod
    def forward(g, weight, shape, geometry):
        return _input_grad(g, weight, shape, geometry)

    @staticmethod
    def setup_context(ctx, inputs, output):
        g, weight, _, ctx.geometry = inputs
        ctx.save_for_backward(g, weight)

    @staticmethod
    def backward(ctx, gg):
        g, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad_g = F.conv2d(gg, weight, None, *ctx.geometry) if need[0] else None
        return grad_g, _weight_grad(g, gg, weight, ctx.geometry) if need[1] else None, None, None

    @staticmethod
    def vmap(info, in_dims, g, weight, shape, geometry):
        if in_dims[1] is not None:  # per-sample weights (robench has none): one call each
            g, weight = _batched_first(info, in_dims[:2], g, weight)
            return torch.stack([_ConvInputGrad.apply(a, w, shape, geometry) for a, w in zip(g, weight)]), 0
        (g,) = _batched_first(info, in_dims[:1], g)
        out = _ConvInputGrad.apply(g.reshape(-1, *g.shape[2:]), weight, (len(g) * shape[0], *shape[1:]), geometry)
        return out.view(len(g), *shape), 0


class _Conv(Function):
    """``F.conv2d`` whose input gradient is a :class:`_ConvInputGrad`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias, geometry):
        return F.conv2d(x, weight, bias, *geometry)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, ctx.geometry = inputs
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad_x = _ConvInputGrad.apply(g, weight, tuple(x.shape), ctx.geometry) if need[0] else None
        grad_w = _weight_grad(g, x, weight, ctx.geometry) if need[1] else None
        return grad_x, grad_w, g.sum((0, 2, 3)) if ctx.has_bias and need[2] else None, None


class ConvBN(Function):
    """A BN with constant statistics (per-channel scale s, shift t) of a conv's output h = conv(x, W) + b: forward
    h·s + t; backward that of conv(x, W·s) + b·s + t, so the rows never get multiplied by s."""

    @staticmethod
    def forward(x, weight, bias, scale, shift, h, geometry):
        return torch.addcmul(shift.view(1, -1, 1, 1), h, scale.view(1, -1, 1, 1))

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, scale, _, _, ctx.geometry = inputs
        ctx.save_for_backward(x, weight, bias, scale)

    @staticmethod
    def backward(ctx, g):
        x, weight, bias, scale = ctx.saved_tensors
        s = scale.view(-1, 1, 1, 1)
        grad_x = _ConvInputGrad.apply(g, weight * s, tuple(x.shape), ctx.geometry) if ctx.needs_input_grad[0] else None
        if not any(ctx.needs_input_grad[1:5]):
            return grad_x, None, None, None, None, None, None
        grad_ws, grad_t = _weight_grad(g, x, weight, ctx.geometry), g.sum((0, 2, 3))
        grad_s = (grad_ws * weight).sum((1, 2, 3)) + (bias * grad_t if bias is not None else 0)
        return grad_x, grad_ws * s, None if bias is None else grad_t * scale, grad_s, grad_t, None, None


class _MaskMul(Function):
    """g · mask for a constant 0/1 ``mask`` (a ReLU's backward), in the layout of :func:`masked`; linear in g."""

    @staticmethod
    def forward(g, mask):
        return masked(g, mask)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx, gg):
        return _MaskMul.apply(gg, ctx.saved_tensors[0]), None

    @staticmethod
    def vmap(info, in_dims, g, mask):
        g, mask = _batched_first(info, in_dims, g, mask)
        return masked(g, mask), 0


class _ReLU(Function):
    """ReLU (never in place: see :class:`RewrittenLayers`) whose backward multiplies by its saved 0/1 mask."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)  # the mask is made when needed: a ReLU that only feeds a max-pool never is

    @staticmethod
    def backward(ctx, g):
        (output,) = ctx.saved_tensors
        return _MaskMul.apply(g, (output > 0).to(output.dtype))


class _Unpool(Function):
    """Max-pooling's backward: g scattered to the saved argmax indices (under vmap, broadcast over the K rows)."""

    @staticmethod
    def forward(g, indices, shape):
        return scatter_spatial(g, indices, shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx, gg):
        (indices,) = ctx.saved_tensors
        return gather_spatial(gg, indices), None, None

    @staticmethod
    def vmap(info, in_dims, g, indices, shape):
        g, indices = _batched_first(info, in_dims[:2], g, indices)
        return scatter_spatial(g, indices, (len(g), *shape)), 0


class _MaxPool(Function):
    """``F.max_pool2d`` returning (output, indices), whose backward is an :class:`_Unpool`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, geometry):
        return torch.ops.aten.max_pool2d_with_indices(x, *geometry)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(output[1])
        ctx.shape = tuple(inputs[0].shape)

    @staticmethod
    def backward(ctx, g, _):
        return None if g is None else _Unpool.apply(g, ctx.saved_tensors[0], ctx.shape), None


class RewrittenLayers(TorchFunctionMode):
    """Routes 4-D ``F.conv2d``, ``F.relu`` and ``F.max_pool2d`` to the Functions above; remembers conv outputs,
    so that a training-mode BN of one becomes a :class:`ConvBN`, and ReLU outputs, so that max-pooling of one
    runs as ReLU of the max-pooled input: max-pool(ReLU(h)) = ReLU(max-pool(h)) exactly (max commutes with any
    nondecreasing map, and where the windows tie the gradient is zero either way), and the backward then
    multiplies by the ReLU's mask at the pooled resolution, on 1/4 of the entries for a 2×2 pool. ReLU runs out
    of place even when asked in place (``inplace=True``), so that h keeps its values and history for that: the
    returned tensor is the same, only the input is left as it was."""

    def __init__(self):
        super().__init__()
        self.convs: dict[int, tuple] = {}
        self.relus: dict[int, tuple] = {}

    def clear(self) -> None:
        self.convs.clear()
        self.relus.clear()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d:
            a = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **dict(zip(CONV_ARGS, args)), **kwargs}
            if not isinstance(a["padding"], str) and a["input"].dim() == 4:
                geometry = (_pair(a["stride"]), _pair(a["padding"]), _pair(a["dilation"]), a["groups"])
                h = _Conv.apply(a["input"], a["weight"], a.get("bias"), geometry)
                self.convs[id(h)] = (h, a["input"], a["weight"], a.get("bias"), geometry)
                return h
        elif func is F.relu or func is torch.relu:
            h = args[0] if args else kwargs["input"]
            out = _ReLU.apply(h)
            self.relus[id(out)] = (out, h)
            return out
        elif func is F.max_pool2d:
            a = {"padding": 0, "dilation": 1, "ceil_mode": False, **dict(zip(POOL_ARGS, args)), **kwargs}
            if not a.get("return_indices") and a["input"].dim() == 4:
                kernel = _pair(a["kernel_size"])
                geometry = (kernel, _pair(a.get("stride") or kernel), _pair(a["padding"]), _pair(a["dilation"]),
                            bool(a["ceil_mode"]))
                relu = self.relus.get(id(a["input"]))
                if relu is not None and relu[0] is a["input"]:
                    return _ReLU.apply(_MaxPool.apply(relu[1], geometry)[0])
                return _MaxPool.apply(a["input"], geometry)[0]
        return func(*args, **kwargs)
