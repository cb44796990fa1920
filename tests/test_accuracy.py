"""Accuracy targets on real data: digits in the default suite (seconds), Fashion-MNIST marked slow
(it needs the Debian package dataset-fashion-mnist or the files under --data-dir; about 5 minutes)."""

import pytest

from robench.training.config import TrainConfig
from robench.training.loop import train


@pytest.mark.parametrize("loss", ["ce", "gccs"])
def test_digits_small_cnn_reaches_95_percent(tmp_path, loss):
    config = TrainConfig(dataset="digits", model="small-cnn", loss=loss, out=str(tmp_path / loss), epochs=30)
    meta = train(config, device="cpu", progress=False)
    assert meta["test_accuracy"] >= 0.95, meta["history"]


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "gccs"])
def test_fashion_mnist_small_cnn_reaches_88_percent_in_5_epochs(tmp_path, loss):
    config = TrainConfig(dataset="fashion-mnist", model="small-cnn", loss=loss, out=str(tmp_path / loss), epochs=5)
    meta = train(config, device="cpu", progress=False)
    assert meta["test_accuracy"] >= 0.88, meta["history"]
