"""Training: ``train(config) -> run directory`` with any registered loss, single- or multi-process.

:mod:`~robench.training.config` (``TrainConfig``), :mod:`~robench.training.loop` (the SGD loop),
:mod:`~robench.training.run_dir` (what each epoch writes, resuming),
:mod:`~robench.training.distributed` (torchrun / DDP), :mod:`~robench.training.batches`
(shuffled or class-balanced batches), :mod:`~robench.training.gradient_stats` (the gradient
statistics every run.json records) and :mod:`~robench.training.accuracy` (clean accuracy).
"""
