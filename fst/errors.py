"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class FstError(Exception):
    """A user-facing problem: bad input, missing file, unknown name. The message is one line."""
