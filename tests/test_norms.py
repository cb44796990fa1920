"""Threat-model helpers: projections stay in the ball and the box, steps have unit norm, starts are inside."""

import pytest
import torch

from robench.attacks.base import per_image
from robench.norms import distance, flat_norm, project, random_start, steepest_ascent


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_projection_random_start_and_step(norm):
    torch.manual_seed(0)
    x = torch.rand(6, 3, 5, 5)
    eps = torch.tensor([0.0, 0.01, 0.1, 0.5, 1.0, 3.0])
    radius = per_image(eps, x)
    far = x + torch.randn_like(x) * 2
    for point in (project(far, x, radius, norm), random_start(x, radius, norm)):
        assert point.min() >= 0 and point.max() <= 1
        assert (distance(point, x, norm) <= eps + 1e-6).all()
    assert torch.equal(project(far, x, radius, norm)[0], x[0])  # ε = 0: x itself
    step = steepest_ascent(torch.randn_like(x), norm)
    size = step.flatten(1).abs().amax(1) if norm == "Linf" else step.flatten(1).norm(dim=1)
    assert torch.allclose(size, torch.ones(6))
    inside = x + 0.001 * steepest_ascent(torch.randn_like(x), norm)
    kept = (distance(inside.clamp(0, 1), x, norm) <= eps) & (eps > 0.01)
    assert torch.allclose(project(inside, x, radius, norm)[kept], inside.clamp(0, 1)[kept])  # no move inside


def test_l2_projection_is_the_radial_one():
    x = torch.full((1, 1, 2, 2), 0.5)
    far = x + torch.tensor([0.3, 0.4, 0.0, 0.0]).view(1, 1, 2, 2)  # ‖δ‖₂ = 0.5
    got = project(far, x, torch.tensor(0.25).view(1, 1, 1, 1), "L2")
    assert torch.allclose(got - x, torch.tensor([0.15, 0.2, 0.0, 0.0]).view(1, 1, 2, 2))


def test_l2_start_on_the_sphere_for_the_autoattack_family():
    x = torch.rand(6, 1, 8, 8) * 0.5 + 0.25  # far from the box, so the projection keeps the radius
    radius = torch.full((6, 1, 1, 1), 0.5)
    torch.manual_seed(0)
    on = random_start(x, radius, "L2", on_sphere=True)
    inside = random_start(x, radius, "L2")
    assert torch.allclose(flat_norm(on - x).flatten(), torch.full((6,), 0.5), atol=1e-5)
    assert (flat_norm(inside - x).flatten() < 0.5 - 1e-3).any()
