"""Input gradients of a model, batched: vector-Jacobian products of z with respect to x.

The gradient-regularisation losses and the gradient statistics of a run need, for every
image in a batch, rows of the Jacobian J(x) = ∂z/∂x (D rows, one per class) or the input
gradient of the per-sample cross-entropy. :func:`forward_with_vjp` runs the model once
under ``torch.func.vjp`` and returns z with a function that maps cotangents of shape
(K, B, D) to input gradients of shape (K, B, C, H, W) in one ``torch.func.vmap`` call: all
D Jacobian rows come from one batched backward pass, never from a Python loop of D
backward calls, and the result stays differentiable with respect to the model's
parameters (double back-propagation).

Batch normalisation in training mode: while computing input gradients, the batch's mean
and variance are treated as constants (each image's Jacobian is that of the network as it
normalises this batch, without the O(1/B) coupling between images through the batch
statistics). This is the per-image Jacobian the penalties are defined on, and it avoids
back-propagating twice through the statistics, which made the exact Jacobian penalty
several times slower. The running statistics are updated as usual.

Rewritten layers (``rewrite``, on by default): :mod:`robench.losses.layer_rewrites`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vjp, vmap

from robench.losses.layer_rewrites import ConvBN, RewrittenLayers

VJP = Callable[[torch.Tensor], torch.Tensor]
REWRITE_LAYERS = True
"""The default of :func:`forward_with_vjp`'s ``rewrite``."""


def _constant_statistics_forward(bn: nn.modules.batchnorm._BatchNorm, record: list, layers: RewrittenLayers | None):
    """A training-mode BN forward with the batch statistics as constants; records them."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        mean, var = torch.batch_norm_update_stats(x.detach(), None, None, 0.0)  # biased variance
        record.append((bn, mean, var, x.numel() // x.shape[1]))
        scale = torch.rsqrt(var + bn.eps)
        if bn.affine:
            scale = scale * bn.weight
        shift = -mean * scale + (bn.bias if bn.affine else 0)
        conv = layers.convs.get(id(x)) if layers is not None else None
        if conv is not None and conv[0] is x:
            return ConvBN.apply(*conv[1:4], scale, shift, x.detach(), conv[4])
        shape = [1, -1] + [1] * (x.dim() - 2)
        return x * scale.view(shape) + shift.view(shape)

    return forward


@contextlib.contextmanager
def _constant_batch_statistics(model: nn.Module, record: list, layers: RewrittenLayers | None) -> Iterator[None]:
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for bn in norms:
        bn.forward = _constant_statistics_forward(bn, record, layers)
    try:
        with layers if layers is not None else contextlib.nullcontext():
            yield
    finally:
        for bn in norms:
            del bn.forward
        if layers is not None:
            layers.clear()


@torch.no_grad()
def _update_running_statistics(record: list) -> None:
    for bn, mean, var, n in record:
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        bn.num_batches_tracked += 1
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.lerp_(mean, momentum)
        bn.running_var.lerp_(var * n / max(n - 1, 1), momentum)


def forward_with_vjp(model: nn.Module, x: torch.Tensor,
                     rewrite: bool | None = None) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """z = model(x) (B, D) and ``vjps(cotangents (K, B, D)) -> input gradients (K, B, *x.shape[1:])``.

    ``vjps(c)[k, b] = Σ_d c[k, b, d] · ∂z_bd/∂x_b``; with c the standard basis (K = D) it is
    the Jacobian. Both z and the gradients are differentiable with respect to the model's
    parameters. Dropout and shake-shake draw once, in this single forward pass. ``rewrite``
    (default :data:`REWRITE_LAYERS`): run the layers as the Functions above; False: as they are.
    """
    record: list = []
    layers = RewrittenLayers() if (REWRITE_LAYERS if rewrite is None else rewrite) else None

    def run(inputs: torch.Tensor):
        out = model(inputs)
        # the batch statistics leave the transform as auxiliary outputs (unwrapped by vjp)
        return out, [(mean, var) for _, mean, var, _ in record]

    with _constant_batch_statistics(model, record, layers):
        z, vjp_fn, stats = vjp(run, x, has_aux=True)
    _update_running_statistics([(bn, mean, var, n) for (bn, _, _, n), (mean, var) in zip(record, stats)])

    def vjps(cotangents: torch.Tensor) -> torch.Tensor:
        (grads,) = vmap(vjp_fn)(cotangents)
        return grads

    return z, vjps


def class_basis(z: torch.Tensor) -> torch.Tensor:
    """Cotangents selecting each of the D outputs: shape (D, B, D), basis[d, b] = e_d."""
    b, d = z.shape
    return torch.eye(d, dtype=z.dtype, device=z.device)[:, None, :].expand(d, b, d)


def input_jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z (B, D) and the Jacobian ∂z/∂x of every image, shape (D, B, *x.shape[1:])."""
    z, vjps = forward_with_vjp(model, x)
    return z, vjps(class_basis(z))


def ce_input_gradient(z: torch.Tensor, y: torch.Tensor, vjps: VJP) -> torch.Tensor:
    """∇ₓ of each image's own cross-entropy ℓ(x_b, y_b), shape (B, *x.shape[1:]).

    The cotangent of Σ_b ℓ_b with respect to z_b is softmax(z_b) − onehot(y_b).
    """
    cotangent = F.softmax(z, dim=1) - F.one_hot(y, z.shape[1]).to(z.dtype)
    return vjps(cotangent[None])[0]


def random_unit_projections(z: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """K random directions per image, uniform on the unit sphere of R^D: shape (K, B, D)."""
    v = torch.randn((k, *z.shape), dtype=z.dtype, device=z.device, generator=generator)
    return v / v.norm(dim=-1, keepdim=True)


def sum_squares(g: torch.Tensor, start: int) -> torch.Tensor:
    """Σ of squares over dims ``start..`` (the image dims)."""
    return g.square().flatten(start).sum(-1)
