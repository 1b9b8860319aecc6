"""The one error type the analysis raises for bad input."""


class AnalysisError(ValueError):
    """Bad input: the message is one line naming the problem and the fix."""
