"""Feature extractors for :mod:`robench.models`, one architecture per file.

Each extractor maps normalized images ``(B, C, H, W)`` to flat features ``(B, F)`` and
exposes ``out_features == F``; :mod:`robench.models.builders` puts the normalization in front and
the latent space mapper behind, and registers the result by name.
"""
