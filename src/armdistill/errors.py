"""The errors a user can fix: ``armdistill`` prints them as one line and exits with code 2.

Everything else is a bug in armdistill and keeps its traceback. Each message names the file,
key or argument at fault and what was expected (``KEY: expected WHAT, got VALUE``).
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error caused by the user's input (config, files, data, refusals)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or directory the user named does not exist."""


class FileFormatError(UserError, ValueError):
    """A file exists but is not what was expected (corrupt, wrong kind, wrong shapes)."""


class DataError(UserError, ValueError):
    """An audio file or manifest line is unusable (missing, undecodable, too short, non-finite)."""


class RefusedError(UserError):
    """A file was refused because loading it could run code; nothing from it was executed."""


class NonFiniteError(UserError):
    """Training or saving met NaN / infinite numbers it cannot step over (diverged run, bad weights)."""


def expected(key: str, what: str, got: object) -> str:
    """The one wording of a validation message: ``KEY: expected WHAT, got VALUE`` (VALUE repr'd)."""
    return f"{key}: expected {what}, got {got!r}"
