"""The ``lingcollapse`` command: one entry point, one module per subcommand.

Each subcommand module in :data:`COMMANDS` exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed namespace, returns an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from lingcollapse import __version__
from lingcollapse.errors import UserError

# Subcommand modules, in the order of the pipeline (DESIGN §2).
COMMANDS = [
    "lingcollapse.cli.data",
    "lingcollapse.cli.train",
    "lingcollapse.cli.collect",
    "lingcollapse.cli.stats",
    "lingcollapse.cli.measure",
    "lingcollapse.cli.analyze",
    "lingcollapse.cli.inspect",
    "lingcollapse.cli.report",
    "lingcollapse.cli.sweep",
]


class Parser(argparse.ArgumentParser):
    """argparse with the project's error form: one ``error: …`` line, exit 2. Bad usage
    is a :class:`UserError`, so a command line that a sweep builds fails the same way."""

    def error(self, message: str):
        raise UserError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lingcollapse",
        description="Neural collapse in (large) language models: data → train → collect "
        "→ measure → analyze.",
    )
    parser.add_argument("--version", action="version", version=f"lingcollapse {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version
        return int(exit_.code or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # libraries' own DEBUG loggers stay quiet
        handler.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            # libraries' notices to their own developers, not to our users
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
            return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    sys.exit(main())
