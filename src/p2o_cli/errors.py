"""The user's mistakes, as one family of exceptions, and the helpers that keep their messages short.

A :class:`P2OError` is something the person running p2o can fix (a bad file, a bad option, a
missing key, a server that cannot be reached): the command line prints its first line and exits
with status 2. Anything else that escapes a command is a bug in p2o and exits with status 1.
``P2OError`` is a ``ValueError`` so library callers that already catch ``ValueError`` keep working.
Error lines never echo a huge value back. Imports nothing of p2o's (records.py re-exports these).
"""

from __future__ import annotations

import os
import re
from typing import Any


class P2OError(ValueError):
    """A problem with what the user asked for or handed in."""


class ConfigError(P2OError):
    """An option or config-file value that is missing, of the wrong type or out of range."""


class UsageError(P2OError):
    """A combination of options that cannot work together."""


# Error lines show at most this much of a value (a 50 MB id must not become a 50 MB line).
MAX_SHOWN_CHARS = 80
MAX_MESSAGE_CHARS = 500


def shown(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long it was when cut."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def one_line(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """The first line of ``message``, at most ``limit`` characters."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= limit else f"{line[:limit]}… ({len(line):,} characters)"


# ---------------------------------------------------------------- secrets in messages

# Configured API keys (registered by the HTTP client that holds them), and what looks like a
# key whatever its source: an Authorization header's token, OpenAI/Moonshot-style ``sk-`` keys,
# a URL's password (``https://user:KEY@host``).
_SECRETS: set[str] = set()
_LOOKS_LIKE_A_KEY = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}|\bsk-[A-Za-z0-9_-]{8,}|(://[^/@\s:]*:)[^/@\s]+(?=@)")
REDACTED = "[redacted]"


def register_secret(value: str | None) -> None:
    """Never show ``value`` in a message (an API key the process was given)."""
    if value and len(value) >= 8:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret and anything that looks like an API key replaced."""
    for secret in _SECRETS:
        text = text.replace(secret, REDACTED)
    return _LOOKS_LIKE_A_KEY.sub(lambda m: (m.group(1) or m.group(2) or "") + REDACTED, text)


# ---------------------------------------------------------------- interrupts

# SIGINT/SIGTERM received by this process (the entry point's handler records them): an error
# that surfaces after one (a library swallowed the KeyboardInterrupt mid-import and failed
# later) is reported as the interrupt, not as a bug.
received_signals: list[int] = []


class RecordError(Exception):
    """Bad input: the message is ``path:line: message`` (one line, no traceback)."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str):
        self.path, self.line, self.message = str(path), line, one_line(message)
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {self.message}")
