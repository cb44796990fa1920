"""Models: the paper's classifier, its architectures registered by name, checkpoints and inspection.

:mod:`~robench.models.classifier` is ``Normalize -> features -> latent mapper`` (Ali et al. 2020,
Sec. III); :mod:`~robench.models.builders` registers each architecture in :data:`MODELS` beside
its builder; :mod:`~robench.models.checkpoints` reads and writes run directories (safetensors +
run.json); :mod:`~robench.models.inspection` describes one for ``robench inspect``.
"""

from robench.models.builders import MODELS, build_model, model_options
from robench.models.classifier import Classifier, LatentMapper, Normalize

__all__ = ["MODELS", "Classifier", "LatentMapper", "Normalize", "build_model", "model_options"]
