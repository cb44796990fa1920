"""Shared fixtures: tiny seeded synthetic data and tiny training configs (CPU, seconds)."""

import pytest
import torch
from torch import nn

from robench.data import load_dataset
from robench.training.config import TrainConfig

SYNTH = {"num_classes": 4, "image_size": 8, "n_train": 128, "n_test": 64}


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def synth_data():
    return load_dataset("synthetic", options=SYNTH)


@pytest.fixture
def tiny_config(tmp_path):
    """A factory of 2-epoch small-cnn configs on 4-class 8x8 synthetic data."""

    def make(loss="ce", out="run", **overrides):
        fields = dict(dataset="synthetic", dataset_options=dict(SYNTH), model="small-cnn",
                      model_options={"hidden": 16}, loss=loss, out=str(tmp_path / out), epochs=2, batch_size=32)
        fields.update(overrides)
        return TrainConfig(**fields)

    return make


def error_line(result):
    """The single ``error: ...`` line of a CLI result that failed with exit code 2 (no traceback)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


class Counting(nn.Module):
    """Counts the images a model is run on (forward passes × batch size)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.images = model, 0

    def forward(self, x):
        self.images += len(x)
        return self.model(x)
