import sys

import pytest
import torch

from robench import allocator


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(allocator, "tuned", None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_tuning_applies_once_and_tensors_still_work(fresh):
    assert allocator.tune_cpu_allocator() is True
    assert allocator.tune_cpu_allocator() is True
    big = torch.ones(64, 1024, 1024)  # 256 MiB: above glibc's largest mmap threshold
    assert float(big.sum()) == 64 * 1024 * 1024


def test_opt_out_by_environment(fresh, monkeypatch):
    monkeypatch.setenv("ROBENCH_KEEP_MALLOC", "1")
    assert allocator.tune_cpu_allocator() is False
