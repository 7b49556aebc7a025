"""The one exception type of the project."""


class CompressionError(ValueError):
    """Raised for anything a user must change: a bad ``compression_tasks`` entry, an impossible budget, a μ
    schedule that is not increasing, a NaN weight at a C step, a checkpoint written by a different run, a
    corrupted artifact. The message says what to change. Subclasses ``ValueError`` so that generic handlers
    still catch it."""
