"""User-facing errors.

A :class:`BertnasError` is a mistake the user can fix (a missing file, a bad column, a bad config value).
The CLI prints its message on one line and exits non-zero without a traceback; anything else is a bug.
"""


class BertnasError(Exception):
    """An error in the user's input; the message names the problem and the fix."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of ``exc``'s message (at most ``limit`` characters), for a one-line error that quotes a
    library's error; the exception's type name when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
