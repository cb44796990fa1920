"""The ``robench`` command line: ``robench.cli:app`` is the console script, ``main`` is ``python -m robench``."""

from robench.cli.app import app, main

__all__ = ["app", "main"]
