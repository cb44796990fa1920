"""The rewritten layers of the gradient penalties give autograd's values and gradients (float64)."""

import copy

import pytest
import torch
from torch import nn

from robench.losses import build_loss
from robench.losses.input_gradients import forward_with_vjp
from robench.models import build_model
from robench.models.memory_format import place


def pool_model():
    """Strided and 1x1 convolutions, in-place ReLU, max-pooling, BN of a conv and BN of a non-conv."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(6, 5, 3, stride=2, padding=1, bias=False), nn.ReLU(), nn.Conv2d(5, 4, 1), nn.Tanh(),
        nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 3)).double()


def registry_model(name, options):
    torch.manual_seed(0)
    return build_model(name, in_channels=2, image_size=(8, 8), num_classes=3, mean=(0.5, 0.5), std=(0.25, 0.25),
                       options=options).double()


MODELS = {
    "pool": pool_model,
    "small-cnn": lambda: registry_model("small-cnn", {}),
    "resnet18": lambda: registry_model("resnet18", {"width": 0.0625}),
}


def objective_and_grads(model, loss_name, x, y, rewrite, monkeypatch):
    monkeypatch.setattr("robench.losses.input_gradients.REWRITE_LAYERS", rewrite)
    model = copy.deepcopy(model).train()
    torch.manual_seed(7)  # the same dropout draws
    hyper = {"projections": 0} if loss_name == "jacobian" else {}
    value, z = build_loss(loss_name, 3, hyper).objective(model, x, y)
    value.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    return value.detach(), z.detach(), grads, buffers


@pytest.mark.parametrize("layout", ["nchw", "channels-last"])
@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("loss_name", ["jacobian", "cross-lipschitz", "input-grad"])
def test_rewritten_layers_match_autograd(model_name, loss_name, layout, monkeypatch):
    model = MODELS[model_name]()
    if layout == "channels-last":  # as robench train and load_checkpoint place models on CPU
        place(model, "cpu")
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 2, 8, 8, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    fast = objective_and_grads(model, loss_name, x, y, True, monkeypatch)
    plain = objective_and_grads(model, loss_name, x, y, False, monkeypatch)
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast[1], plain[1], rtol=1e-10, atol=1e-12)
    assert fast[2].keys() == plain[2].keys() and len(fast[2]) > 0
    for name in fast[2]:
        torch.testing.assert_close(fast[2][name], plain[2][name], rtol=1e-8, atol=1e-10, msg=name)
    for name in fast[3]:  # running statistics updated alike
        torch.testing.assert_close(fast[3][name], plain[3][name], rtol=1e-10, atol=1e-12, msg=name)


def test_rewritten_vjps_equal_plain_jacobian_rows():
    model = pool_model().train()
    x = torch.rand(4, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    basis = torch.eye(3, dtype=torch.float64)[:, None, :].expand(3, 4, 3)
    z_fast, vjps_fast = forward_with_vjp(copy.deepcopy(model), x, rewrite=True)
    z_plain, vjps_plain = forward_with_vjp(copy.deepcopy(model), x, rewrite=False)
    torch.testing.assert_close(z_fast, z_plain)
    torch.testing.assert_close(vjps_fast(basis), vjps_plain(basis), rtol=1e-10, atol=1e-12)


def test_in_place_relu_before_max_pool_leaves_its_input_and_gives_the_same_output():
    """Under the rewrites ReLU runs out of place, and max-pool(ReLU(h)) as ReLU(max-pool(h))."""
    from robench.losses.layer_rewrites import RewrittenLayers
    h = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    h[0, 0] = -1.0  # whole windows below zero: ties at 0 after the ReLU
    kept = h.clone()
    with RewrittenLayers():
        out = torch.nn.functional.max_pool2d(nn.ReLU(inplace=True)(h), 2)
    torch.testing.assert_close(h, kept, rtol=0, atol=0)
    torch.testing.assert_close(out, torch.nn.functional.max_pool2d(torch.relu(kept), 2), rtol=0, atol=0)


class _CopiedBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the bytes that clone/copy_/_to_copy write (layout conversions show up as these)."""

    COPIES = (torch.ops.aten.clone.default, torch.ops.aten.copy_.default, torch.ops.aten._to_copy.default)

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in self.COPIES:
            written = args[0] if func is torch.ops.aten.copy_.default else out
            self.bytes += written.numel() * written.element_size()
        return out


def test_channels_last_rows_are_not_converted_between_layouts():
    """With channels-last weights the K·B Jacobian rows keep one layout: the exact penalty's step copies less than
    one full-resolution activation of the rows (0.93 MB of 2.6; before the layout helpers 4.2 MB)."""
    torch.manual_seed(0)
    model = build_model("small-cnn", in_channels=1, image_size=(16, 16), num_classes=10, mean=(0.5,), std=(0.25,))
    place(model, "cpu")
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 10, (8,))
    with _CopiedBytes() as copies:
        value, _ = build_loss("jacobian", 10, {}).objective(model.train(), x, y)
        value.backward()
    first_activation_of_the_rows = 10 * 8 * 32 * 16 * 16 * 4  # D·B rows × 32 channels × 16×16, float32
    assert 0 < copies.bytes < first_activation_of_the_rows
