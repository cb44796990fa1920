"""Native JSMA against an independent reference (full per-image Jacobian, numpy selection), and the
prepared model it attacks (BatchNorm folded, channels_last) against the model it came from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robench.attacks import build_attack
from robench.attacks.prepare import (fold_batch_norm, pool_before_relu, prepare_for_input_gradients, to_memory_format,
                                     traced_copy)
from robench.models import MODELS, build_model, model_options


def make(name: str, channels: int = 1, size=(8, 8), classes: int = 4, dtype=torch.float32) -> nn.Module:
    """An eval-mode model whose BatchNorms have non-trivial running statistics."""
    torch.manual_seed(0)
    options = {"width": 0.125} if "width" in model_options(name) else {}
    model = build_model(name, in_channels=channels, image_size=size, num_classes=classes,
                        mean=(0.3,) * channels, std=(0.4,) * channels, options=options).to(dtype)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def reference_jsma(model, x, y, eps, steps):
    """Papernot et al.'s 1-pixel JSMA, one image at a time: the whole Jacobian from torch, the rest numpy."""
    num_classes = model(x[:1]).shape[1]
    out = []
    for image, label, radius in zip(x, y, eps.tolist()):
        target = (int(label) + 1) % num_classes
        adv = image.detach().clone()
        original = image.flatten().numpy()
        used = np.zeros(original.size, dtype=bool)
        for _ in range(steps):
            logits = model(adv[None]).detach().numpy()[0]
            if logits.argmax() == target:
                break
            jac = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], adv).flatten(1).numpy()
            a = jac[target]
            b = jac.sum(0) - a
            flat = adv.flatten().numpy().copy()
            ceiling = np.minimum(original + radius, 1.0)
            allowed = (a > 0) & (b < 0) & ~used & (flat < ceiling)
            saliency = np.where(allowed, a * np.abs(b), 0.0)
            pick = int(saliency.argmax())
            if saliency[pick] <= 0:
                break
            flat[pick] = ceiling[pick]
            used[pick] = True
            adv = torch.from_numpy(flat).view_as(image)
        out.append(adv)
    return torch.stack(out)


@pytest.mark.parametrize("channels", [1, 3])
def test_native_jsma_equals_the_reference(channels):
    """float64, so that folding BatchNorm cannot break a saliency tie differently."""
    model = make("small-cnn", channels=channels, dtype=torch.float64)
    torch.manual_seed(1)
    x = torch.rand(6, channels, 8, 8, dtype=torch.float64)
    y = torch.arange(6) % 4
    eps = torch.tensor([0.0, 0.05, 0.1, 0.2, 0.3, 0.5], dtype=torch.float64)
    expected = reference_jsma(model, x, y, eps, steps=12)
    got = build_attack("jsma", "native", steps=12)(model, x, y, eps)
    assert (expected != x).any(), "the reference changed nothing: the test would be vacuous"
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", MODELS.names())
def test_prepared_model_computes_the_same_function(name):
    model = make(name, channels=3, size=(8, 8))
    x = torch.rand(5, 3, 8, 8)
    prepared, memory_format = prepare_for_input_gradients(model, x)
    assert prepared is not model and memory_format == torch.channels_last
    with torch.no_grad():
        expected, got = model(x), prepared(to_memory_format(x, memory_format))
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()), "model was modified"


def test_small_cnn_loses_every_batch_norm_and_keeps_its_input_gradient():
    model = make("small-cnn", size=(12, 12))
    folded = fold_batch_norm(traced_copy(model))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    x = torch.rand(4, 1, 12, 12, requires_grad=True)
    (expected,) = torch.autograd.grad(model(x)[:, 1].sum(), x)
    (got,) = torch.autograd.grad(folded(x)[:, 1].sum(), x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def test_pooling_before_relu_gives_the_same_output_and_gradient_exactly():
    """Pre-activations with many negative windows, exact zeros and exact positive ties."""
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(48, 5)).eval()
    swapped = pool_before_relu(traced_copy(net))
    order = [type(dict(swapped.named_modules())[n.target]).__name__ for n in swapped.graph.nodes if n.op == "call_module"]
    assert order == ["Conv2d", "MaxPool2d", "ReLU", "Flatten", "Linear"]
    torch.manual_seed(3)
    x = torch.randn(8, 2, 8, 8) - 0.3
    x[:, :, :2, :2] = 0.0                                  # windows of exact zeros: relu'(0) = 0 both ways
    x[:, :, 4:6, 4:6] = 0.7                                # ties among positive values
    for cotangent in (torch.eye(5)[2], torch.ones(5)):
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        outs = [net(xs[0]), swapped(xs[1])]
        assert torch.equal(outs[0], outs[1])
        grads = [torch.autograd.grad(out, xi, cotangent.expand_as(out))[0] for out, xi in zip(outs, xs)]
        assert torch.equal(grads[0], grads[1]) and grads[0].abs().sum() > 0


def test_relu_used_elsewhere_is_not_moved():
    class Branching(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu, self.pool = nn.ReLU(), nn.MaxPool2d(2)

        def forward(self, x):
            h = self.relu(x)
            return self.pool(h).sum() + h.sum()

    graph = pool_before_relu(traced_copy(Branching().eval()))
    x = torch.randn(2, 1, 4, 4)
    assert [n.target for n in graph.graph.nodes if n.op == "call_module"] == ["relu", "pool"]
    assert torch.equal(graph(x), Branching()(x))


def test_training_and_untraceable_models_are_not_rewritten():
    training = make("small-cnn").train()
    assert traced_copy(training) is None
    partly_training = make("small-cnn")
    partly_training.features[1].train()
    assert traced_copy(partly_training) is None
    prepared, _ = prepare_for_input_gradients(partly_training, torch.rand(2, 1, 8, 8))
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in prepared.modules())

    class DataDependent(nn.Module):       # control flow on a tensor value: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    assert traced_copy(DataDependent().eval()) is None


def test_one_channel_images_really_get_channels_last_strides():
    x = torch.rand(3, 1, 5, 7)
    assert x.is_contiguous(memory_format=torch.channels_last)   # the loophole: C = 1 counts as both
    converted = to_memory_format(x, torch.channels_last)
    assert converted.stride() == (35, 1, 7, 1) and torch.equal(converted, x)
    assert to_memory_format(x, torch.contiguous_format).stride() == x.stride()

