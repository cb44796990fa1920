"""The pipeline a recipe flows through: TOML -> plan -> jobs (local or Ray) -> manifest and report.

:mod:`~robench.pipeline.recipe` (dataclasses) and :mod:`~robench.pipeline.recipe_toml` (parsing),
:mod:`~robench.pipeline.plan` (what a recipe implies, what is done), the executors
:mod:`~robench.pipeline.local_executor` and :mod:`~robench.pipeline.ray_executor` (with
:mod:`~robench.pipeline.staging` for concurrent CSV writes), :mod:`~robench.pipeline.finish`
(manifest, report) and :mod:`~robench.pipeline.run` (``run_recipe``); :mod:`~robench.pipeline.quickstart`
is ``robench quickstart``.
"""
