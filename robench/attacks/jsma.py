"""``jsma``: Jacobian-based saliency map attack (Papernot et al. 2016), the paper's 1-pixel variant.

Targeted at t = (y + 1) mod D. At each iteration, for every image not yet classified as t,
the two gradients a = ∂z_t/∂x and b = Σ_{j≠t} ∂z_j/∂x (one forward pass, two backward passes
to the input through the retained graph, never the full Jacobian) give each feature p the
saliency a_p·|b_p| where
a_p > 0 and b_p < 0 (else 0). The single feature with the largest saliency is raised by
θ = the image's absolute ε (clipped to 1) and never picked again. An image stops when it is
classified as t, when no feature has positive saliency, or after ``steps`` iterations
(default 200). Each feature moves at most once, by at most ε: x_adv stays in its ε-ball.
Memory is linear in batch × features. Shapes: x (B, C, H, W) in [0, 1], y (B,), eps (B,).

The gradients come from an equivalent copy of the model with BatchNorm folded into its convs,
channels_last images, max-pooling moved before ReLU (``robench.attacks.prepare``): 1.7× faster on
small-cnn.
"""

from __future__ import annotations

import torch

from robench.attacks.base import Attack, num_classes_of, target_labels
from robench.attacks.prepare import prepare_for_input_gradients, to_memory_format
from robench.attacks.registry import ATTACKS
from robench.checks import check_count

COMPACT_EVERY = 10  # iterations between shrinking the working set to the images still active


def target_and_other_gradients(model, x: torch.Tensor, t: torch.Tensor, num_classes: int,
                               memory_format: torch.memory_format = torch.contiguous_format):
    """a = ∂z_t/∂x and b = Σ_{j≠t} ∂z_j/∂x, flattened to (B, P), and the logits z (B, D), detached.

    Two plain backward passes through one retained graph, with respect to the input only. On
    small-cnn (CPU, batch 100) this is 2.7× faster than one ``torch.func.vmap`` over ``vjp``
    with the two cotangents stacked, whose batched conv and pooling backward is slow.
    """
    x = to_memory_format(x.detach(), memory_format).requires_grad_(True)
    with torch.enable_grad():
        z = model(x)
        hit_t = torch.zeros_like(z).scatter_(1, t.view(-1, 1), 1.0)   # one-hot without F.one_hot's host sync
        (a,) = torch.autograd.grad(z, x, hit_t, retain_graph=True)
        (b,) = torch.autograd.grad(z, x, 1 - hit_t)
    return a.flatten(1), b.flatten(1), z.detach()


@ATTACKS.register("jsma", "native", "JSMA (Papernot et al. 2016), 1-pixel saliency map, targeted at (y+1) mod D")
class JSMA(Attack):
    name = "jsma"
    targeted = True

    def __init__(self, steps: int = 200):
        check_count(steps, "jsma: --steps")
        self.steps = steps

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": None, "restarts": 1, "attack_loss": "saliency"}

    def __call__(self, model, x, y, eps):
        if not bool((eps > 0).any()):
            return x.clone()
        num_classes = num_classes_of(model, x)
        model, memory_format = prepare_for_input_gradients(model, x)
        targets = target_labels(y, num_classes)
        theta = eps.to(device=x.device, dtype=x.dtype).view(-1, 1)
        flat = x.detach().flatten(1).clone()                 # (B, P): the working adversarial images
        ceiling = (flat + theta).clamp(max=1.0)              # each feature's value once raised
        used = (theta <= 0).expand_as(flat).clone()          # ε = 0: nothing may move
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        rows = torch.arange(len(x), device=x.device)        # the working set: images still active
        for step in range(self.steps):
            if step % COMPACT_EVERY == 0:                    # one host sync per COMPACT_EVERY steps
                keep = active[rows]
                rows = rows[keep]
                if len(rows) == 0:
                    break
            t = targets[rows]
            a, b, z = target_and_other_gradients(model, flat[rows].view(len(rows), *x.shape[1:]), t, num_classes,
                                                 memory_format)
            with torch.no_grad():
                reached = z.argmax(1) == t
                saliency = torch.where((a > 0) & (b < 0) & ~used[rows] & (flat[rows] < ceiling[rows]),
                                       a * b.abs(), torch.zeros_like(a))
                best, pick = saliency.max(1)
                move = ~reached & (best > 0) & active[rows]
                active[rows] = move                              # stop: reached t or nothing to raise
                r, p = rows[move], pick[move]
                flat[r, p] = ceiling[r, p]
                used[r, p] = True
        return flat.view_as(x)
