"""robench: train classifiers with robust losses (GCCS and baselines) and benchmark them under attack.

``from robench import load_checkpoint`` is the entry point for Python use; the packages follow the
pipeline a recipe flows through: ``data`` -> ``models`` -> ``losses`` -> ``training`` -> ``attacks``
-> ``evaluation`` -> ``report`` -> ``pipeline`` -> ``cli``, on the floor of ``errors``, ``checks``, ``registry``,
``files``, ``provenance``, ``results``, ``devices``, ``progress`` and ``allocator``.
"""

from robench.version import __version__

__all__ = ["load_checkpoint", "__version__"]


def __getattr__(name: str):
    """``robench.load_checkpoint``, imported on first use (PEP 562) so that ``robench --help`` does not load torch."""
    if name == "load_checkpoint":
        from robench.models.checkpoints import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'robench' has no attribute {name!r}")
