"""Errors a user can fix: the CLI turns them into one ``error:`` line and exit 2."""


class UserError(Exception):
    """Bad input or usage. The message says what is wrong and how to fix it."""
