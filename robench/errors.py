"""The one exception type for bad user input.

Anything raised as :class:`RobenchError` is the user's to fix (unknown name, missing
data, mismatched checkpoint, existing output directory). The CLI prints its message
as one red line and exits with code 2; everything else is a bug and keeps its traceback.
"""


class RobenchError(Exception):
    """A problem with the user's input, reported as one line and exit code 2."""
