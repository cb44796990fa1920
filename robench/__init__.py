"""robench: train classifiers with robust losses (GCCS and baselines) and benchmark them under attack."""

from robench.checkpoints import load_checkpoint

__version__ = "0.1.0"
__all__ = ["load_checkpoint", "__version__"]
