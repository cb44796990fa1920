"""The offline datasets: scikit-learn's bundled ``digits`` and generated ``synthetic`` images.

Neither ever needs a file or the network: ``digits`` is robench's default for quick runs and
the README's main job, ``synthetic`` is tiny seeded data for tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robench.data.datasets import DATASETS, DIGIT_NAMES, RawSplits, check_options, stats_info, stratified_subset
from robench.errors import RobenchError

DIGITS_SPLIT_SEED = 0  # fixed: the digits test set never depends on the user's seed
DIGITS_TEST_SIZE = 360


@DATASETS.register("digits", "digits: 1,797 8x8 grey handwritten digits bundled with scikit-learn, 10 classes")
def load_digits(data_dir: Path, download: bool, options: dict) -> RawSplits:
    """scikit-learn's digits (UCI optdigits test set; Alpaydin & Kaynak 1998), values 0..16 scaled to [0, 1].

    A fixed stratified split (seed 0, independent of the user's seed): 1,437 train / 360 test.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    check_options("digits", options, {})
    bunch = sk_load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    test = stratified_subset(torch.from_numpy(y), DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED).numpy()
    train = np.setdiff1d(np.arange(len(y)), test)
    return RawSplits(stats_info("digits", x[train], 10, DIGIT_NAMES), x[train], y[train], x[test], y[test])


SYNTHETIC_DEFAULTS = {"num_classes": 10, "channels": 1, "image_size": 8, "n_train": 512, "n_test": 256, "data_seed": 0}


SYNTHETIC_LIMITS = {"num_classes": 1000, "channels": 64, "n_train": 1_000_000, "n_test": 1_000_000,
                    "data_seed": 2**32 - 1, "image_size": 1024}
"""Upper bounds of the synthetic options: generated data must fit in memory (at most about 10^9 values)."""


def synthetic_int_option(options: dict, key: str, minimum: int) -> int:
    """An integer option of ``synthetic`` in ``minimum``..its limit (:data:`SYNTHETIC_LIMITS`)."""
    value = options.get(key, SYNTHETIC_DEFAULTS[key])
    top = SYNTHETIC_LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= top:
        raise RobenchError(f"synthetic option {key} must be an integer in {minimum}..{top}, got {value!r}")
    return value


@DATASETS.register("synthetic", "synthetic: tiny seeded class-separable images (prototype + noise) for tests")
def load_synthetic(data_dir: Path, download: bool, options: dict) -> RawSplits:
    """Seeded toy data: each class a random prototype in [0.2, 0.8], samples add N(0, 0.1^2) noise, clipped.

    Options: num_classes (10), channels (1), image_size (8 or [H, W]), n_train (512), n_test (256),
    data_seed (0). Classes are balanced (sizes differ by at most one).
    """
    check_options("synthetic", options, SYNTHETIC_DEFAULTS)
    k, c = synthetic_int_option(options, "num_classes", 2), synthetic_int_option(options, "channels", 1)
    n_train, n_test = synthetic_int_option(options, "n_train", 1), synthetic_int_option(options, "n_test", 1)
    seed = synthetic_int_option(options, "data_seed", 0)
    size = options.get("image_size", 8)
    hw = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (list, tuple)) else ()
    if len(hw) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 1024 for s in hw):
        raise RobenchError(f"synthetic option image_size must be an integer in 1..1024 or [H, W] of them, got {size!r}")
    if (n_train + n_test) * c * hw[0] * hw[1] > 10**9:
        raise RobenchError("synthetic options ask for more than 10^9 pixel values; make n_train, n_test, channels or "
                           "image_size smaller")
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(0.2, 0.8, size=(k, c, *hw))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % k).astype(np.int64)
        x = prototypes[y] + rng.normal(0.0, 0.1, size=(n, c, *hw))
        return np.clip(x, 0.0, 1.0).astype(np.float32), y

    (x_train, y_train), (x_test, y_test) = sample(n_train), sample(n_test)
    info = stats_info("synthetic", x_train, k, tuple(f"class-{i}" for i in range(k)))
    return RawSplits(info, x_train, y_train, x_test, y_test)
