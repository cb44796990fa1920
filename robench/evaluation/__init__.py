"""Evaluation: attack sweeps over ε, per-image worst cases, latent snapshots and the robustness audit.

:mod:`~robench.evaluation.epsilon` (ε grids, relative ε), :mod:`~robench.evaluation.sweep`
(``SweepSpec``, ``run_sweep``: one CSV row per checkpoint × attack × backend × ε),
:mod:`~robench.evaluation.worst` (``worst`` rows), :mod:`~robench.evaluation.latent` (Fig. 3
snapshots), :mod:`~robench.evaluation.audit` and :mod:`~robench.evaluation.audit_checks`
(``robench audit``: the battery and its seven checks).
"""
