"""The one error type the sweep runner raises for bad input."""

from research.errors import UserError


class SweepError(UserError):
    """Bad sweep input, with a one-line message naming the problem and the fix."""
