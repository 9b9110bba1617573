"""Errors crlbench raises for bad user input.

Each message names where the input came from (a file, a flag, a parameter), the offending key and
what would have been accepted, so the user can fix it without reading the code.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CrlbenchError(Exception):
    """Base class of the errors crlbench raises on purpose."""


class ConfigError(CrlbenchError, ValueError):
    """A configuration value, parameter or argument is invalid."""


class UnknownNameError(ConfigError, KeyError):
    """A name was looked up that no registry entry, parameter or option has."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def accepted(values: Iterable[object]) -> str:
    """Format accepted values for an error message."""
    values = [str(v) for v in values]
    return ", ".join(values) if values else "(none)"


def unknown_name(kind: str, name: str, known: Iterable[str], where: str = "") -> UnknownNameError:
    """An error for an unknown ``name`` of ``kind``, listing ``known`` and the closest match."""
    known = sorted(known)
    message = f"{where}unknown {kind} {name!r}; known: {accepted(known)}"
    close = difflib.get_close_matches(str(name), known, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return UnknownNameError(message)


class NotApplicable(CrlbenchError):
    """A method or metric does not apply to this input (a method that needs pairs on a dataset without
    them, a graph metric for a model that learns no graph). The suite records the cell or the score as
    not applicable, with this message as the reason, rather than as failed."""


class DiskFullError(CrlbenchError):
    """The disk (or the user's quota) filled up while writing ``path``; the previous file is intact."""

    def __init__(self, path: object) -> None:
        super().__init__(f"disk full while writing {path}; free some space and run the command again "
                         "(what was written before is intact)")
        self.path = path

    def __reduce__(self):  # pickled across worker processes with its path, not its message
        return type(self), (self.path,)


class FencedOut(CrlbenchError):
    """A write by a holder whose lease was taken over: its token is lower than the newest issued for the cell
    (crlbench.core.fencing), so the write is refused and the holder stops; the new holder finishes the cell."""

    def __init__(self, path: object, token: int, newest: int) -> None:
        super().__init__(f"{path}: not written: this process's lease token {token} was superseded by token "
                         f"{newest} (another launcher took the cell over after this one missed its heartbeats)")
        self.path, self.token, self.newest = path, token, newest

    def __reduce__(self):
        return type(self), (self.path, self.token, self.newest)


class UnsafeCheckpointError(CrlbenchError):
    """A checkpoint holds objects other than tensors and plain values; it is not loaded."""
