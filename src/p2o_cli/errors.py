"""The user's mistakes, as one family of exceptions.

A :class:`P2OError` is something the person running p2o can fix (a bad file, a bad option, a
missing key, a server that cannot be reached): the command line prints its first line and exits
with status 2. Anything else that escapes a command is a bug in p2o and exits with status 1.
``P2OError`` is a ``ValueError`` so library callers that already catch ``ValueError`` keep working.
"""

from __future__ import annotations


class P2OError(ValueError):
    """A problem with what the user asked for or handed in."""


class ConfigError(P2OError):
    """An option or config-file value that is missing, of the wrong type or out of range."""


class UsageError(P2OError):
    """A combination of options that cannot work together."""
