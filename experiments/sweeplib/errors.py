"""The one error type the sweep runner raises for bad input."""


class SweepError(ValueError):
    """Bad sweep input, with a one-line message naming the problem and the fix."""
