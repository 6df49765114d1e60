"""The one exception type for bad user input: the CLI turns it into a single stderr line and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user (path, file, spec, option, count): reported in one line, never as a traceback."""


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> UserError:
    """An error for an unknown registry name that lists the known ones and suggests the closest."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UserError(f"unknown {kind} {name!r}{hint}; known: {', '.join(known)}")
