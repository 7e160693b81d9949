"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class FstError(Exception):
    """A user-facing problem: bad input, missing file, unknown name. The message is one line."""


def first_line(e: BaseException) -> str:
    """An exception as one line for an error message: its message's first line, else its type."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
