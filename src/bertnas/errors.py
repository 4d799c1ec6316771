"""User-facing errors.

A :class:`BertnasError` is a mistake the user can fix (a missing file, a bad column, a bad config value).
The CLI prints its message on one line and exits non-zero without a traceback; anything else is a bug.
"""


class BertnasError(Exception):
    """An error in the user's input; the message names the problem and the fix."""
