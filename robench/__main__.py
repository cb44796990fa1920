"""``python -m robench`` is the ``robench`` command."""

from robench.cli import main

if __name__ == "__main__":
    main()
