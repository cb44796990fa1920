"""robench.models.memory_format: channels-last on CPU changes where the weights live, not what the model is."""

import copy

import pytest
import torch

from robench.files import save_tensors
from robench.models import build_model
from robench.models.checkpoints import load_checkpoint
from robench.models.memory_format import place
from robench.training.loop import train


def _model(name="small-cnn", channels=3):
    torch.manual_seed(0)
    return build_model(name, in_channels=channels, image_size=(16, 16), num_classes=4, mean=(0.5,) * channels,
                       std=(0.25,) * channels, options={"hidden": 16} if name == "small-cnn" else {"width": 0.25})


@pytest.mark.parametrize("name", ["small-cnn", "resnet18"])
def test_place_makes_conv_weights_channels_last_and_keeps_the_function(name, tmp_path):
    plain = _model(name).eval()
    fast = place(copy.deepcopy(plain), "cpu")
    convs = [p for p in fast.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert any(not p.is_contiguous() for p in convs)  # (1x1 kernels are both)
    x = torch.rand(5, 3, 16, 16)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    (ga,) = torch.autograd.grad(fast(xa)[:, 0].sum(), xa)
    (gb,) = torch.autograd.grad(plain(xb)[:, 0].sum(), xb)
    assert ga.shape == x.shape
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)
    save_tensors(tmp_path / "a.safetensors", plain.state_dict())   # what is saved (and hashed) is the same
    save_tensors(tmp_path / "b.safetensors", fast.state_dict())
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_place_leaves_models_without_conv_weights_and_other_devices_alone():
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    before = {k: v.stride() for k, v in mlp.state_dict().items()}
    place(mlp, "cpu")
    assert {k: v.stride() for k, v in mlp.state_dict().items()} == before
    model = _model()
    place(model, "meta")
    assert all(p.is_contiguous() for p in model.parameters())


def test_trained_and_loaded_checkpoints_are_channels_last_and_their_hash_is_of_the_saved_file(tiny_config):
    config = tiny_config()
    train(config, progress=False)
    model, loaded = load_checkpoint(config.out)
    assert loaded["model_sha256"] == loaded["weights_sha256"]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)
