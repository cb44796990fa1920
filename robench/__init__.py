"""robench: train classifiers with robust losses (GCCS and baselines) and benchmark them under attack.

For Python use: ``robench.load_checkpoint``, and ``robench.attack``, ``robench.evaluate`` and
``robench.audit`` on any ``nn.Module`` and tensors (:mod:`robench.api`). The packages follow the
pipeline a recipe flows through: ``data`` -> ``models`` -> ``losses`` -> ``training`` -> ``attacks``
-> ``evaluation`` -> ``report`` -> ``pipeline`` -> ``cli``, on the floor of ``errors``, ``checks``, ``registry``,
``files``, ``provenance``, ``results``, ``devices``, ``progress`` and ``allocator``.
"""

from robench.version import __version__

__all__ = ["__version__", "attack", "audit", "evaluate", "load_checkpoint"]


def __getattr__(name: str):
    """The Python API, imported on first use (PEP 562) so that ``robench --help`` does not load torch."""
    if name == "load_checkpoint":
        from robench.models.checkpoints import load_checkpoint

        return load_checkpoint
    if name in ("attack", "audit", "evaluate"):
        from robench import api

        return getattr(api, name)
    raise AttributeError(f"module 'robench' has no attribute {name!r}")
