"""Errors a user can fix: the CLI turns them into one ``error:`` line and exit 2."""


class UserError(Exception):
    """Bad input or usage. The message says what is wrong and how to fix it."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (libraries' messages can run long)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
