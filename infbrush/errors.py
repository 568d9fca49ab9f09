"""The one exception type for user-facing errors (bad input, bad config, missing files)."""


class InfbrushError(Exception):
    """A problem with the user's input; the CLI prints its message on one line and exits 2."""
