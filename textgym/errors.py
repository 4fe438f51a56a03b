"""Errors that the CLI reports in one line, kept apart from the modules that raise them so that it
can name them without importing torch."""


class TextEnvError(RuntimeError):
    """A text env raised in ``reset``, ``step`` or ``expert``; the message names the env, the call and the error."""
