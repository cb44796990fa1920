"""Memory layouts of the layer rewrites' tensors: channels-last (NHWC) activations kept channels-last.

The Functions of :mod:`robench.losses.layer_rewrites` run the K·B Jacobian rows of a penalty through a
model whose convolution weights are channels-last on CPU (:mod:`robench.models.memory_format`). Every
kernel there converts an operand whose layout differs from the others' (oneDNN's convolutions, sums of
two rows, elementwise products), which copied ~30 % of an exact-penalty step before these helpers
(2026-12-02). Here the rows keep the activations' layout, with the vmapped (K) dimension outermost: max-pool's
unpooling scatters into, and gathers from, (…, H·W, C) views of channels-last tensors, and a ReLU's mask
product takes the mask's layout. NCHW tensors keep the plain (…, C, H·W) indexing.
"""

from __future__ import annotations

import torch


def channels_last(t: torch.Tensor) -> bool:
    """Whether the last 4 dims of ``t`` (N, C, H, W) are laid out channels-last (NHWC) with C > 1."""
    return t.shape[-3] > 1 and t.stride(-3) == 1


def flat_spatial(t: torch.Tensor, nhwc: bool) -> torch.Tensor:
    """(..., C, H, W) as (..., H·W, C) if ``nhwc`` else (..., C, H·W): a view when ``t`` has that layout."""
    return t.movedim(-3, -1).flatten(-3, -2) if nhwc else t.flatten(-2)


def unflat_spatial(t: torch.Tensor, shape, nhwc: bool) -> torch.Tensor:
    """The inverse of :func:`flat_spatial` for a contiguous ``t``, to ``shape`` (..., C, H, W) in that layout."""
    if not nhwc:
        return t.view(shape)
    *lead, c, h, w = shape
    return t.view(*lead, h, w, c).movedim(-1, -3)


def masked(g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """g · mask, laid out as the activations (``mask``) are, with g's leading (vmapped) dims outermost: the rows
    of every layer then share one layout, and no kernel or sum of two rows converts between layouts."""
    if g.dim() >= 4 and channels_last(mask) and not g.movedim(-3, -1).is_contiguous():
        g = g.movedim(-3, -1).contiguous().movedim(-1, -3)  # once, where an NCHW gradient enters the convolutions
    return g * mask  # g first: the product takes its layout (the mask's stride-0 vmapped dim would come first)


def scatter_spatial(g: torch.Tensor, indices: torch.Tensor, shape) -> torch.Tensor:
    """Zeros of ``shape`` (..., C, H, W) with g scattered to the flat spatial ``indices``, in the layout of
    ``indices`` (that of the pooled input), so that no kernel downstream converts it."""
    cl = channels_last(indices)
    *lead, c, h, w = shape
    out = g.new_zeros(*lead, h * w, c) if cl else g.new_zeros(*lead, c, h * w)
    out.scatter_(-2 if cl else -1, flat_spatial(indices, cl), flat_spatial(g, cl))
    return unflat_spatial(out, shape, cl)


def gather_spatial(gg: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """gg at the flat spatial ``indices``, shape and layout those of ``indices``."""
    cl = channels_last(indices)
    out = flat_spatial(gg, cl).gather(-2 if cl else -1, flat_spatial(indices, cl))
    return unflat_spatial(out, indices.shape, cl)
