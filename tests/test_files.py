"""robench.files: deterministic safetensors bytes."""

import torch
from safetensors import safe_open
from safetensors.torch import load

from robench.files import safetensors_bytes


def test_safetensors_bytes_are_the_same_for_the_same_tensors_and_metadata(tmp_path):
    """safetensors writes its metadata map in a random order per call; robench's bytes do not depend on it."""
    tensors = {"b": torch.arange(6.0).view(2, 3), "a": torch.tensor([1, 2, 3])}
    metadata = {f"key{i}": f"value {i} é/\\\"" for i in range(12)}
    outputs = {safetensors_bytes(tensors, dict(reversed(metadata.items())) if i % 2 else dict(metadata))
               for i in range(20)}
    assert len(outputs) == 1
    raw = outputs.pop()
    loaded = load(raw)
    assert torch.equal(loaded["b"], tensors["b"]) and torch.equal(loaded["a"], tensors["a"])
    path = tmp_path / "t.safetensors"
    path.write_bytes(raw)
    with safe_open(str(path), "pt") as opened:
        assert opened.metadata() == metadata


def test_safetensors_bytes_without_metadata_are_the_librarys():
    from safetensors.torch import save
    tensors = {"w": torch.ones(2, 2)}
    assert safetensors_bytes(tensors) == save(tensors)
