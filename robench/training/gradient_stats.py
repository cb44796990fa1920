"""Gradient statistics of a trained model, recorded in every run's run.json.

On a fixed, seeded, class-stratified subset of 500 test images (the same images for every
run of a dataset, whatever the run's seed), in eval mode:

* ``jacobian_frobenius`` — mean ‖J(x)‖_F, J = ∂z/∂x (what ``jacobian`` penalises);
* ``ce_input_gradient`` — mean ‖∇ₓ CE(z(x), y)‖₂ (the root of what ``input-grad`` penalises);
* ``cross_lipschitz`` — mean (1/D²) Σ_{l,m} ‖∇z_l − ∇z_m‖² (what ``cross-lipschitz`` penalises).

They let a user see that each defense lowers what it regularises, and how GCCS compares.
Note that z lives on different scales for different losses (GCCS targets sit at μ = 70),
so the statistics compare like with like only within a loss family.
"""

from __future__ import annotations

import torch

from robench.data import stratified_subset
from robench.losses.gradient_penalties import cross_lipschitz_term, jacobian_sq_frobenius
from robench.losses.input_gradients import ce_input_gradient, class_basis, forward_with_vjp, sum_squares

STATS_IMAGES = 500
STATS_SEED = 0


def gradient_statistics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                        device: torch.device | str = "cpu", batch_size: int = 100) -> dict:
    """Mean ‖J‖_F, mean ‖∇ₓ CE‖₂ and mean Cross-Lipschitz term of ``model`` on (x, y)."""
    was_training = model.training
    model.eval()
    sums = {"jacobian_frobenius": 0.0, "ce_input_gradient": 0.0, "cross_lipschitz": 0.0}
    try:
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            xb, yb = xb.to(device), yb.to(device)
            z, vjps = forward_with_vjp(model, xb)
            with torch.no_grad():
                jac = vjps(class_basis(z.detach()))
                grad_ce = ce_input_gradient(z.detach(), yb, vjps)
                sums["jacobian_frobenius"] += jacobian_sq_frobenius(jac).sqrt().sum().item()
                sums["ce_input_gradient"] += sum_squares(grad_ce, 1).sqrt().sum().item()
                sums["cross_lipschitz"] += cross_lipschitz_term(jac).sum().item()
    finally:
        model.train(was_training)
    stats = {k: v / len(y) for k, v in sums.items()}
    stats["n_images"] = len(y)
    return stats


def statistics_subset(y_test: torch.Tensor) -> torch.Tensor:
    """Indices of the fixed 500-image (or whole, if smaller) stratified test subset."""
    n = min(STATS_IMAGES, len(y_test))
    return stratified_subset(y_test, n, STATS_SEED)
