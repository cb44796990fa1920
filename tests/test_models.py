"""Tests for robench.models and robench.architectures: every registered model gets the same invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robench.errors import RobenchError
from robench.models import (MODELS, Classifier, LatentMapper, Normalize, build_model, model_options)
from robench.models.architectures.shake_shake import (ShakeBlock, ShakeShakeFunction, ShakeShortcut, shake_shake)

# (channels, image size, classes): tiny digits, CIFAR-100-like, odd non-square, MNIST-like
SHAPES = [(1, (8, 8), 10), (3, (32, 32), 100), (2, (9, 11), 3), (1, (28, 28), 10)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors run fastest on one thread, and a busy machine makes OpenMP spin-waits very slow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_options(name: str) -> dict:
    """Narrow widths so that every model runs in milliseconds on CPU."""
    return {"width": 0.125} if "width" in model_options(name) else {}


def make(name: str, channels: int = 1, size: tuple[int, int] = (8, 8), classes: int = 10, **options) -> Classifier:
    torch.manual_seed(0)
    mean = tuple(0.1 * (i + 1) for i in range(channels))
    std = tuple(0.2 + 0.1 * i for i in range(channels))
    return build_model(
        name, in_channels=channels, image_size=size, num_classes=classes, mean=mean, std=std,
        options={**small_options(name), **options},
    )


def images(batch: int, channels: int, size: tuple[int, int], seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, channels, *size, generator=torch.Generator().manual_seed(seed))


def test_registered_names_and_descriptions():
    assert MODELS.names() == ["resnet18", "shake-shake-26-2x112d", "shake-shake-26-2x96d", "small-cnn"]
    for entry in MODELS.entries():
        assert entry.description and "\n" not in entry.description


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("channels,size,classes", SHAPES)
def test_output_shape(name, channels, size, classes):
    model = make(name, channels, size, classes)
    x = images(3, channels, size)
    assert model(x).shape == (3, classes)
    model.eval()
    assert model(x).shape == (3, classes)
    assert model.num_classes == classes


@pytest.mark.parametrize("name", MODELS.names())
def test_gradients_reach_input_and_every_parameter(name):
    model = make(name, 3, (16, 16), 5)
    x = images(4, 3, (16, 16)).requires_grad_(True)
    z = model(x)
    (z * torch.randn(z.shape, generator=torch.Generator().manual_seed(2))).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MODELS.names())
def test_eval_is_deterministic_and_train_is_not(name):
    model = make(name, 1, (8, 8), 10)
    x = images(4, 1, (8, 8))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))


@pytest.mark.parametrize("name", MODELS.names())
def test_last_layer_is_linear_with_no_activation_after_it(name):
    model = make(name, 1, (8, 8), 7).eval()
    last = list(model.modules())[-1]
    assert isinstance(last, nn.Linear) and last.out_features == 7
    assert model.mapper[-1] is last
    seen = {}
    last.register_forward_hook(lambda module, inputs, output: seen.setdefault("z", output))
    z = model(images(5, 1, (8, 8)))
    assert torch.equal(z, seen["z"])  # the model returns the raw linear output
    assert (z < 0).any()  # no ReLU/softmax squashing


@pytest.mark.parametrize("name", MODELS.names())
def test_mapper_is_dropout_linear_blocks_with_relu_between(name):
    mapper = make(name).mapper
    assert isinstance(mapper, LatentMapper)
    kinds = [type(m) for m in mapper]
    n_linear = kinds.count(nn.Linear)
    assert n_linear >= 1
    expected = [nn.Dropout, nn.Linear, nn.ReLU] * (n_linear - 1) + [nn.Dropout, nn.Linear]
    assert kinds == expected
    assert all(m.p == pytest.approx(0.2) for m in mapper if isinstance(m, nn.Dropout))


def test_mapper_hidden_widths_follow_the_contract():
    assert [m.out_features for m in make("small-cnn").mapper if isinstance(m, nn.Linear)] == [128, 10]
    assert [m.out_features for m in make("resnet18").mapper if isinstance(m, nn.Linear)] == [256, 10]
    assert [m.out_features for m in make("shake-shake-26-2x96d").mapper if isinstance(m, nn.Linear)] == [10]
    widths = [m.out_features for m in make("shake-shake-26-2x96d", hidden=[32, 16]).mapper if isinstance(m, nn.Linear)]
    assert widths == [32, 16, 10]
    mapper = LatentMapper(6, 4, hidden=(5,), keep_prob=0.5)
    assert [type(m) for m in mapper] == [nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert mapper[0].p == 0.5


def test_small_cnn_flattens_64x2x2_for_8x8_input():
    model = make("small-cnn", 1, (8, 8), 10)
    assert model.features.out_features == 64 * 2 * 2
    assert model.features(images(2, 1, (8, 8))).shape == (2, 256)
    assert make("small-cnn", 1, (28, 28), 10).features.out_features == 64 * 7 * 7


def test_normalize_applies_mean_and_std_per_channel():
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    x = images(2, 3, (4, 5))
    expected = (x.numpy() - np.array(mean)[None, :, None, None]) / np.array(std)[None, :, None, None]
    np.testing.assert_allclose(Normalize(mean, std)(x).numpy(), expected, rtol=1e-6, atol=1e-6)
    model = make("small-cnn", 3, (8, 8))
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())
    np.testing.assert_allclose(model.normalize.mean.flatten().numpy(), [0.1, 0.2, 0.3], rtol=1e-6)


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(RobenchError, match=r"unknown model 'resnet-18' \(did you mean 'resnet18'\?\)"):
        make("resnet-18")
    with pytest.raises(RobenchError, match="did you mean 'small-cnn'"):
        build_model("small_cnn", in_channels=1, image_size=(8, 8), num_classes=10, mean=(0.5,), std=(0.5,))


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("resnet18", {"depth": 34}, "unknown option 'depth' for model 'resnet18'; known: hidden, width"),
        ("small-cnn", {"width": 0.5}, "unknown option 'width' for model 'small-cnn'"),
        ("resnet18", {"width": 0}, "option 'width' must be a number > 0"),
        ("shake-shake-26-2x96d", {"width": -1.0}, "option 'width' must be a number > 0"),
        ("shake-shake-26-2x112d", {"width": "wide"}, "option 'width'"),
        ("resnet18", {"hidden": 0}, "option 'hidden'"),
        ("small-cnn", {"hidden": [64, -1]}, "option 'hidden'"),
    ],
)
def test_bad_options_are_user_errors(name, options, message):
    with pytest.raises(RobenchError, match=message):
        build_model(name, in_channels=1, image_size=(8, 8), num_classes=10, mean=(0.5,), std=(0.5,), options=options)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"mean": (0.5, 0.5)}, "one entry per channel"),
        ({"std": (0.0,)}, "std must be positive"),
        ({"num_classes": 1}, "num_classes"),
        ({"in_channels": 0, "mean": (), "std": ()}, "in_channels"),
        ({"image_size": (2, 8)}, "at least 4x4"),
    ],
)
def test_bad_shapes_are_user_errors(kwargs, message):
    args = {"in_channels": 1, "image_size": (8, 8), "num_classes": 10, "mean": (0.5,), "std": (0.5,)} | kwargs
    with pytest.raises(RobenchError, match=message):
        build_model("small-cnn", **args)


def test_shake_function_forward_mixes_with_alpha_and_backward_splits_with_beta():
    a = torch.randn(3, 2, 4, 4, requires_grad=True)
    b = torch.randn(3, 2, 4, 4, requires_grad=True)
    alpha = torch.tensor([0.1, 0.5, 0.9]).view(3, 1, 1, 1)
    beta = torch.tensor([0.7, 0.2, 0.4]).view(3, 1, 1, 1)
    y = ShakeShakeFunction.apply(a, b, alpha, beta)
    torch.testing.assert_close(y, alpha * a + (1 - alpha) * b)
    g = torch.randn_like(y)
    y.backward(g)
    torch.testing.assert_close(a.grad, beta * g)
    torch.testing.assert_close(b.grad, (1 - beta) * g)


def test_shake_function_is_the_true_gradient_when_beta_equals_alpha():
    a = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([0.3, 0.8], dtype=torch.float64).view(2, 1, 1, 1)
    assert torch.autograd.gradcheck(lambda a, b: ShakeShakeFunction.apply(a, b, alpha, alpha), (a, b))


def test_shake_shake_draws_one_alpha_per_image_in_training_and_uses_half_at_eval():
    a, b = torch.ones(64, 3, 2, 2), torch.zeros(64, 3, 2, 2)
    torch.testing.assert_close(shake_shake(a, b, training=False), torch.full_like(a, 0.5))
    torch.manual_seed(0)
    mixed = shake_shake(a, b, training=True)  # = alpha per image
    per_image = mixed.flatten(1)
    assert torch.equal(per_image, per_image[:, :1].expand_as(per_image))
    assert ((per_image >= 0) & (per_image <= 1)).all()
    assert per_image[:, 0].unique().numel() == 64


def test_shake_block_eval_is_the_plain_average_of_branches():
    block = ShakeBlock(4, 4).eval()
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), x + 0.5 * (block.branch1(x) + block.branch2(x)))


@pytest.mark.parametrize("size,out_size", [(8, 4), (7, 4), (32, 16)])
def test_shake_shortcut_halves_the_image_and_reaches_the_channels(size, out_size):
    shortcut = ShakeShortcut(16, 24, stride=2)
    assert shortcut(torch.randn(2, 16, size, size)).shape == (2, 24, out_size, out_size)
    assert ShakeShortcut(16, 5, stride=2)(torch.randn(2, 16, size, size)).shape == (2, 5, out_size, out_size)


def test_shake_shortcut_second_path_sees_the_input_shifted_by_one_pixel():
    shortcut = ShakeShortcut(1, 2, stride=1).eval()
    nn.init.ones_(shortcut.conv1.weight)
    nn.init.ones_(shortcut.conv2.weight)
    shortcut.bn.eps = 0.0  # running stats are mean 0, var 1: BN is the identity
    x = torch.randn(1, 1, 4, 4)
    out = shortcut(x)
    relu = x.clamp(min=0)[0, 0]
    torch.testing.assert_close(out[0, 0], relu)
    shifted = torch.zeros(4, 4)
    shifted[:3, :3] = relu[1:, 1:]
    torch.testing.assert_close(out[0, 1], shifted)


def test_shake_shake_is_26_layers_with_widths_k_2k_4k():
    model = make("shake-shake-26-2x96d", 3, (8, 8), 10, width=1.0 / 8)  # k = 12
    blocks = [m for m in model.features.modules() if isinstance(m, ShakeBlock)]
    convs = [m for b in blocks for m in b.branch1 if isinstance(m, nn.Conv2d)]
    assert len(blocks) == 12 and 1 + len(convs) + 1 == 26  # stem + 2 convs per block + FC
    assert [b.branch1[1].out_channels for b in blocks] == [12] * 4 + [24] * 4 + [48] * 4
    assert [b.branch1[1].stride[0] for b in blocks] == [1, 1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1]
    assert model.features.stem[0].out_channels == 16
    assert model.mapper[-1].in_features == 48


@pytest.mark.parametrize(
    "name,channels,low,high",
    [("resnet18", 3, 11.1e6, 11.4e6), ("shake-shake-26-2x96d", 3, 25.9e6, 26.5e6), ("shake-shake-26-2x112d", 3, 35e6, 36.5e6)],
)
def test_full_size_parameter_counts(name, channels, low, high):
    model = build_model(name, in_channels=channels, image_size=(32, 32), num_classes=10, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert low < sum(p.numel() for p in model.parameters()) < high
