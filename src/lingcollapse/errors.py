"""Errors a user can fix: the CLI turns them into one ``error:`` line and exit 2."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


class UserError(Exception):
    """Bad input or usage. The message says what is wrong and how to fix it."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (libraries' messages can run long)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def did_you_mean(word: str, choices: Iterable[str], name: Callable[[str], str] = repr) -> str:
    """``"; did you mean X?"`` for the choice closest to a misspelled ``word`` (difflib's
    ratio ≥ 0.6), else ``""``: the one near-miss hint of every registry and of the CLI.
    ``name`` shows the match (``repr`` quotes it; a registry may show its canonical name)."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {name(close[0])}?" if close else ""
